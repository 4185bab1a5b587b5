#!/usr/bin/env bash
# Keeps an ephemeral GitHub Actions runner on the GPU host: an ephemeral runner takes one job,
# then GitHub removes it. This loop, the service's main process, registers it again before
# every job, so nobody has to fetch a registration token by hand. Each round:
#
#   1. asks the registration helper (runner/registration-token.sh, its own systemd service
#      behind the socket --token-socket, root's alone) for a registration token. The helper
#      holds the credential that may create them (repository administration); this loop
#      never reads it, and the runner's unit cannot even see the folder it is in;
#   2. forgets the previous registration (the runner's .runner and .credentials files) and
#      runs `config.sh --unattended --ephemeral --replace` as the runner's user;
#   3. runs `run.sh` as that user until the job is done.
#
# Secrets: the registration token (valid one hour, good for registering one runner) reaches
# config.sh in its environment (ACTIONS_RUNNER_INPUT_TOKEN, which the runner reads instead of
# --token); run.sh, and so the job, starts from a clean environment without it.
#
# A failed token request (the helper's reason is said in the journal: the credential file,
# GitHub's 401, 403, 404, 5xx, no answer), config.sh failing or run.sh exiting with an error
# is said in the journal, and the round is tried again after a delay that doubles from
# --retry-delay up to --max-retry-delay. SIGTERM (systemctl stop) is passed on to run.sh,
# which lets the runner stop, and the loop then exits 0.
#
# Usage: ephemeral-runner.sh --url https://github.com/OWNER/REPO --token-socket PATH [--dir DIR]
#          [--user USER] [--name NAME] [--labels LABELS]
#          [--retry-delay SECONDS] [--max-retry-delay SECONDS] [--rounds N]
#
#   --url URL            the repository the runner serves (repository runners only)
#   --token-socket PATH  the registration helper's socket (ssp-runner-token.socket)
#   --dir DIR            the unpacked runner (default /opt/ssp-runner)
#   --user USER          the runner's unprivileged account (default ssp-runner)
#   --name NAME          the runner's name (default: short host name + -ssp)
#   --labels LABELS      labels on top of self-hosted,linux,x64 (default gpu-host)
#   --retry-delay S      the first delay after a failure (default 5)
#   --max-retry-delay S  the longest delay (default 300)
#   --rounds N           stop after N jobs (default 0: never), for trying it by hand
#
# Installed by runner/install-runner.sh --ephemeral --pat-file FILE as the ExecStart of
# ssp-runner.service (Restart=always). Runs as root, or as USER itself.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

USAGE="usage: ${0##*/} --url https://github.com/OWNER/REPO --token-socket PATH [--dir DIR] [--user USER] [--name NAME] [--labels LABELS] [--retry-delay SECONDS] [--max-retry-delay SECONDS] [--rounds N]"

url="" socket="" dir=/opt/ssp-runner user=ssp-runner name="" labels=gpu-host
retry_delay=5 max_retry_delay=300 rounds=0

usage_error() {
	printf '%s\n' "$USAGE" >&2
	log "error: $*"
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--url | --token-socket | --dir | --user | --name | --labels | --retry-delay | --max-retry-delay | --rounds)
		[ $# -ge 2 ] || usage_error "$1 needs a value"
		case $1 in
		--url) url=$2 ;;
		--token-socket) socket=$2 ;;
		--dir) dir=${2%/} ;;
		--user) user=$2 ;;
		--name) name=$2 ;;
		--labels) labels=$2 ;;
		--retry-delay) retry_delay=$2 ;;
		--max-retry-delay) max_retry_delay=$2 ;;
		--rounds) rounds=$2 ;;
		esac
		shift
		;;
	--pat-file | --api-url)
		usage_error "$1 belongs to the registration helper (runner/registration-token.sh) now: this loop never reads the credential; give --token-socket"
		;;
	-h | --help)
		printf '%s\n' "$USAGE"
		exit 0
		;;
	*) usage_error "unknown argument: $1" ;;
	esac
	shift
done

