#!/usr/bin/env bash
# Brings up a real LXD for development, tests and CI on a Debian 12 host, with or without
# systemd: the packages, the daemon, a preseeded pool and bridge, the two test images and the
# stopped Common-Server base with its `golden` snapshot. Every step checks before it acts,
# so running it again changes nothing and says what it skipped.
#
# The integration tests rely on these names: pool `default`, bridge `lxdbr0`, images
# `ssp-busybox` and `ssp-debian`, instance `Common-Server` with snapshot `golden` (all in the
# default project), and host UIDs/GIDs 1000-1099 delegated to root for `raw.idmap`.
#
# Environment: LXD_DIR (daemon directory, default /var/lib/lxd), SSP_BRIDGE_IPV4 (bridge
# address, default 10.201.7.1/24), SSP_DEBIAN_MIRROR (default: apt's bookworm mirror),
# XDG_CACHE_HOME (image tarballs), SSP_STATE_DIR (daemon log), SSP_POOL_DRIVER (the pool's
# driver: dir, the default here; btrfs, a copy-on-write pool on a loop file LXD makes; auto,
# btrfs where the kernel and btrfs-progs allow it, else dir), SSP_POOL_SIZE (the btrfs loop
# file, default 30GiB). On dir every new container is a full copy of the base (seconds per
# GB); on btrfs a copy is a snapshot (~0.1 s whatever the size): see bench/README.md, "Clone
# cost at a lab's scale". A lab's host should use a CoW pool (admin guide, section 4a); the
# test daemon stays on dir by default because the suite's figures and its fault cases were
# measured there, and a demo base is small.
set -euo pipefail

USAGE="usage: ${0##*/} {install|start|init|images|common-server|up|down|status}"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGES_DIR=$HERE/images
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

PACKAGES=(lxd nftables iptables busybox-static debootstrap openssh-client shellcheck btrfs-progs)
PROJECT=default
POOL=default
POOL_DRIVER=${SSP_POOL_DRIVER:-dir}
POOL_SIZE=${SSP_POOL_SIZE:-30GiB}
POOL_MADE=""
BRIDGE=lxdbr0
BRIDGE_IPV4=${SSP_BRIDGE_IPV4:-10.201.7.1/24}
IMAGE_BUSYBOX=ssp-busybox
IMAGE_DEBIAN=ssp-debian
BASE=Common-Server
SNAPSHOT=golden
DEBIAN_SUITE=bookworm
DEBIAN_INCLUDE=systemd-sysv,dbus,iproute2,openssh-server,sudo,isc-dhcp-client,ifupdown,passwd,ca-certificates
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/ssp-images
STATE_DIR=${SSP_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/ssp}
# Host IDs the tests and the sample policy map into containers with `raw.idmap: both <id> <id>`.
SUBID_DELEGATED_START=1000
SUBID_DELEGATED_COUNT=100
# LXD's own default map when /etc/subuid has none for root; reusing it keeps existing
# containers' ownership unchanged when we create the file.
SUBID_DEFAULT_RANGE=root:1000000:1000000000

CHANGES=0
SUBIDS_CHANGED=0
BUILD_DIR=""
BUILD_DIRS=()

changed() {
	CHANGES=$((CHANGES + 1))
	log "$*"
}

skipped() {
	log "skip: $*"
}

# Build directories may hold debootstrap's mounts of /proc, /sys or /dev when a build is
# interrupted: unmount them first and never let rm cross into another filesystem.
cleanup_builds() {
	local dir mnt
	for dir in "${BUILD_DIRS[@]}"; do
		[ -d "$dir" ] || continue
		awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
			while read -r mnt; do umount -l "$mnt" || true; done
		rm -rf --one-file-system "$dir"
	done
}
trap cleanup_builds EXIT
# Make an interrupt run the EXIT trap too.
trap 'exit 130' INT
trap 'exit 143' TERM

# Sets BUILD_DIR (not printed: a command substitution would lose the cleanup record).
new_build_dir() {
	mkdir -p "$CACHE_DIR"
	BUILD_DIR=$(mktemp -d "$CACHE_DIR/.build-$1.XXXXXX")
	BUILD_DIRS+=("$BUILD_DIR")
}

