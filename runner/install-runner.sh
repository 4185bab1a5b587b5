#!/usr/bin/env bash
# install-runner.sh: registers the GitHub Actions self-hosted runner that runs apply.yml and
# maintenance.yml on the GPU host: a dedicated system user, access to the LXD socket through
# its group, the runner unpacked in its own folder, registered with the labels the workflows
# ask for, and a systemd service that starts it at boot after LXD and the NVIDIA device unit.
#
# Usage: install-runner.sh --url URL --runner TARBALL|DIR [--token-file FILE|-] [--name NAME]
#          [--group RUNNER_GROUP] [--ephemeral [--pat-file FILE] [--api-url URL]] [--user USER]
#          [--dir DIR] [--lxd-group GROUP] [--sha256 HEX] [--dry-run]
#
#   --url URL         https://github.com/OWNER/REPO (a repository runner), or
#                     https://github.com/ORG with --group (an organisation runner group, which
#                     GitHub can limit to selected workflows; see docs/admin-guide.md)
#   --runner PATH     the runner release already downloaded on this host: the tarball
#                     actions-runner-linux-x64-<version>.tar.gz from
#                     https://github.com/actions/runner/releases (or an unpacked copy). This
#                     script never downloads anything.
#   --sha256 HEX      check the tarball against the SHA-256 the release page lists
#   --token-file F    a file holding the registration token (`-`: read it from stdin). The
#                     token (valid one hour) comes from Settings > Actions > Runners > New
#                     self-hosted runner, or `gh api -X POST repos/OWNER/REPO/actions/runners/registration-token`.
#                     It is passed to config.sh in its environment, never on a command line.
#                     Only needed the first time (or with --ephemeral, every time).
#   --name NAME       the runner's name on GitHub (default: this host's short name + -ssp)
#   --group G         the organisation's runner group to join (with --url https://github.com/ORG)
#   --ephemeral       register for one job only; GitHub then removes the runner. Without
#                     --pat-file the service then stays stopped until this script runs again
#                     with a new token; with it, the service registers again by itself.
#   --pat-file F      (with --ephemeral, repository runners) keep the runner registered
#                     unattended: a fine-grained personal access token of a repository admin
#                     with the repository permission "Administration: Read and write" and an
#                     expiry date (not a GitHub App installation token: it expires within an
#                     hour and nothing here renews it), copied to
#                     /etc/ssp-runner/github-pat (root only, mode 600). Only the registration
#                     helper reads it: runner/registration-token.sh, run by systemd as root
#                     once per connection to the socket /run/ssp-runner-token.sock
#                     (ssp-runner-token.socket, root only), answers with a registration token
#                     and nothing else. The service runs runner/ephemeral-runner.sh, which asks
#                     the helper for a token and registers before every job; the runner's unit
#                     hides /etc/ssp-runner from itself, so neither the loop nor a job holds
#                     the credential. Scripts go to /usr/local/lib/ssp-runner (root's). To
#                     rotate the credential, write the new one into that file (or run this again).
#   --api-url URL     the REST API for --pat-file (default https://api.github.com, or
#                     https://HOST/api/v3 for GitHub Enterprise Server; plain http only to
#                     127.0.0.1 or localhost, where a test serves a stand-in)
#   --user USER       the runner's account (default ssp-runner); created as a system user
#   --dir DIR         where the runner lives (default /opt/ssp-runner)
#   --lxd-group G     the group owning the LXD socket (default: read from the socket, else lxd)
#   --dry-run         print what would be done and change nothing (root not needed)
#   -h, --help        print this help
#
# Every step checks first and says "unchanged" when there is nothing to do, so running it
# again changes nothing. An unpacked runner is never replaced: it updates itself, and an old
# tarball would downgrade it. Run as root on the GPU host; the admin guide, section 1 step 9,
# walks through it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

USAGE="usage: ${0##*/} --url URL --runner TARBALL|DIR [--token-file FILE|-] [--name NAME] [--group RUNNER_GROUP] [--ephemeral [--pat-file FILE] [--api-url URL]] [--user USER] [--dir DIR] [--lxd-group GROUP] [--sha256 HEX] [--dry-run]"
# `self-hosted`, `linux` and `x64` are the runner's own default labels; the workflows'
# `runs-on: [self-hosted, linux, x64, gpu-host]` needs this one on top.
LABEL=gpu-host
UNIT=ssp-runner.service
# Where --pat-file puts the scripts and the credential: root's, out of the runner user's reach.
LOOP_DIR=/usr/local/lib/ssp-runner
PAT_PATH=/etc/ssp-runner/github-pat
# The registration helper: its socket (root's alone) and its units.
TOKEN_SOCKET=/run/ssp-runner-token.sock
HELPER=ssp-runner-token

