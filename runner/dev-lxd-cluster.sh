#!/usr/bin/env bash
# A real two-member LXD cluster on one machine, for tests of ssp's multi-server support.
#
# Each member is its own `lxd` daemon with its own LXD_DIR, running inside its own network and
# mount namespace, so that each has its own addresses, bridge and mount table as two servers
# would. The namespaces are joined by a bridge on the host; member 1 bootstraps the cluster and
# member 2 joins it with a one-time token, exactly as a lab adds a second server. Works with
# Debian 12's LXD 5.0.2, as root, with or without systemd (nothing here uses an init system).
#
# How a member is made:
#   1. `unshare -m -n` runs a small shell in a fresh mount + network namespace. It remounts
#      /sys (so /sys/class/net shows that namespace's links, which LXD reads; the cgroup tree is
#      moved out and back so containers still get cgroups) and /proc, mounts the cluster's own
#      /etc/subuid and /etc/subgid over the host's, then leaves a `sleep` behind whose PID
#      holds the namespaces and is recorded in the member's directory.
#   2. A veth pair joins the namespace to the host bridge; inside, the end is named eth0 and
#      gets the member's address and a default route through the host.
#   3. `nsenter` starts the daemon inside both namespaces, detached from this shell.
#   4. Member 1 is preseeded with an HTTPS address, a `dir` pool and `cluster: enabled`.
#      Member 2 gets a join token from member 1 and is preseeded with it and member 1's
#      cluster certificate; the pool's `source` is the one per-member key.
#   5. The containers' network is the lab's LAN, as the admin guide documents for a cluster:
#      a managed macvlan network `ssplan` whose `parent` is each member's own LAN NIC (eth0
#      here; a member-specific key, set per member with --target), and the default profile's
#      eth0 on it. Every container then gets its address from the LAN's one DHCP server (a
#      dnsmasq on the host bridge stands in for the lab's), so addresses are unique across
#      members and reachable from the LAN. (A bridge per member, as LXD makes for `lxdbr0`,
#      gives every member the same subnet: two containers on two servers got one address.)
#
# Then the test image `ssp-busybox` is copied in from the main development LXD (runner/
# dev-lxd.sh builds it; one import serves every member) and a stopped `Common-Server` base
# with snapshot `golden` is made from it on member 1, the clone source a lab keeps.
#
# Nothing here touches the main development LXD except reading that image: the cluster has
# its own directories, its own host bridge and addresses in 100.64.0.0/10 (shared address
# space, which no LAN uses), and its own subordinate IDs: root gets a large range far above
# the host's (each isolated container takes 65,536 IDs, so hundreds of them fit) and, as
# dev-lxd.sh does on the host, host IDs 1000-1099 for `raw.idmap`. Every step checks before
# it acts; `up` twice changes nothing.
#
# Environment: SSP_CLUSTER_DIR (state: member directories, logs; default
# /var/lib/ssp-dev-cluster), SSP_CLUSTER_BRIDGE (host bridge, default sspclu0),
# SSP_CLUSTER_NET (first three octets of the members' addresses, default 100.64.70),
# SSP_CLUSTER_LAN (the containers' network, default ssplan),
# LXD_DIR (the main development daemon the image comes from, default /var/lib/lxd).
#
# Clients reach the cluster through member 1's socket, $SSP_CLUSTER_DIR/node1/lxd/unix.socket
# (`LXD_DIR=$SSP_CLUSTER_DIR/node1/lxd lxc cluster list`); `status` prints it.
set -euo pipefail

USAGE="usage: ${0##*/} {up|down|status}"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

CLUSTER_DIR=${SSP_CLUSTER_DIR:-/var/lib/ssp-dev-cluster}
HOST_BRIDGE=${SSP_CLUSTER_BRIDGE:-sspclu0}
NET=${SSP_CLUSTER_NET:-100.64.70}
LAN=${SSP_CLUSTER_LAN:-ssplan}
# The LAN's DHCP range (the members themselves are .101 and .102).
DHCP_RANGE="$NET.128,$NET.250"
MAIN_LXD_DIR=${LXD_DIR:-/var/lib/lxd}
MEMBERS=(1 2)
# The members' /etc/subuid and /etc/subgid: a range for isolated containers that no daemon
# on the host uses, and the members' UIDs the tests map with raw.idmap.
SUBIDS="root:1000:100
root:200000000:1000000000"
POOL=default
PORT=8443
IMAGE=ssp-busybox
BASE=Common-Server
SNAPSHOT=golden
CHANGES=0