require_daemon() {
	lxd_answers || die "LXD is not answering at $(lxd_dir) (run: $0 start)"
}

# --- install ------------------------------------------------------------------------------

cmd_install() {
	require_root install
	local pkg missing=()
	for pkg in "${PACKAGES[@]}"; do
		pkg_installed "$pkg" || missing+=("$pkg")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		skipped "packages already installed"
		return
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2
	apt-get install -y -q "${missing[@]}" >&2
	changed "installed ${missing[*]}"
}

# --- start ---------------------------------------------------------------------------------

# Appends root:<start>:<count> to subordinate-id file $1 unless a root range covers it;
# prints what it appended.
ensure_subid_range() {
	local file=$1 start=$2 count=$3
	if ! awk -F: -v s="$start" -v n="$count" \
		'$1 == "root" && $2 <= s && $2 + $3 >= s + n { found = 1 } END { exit !found }' \
		"$file"; then
		printf 'root:%s:%s\n' "$start" "$count" | tee -a "$file"
	fi
}

# LXD needs a large range for root to build unprivileged maps from, and reads a small
# delegated one to allow `raw.idmap` of host IDs 1000-1099. It reads both only at start,
# so SUBIDS_CHANGED tells the caller to restart a running daemon.
ensure_subids() {
	local file added=""
	for file in /etc/subuid /etc/subgid; do
		touch "$file"
		if ! awk -F: '$1 == "root" && $3 >= 65536 { found = 1 } END { exit !found }' "$file"; then
			printf '%s\n' "$SUBID_DEFAULT_RANGE" >>"$file"
			added+=" $file:$SUBID_DEFAULT_RANGE"
		fi
		added+=$(ensure_subid_range "$file" "$SUBID_DELEGATED_START" "$SUBID_DELEGATED_COUNT" |
			sed "s|^| $file:|")
	done
	if [ -n "$added" ]; then
		changed "added subordinate ids:$added"
		SUBIDS_CHANGED=1
	else
		skipped "/etc/subuid and /etc/subgid already delegate" \
			"$SUBID_DELEGATED_START-$((SUBID_DELEGATED_START + SUBID_DELEGATED_COUNT - 1))"
	fi
}

start_daemon() {
	if [ -d /run/systemd/system ] && [ -z "${LXD_DIR:-}" ]; then
		systemctl start lxd.service
	else
		# No init system runs LXD here: detach it from this shell so it outlives it, and
		# from the caller's folder: a daemon whose working folder is deleted (a CI clone
		# removed) can no longer copy an instance (rsync: "getcwd(): No such file").
		mkdir -p "$STATE_DIR"
		env -C / setsid lxd --group root --logfile "$STATE_DIR/lxd.log" </dev/null >/dev/null 2>&1 &
	fi
	lxd waitready --timeout 60 || die "LXD did not answer within 60 s (log: $STATE_DIR/lxd.log)"
}

cmd_start() {
	require_root start
	have lxd || die "lxd is not installed (run: $0 install)"
	ensure_subids
	if lxd_answers; then
		if [ "$SUBIDS_CHANGED" -eq 1 ]; then
			log "restarting LXD so it reads the new subordinate ids"
			lxd shutdown
			start_daemon
			changed "restarted LXD $(lxd_server_version) at $(lxd_dir)"
		else
			skipped "LXD already running at $(lxd_dir)"
		fi
		return
	fi
	start_daemon
	changed "started LXD $(lxd_server_version) at $(lxd_dir)"
}

# --- init ----------------------------------------------------------------------------------

