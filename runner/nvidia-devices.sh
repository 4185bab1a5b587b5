#!/usr/bin/env bash
# Create every NVIDIA device node at boot, before LXD starts its containers.
#
# Usage: nvidia-devices.sh [--check] [--help]
#   --check  only say whether this host has an NVIDIA GPU on its PCI bus: exit 0 if it has,
#            else print why there is nothing to do and exit 1. The unit's ExecCondition=:
#            systemd then skips the unit ("Skipped due to 'exec-condition'") instead of
#            failing it, so a host without GPUs (a CPU-only cluster member, a test host)
#            boots with the unit inactive and its reason in the journal. A host whose GPUs
#            are on the bus but whose driver is missing still runs the unit, which fails
#            and says what is missing.
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
# NVIDIA_DEVICES_DEV, NVIDIA_DEVICES_PROC and NVIDIA_DEVICES_PCI point the checks at another
# /dev, /proc/driver/nvidia/gpus and /sys/bus/pci/devices; only the tests set them.
set -euo pipefail

usage() { echo "Usage: $(basename "$0") [--check] [--help]"; }

check=false
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --check) check=true ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

dev=${NVIDIA_DEVICES_DEV:-/dev}
proc=${NVIDIA_DEVICES_PROC:-/proc/driver/nvidia/gpus}
pci=${NVIDIA_DEVICES_PCI:-/sys/bus/pci/devices}

log() { echo "nvidia-devices: $*"; }
fail() { echo "nvidia-devices: error: $*" >&2; exit 1; }

if $check; then
  # The hardware, not the driver, decides: vendor 0x10de (NVIDIA), class 0x03xxxx (display:
  # VGA or 3D controller, as GPUs are; NVIDIA's audio and USB functions are not).
  for device in "$pci"/*; do
    if [ ! -r "$device/vendor" ] || [ ! -r "$device/class" ]; then continue; fi
    if [ "$(cat "$device/vendor")" = 0x10de ] && [[ $(cat "$device/class") == 0x03* ]]; then
      log "NVIDIA GPU at ${device##*/}: creating its device nodes"
      exit 0
    fi
  done
  log "skipped: no NVIDIA GPU on this host's PCI bus (no display device of vendor 10de under $pci), so there are no device nodes to create"
  exit 1
fi

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
