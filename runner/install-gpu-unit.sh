#!/usr/bin/env bash
# Install and enable nvidia-devices.service, the boot unit that creates the NVIDIA device
# nodes before LXD starts (see nvidia-devices.service for why).
#
# Usage: install-gpu-unit.sh [--dry-run] [--root DIR]
#   --dry-run   print what would be done and change nothing
#   --root DIR  install into the system image rooted at DIR (systemctl --root; no reload),
#               e.g. a host image being built, or a test directory
#
# Installs runner/nvidia-devices.sh as /usr/local/sbin/ssp-nvidia-devices and the unit as
# /etc/systemd/system/nvidia-devices.service, reloads systemd and enables the unit. Files that
# are already identical and a unit that is already enabled are left alone, so running it again
# changes nothing. Run as root on the GPU host; it does not start the unit (run
# `systemctl start nvidia-devices.service` to create the nodes now, without a reboot).
set -euo pipefail

usage() { echo "Usage: $(basename "$0") [--dry-run] [--root DIR]"; }

dry_run=false
root=/
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=true ;;
    --root)
      [ $# -ge 2 ] || { usage >&2; exit 2; }
      root=$2
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
unit=nvidia-devices.service
script_src=$here/nvidia-devices.sh
unit_src=$here/$unit
script_dst=${root%/}/usr/local/sbin/ssp-nvidia-devices
unit_dst=${root%/}/etc/systemd/system/$unit

fail() { echo "install-gpu-unit: error: $*" >&2; exit 1; }
say() { echo "install-gpu-unit: $*"; }
# Print the command; run it unless this is a dry run.
act() {
  if $dry_run; then say "would run: $*"; else say "running: $*"; "$@"; fi
}

for src in "$script_src" "$unit_src"; do
  [ -f "$src" ] || fail "$src is missing: run this script from a checkout of the repository"
done
command -v systemctl >/dev/null || fail "systemctl not found: this machine does not use systemd"
if [ "$root" = / ]; then
  # sd_booted(3): systemd is the running init exactly when this directory exists.
  [ -d /run/systemd/system ] \
    || fail "this machine is not running systemd (no /run/systemd/system), so there is no boot unit to install; run $script_src from your init system before LXD starts instead"
  [ "$(id -u)" -eq 0 ] || $dry_run || fail "run as root"
  systemctl=(systemctl)
else
  [ -d "$root" ] || fail "--root $root is not a directory"
  systemctl=(systemctl "--root=$root")
fi

changed=false
place() { # place SRC DST MODE: copy unless DST already holds the same bytes
  if cmp -s "$1" "$2"; then
    say "unchanged: $2"
  else
    act install -D -m "$3" "$1" "$2"
    changed=true
  fi
}
place "$script_src" "$script_dst" 0755
place "$unit_src" "$unit_dst" 0644

if $changed && [ "$root" = / ]; then
  act systemctl daemon-reload
fi

if [ "$("${systemctl[@]}" is-enabled "$unit" 2>/dev/null || true)" = enabled ]; then
  say "already enabled: $unit"
else
  act "${systemctl[@]}" enable "$unit"
fi
$dry_run && say "dry run: nothing was changed"
exit 0