changed() {
	CHANGES=$((CHANGES + 1))
	log "$*"
}

skipped() {
	log "skip: $*"
}

member_dir() { printf '%s/node%s\n' "$CLUSTER_DIR" "$1"; }
member_lxd_dir() { printf '%s/node%s/lxd\n' "$CLUSTER_DIR" "$1"; }
member_addr() { printf '%s.%s\n' "$NET" "$((100 + $1))"; }
# veth ends: the host's on the bridge, the member's moved into its namespace (15 chars max).
veth_host() { printf '%s-%s\n' "$HOST_BRIDGE" "$1"; }
veth_peer() { printf '%s-%sn\n' "$HOST_BRIDGE" "$1"; }

# Runs lxc against member $1's daemon.
mlxc() {
	local id=$1
	shift
	LXD_DIR=$(member_lxd_dir "$id") lxc "$@"
}

mlxd() {
	local id=$1
	shift
	LXD_DIR=$(member_lxd_dir "$id") lxd "$@"
}

# The recorded namespace-holder PID of member $1, printed only while that very process lives:
# the PID is recorded with the process's start time, so a recycled PID of an unrelated
# process is never taken for ours (and never killed).
ns_pid() {
	local file pid start now
	file=$(member_dir "$1")/ns.pid
	[ -r "$file" ] || return 1
	read -r pid start <"$file" || return 1
	[ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
	now=$(awk '{ print $22 }' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ "$now" = "$start" ] || return 1
	printf '%s\n' "$pid"
}

member_answers() {
	[ -S "$(member_lxd_dir "$1")/unix.socket" ] && mlxd "$1" waitready --timeout 2 >/dev/null 2>&1
}

# --- the host side -------------------------------------------------------------------------

require_tools() {
	local tool
	for tool in lxd lxc unshare nsenter ip setsid dnsmasq; do
		have "$tool" || die "$tool is not installed (run: bash $HERE/dev-lxd.sh install)"
	done
}

ensure_bridge() {
	if ip link show "$HOST_BRIDGE" >/dev/null 2>&1; then
		skipped "host bridge $HOST_BRIDGE exists"
	else
		ip link add "$HOST_BRIDGE" type bridge
		changed "created host bridge $HOST_BRIDGE"
	fi
	ip link set "$HOST_BRIDGE" up
	if ! ip -4 addr show dev "$HOST_BRIDGE" | grep -q " $NET.1/24 "; then
		ip addr add "$NET.1/24" dev "$HOST_BRIDGE"
		changed "gave $HOST_BRIDGE $NET.1/24"
	fi
	# The members' containers reach the outside through their member, then through the host.
	[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || echo 1 >/proc/sys/net/ipv4/ip_forward
}

# The LAN's DHCP server: a dnsmasq on the host bridge, DHCP only (no DNS), recorded like the
# namespace holders so only this very process is ever stopped.
dhcp_pid() {
	local file pid start now
	file=$CLUSTER_DIR/lan/dnsmasq.pid
	[ -r "$file" ] || return 1
	read -r pid start <"$file" || return 1
	[ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
	now=$(awk '{ print $22 }' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ "$now" = "$start" ] || return 1
	printf '%s\n' "$pid"
}

ensure_dhcp() {
	local pid dir=$CLUSTER_DIR/lan
	if pid=$(dhcp_pid); then
		skipped "LAN DHCP server runs (PID $pid)"
		return
	fi
	mkdir -p "$dir"
	dnsmasq --conf-file=/dev/null --port=0 --interface="$HOST_BRIDGE" --bind-interfaces \
		--except-interface=lo --dhcp-range="$DHCP_RANGE,1h" --dhcp-option=3,"$NET.1" \
		--dhcp-authoritative --dhcp-leasefile="$dir/leases" --pid-file="$dir/raw.pid"
	pid=$(cat "$dir/raw.pid")
	echo "$pid $(awk '{ print $22 }' "/proc/$pid/stat")" >"$dir/dnsmasq.pid"
	changed "LAN DHCP server on $HOST_BRIDGE ($DHCP_RANGE), PID $pid"
}

# --- a member's namespaces -----------------------------------------------------------------

make_namespace() {
	local id=$1 dir pid
	dir=$(member_dir "$id")
	mkdir -p "$dir"
	# The shell below runs in the new namespaces. /sys is a view of the network namespace it
	# was mounted in, so it is mounted afresh; the cgroup tree under it is kept by moving it
	# aside and back. The `sleep` keeps the namespaces alive; its output goes nowhere, or a
	# caller reading this script's output would wait for it.
	printf '%s\n' "$SUBIDS" >"$dir/subids"
	unshare -m -n /bin/sh -s "$dir" <<'EOF'
set -e
dir=$1
mount --make-rprivate /
mount --bind "$dir/subids" /etc/subuid
mount --bind "$dir/subids" /etc/subgid
mkdir -p "$dir/cgroup-move"
mount --move /sys/fs/cgroup "$dir/cgroup-move"
umount -l /sys
mount -t sysfs sysfs /sys
mount --move "$dir/cgroup-move" /sys/fs/cgroup
mount -t proc proc /proc
sleep infinity </dev/null >/dev/null 2>&1 &
echo "$! $(awk '{ print $22 }' "/proc/$!/stat")" >"$dir/ns.pid"
EOF
	pid=$(ns_pid "$id") || die "member $id: the namespace holder did not start"
	ip link del "$(veth_host "$id")" 2>/dev/null || true
	ip link add "$(veth_host "$id")" type veth peer name "$(veth_peer "$id")"
	ip link set "$(veth_host "$id")" master "$HOST_BRIDGE" up
	ip link set "$(veth_peer "$id")" netns "$pid"
	# shellcheck disable=SC2016 # the inner shell expands its own arguments
	nsenter -n -t "$pid" sh -c '
		ip link set lo up
		ip link set "$1" name eth0
		ip addr add "$2/24" dev eth0
		ip link set eth0 up
		ip route add default via "$3"
	' sh "$(veth_peer "$id")" "$(member_addr "$id")" "$NET.1"
	changed "member $id: namespaces held by PID $pid, eth0 $(member_addr "$id") on $HOST_BRIDGE"
}

ensure_namespace() {
	local pid
	if pid=$(ns_pid "$1"); then
		skipped "member $1: namespaces exist (PID $pid)"
		return
	fi
	# A daemon whose namespace holder is gone (killed by hand) is in namespaces nothing
	# records any more: stop it so it starts again in the new ones.
	if member_answers "$1"; then
		mlxd "$1" shutdown --timeout 60 || true
		changed "member $1: stopped LXD left without its namespace holder"
	fi
	make_namespace "$1"
}

ensure_daemon() {
	local id=$1 dir pid
	dir=$(member_dir "$id")
	if member_answers "$id"; then
		skipped "member $id: LXD answers"
		return
	fi
	pid=$(ns_pid "$id")
	mkdir -p "$(member_lxd_dir "$id")"
	setsid nsenter -n -m -t "$pid" env LXD_DIR="$(member_lxd_dir "$id")" \
		lxd --group root --logfile "$dir/lxd.log" </dev/null >"$dir/lxd.out" 2>&1 &
	mlxd "$id" waitready --timeout 60 ||
		die "member $id: LXD did not answer within 60 s (log: $dir/lxd.log)"
	changed "member $id: started LXD at $(member_lxd_dir "$id")"
}

# --- the cluster ---------------------------------------------------------------------------

clustered() {
	mlxc "$1" query /1.0/cluster 2>/dev/null | grep -q '"enabled": true'
}

bootstrap() {
	if clustered 1; then
		skipped "member 1: cluster bootstrapped"
		return
	fi
	mlxd 1 init --preseed <<EOF
config:
  core.https_address: $(member_addr 1):$PORT
storage_pools:
- name: $POOL
  driver: dir
profiles:
- name: default
  devices:
    root:
      type: disk
      path: /
      pool: $POOL
cluster:
  server_name: node1
  enabled: true
EOF
	changed "member 1: bootstrapped the cluster as node1 at $(member_addr 1):$PORT"
}

joined() {
	mlxc 1 query /1.0/cluster/members 2>/dev/null | grep -q '/1.0/cluster/members/node2"'
}

join() {
	local token cert
	if joined; then
		skipped "member 2: joined as node2"
		return
	fi
	# A token left from an interrupted join would make `cluster add` refuse.
	mlxc 1 cluster revoke-token node2 >/dev/null 2>&1 || true
	token=$(mlxc 1 cluster add --quiet node2)
	# The certificate, indented as a YAML block scalar.
	cert=$(sed 's/^/    /' "$(member_lxd_dir 1)/cluster.crt")
	mlxd 2 init --preseed <<EOF
cluster:
  enabled: true
  server_name: node2
  server_address: $(member_addr 2):$PORT
  cluster_address: $(member_addr 1):$PORT
  cluster_token: $token
  cluster_certificate: |
$cert
  member_config:
  - entity: storage-pool
    name: $POOL
    key: source
    value: ""
EOF
	changed "member 2: joined the cluster as node2 at $(member_addr 2):$PORT"
}

# The containers' network: macvlan on each member's LAN NIC. A cluster network is made in two
# steps: defined on each member with its member-specific keys, then created cluster-wide.
ensure_lan() {
	local id
	if mlxc 1 query "/1.0/networks/$LAN" >/dev/null 2>&1; then
		skipped "network $LAN exists"
	else
		for id in "${MEMBERS[@]}"; do
			mlxc 1 network create "$LAN" --type=macvlan parent=eth0 --target "node$id" >/dev/null
		done
		mlxc 1 network create "$LAN" --type=macvlan >/dev/null
		changed "created network $LAN (macvlan on each member's eth0)"
	fi
	if mlxc 1 profile device get default eth0 network 2>/dev/null | grep -qx "$LAN"; then
		skipped "the default profile's eth0 is on $LAN"
	else
		mlxc 1 profile device remove default eth0 >/dev/null 2>&1 || true
		mlxc 1 profile device add default eth0 nic name=eth0 network="$LAN" >/dev/null
		changed "the default profile's eth0 is on $LAN"
	fi
}

# Member names and states, one "name state" line each (state: Online, Offline, ...).
member_states() {
	mlxc 1 query '/1.0/cluster/members?recursion=1' 2>/dev/null | awk -F'"' '
		$2 == "server_name" { name = $4 }
		$2 == "status" { print name, $4 }'
}

# Members started again after `down` are Offline until their first heartbeats (seconds).
wait_online() {
	local deadline=$((SECONDS + 90)) states
	while :; do
		states=$(member_states)
		if [ "$(grep -c ' Online$' <<<"$states")" -eq "${#MEMBERS[@]}" ]; then
			return
		fi
		[ "$SECONDS" -lt "$deadline" ] ||
			die "the members did not all come online within 90 s: $(tr '\n' ' ' <<<"$states")"
		sleep 1
	done
}

# --- test image and base -------------------------------------------------------------------

# The fingerprint an alias points at, or nothing.
alias_target() {
	{ lxc query "/1.0/images/aliases/$1" 2>/dev/null || true; } |
		sed -n 's/^[[:space:]]*"target": "\([0-9a-f]*\)".*/\1/p'
}

ensure_image() {
	local want have tmp
	want=$(LXD_DIR=$MAIN_LXD_DIR alias_target "$IMAGE")
	[ -n "$want" ] ||
		die "the main LXD at $MAIN_LXD_DIR has no image $IMAGE (run: bash $HERE/dev-lxd.sh up)"
	have=$(LXD_DIR=$(member_lxd_dir 1) alias_target "$IMAGE")
	if [ "$have" = "$want" ]; then
		skipped "image $IMAGE imported (${want:0:12})"
		return
	fi
	[ -z "$have" ] || mlxc 1 image alias delete "$IMAGE"
	tmp=$(mktemp -d "$CLUSTER_DIR/.image.XXXXXX")
	LXD_DIR=$MAIN_LXD_DIR lxc image export "$IMAGE" "$tmp/image" >/dev/null
	mlxc 1 image import --quiet "$tmp"/image* --alias "$IMAGE" >&2
	rm -rf --one-file-system "$tmp"
	changed "imported image $IMAGE (${want:0:12}) from $MAIN_LXD_DIR"
}

ensure_base() {
	if mlxc 1 query "/1.0/instances/$BASE" >/dev/null 2>&1; then
		skipped "instance $BASE exists"
	else
		mlxc 1 init --quiet "$IMAGE" "$BASE" --target node1 >&2
		changed "created $BASE from $IMAGE on node1"
	fi
	if mlxc 1 query "/1.0/instances/$BASE/snapshots/$SNAPSHOT" >/dev/null 2>&1; then
		skipped "snapshot $BASE/$SNAPSHOT exists"
	else
		mlxc 1 snapshot "$BASE" "$SNAPSHOT"
		changed "took snapshot $BASE/$SNAPSHOT"
	fi
}

# --- up, down, status ----------------------------------------------------------------------

cmd_up() {
	local began=$SECONDS id
	require_root up
	require_tools
	mkdir -p "$CLUSTER_DIR"
	ensure_bridge
	ensure_dhcp
	for id in "${MEMBERS[@]}"; do
		ensure_namespace "$id"
		ensure_daemon "$id"
	done
	bootstrap
	join
	wait_online
	ensure_lan
	ensure_image
	ensure_base
	local changes="nothing changed"
	[ "$CHANGES" -eq 0 ] || changes="$CHANGES change(s)"
	log "ready in $((SECONDS - began))s ($changes)"
	cmd_status
}

stop_member() {
	local id=$1 pid
	if member_answers "$id"; then
		# Instances are stopped with their member; a clustered daemon leaves the cluster's
		# database to the others, so each stop is quick.
		mlxd "$id" shutdown --timeout 60 || true
		changed "member $id: stopped LXD"
	fi
	if pid=$(ns_pid "$id"); then
		kill "$pid"
		changed "member $id: released its namespaces (PID $pid)"
	fi
	rm -f "$(member_dir "$id")/ns.pid"
	if ip link show "$(veth_host "$id")" >/dev/null 2>&1; then
		ip link del "$(veth_host "$id")"
	fi
}

cmd_down() {
	local id pid
	require_root down
	for id in 2 1; do
		stop_member "$id"
	done
	if pid=$(dhcp_pid); then
		kill "$pid"
		changed "stopped the LAN DHCP server (PID $pid)"
	fi
	if ip link show "$HOST_BRIDGE" >/dev/null 2>&1; then
		ip link del "$HOST_BRIDGE"
		changed "deleted host bridge $HOST_BRIDGE"
	fi
	# The members' directories are kept: `up` starts the same cluster again (its database,
	# images and instances), which is quicker than bootstrapping a new one.
	[ "$CHANGES" -gt 0 ] || skipped "the cluster is not running"
}

cmd_status() {
	local id ok=0
	for id in "${MEMBERS[@]}"; do
		if member_answers "$id"; then
			printf 'node%s: LXD answers at %s/unix.socket, address %s\n' \
				"$id" "$(member_lxd_dir "$id")" "$(member_addr "$id")"
		else
			printf 'node%s: not answering (%s)\n' "$id" "$(member_lxd_dir "$id")"
			ok=1
		fi
	done
	if member_answers 1; then
		member_states | sed 's/^\([^ ]*\) /  member \1: /'
	fi
	return "$ok"
}

main() {
	case ${1:-} in
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