url="" runner="" token_file="" name="" group="" ephemeral=false pat_file="" api_url=""
user=ssp-runner dir=/opt/ssp-runner lxd_group="" sha256="" dry_run=false

usage_error() {
	printf '%s\n' "$USAGE" >&2
	[ $# -eq 0 ] || log "error: $*"
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--url | --runner | --token-file | --name | --group | --user | --dir | --lxd-group | --sha256 | --pat-file | --api-url)
		[ $# -ge 2 ] || usage_error "$1 needs a value"
		case $1 in
		--url) url=$2 ;;
		--runner) runner=$2 ;;
		--token-file) token_file=$2 ;;
		--name) name=$2 ;;
		--group) group=$2 ;;
		--user) user=$2 ;;
		--dir) dir=${2%/} ;;
		--lxd-group) lxd_group=$2 ;;
		--sha256) sha256=$2 ;;
		--pat-file) pat_file=$2 ;;
		--api-url) api_url=$2 ;;
		esac
		shift
		;;
	--ephemeral) ephemeral=true ;;
	--dry-run) dry_run=true ;;
	-h | --help)
		# The help is this file's header comment: one text, read by both people and --help.
		sed -n '2,/^set -euo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
		exit 0
		;;
	*) usage_error "unknown argument: $1" ;;
	esac
	shift
done

