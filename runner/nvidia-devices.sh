#!/usr/bin/env bash
# Create every NVIDIA device node at boot, before LXD starts its containers.
#
# Usage: nvidia-devices.sh [--help]
#
# Why: an LXD `gpu` device passes the card's /dev/nvidiaN plus the shared /dev/nvidiactl and
# /dev/nvidia-uvm into the container, but only the nodes that exist on the host at the moment
# the container starts; nodes created later never appear inside. On a headless server nothing
# creates /dev/nvidia-uvm at boot: the nvidia-uvm module and its node normally appear the first
# time a CUDA program runs on the host. After a power loss LXD autostarted the containers
# before that had happened, and every CUDA call inside them failed with "CUDA unknown error"
# until someone ran a CUDA program on the host and restarted the containers by hand (the
# seed's manual). nvidia-devices.service runs this script once, ordered before LXD.
#
# Steps: `nvidia-modprobe -u -c=0` loads nvidia and nvidia-uvm and creates /dev/nvidiactl,
# /dev/nvidia0 and /dev/nvidia-uvm(-tools); `nvidia-smi` initialises every GPU, which creates
# the remaining /dev/nvidiaN; then each required node is checked. Output goes to stdout and
# stderr, which systemd sends to the journal (`journalctl -u nvidia-devices`).
# Running it again changes nothing. Exit status: 0 all nodes present, 1 something missing.
#
# NVIDIA_DEVICES_DEV and NVIDIA_DEVICES_PROC point the checks at another /dev and
# /proc/driver/nvidia/gpus; only the tests set them.
set -euo pipefail

usage() { echo "Usage: $(basename "$0") [--help]"; }

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

dev=${NVIDIA_DEVICES_DEV:-/dev}
proc=${NVIDIA_DEVICES_PROC:-/proc/driver/nvidia/gpus}

log() { echo "nvidia-devices: $*"; }
fail() { echo "nvidia-devices: error: $*" >&2; exit 1; }

for tool in nvidia-modprobe nvidia-smi; do
  command -v "$tool" >/dev/null \
    || fail "$tool not found on PATH: install the NVIDIA driver's utilities on this host"
done

log "loading nvidia and nvidia-uvm, creating /dev/nvidiactl, /dev/nvidia0, /dev/nvidia-uvm"
nvidia-modprobe -u -c=0 || fail "nvidia-modprobe -u -c=0 failed (exit $?)"

# nvidia-smi's own table is worth keeping in the journal: the GPUs as they came up.
log "running nvidia-smi to create the other /dev/nvidiaN"
nvidia-smi || fail "nvidia-smi failed (exit $?): check the driver (dmesg, nvidia-smi)"

required=("$dev/nvidiactl" "$dev/nvidia-uvm")
gpus=0
# One directory per GPU, named by PCI address; "Device Minor" is N of its /dev/nvidiaN.
for info in "$proc"/*/information; do
  [ -e "$info" ] || continue
  minor=$(awk -F: '/^Device Minor/ { gsub(/[ \t]/, "", $2); print $2 }' "$info")
  [ -n "$minor" ] || fail "no Device Minor in $info"
  required+=("$dev/nvidia$minor")
  gpus=$((gpus + 1))
done
[ "$gpus" -gt 0 ] || fail "the driver lists no GPUs under $proc"

missing=()
for node in "${required[@]}"; do
  [ -e "$node" ] || missing+=("$node")
done
if [ "${#missing[@]}" -gt 0 ]; then
  fail "still missing after nvidia-modprobe and nvidia-smi: ${missing[*]}; GPU containers started now would get no CUDA"
fi
log "ok: $gpus GPU(s); present: ${required[*]}"