cmd_init() {
	require_root init
	require_daemon
	# A daemon with any storage pool has been initialised by someone: never preseed over it.
	if lxc query /1.0/storage-pools | grep -q '/1.0/storage-pools/'; then
		skipped "LXD already initialised"
		lxd_exists "/1.0/storage-pools/$POOL" || log "warning: no storage pool '$POOL'"
		lxd_exists "/1.0/networks/$BRIDGE" || log "warning: no network '$BRIDGE'"
		return
	fi
	make_pool
	lxd init --preseed <<EOF
config: {}
networks:
- name: $BRIDGE
  type: bridge
  config:
    ipv4.address: $BRIDGE_IPV4
    ipv4.nat: "true"
    ipv6.address: none
profiles:
- name: default
  devices:
    root:
      type: disk
      path: /
      pool: $POOL
    eth0:
      type: nic
      name: eth0
      network: $BRIDGE
EOF
	changed "initialised LXD: $POOL_MADE pool $POOL, bridge $BRIDGE $BRIDGE_IPV4"
}

# The pool: btrfs (copy-on-write) where it can be made, else dir. SSP_POOL_DRIVER chooses.
make_pool() {
	local driver=$POOL_DRIVER
	if [ "$driver" = auto ]; then
		driver=dir
		if command -v mkfs.btrfs >/dev/null && { grep -qw btrfs /proc/filesystems || modprobe btrfs 2>/dev/null; }; then
			driver=btrfs
		fi
	fi
	if [ "$driver" = btrfs ]; then
		if lxc storage create "$POOL" btrfs size="$POOL_SIZE" >/dev/null; then
			POOL_MADE=btrfs
			return
		fi
		[ "$POOL_DRIVER" = btrfs ] && die "could not create a btrfs pool (SSP_POOL_DRIVER=btrfs)"
		log "no btrfs pool here (no loop device?): a dir pool, where every copy is a full copy"
		driver=dir
	fi
	lxc storage create "$POOL" "$driver" >/dev/null
	POOL_MADE=$driver
}

# --- images --------------------------------------------------------------------------------

# The first bookworm `deb` URI in apt's sources (one-line .list and deb822 .sources files).
debian_mirror() {
	if [ -n "${SSP_DEBIAN_MIRROR:-}" ]; then
		printf '%s\n' "$SSP_DEBIAN_MIRROR"
		return
	fi
	local file uri
	for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$file" ] || continue
		uri=$(awk -v suite="$DEBIAN_SUITE" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
				if ($i ~ /^(https?|ftp|file):/ && $(i + 1) == suite) { print $i; exit }
			}' "$file")
		if [ -n "$uri" ]; then
			printf '%s\n' "$uri"
			return
		fi
	done
	for file in /etc/apt/sources.list.d/*.sources; do
		[ -r "$file" ] || continue
		uri=$(awk -v suite="$DEBIAN_SUITE" '
			BEGIN { RS = ""; FS = "\n" }
			{
				types = ""; uris = ""; suites = ""; enabled = "yes"
				for (n = 1; n <= NF; n++) {
					if ($n ~ /^[ \t#]/ || index($n, ":") == 0) continue
					key = tolower(substr($n, 1, index($n, ":") - 1))
					val = " " substr($n, index($n, ":") + 1) " "
					if (key == "types") types = val
					else if (key == "uris") uris = val
					else if (key == "suites") suites = val
					else if (key == "enabled") enabled = val
				}
				if (types ~ / deb / && suites ~ (" " suite " ") && enabled !~ /no/) {
					split(uris, u, " ")
					if (u[1] ~ /^(https?|ftp|file):/) { print u[1]; exit }
				}
			}' "$file")
		if [ -n "$uri" ]; then
			printf '%s\n' "$uri"
			return
		fi
	done
	return 1
}

# A fingerprint of what builds image $1 (busybox or debian): its build function, the files
# under images/$1 and the Debian suite and packages. Stored in the image as the property
# ssp.recipe (and so in instances made from it as image.ssp.recipe): an image or a base
# built from an older recipe is rebuilt rather than silently kept.
recipe() {
	local kind=$1
	{
		declare -f "build_$kind" write_metadata
		printf '%s\n' "$DEBIAN_SUITE" "$DEBIAN_INCLUDE"
		find "$IMAGES_DIR/$kind" -type f -print0 | sort -z | xargs -0 sha256sum |
			sed "s|$IMAGES_DIR/||"
	} | sha256sum | cut -c1-16
}

write_metadata() {
	local file=$1 os=$2 release=$3 description=$4
	cat >"$file" <<EOF
architecture: $(uname -m)
creation_date: $(date +%s)
properties:
  description: $description
  os: $os
  release: $release
  ssp.recipe: $(recipe "$os")
EOF
}

# A busybox rootfs whose init brings eth0 up with udhcpc: boots and gets an address in
# well under a second, for tests that only need a running container.
build_busybox() {
	local out=$1 work root applet busybox
	busybox=$(command -v busybox) || die "busybox is not installed (run: $0 install)"
	new_build_dir busybox
	work=$BUILD_DIR
	root=$work/rootfs
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,dev,proc,sys,run,root,var,tmp}
	chmod 1777 "$root/tmp"
	ln -s ../run "$root/var/run"
	install -m 0755 "$busybox" "$root/bin/busybox"
	for applet in $("$root/bin/busybox" --list-full); do
		[ -e "$root/$applet" ] && continue
		mkdir -p "$root/$(dirname "$applet")"
		ln -s /bin/busybox "$root/$applet"
	done
	install -m 0644 "$IMAGES_DIR/busybox/inittab" "$root/etc/inittab"
	install -m 0755 "$IMAGES_DIR/busybox/rcS" "$root/etc/init.d/rcS"
	install -m 0755 "$IMAGES_DIR/busybox/udhcpc.script" "$root/etc/udhcpc.script"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\n' >"$root/etc/group"
	write_metadata "$work/metadata.yaml" busybox \
		"$("$root/bin/busybox" | sed -n '1s/^BusyBox \(v[^ ]*\).*/\1/p')" \
		"SSP test image (busybox, DHCP on eth0)"
	tar --numeric-owner --owner=0 --group=0 -C "$work" -czf "$out.part" metadata.yaml rootfs
	mv "$out.part" "$out"
}