[[ $url =~ ^https://([A-Za-z0-9.-]+)/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)$ ]] ||
	usage_error "--url must be https://HOST/OWNER/REPO (the loop registers repository runners)"
[ -n "$socket" ] || usage_error "--token-socket is required (the registration helper's socket)"
[[ $socket == /* ]] || usage_error "--token-socket must be an absolute path"
for number in "$retry_delay" "$max_retry_delay" "$rounds"; do
	[[ $number =~ ^[0-9]+$ ]] || usage_error "not a whole number: $number"
done
{ [ "$retry_delay" -ge 1 ] && [ "$max_retry_delay" -ge "$retry_delay" ]; } ||
	usage_error "need 1 <= --retry-delay <= --max-retry-delay"
[[ $dir == /* ]] || usage_error "--dir must be an absolute path"
[ -n "$name" ] || name="$(hostname -s)-ssp"

uid=$(id -u "$user" 2>/dev/null) || die "no user $user: run runner/install-runner.sh first"
home=$(getent passwd "$user" | cut -d: -f6)
{ [ -x "$dir/config.sh" ] && [ -x "$dir/run.sh" ]; } ||
	die "$dir has no config.sh and run.sh: unpack the runner there (runner/install-runner.sh)"
# The runner runs as its own unprivileged user (with its groups, the LXD socket's among them).
drop=()
if [ "$(id -u)" -ne "$uid" ]; then
	[ "$(id -u)" -eq 0 ] || die "runs as root (or as $user itself)"
	drop=(setpriv "--reuid=$uid" "--regid=$(id -g "$user")" --init-groups --inh-caps=-all --)
fi

# --- stopping -------------------------------------------------------------------------------

stopping=false child=""
on_stop() {
	stopping=true
	log "stopping (signal received)${child:+: passing it on to process $child}"
	[ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true
}
trap on_stop TERM INT

# Note the background process just started as $child, and stop it at once if a signal came
# before it could be noted (the trap runs between commands, so it may have found no child).
started() {
	child=$!
	if $stopping; then kill -TERM "$child" 2>/dev/null || true; fi
}

# Wait for the background process $child; its exit status, even across a signal's trap.
wait_child() {
	local rc=0
	wait "$child" || rc=$?
	while kill -0 "$child" 2>/dev/null; do
		rc=0
		wait "$child" || rc=$?
	done
	child=""
	return "$rc"
}

pause() {
	sleep "$1" &
	started
	wait_child || true
}

# --- one round ------------------------------------------------------------------------------

# What the runner's processes get: the service's environment minus everything but the locale
# and PATH, so nothing the service was given reaches a job.
runner_env() {
	local var
	for var in $(compgen -e); do
		case $var in
		PATH | LANG | LC_* | TZ) ;;
		*) unset "$var" 2>/dev/null || true ;;
		esac
	done
	export HOME="$home" USER="$user" LOGNAME="$user"
}

# Print a new registration token on stdout, or say in the journal why there is none.
registration_token() {
	local reply status body
	if [ ! -S "$socket" ]; then
		log "no registration helper listens on $socket: systemctl enable --now ssp-runner-token.socket"
		return 1
	fi
	reply=$(curl --silent --show-error --max-time 60 --unix-socket "$socket" \
		--write-out '\n%{http_code}' http://localhost/registration-token) || true
	status=${reply##*$'\n'}
	body=${reply%"$status"}
	body=${body%$'\n'}
	body=${body%$'\n'}
	case $status in
	200)
		if [[ $body =~ ^[A-Za-z0-9._-]+$ ]]; then
			printf '%s\n' "$body"
			return 0
		fi
		log "the registration helper answered without a registration token"
		;;
	000 | "") log "no answer from the registration helper on $socket (see its journal: journalctl -u 'ssp-runner-token@*')" ;;
	*) log "the registration helper has no token: ${body//[^[:print:]]/}" ;;
	esac
	return 1
}

# Register with TOKEN for one job, as the runner's user, starting from no registration.
configure() {
	rm -f "$dir/.runner" "$dir/.credentials" "$dir/.credentials_rsaparams"
	(
		runner_env
		export ACTIONS_RUNNER_INPUT_TOKEN="$1"
		cd "$dir"
		exec "${drop[@]}" ./config.sh --unattended --ephemeral --replace --url "$url" \
			--name "$name" --labels "$labels" --work _work
	) &
	started
	wait_child
}

# Take one job; RUNNER_MANUALLY_TRAP_SIG makes run.sh pass SIGTERM on to the listener.
take_job() {
	(
		runner_env
		export RUNNER_MANUALLY_TRAP_SIG=1
		cd "$dir"
		exec "${drop[@]}" ./run.sh
	) &
	started
	wait_child
}

# --- the loop -------------------------------------------------------------------------------

log "keeping runner $name registered at $url for one job at a time (tokens from $socket)"
failures=0 done_rounds=0
while ! $stopping; do
	failed=""
	if ! token=$(registration_token); then
		failed="no registration token"
	elif $stopping; then
		break
	else
		rc=0
		configure "$token" || rc=$?
		token=""
		if $stopping; then
			break
		elif [ "$rc" -ne 0 ]; then
			failed="config.sh failed (exit $rc)"
		else
			log "registered $name; waiting for a job"
			rc=0
			take_job || rc=$?
			done_rounds=$((done_rounds + 1))
			if $stopping; then
				break
			elif [ "$rc" -ne 0 ]; then
				failed="run.sh exited $rc"
			else
				log "the job is done; GitHub has removed the runner: registering again"
			fi
		fi
	fi
	if [ "$rounds" -gt 0 ] && [ "$done_rounds" -ge "$rounds" ]; then
		log "$done_rounds round(s) done, as --rounds asked"
		break
	fi
	if [ -n "$failed" ]; then
		failures=$((failures + 1))
		delay=$retry_delay
		for ((i = 1; i < failures && delay < max_retry_delay; i++)); do delay=$((delay * 2)); done
		[ "$delay" -le "$max_retry_delay" ] || delay=$max_retry_delay
		log "$failed; trying again in ${delay}s (failure $failures in a row)"
		pause "$delay"
	else
		failures=0
	fi
done
log "stopped"