[ -n "$url" ] || usage_error "--url is required"
[ -n "$runner" ] || usage_error "--runner is required (the runner tarball downloaded from GitHub)"
[[ $url =~ ^https://[A-Za-z0-9.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$ ]] ||
	usage_error "--url must be https://github.com/OWNER/REPO or https://github.com/ORG"
if [ -n "$group" ] && [[ $url =~ ^https://[^/]+/[^/]+/[^/]+$ ]]; then
	usage_error "runner groups belong to organisations: with --group, --url is https://github.com/ORG"
fi
[ -n "$name" ] || name="$(hostname -s)-ssp"
[[ $dir == /* ]] || usage_error "--dir must be an absolute path"
[[ $dir$name$user =~ ^[A-Za-z0-9/_.-]+$ ]] ||
	usage_error "--dir, --name and --user may hold letters, digits and / _ . - only (they go into a systemd unit)"
# With a credential, the service registers the runner itself before every job.
relooping=false
if [ -n "$pat_file" ]; then
	$ephemeral || usage_error "--pat-file keeps an ephemeral runner registered: add --ephemeral"
	[ -z "$group" ] || usage_error "--pat-file registers repository runners: --url https://github.com/OWNER/REPO, no --group"
	[ -z "$token_file" ] || usage_error "with --pat-file the service fetches its own registration tokens: drop --token-file"
	relooping=true
elif [ -n "$api_url" ]; then
	usage_error "--api-url goes with --pat-file"
fi
# Plain http only to this machine, as the helper allows (a test's stand-in for GitHub): the
# credential never crosses a network in clear.
[[ -z $api_url || $api_url =~ ^(https://[A-Za-z0-9.-]+(:[0-9]+)?|http://(127\.0\.0\.1|localhost)(:[0-9]+)?)(/[A-Za-z0-9_./-]*)?$ ]] ||
	usage_error "--api-url must be https://HOST[/PATH] (http only to localhost)"

changes=0
say() { printf '%s: %s\n' "${0##*/}" "$*"; }
unchanged() { say "unchanged: $*"; }
# Print the step; do it unless this is a dry run.
act() {
	local what=$1
	shift
	changes=$((changes + 1))
	if $dry_run; then
		say "would $what"
	else
		say "$what"
		"$@"
	fi
}

# --- preflight -----------------------------------------------------------------------------

$dry_run || require_root "${0##*/}"
systemd=true
if [ ! -d /run/systemd/system ]; then
	systemd=false
	$dry_run || die "this machine is not running systemd (no /run/systemd/system): no service to install"
	log "warning: no systemd here; the service steps are shown as they would run on the GPU host"
fi
[ "$(uname -m)" = x86_64 ] ||
	log "warning: this is $(uname -m), so the runner's default arch label is not x64 and the workflows' runs-on will not match"
python3 -c 'import venv, ensurepip' 2>/dev/null ||
	log "warning: python3 cannot create virtual environments, which the workflows do: apt-get install python3-venv"

# The socket LXD listens on, as `lxc` and ssp find it.
socket=""
for candidate in "${LXD_DIR:-/var/lib/lxd}/unix.socket" /var/snap/lxd/common/lxd/unix.socket; do
	if [ -S "$candidate" ]; then
		socket=$candidate
		break
	fi
done
if [ -z "$lxd_group" ]; then
	lxd_group=lxd
	if [ -n "$socket" ]; then
		owner=$(stat -c %G "$socket")
		if [ "$owner" = root ]; then
			msg="the LXD socket $socket belongs to group root, so no group gives the runner access; restart LXD with --group lxd (Debian's lxd.service does) or pass --lxd-group"
			$dry_run || die "$msg"
			log "warning: $msg"
		else
			lxd_group=$owner
		fi
	else
		log "warning: no LXD socket found (is LXD running?); using group $lxd_group"
	fi
fi
getent group "$lxd_group" >/dev/null ||
	die "group $lxd_group does not exist: install LXD first, or pass --lxd-group"

# The runner release: a tarball (checked, unpacked later) or an unpacked folder.
if [ -d "$runner" ]; then
	{ [ -f "$runner/config.sh" ] && [ -f "$runner/bin/runsvc.sh" ]; } ||
		die "$runner does not look like an unpacked actions runner (no config.sh or bin/runsvc.sh)"
	[ -z "$sha256" ] || die "--sha256 checks a tarball, and $runner is a folder"
elif [ -f "$runner" ]; then
	tar -tzf "$runner" 2>/dev/null | awk '$0 == "./config.sh" || $0 == "config.sh" { f = 1 } END { exit !f }' ||
		die "$runner is not an actions runner tarball (no config.sh inside)"
	if [ -n "$sha256" ]; then
		actual=$(sha256sum "$runner" | cut -d' ' -f1)
		[ "$actual" = "${sha256,,}" ] ||
			die "$runner has SHA-256 $actual, not $sha256: download it again from the release page"
		say "checked: $runner matches the SHA-256 given"
	else
		log "warning: no --sha256 given; compare $(sha256sum "$runner" | cut -d' ' -f1) with the release page"
	fi
else
	die "$runner does not exist: download actions-runner-linux-x64-<version>.tar.gz from https://github.com/actions/runner/releases"
fi

# --- the user and its access to LXD -------------------------------------------------------

if id -u "$user" >/dev/null 2>&1; then
	unchanged "user $user exists"
else
	act "create system user $user (home /var/lib/$user, no login shell)" \
		useradd --system --create-home --home-dir "/var/lib/$user" --shell /usr/sbin/nologin "$user"
fi
member_of=" $(id -nG "$user" 2>/dev/null || true) "
if [[ $member_of == *" $lxd_group "* ]]; then
	unchanged "$user is in group $lxd_group (the LXD socket)"
else
	act "add $user to group $lxd_group so it can reach the LXD socket" \
		usermod --append --groups "$lxd_group" "$user"
fi

# --- the runner's files ------------------------------------------------------------------------

unpack() {
	install -d -m 0750 "$dir"
	if [ -d "$runner" ]; then
		cp -a "$runner/." "$dir/"
	else
		tar -xzf "$runner" -C "$dir"
	fi
	chown -R "$user:" "$dir"
}
if [ -f "$dir/config.sh" ]; then
	unchanged "runner already unpacked in $dir (it updates itself)"
else
	act "unpack $runner into $dir, owned by $user" unpack
fi

# --- registration -------------------------------------------------------------------------------

labels="self-hosted,linux,x64,$LABEL"
register() {
	local token
	if [ "$token_file" = - ]; then
		IFS= read -r token
	else
		token=$(<"$token_file")
	fi
	local args=(--unattended --url "$url" --name "$name" --labels "$LABEL" --work _work --replace)
	$ephemeral && args+=(--ephemeral)
	[ -z "$group" ] || args+=(--runnergroup "$group")
	# Exported, not `env VAR=...`: that would put the token on a command line `ps` shows.
	(
		cd "$dir"
		export ACTIONS_RUNNER_INPUT_TOKEN="${token//[$'\r\n ']/}"
		runuser -u "$user" -- ./config.sh "${args[@]}"
	)
}
if $relooping; then
	say "registration: the service registers $name at $url (labels $labels, ephemeral) before every job"
elif [ -f "$dir/.runner" ]; then
	unchanged "runner already registered ($dir/.runner); to move it: ./config.sh remove, then run this again"
else
	[ -n "$token_file" ] || die "the runner is not registered yet: give a registration token with --token-file"
	[ "$token_file" = - ] || [ -r "$token_file" ] || die "cannot read the token file $token_file"
	once=""
	$ephemeral && once=", ephemeral"
	act "register runner $name at $url (labels $labels${group:+, runner group $group}$once)" register
fi

# --- the registering loop and its credential (--pat-file) ------------------------------------

loop_changed=false
install_pat() {
	install -d -m 0700 -o root -g root "${PAT_PATH%/*}"
	install -m 0600 -o root -g root "$pat_file" "$PAT_PATH.tmp"
	mv "$PAT_PATH.tmp" "$PAT_PATH"
}
LOOP_FILES=(ephemeral-runner.sh registration-token.sh lib.sh)
install_loop() {
	install -d -m 0755 -o root -g root "$LOOP_DIR"
	local file
	for file in "${LOOP_FILES[@]}"; do
		install -m 0755 -o root -g root "$HERE/$file" "$LOOP_DIR/$file.tmp"
		mv "$LOOP_DIR/$file.tmp" "$LOOP_DIR/$file"
	done
}
if $relooping; then
	[ -r "$pat_file" ] || die "cannot read the credential file $pat_file"
	[ -n "$(tr -d '[:space:]' <"$pat_file")" ] || die "the credential file $pat_file is empty"
	[ $((8#$(stat -L -c %a "$pat_file") & 8#077)) -eq 0 ] ||
		log "warning: $pat_file is readable by others than its owner: delete it once it is copied"
	if [ -f "$PAT_PATH" ] && cmp -s "$pat_file" "$PAT_PATH" &&
		[ "$(stat -c '%u %a' "$PAT_PATH")" = "0 600" ]; then
		unchanged "$PAT_PATH holds the credential (root only)"
	else
		act "copy the credential in $pat_file to $PAT_PATH (owner root, mode 600)" install_pat
	fi
	current=true
	for file in "${LOOP_FILES[@]}"; do
		cmp -s "$HERE/$file" "$LOOP_DIR/$file" || current=false
	done
	if $current; then
		unchanged "$LOOP_DIR holds the current ephemeral-runner.sh and registration-token.sh"
	else
		act "install ephemeral-runner.sh, registration-token.sh and lib.sh into $LOOP_DIR (owner root)" install_loop
		loop_changed=true
	fi
fi

# --- the registration helper (--pat-file): the only holder of the credential -----------------

socket_text() {
	cat <<EOF
# Written by runner/install-runner.sh: where the runner's loop asks for a registration token.
[Unit]
Description=Registration tokens for the ssp runner (root only)

[Socket]
ListenStream=$TOKEN_SOCKET
# Root's alone: the loop asks as root, before it drops to $user; a job, as $user, cannot.
SocketUser=root
SocketGroup=root
SocketMode=0600
# One helper process per connection, which answers once and exits.
Accept=yes
MaxConnections=4

[Install]
WantedBy=sockets.target
EOF
}
helper_text() {
	cat <<EOF
# Written by runner/install-runner.sh: one registration token per connection to $HELPER.socket.
[Unit]
Description=Registration token for the ssp runner (reads $PAT_PATH)
CollectMode=inactive-or-failed

[Service]
# Root reads the credential (root only, mode 600); it never leaves this process, which
# answers with a registration token on the connection and exits.
User=root
ExecStart=$LOOP_DIR/registration-token.sh --url $url --pat-file $PAT_PATH${api_url:+ --api-url $api_url}
StandardInput=socket
StandardOutput=socket
StandardError=journal
RuntimeMaxSec=90
NoNewPrivileges=yes
CapabilityBoundingSet=
PrivateTmp=yes
PrivateDevices=yes
ProtectSystem=strict
ProtectHome=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
# It needs GitHub, not LXD.
InaccessiblePaths=-/var/lib/lxd -/var/snap/lxd
EOF
}
install_helper() {
	local name
	socket_text >"/etc/systemd/system/$HELPER.socket.tmp"
	helper_text >"/etc/systemd/system/$HELPER@.service.tmp"
	for name in "$HELPER.socket" "$HELPER@.service"; do
		chmod 0644 "/etc/systemd/system/$name.tmp"
		mv "/etc/systemd/system/$name.tmp" "/etc/systemd/system/$name"
	done
	systemctl daemon-reload
}
helper_changed=false
if $relooping; then
	if [ -f "/etc/systemd/system/$HELPER.socket" ] && [ -f "/etc/systemd/system/$HELPER@.service" ] &&
		socket_text | cmp -s - "/etc/systemd/system/$HELPER.socket" &&
		helper_text | cmp -s - "/etc/systemd/system/$HELPER@.service"; then
		unchanged "$HELPER.socket and $HELPER@.service are up to date"
	else
		act "write $HELPER.socket ($TOKEN_SOCKET, root only) and $HELPER@.service (the registration helper, as root)" install_helper
		helper_changed=true
		! $dry_run || { socket_text && helper_text; } | sed 's/^/    | /'
	fi
fi

# --- the service ------------------------------------------------------------------------------------

restart=always
$ephemeral && restart=no
wants=""
exec_start=$dir/runsvc.sh
run_as="User=$user"
kill_mode="# The runner's own unit template: stop the listener only, let a running job finish.
KillMode=process"
runs="runs $dir/runsvc.sh as $user"
if $relooping; then
	restart=always
	exec_start="$LOOP_DIR/ephemeral-runner.sh --url $url --token-socket $TOKEN_SOCKET --dir $dir --user $user --name $name --labels $LABEL"
	run_as="# Root asks the registration helper ($HELPER.socket) for a token; the loop runs
# config.sh and run.sh as $user. It never reads the credential.
User=root"
	kill_mode="# SIGTERM to the loop, which passes it on to run.sh; what is left at the end is killed.
KillMode=mixed"
	runs="runs $LOOP_DIR/ephemeral-runner.sh, which registers and runs the runner as $user before every job, Restart=always"
	wants=" $HELPER.socket"
fi
unit_text() {
	cat <<EOF
# Written by runner/install-runner.sh: the GitHub Actions runner for ssp apply and maintenance.
[Unit]
Description=GitHub Actions runner for Super Server Platform (ssp)
Wants=network-online.target$wants
After=network-online.target nvidia-devices.service lxd.service snap.lxd.daemon.service$wants

[Service]
$run_as
WorkingDirectory=$dir
ExecStart=$exec_start
$kill_mode
KillSignal=SIGTERM
TimeoutStopSec=5min
Restart=$restart
RestartSec=5s
# Jobs never need to gain privileges (no sudo): LXD is reached through its socket's group.
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
# The registration helper's credential: not even visible to the runner, its loop or a job.
InaccessiblePaths=-${PAT_PATH%/*}

[Install]
WantedBy=multi-user.target
EOF
}
unit_path=/etc/systemd/system/$UNIT
install_unit() {
	$relooping || install -m 0755 -o "$user" "$dir/bin/runsvc.sh" "$dir/runsvc.sh"
	unit_text >"$unit_path.tmp"
	chmod 0644 "$unit_path.tmp"
	mv "$unit_path.tmp" "$unit_path"
	systemctl daemon-reload
}
restart_unit() {
	systemctl enable --quiet "$UNIT"
	systemctl restart "$UNIT"
}
if [ -f "$unit_path" ] && unit_text | cmp -s - "$unit_path" &&
	{ $relooping || [ -x "$dir/runsvc.sh" ]; }; then
	unchanged "$unit_path is up to date"
	unit_changed=$loop_changed
	! $helper_changed || unit_changed=true
else
	act "write $unit_path ($runs) and reload systemd" install_unit
	unit_changed=true
	! $dry_run || unit_text | sed 's/^/    | /'
fi
if $relooping; then
	if $systemd && [ "$(systemctl is-enabled "$HELPER.socket" 2>/dev/null || true)" = enabled ] &&
		systemctl is-active --quiet "$HELPER.socket"; then
		unchanged "$HELPER.socket is enabled and listening"
	else
		act "enable and start $HELPER.socket (the registration helper's socket)" \
			systemctl enable --now "$HELPER.socket"
	fi
fi
if $systemd && [ "$(systemctl is-enabled "$UNIT" 2>/dev/null || true)" = enabled ] &&
	systemctl is-active --quiet "$UNIT" && ! $unit_changed; then
	unchanged "$UNIT is enabled and running"
elif $unit_changed && $systemd && systemctl is-active --quiet "$UNIT"; then
	act "enable and restart $UNIT (its unit changed)" restart_unit
else
	act "enable and start $UNIT" systemctl enable --now "$UNIT"
fi

if $dry_run; then
	say "dry run: $changes change(s) would be made, nothing was changed"
elif [ "$changes" -eq 0 ]; then
	say "nothing to change"
else
	say "$changes change(s) made; check the runner under Settings > Actions > Runners"
fi
