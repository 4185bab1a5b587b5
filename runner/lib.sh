# shellcheck shell=bash
# Shared shell helpers for the scripts in runner/: messages, package checks and small LXD
# queries. Sourced, never run; the caller sets `set -euo pipefail`.

# Every message goes to stderr with the script's name, so stdout stays free for data.
SSP_LOG_NAME=${SSP_LOG_NAME:-${0##*/}}

log() {
	printf '%s: %s\n' "$SSP_LOG_NAME" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

have() {
	command -v "$1" >/dev/null 2>&1
}

# True when the Debian package is installed (not merely known or removed with config left).
pkg_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

require_root() {
	[ "$(id -u)" -eq 0 ] || die "$1 needs root"
}

# The daemon's state directory; LXD itself and `lxc` honour LXD_DIR the same way.
lxd_dir() {
	printf '%s\n' "${LXD_DIR:-/var/lib/lxd}"
}

# True when a daemon answers on the socket (not merely when a process exists).
lxd_answers() {
	have lxd && [ -S "$(lxd_dir)/unix.socket" ] && lxd waitready --timeout 2 >/dev/null 2>&1
}

# True when an API path exists, e.g. lxd_exists "/1.0/images/aliases/x?project=default".
lxd_exists() {
	lxc query "$1" >/dev/null 2>&1
}

lxd_server_version() {
	lxc query /1.0 | sed -n 's/^[[:space:]]*"server_version": "\([^"]*\)".*/\1/p'
}

# Status of one instance in upper case (RUNNING, STOPPED, ...), empty when it does not exist.
lxd_instance_status() {
	local name=$1 project=${2:-default}
	lxc list --project "$project" --format csv --columns s "^${name}\$" 2>/dev/null || true
}

lxd_instance_ipv4() {
	local name=$1 project=${2:-default}
	lxc list --project "$project" --format csv --columns 4 "^${name}\$" 2>/dev/null |
		sed -n 's/^\([0-9][0-9.]*\) (eth0).*/\1/p'
}