# A minimal Debian with systemd, DHCP and sshd: the stand-in for the lab's base container.
# It ships without SSH host keys or machine-id so every container makes its own.
build_debian() {
	local out=$1 work root mirror
	require_root "building $IMAGE_DEBIAN"
	have debootstrap || die "debootstrap is not installed (run: $0 install)"
	mirror=$(debian_mirror) ||
		die "no Debian $DEBIAN_SUITE mirror in apt's sources; set SSP_DEBIAN_MIRROR"
	new_build_dir debian
	work=$BUILD_DIR
	root=$work/rootfs
	log "debootstrap $DEBIAN_SUITE from $mirror (about a minute)"
	if ! debootstrap --variant=minbase --include="$DEBIAN_INCLUDE" \
		"$DEBIAN_SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
		tail -n 20 "$work/debootstrap.log" >&2
		die "debootstrap failed"
	fi
	install -m 0644 "$IMAGES_DIR/debian/interfaces" "$root/etc/network/interfaces"
	install -D -m 0644 "$IMAGES_DIR/debian/sshd-ssp.conf" "$root/etc/ssh/sshd_config.d/ssp.conf"
	install -m 0644 "$IMAGES_DIR/debian/ssp-ssh-hostkeys.service" \
		"$root/etc/systemd/system/ssp-ssh-hostkeys.service"
	# What `systemctl enable` would do, without needing systemctl on the host.
	mkdir -p "$root/etc/systemd/system/ssh.service.requires" \
		"$root/etc/systemd/system/multi-user.target.wants"
	ln -sfn /etc/systemd/system/ssp-ssh-hostkeys.service \
		"$root/etc/systemd/system/ssh.service.requires/ssp-ssh-hostkeys.service"
	ln -sfn /lib/systemd/system/ssh.service \
		"$root/etc/systemd/system/multi-user.target.wants/ssh.service"
	rm -f "$root"/etc/ssh/ssh_host_*
	: >"$root/etc/machine-id"
	rm -f "$root/var/lib/dbus/machine-id" "$root/etc/resolv.conf"
	# debootstrap copies the build host's name; LXD's templates write the instance's own.
	printf 'localhost\n' >"$root/etc/hostname"
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_*
	write_metadata "$work/metadata.yaml" debian "$DEBIAN_SUITE" \
		"SSP test image (Debian $DEBIAN_SUITE minbase, sshd, DHCP on eth0)"
	cat >>"$work/metadata.yaml" <<'EOF'
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
  /etc/hosts:
    when: [create, copy]
    template: hosts.tpl
EOF
	cp -r "$IMAGES_DIR/debian/templates" "$work/templates"
	log "packing $IMAGE_DEBIAN"
	tar --numeric-owner -C "$work" -czf "$out.part" metadata.yaml templates rootfs
	mv "$out.part" "$out"
}

