#!/usr/bin/env bash
# Install and start ssp-sample.timer, which runs `ssp sample` every 5 minutes (the GPU usage
# database that `ssp usage` and `ssp maintain`'s idle notices read). Run it on every cluster
# member: a member without a GPU records nothing.
#
# Usage: install-sample-timer.sh [--ssp PATH] [--repo DIR] [--dry-run] [--root DIR]
#   --ssp PATH  the ssp command (default: /opt/ssp/venv/bin/ssp)
#   --repo DIR  the checkout of the lab's repository it reads the policy from
#               (default: /opt/ssp/repo)
#   --dry-run   print what would be done and change nothing
#   --root DIR  install into the system image rooted at DIR (systemctl --root; no reload,
#               no start), e.g. a host image being built, or a test directory
#
# Installs runner/systemd/ssp-sample.service (with PATH and DIR written into ExecStart) and
# ssp-sample.timer into /etc/systemd/system, reloads systemd, enables and starts the timer.
# Files already identical and a timer already enabled are left alone: running it again
# changes nothing.
set -euo pipefail

usage() { echo "Usage: $(basename "$0") [--ssp PATH] [--repo DIR] [--dry-run] [--root DIR]"; }

ssp=/opt/ssp/venv/bin/ssp
repo=/opt/ssp/repo
dry_run=false
root=/
while [ $# -gt 0 ]; do
  case "$1" in
    --ssp | --repo | --root)
      [ $# -ge 2 ] || { usage >&2; exit 2; }
      case "$1" in
        --ssp) ssp=$2 ;;
        --repo) repo=$2 ;;
        --root) root=$2 ;;
      esac
      shift
      ;;
    --dry-run) dry_run=true ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done

fail() { echo "install-sample-timer: error: $*" >&2; exit 1; }
say() { echo "install-sample-timer: $*"; }
act() {
  if $dry_run; then say "would run: $*"; else say "running: $*"; "$@"; fi
}

# Written into a unit file: an absolute path of plain characters, nothing systemd expands.
for path in "$ssp" "$repo"; do
  [[ $path =~ ^/[A-Za-z0-9._/+-]*$ ]] || fail "$path: give an absolute path of letters, digits and ._/+-"
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
service_src=$here/systemd/ssp-sample.service
timer_src=$here/systemd/ssp-sample.timer
units=${root%/}/etc/systemd/system
for src in "$service_src" "$timer_src"; do
  [ -f "$src" ] || fail "$src is missing: run this script from a checkout of the repository"
done
command -v systemctl >/dev/null || fail "systemctl not found: this machine does not use systemd"
if [ "$root" = / ]; then
  [ -d /run/systemd/system ] \
    || fail "this machine is not running systemd (no /run/systemd/system); run \`$ssp --repo $repo sample\` every 5 minutes from cron instead"
  [ "$(id -u)" -eq 0 ] || $dry_run || fail "run as root"
  [ -x "$ssp" ] || $dry_run || fail "$ssp is not an executable: install ssp first, or pass --ssp"
  systemctl=(systemctl)
else
  [ -d "$root" ] || fail "--root $root is not a directory"
  systemctl=(systemctl "--root=$root")
fi

rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
sed -e "s|@SSP@|$ssp|" -e "s|@REPO@|$repo|" "$service_src" >"$rendered"

changed=false
place() { # place SRC DST: copy unless DST already holds the same bytes
  if cmp -s "$1" "$2"; then
    say "unchanged: $2"
  else
    act install -D -m 0644 "$1" "$2"
    changed=true
  fi
}
place "$rendered" "$units/ssp-sample.service"
place "$timer_src" "$units/ssp-sample.timer"

if $changed && [ "$root" = / ]; then
  act systemctl daemon-reload
fi
if [ "$("${systemctl[@]}" is-enabled ssp-sample.timer 2>/dev/null || true)" = enabled ]; then
  say "already enabled: ssp-sample.timer"
else
  act "${systemctl[@]}" enable ssp-sample.timer
fi
if [ "$root" = / ]; then
  act systemctl start ssp-sample.timer
fi
$dry_run && say "dry run: nothing was changed"
exit 0
