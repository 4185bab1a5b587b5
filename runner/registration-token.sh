#!/usr/bin/env bash
# The registration helper: the only process on the GPU host that reads the credential which
# may create runner registration tokens (repository administration), and hands out nothing
# but a registration token. Keeps that credential out of every job's reach: the runner's loop
# (runner/ephemeral-runner.sh) and the jobs it runs never hold it, only a token that registers
# one runner and expires within the hour.
#
# systemd runs it once per connection (ssp-runner-token.socket, Accept=yes: the connection is
# this script's standard input and output; written by runner/install-runner.sh), as root,
# from its own unit, so the runner's service (which hides /etc/ssp-runner from itself with
# InaccessiblePaths=) shares neither process, files nor environment with it. The socket is
# root's alone (SocketMode=0600): the loop connects as root before it drops to the runner's
# user; a job, running as that user, cannot connect.
#
# One connection, one answer, in HTTP/1.0 so that `curl --unix-socket` can ask:
#   - 200 and the token as the body: GitHub made one (POST
#     /repos/OWNER/REPO/actions/runners/registration-token, answered 201 {"token", ...});
#   - 503 and one line saying why not (the credential file is missing, readable by others,
#     not a token; GitHub refused it, 401/403/404/5xx; no answer). The line is for the
#     runner's journal and never holds the credential or a token.
#
# Secrets: the credential file must belong to the user running this (root) and be readable
# by nobody else; it is read again on every connection, so replacing it rotates the
# credential. It reaches curl on its standard input (never a command line `ps` shows, never
# exported), and only the token is written back.
#
# Usage: registration-token.sh --url https://github.com/OWNER/REPO --pat-file FILE [--api-url URL]
#
#   --url URL        the repository whose runners are registered
#   --pat-file FILE  the credential: a fine-grained personal access token with the repository
#                    permission "Administration: write" (a GitHub App installation token would
#                    expire within the hour and nothing renews it)
#   --api-url URL    the REST API (default https://api.github.com for github.com,
#                    https://HOST/api/v3 for GitHub Enterprise Server)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

USAGE="usage: ${0##*/} --url https://github.com/OWNER/REPO --pat-file FILE [--api-url URL]"

url="" pat_file="" api=""

usage_error() {
	printf '%s\n' "$USAGE" >&2
	log "error: $*"
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--url | --pat-file | --api-url)
		[ $# -ge 2 ] || usage_error "$1 needs a value"
		case $1 in
		--url) url=$2 ;;
		--pat-file) pat_file=$2 ;;
		--api-url) api=${2%/} ;;
		esac
		shift
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
	usage_error "--url must be https://HOST/OWNER/REPO (repository runners)"
host=${BASH_REMATCH[1]} repo="${BASH_REMATCH[2]}/${BASH_REMATCH[3]}"
[ -n "$pat_file" ] || usage_error "--pat-file is required"
if [ -z "$api" ]; then
	if [ "$host" = github.com ]; then api=https://api.github.com; else api="https://$host/api/v3"; fi
fi
# Plain http only to this machine (a test server); a credential never crosses a network in clear.
[[ $api =~ ^(https://[A-Za-z0-9.-]+(:[0-9]+)?|http://(127\.0\.0\.1|localhost)(:[0-9]+)?)(/[A-Za-z0-9_./-]*)?$ ]] ||
	usage_error "--api-url must be https://HOST[/PATH] (http only to localhost)"
endpoint="$api/repos/$repo/actions/runners/registration-token"

# The answer on standard output (the connection): STATUS REASON, then the body.
answer() {
	printf 'HTTP/1.0 %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n%s\n' \
		"$1" "$2"
}

refuse() {
	log "$1"
	answer "503 Service Unavailable" "$1"
	exit 0
}

# Read the request (a line and headers up to an empty line), bounded in time and size: the
# client's question is always the same, and only root can ask it.
lines=0
while IFS= read -r -t 5 -n 1024 line; do
	lines=$((lines + 1))
	line=${line%$'\r'}
	if [ -z "$line" ] || [ "$lines" -ge 50 ]; then break; fi
done

if [ ! -r "$pat_file" ]; then
	refuse "the registration helper cannot read the credential file $pat_file"
fi
owner_mode=$(stat -L -c '%u %a' "$pat_file")
if [ "${owner_mode% *}" != "$(id -u)" ] || [ $((8#${owner_mode#* } & 8#077)) -ne 0 ]; then
	refuse "$pat_file must belong to $(id -un) and be readable by nobody else: chown $(id -un): $pat_file && chmod 600 $pat_file"
fi
pat=$(<"$pat_file")
pat=${pat//[$'\r\n\t ']/}
if ! [[ $pat =~ ^[A-Za-z0-9_]+$ ]]; then
	refuse "$pat_file does not hold a GitHub token (one line: github_pat_..., ghp_... or ghs_...)"
fi

# printf is a shell builtin: the credential travels through a pipe, not an argument.
reply=$(printf 'header = "Authorization: Bearer %s"\n' "$pat" |
	curl --silent --show-error --max-time 30 --request POST --config - \
		--header 'Accept: application/vnd.github+json' \
		--header 'X-GitHub-Api-Version: 2022-11-28' \
		--user-agent ssp-registration-helper --write-out '\n%{http_code}' "$endpoint") || true
pat=""
status=${reply##*$'\n'}
body=${reply%"$status"}
message=""
if [[ $body =~ \"message\"[[:space:]]*:[[:space:]]*\"([^\"]{0,200}) ]]; then
	message=" (\"${BASH_REMATCH[1]//[^[:print:]]/}\")"
fi
case $status in
201)
	if [[ $body =~ \"token\"[[:space:]]*:[[:space:]]*\"([A-Za-z0-9._-]+)\" ]]; then
		log "handed out a registration token for $repo"
		answer "200 OK" "${BASH_REMATCH[1]}"
		exit 0
	fi
	refuse "GitHub answered 201 without a registration token"
	;;
401) refuse "GitHub refused the credential in $pat_file: 401$message; it has expired or was revoked: put a new one in the file" ;;
403) refuse "GitHub answered 403$message: the credential needs the repository permission Administration: write on $repo (or the API rate limit is spent)" ;;
404) refuse "GitHub answered 404$message: $repo does not exist or the credential does not cover it" ;;
000 | "") refuse "no answer from $api (see curl's message in the helper's journal)" ;;
*) refuse "GitHub answered $status$message to the registration token request" ;;
esac