ensure_image() {
	local alias=$1 kind=$2 tarball fingerprint want have
	want=$(recipe "$kind")
	if lxd_exists "/1.0/images/aliases/$alias?project=$PROJECT"; then
		have=$(lxc image get-property "$alias" ssp.recipe --project "$PROJECT" 2>/dev/null) || true
		if [ "$have" = "$want" ]; then
			skipped "image $alias already imported (recipe $want)"
			return
		fi
		lxc image delete "$alias" --project "$PROJECT"
		changed "deleted image $alias: built from recipe ${have:-unknown}, now $want"
	fi
	tarball=$CACHE_DIR/$alias-$want.tar.gz
	if [ -s "$tarball" ]; then
		log "using cached $tarball"
	else
		log "building $alias"
		"build_$kind" "$tarball"
		# Tarballs of older recipes are of no further use.
		find "$CACHE_DIR" -maxdepth 1 -name "$alias*.tar.gz" ! -name "${tarball##*/}" -delete
	fi
	# A unified tarball's fingerprint is its sha256: the image may be there without alias.
	fingerprint=$(sha256sum "$tarball" | cut -d' ' -f1)
	if lxd_exists "/1.0/images/$fingerprint?project=$PROJECT"; then
		lxc image alias create "$alias" "$fingerprint" --project "$PROJECT"
		changed "named the image already in the store $alias (${fingerprint:0:12})"
	else
		lxc image import --quiet "$tarball" --alias "$alias" --project "$PROJECT" >&2
		changed "imported image $alias (${fingerprint:0:12})"
	fi
}

cmd_images() {
	require_root images
	require_daemon
	ensure_image "$IMAGE_BUSYBOX" busybox
	ensure_image "$IMAGE_DEBIAN" debian
}

# --- common-server -------------------------------------------------------------------------

# Runs until $@ succeeds or $1 seconds pass.
retry_for() {
	local deadline=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 1
	done
}

base_booted() {
	local state
	state=$(lxc exec "$BASE" --project "$PROJECT" -- systemctl is-system-running --wait) || true
	case $state in
	running) return 0 ;;
	degraded)
		log "warning: $BASE booted degraded:"
		lxc exec "$BASE" --project "$PROJECT" -- systemctl --failed --no-legend >&2 || true
		return 0
		;;
	*) return 1 ;;
	esac
}

base_has_ipv4() {
	[ -n "$(lxd_instance_ipv4 "$BASE" "$PROJECT")" ]
}

base_sshd_listens() {
	lxc exec "$BASE" --project "$PROJECT" -- ss -Hltn 'sport = :22' | grep -q LISTEN
}

stop_base() {
	lxc stop "$BASE" --project "$PROJECT" --timeout 60 ||
		lxc stop "$BASE" --project "$PROJECT" --force
}

# Boot the base once, as the lab does, so first-boot work is done and the image is seen to
# work; then drop what must differ per clone (host keys, machine-id, DHCP lease).
settle_base() {
	[ "$(lxd_instance_status "$BASE" "$PROJECT")" = RUNNING ] ||
		lxc start --quiet "$BASE" --project "$PROJECT" >&2
	retry_for 180 base_booted || die "$BASE did not finish booting within 180 s"
	retry_for 60 base_has_ipv4 || die "$BASE got no IPv4 address from $BRIDGE within 60 s"
	retry_for 30 base_sshd_listens || die "sshd is not listening in $BASE"
	lxc exec "$BASE" --project "$PROJECT" -- sh -c \
		'rm -f /etc/ssh/ssh_host_* /var/lib/dhcp/dhclient*.leases && : >/etc/machine-id'
	log "$BASE booted, got $(lxd_instance_ipv4 "$BASE" "$PROJECT"), sshd listened"
}

cmd_common_server() {
	require_root common-server
	require_daemon
	local want have made
	want=$(recipe debian)
	if lxd_exists "/1.0/instances/$BASE?project=$PROJECT"; then
		have=$(lxc config get "$BASE" image.ssp.recipe --project "$PROJECT")
		made=$(lxc config get "$BASE" image.description --project "$PROJECT")
		# Only a base this script made from its own image (never a lab's real one), and
		# from an older recipe of it (or from before recipes were recorded).
		if [[ $made == "SSP test image"* ]] && [ "$have" != "$want" ]; then
			lxc delete --force "$BASE" --project "$PROJECT"
			changed "deleted $BASE and its snapshots: made from recipe ${have:-unknown}, now $want"
		fi
	fi
	if lxd_exists "/1.0/instances/$BASE?project=$PROJECT"; then
		skipped "instance $BASE exists"
	else
		lxd_exists "/1.0/images/aliases/$IMAGE_DEBIAN?project=$PROJECT" ||
			die "image $IMAGE_DEBIAN is missing (run: $0 images)"
		lxc init --quiet "$IMAGE_DEBIAN" "$BASE" --project "$PROJECT" >&2
		changed "created $BASE from $IMAGE_DEBIAN"
	fi
	if lxd_exists "/1.0/instances/$BASE/snapshots/$SNAPSHOT?project=$PROJECT"; then
		skipped "snapshot $BASE/$SNAPSHOT exists"
	else
		settle_base
		stop_base
		lxc snapshot "$BASE" "$SNAPSHOT" --project "$PROJECT"
		changed "took snapshot $BASE/$SNAPSHOT"
	fi
	# Clones come from the snapshot; the base itself is kept stopped, as in the lab.
	if [ "$(lxd_instance_status "$BASE" "$PROJECT")" = STOPPED ]; then
		skipped "$BASE is stopped"
	else
		stop_base
		changed "stopped $BASE"
	fi
}

# --- up, down, status ----------------------------------------------------------------------

cmd_up() {
	local began=$SECONDS
	cmd_install
	cmd_start
	cmd_init
	cmd_images
	cmd_common_server
	local changes="nothing changed"
	[ "$CHANGES" -eq 0 ] || changes="$CHANGES change(s)"
	printf '%s: ready in %ss (%s): LXD %s at %s, pool %s, bridge %s %s, images %s %s, %s %s with snapshot %s\n' \
		"$SSP_LOG_NAME" "$((SECONDS - began))" "$changes" "$(lxd_server_version)" "$(lxd_dir)" \
		"$POOL" "$BRIDGE" "$(lxc network get "$BRIDGE" ipv4.address)" \
		"$IMAGE_BUSYBOX" "$IMAGE_DEBIAN" "$BASE" \
		"$(lxd_instance_status "$BASE" "$PROJECT" | tr '[:upper:]' '[:lower:]')" "$SNAPSHOT"
}

cmd_down() {
	require_root down
	if lxd_answers; then
		lxd shutdown
		changed "stopped LXD at $(lxd_dir)"
	else
		skipped "LXD is not running at $(lxd_dir)"
	fi
}

cmd_status() {
	if ! lxd_answers; then
		log "LXD is not answering at $(lxd_dir)"
		return 1
	fi
	printf 'LXD %s at %s\n' "$(lxd_server_version)" "$(lxd_dir)"
}

main() {
	case ${1:-} in
	install) cmd_install ;;
	start) cmd_start ;;
	init) cmd_init ;;
	images) cmd_images ;;
	common-server) cmd_common_server ;;
	up) cmd_up ;;
	down) cmd_down ;;
	status) cmd_status ;;
	-h | --help) printf '%s\n' "$USAGE" ;;
	*)
		printf '%s\n' "$USAGE" >&2
		return 2
		;;
	esac
}

main "$@"
