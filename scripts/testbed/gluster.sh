#!/bin/bash
# Test-bed GlusterFS storage domain: a real glusterd in a private network
# namespace, its volume FUSE-mounted where VDSM mounts it, and a domain on it.
#
#   gluster.sh up ROOT DATA_CENTER   start glusterd, create and mount a volume at
#                                    DATA_CENTER/mnt/glusterSD/<server>:_<volume>,
#                                    build a storage domain on it and write
#                                    ROOT/expected.json, ROOT/env and ROOT/ids
#   gluster.sh down ROOT             unmount, stop every process, remove it all
#
# Bricks refuse loopback addresses, so glusterd lives in a network namespace
# (ovagent-gl-<id>) reached from the host through a veth pair on 10.98.X.0/30:
# 10.98.X.1 in the namespace, 10.98.X.2 on the host. The mount is made from the
# host's namespaces, so every process on the host sees it. glusterd keeps its
# state, sockets and logs under ROOT/gluster; the few files it insists on
# creating under /var are removed again by "down".

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

GiB=$((1024 * 1024 * 1024))
TB_LOCK_DIR=/run/ovagent-testbed
# Paths glusterd creates whatever its configuration says. The first of
# concurrent test-bed runs notes in $TB_LOCK_DIR/gluster.absent which did not
# exist; the last one to go down removes those.
SYSTEM_LEFTOVERS=(
    /var/lib/glusterd/geo-replication
    /var/lib/glusterd/ss_brick
    /var/run/gluster/snaps
    /var/log/glusterfs/cli.log
    /var/log/glusterfs/cmd_history.log
    /var/log/glusterfs/geo-replication
    /var/log/glusterfs/geo-replication-secondaries
    /var/log/glusterfs/gfproxy
    /var/log/glusterfs/snaps
    /var/log/glusterfs/bricks
)

usage () {
    echo "usage: gluster.sh up ROOT DATA_CENTER | down ROOT" >&2
    exit 2
}

# state_set KEY VALUE: recorded at once, so that "down" after a failure in
# the middle of "up" finds everything created so far.
state_set () {
    printf '%s=%q\n' "$1" "$2" >>"$G/state"
}

gl_cli () {
    ip netns exec "$NS" gluster --mode=script \
        --glusterd-sock="$G/run/glusterd.socket" --log-file="$G/log/cli.log" "$@" 9>&-
}

is_mounted () {
    awk -v m="$1" '
        function unescape(s) {
            gsub(/\\040/, " ", s); gsub(/\\011/, "\t", s); gsub(/\\134/, "\\", s)
            return s
        }
        unescape($5) == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# The FUSE client mount.glusterfs started for MOUNTPOINT (it has no pid file
# option): the glusterfs process whose last argument is the mount point.
find_fuse_pid () {
    local mnt=$1 p last
    for p in /proc/[0-9]*; do
        [ "$(cat "$p/comm" 2>/dev/null)" = glusterfs ] || continue
        last=$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | tail -n 1) || continue
        if [ "$last" = "$mnt" ]; then
            echo "${p#/proc/}"
            return 0
        fi
    done
    return 1
}

# A /30 on 10.98.X.0 that nothing on the host uses yet. Called under the lock.
pick_subnet () {
    local x tries
    for (( tries = 0; tries < 200; tries++ )); do
        x=$(( RANDOM % 256 ))
        if ip -4 -o addr show | grep -q " inet 10\.98\.$x\."; then
            continue
        fi
        if ip -4 route show | grep -q "^10\.98\.$x\."; then
            continue
        fi
        echo "$x"
        return 0
    done
    tb_die "no free 10.98.X.0/30 subnet"
}

setup_network () {
    local id x p
    mkdir -p "$TB_LOCK_DIR"
    exec 9>"$TB_LOCK_DIR/gluster.lock"
    flock 9
    if ! ip netns list | grep -q '^ovagent-gl-'; then
        for p in "${SYSTEM_LEFTOVERS[@]}"; do
            [ -e "$p" ] || echo "$p"
        done >"$TB_LOCK_DIR/gluster.absent"
    fi
    while :; do
        id=$(head -c 6 /proc/sys/kernel/random/uuid)
        [ ! -e "/run/netns/ovagent-gl-$id" ] && break
    done
    x=$(pick_subnet)
    NS=ovagent-gl-$id
    VETH_HOST=ovgl${id}h
    VETH_NS=ovgl${id}n
    SERVER=10.98.$x.1
    HOST_ADDR=10.98.$x.2
    state_set NS "$NS"
    ip netns add "$NS"
    state_set VETH_HOST "$VETH_HOST"
    ip link add "$VETH_HOST" type veth peer name "$VETH_NS" netns "$NS"
    ip -n "$NS" link set lo up
    ip -n "$NS" addr add "$SERVER/30" dev "$VETH_NS"
    ip -n "$NS" link set "$VETH_NS" up
    ip addr add "$HOST_ADDR/30" dev "$VETH_HOST"
    ip link set "$VETH_HOST" up
    state_set SERVER "$SERVER"
    exec 9>&-
}

start_glusterd () {
    local i
    mkdir -p "$G/lib" "$G/run" "$G/log" "$G/brick"
    # glusterd reads the option groups and hook scripts from its working directory.
    if [ -d /var/lib/glusterd/groups ]; then
        cp -a /var/lib/glusterd/groups "$G/lib/"
    fi
    if [ -d /var/lib/glusterd/hooks ]; then
        cp -a /var/lib/glusterd/hooks "$G/lib/"
    fi
    cat >"$G/glusterd.vol" <<EOF
volume management
    type mgmt/glusterd
    option working-directory $G/lib
    option run-directory $G/run
    option logging-directory $G/log
    option glusterd-sockfile $G/run/glusterd.socket
    option transport-type socket
    option transport.address-family inet
    option transport.socket.listen-port 24007
    option transport.socket.read-fail-log off
    option ping-timeout 0
    option event-threads 1
    option max-port 60999
end-volume
EOF
    ip netns exec "$NS" glusterd -f "$G/glusterd.vol" -p "$G/glusterd.pid" \
        -l "$G/log/glusterd.log" 9>&- ||
        tb_die "glusterd failed to start (see $G/log/glusterd.log)"
    for (( i = 0; i < 300; i++ )); do
        if gl_cli volume list >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    tb_die "glusterd does not answer (see $G/log/glusterd.log)"
}

create_volume () {
    VOLUME=tbvol
    # "force": the brick lies on the root file system.
    gl_cli volume create "$VOLUME" "$SERVER:$G/brick" force >/dev/null
    gl_cli volume start "$VOLUME" >/dev/null
    state_set VOLUME "$VOLUME"
}

mount_volume () {
    local d i pid
    # The directories of the data center path this script creates go on down.
    d=$DC/mnt/glusterSD
    local created=()
    while [ ! -d "$d" ]; do
        created+=("$d")
        d=$(dirname "$d")
    done
    mkdir -p "$DC/mnt/glusterSD"
    for d in "${created[@]}"; do
        state_set CREATED_DIR "$d"
    done
    # VDSM's transformPath of "SERVER:/VOLUME".
    MNT=$DC/mnt/glusterSD/$SERVER:_$VOLUME
    mkdir "$MNT"
    state_set MNT "$MNT"
    mount -t glusterfs -o "log-file=$G/log/mount.log" "$SERVER:/$VOLUME" "$MNT" 9>&- ||
        tb_die "mounting $SERVER:/$VOLUME failed (see $G/log/mount.log)"
    for (( i = 0; i < 50; i++ )); do
        pid=$(find_fuse_pid "$MNT") && break
        sleep 0.1
    done
    [ -n "${pid:-}" ] || tb_die "no glusterfs client process for $MNT"
    echo "$pid" >"$G/fuse.pid"
}

# A V5 GlusterFS data domain with one image: a qcow2 base and a qcow2 leaf
# whose backing string is the base's bare UUID, both written through FUSE.
build_domain () {
    local sd img base top d imgdir
    sd=$(tb_uuid); img=$(tb_uuid); base=$(tb_uuid); top=$(tb_uuid)
    d=$MNT/$sd
    imgdir=$d/images/$img
    mkdir -p "$d/dom_md" "$imgdir"
    tb_dom_metadata ALIGNMENT=1048576 BLOCK_SIZE=512 CLASS=Data \
        DESCRIPTION=gluster-data IOOPTIMEOUTSEC=10 LEASERETRIES=3 LEASETIMESEC=60 \
        LOCKPOLICY= LOCKRENEWALINTERVALSEC=5 POOL_UUID= \
        "REMOTE_PATH=$SERVER:/$VOLUME" ROLE=Regular "SDUUID=$sd" \
        TYPE=GLUSTERFS VERSION=5 | tb_write_file "$d/dom_md/metadata"
    : >"$d/dom_md/ids"
    : >"$d/dom_md/leases"
    : >"$d/dom_md/xleases"
    truncate -s 16M "$d/dom_md/inbox" "$d/dom_md/outbox"
    chmod 0660 "$d/dom_md/"*

    qemu-img create -q -f qcow2 -o compat=1.1 "$imgdir/$base" "$GiB"
    qemu-io -f qcow2 -c 'write -q -P 0x71 0 1M' "$imgdir/$base" >/dev/null
    (cd "$imgdir" && qemu-img create -q -f qcow2 -o compat=1.1 -b "$base" -F qcow2 "$top" "$GiB")
    qemu-io -f qcow2 -c 'write -q -P 0x72 1M 1M' "$imgdir/$top" >/dev/null
    chmod 0660 "$imgdir/$base" "$imgdir/$top"
    tb_vol_record 5 "$sd" "$img" "" COW INTERNAL "$GiB" | tb_write_file "$imgdir/$base.meta"
    tb_vol_record 5 "$sd" "$img" "$base" COW LEAF "$GiB" SEQ=1 | tb_write_file "$imgdir/$top.meta"
    : >"$imgdir/$base.lease"
    : >"$imgdir/$top.lease"

    TB_EXPECT=$G/expect
    mkdir -p "$TB_EXPECT"
    : >"$TB_EXPECT/domains"
    : >"$TB_EXPECT/images"
    tb_expect_domain "$sd" file glusterfs 5 "$d"
    tb_expect_image "$sd" "$img"
    tb_expect_volume "$base" "" cow internal legal "$GiB" "$imgdir/$base"
    tb_expect_volume "$top" "$base" cow leaf legal "$GiB" "$imgdir/$top"
    tb_expect_write "$ROOT/expected.json" "$DC"
    rm -rf "$TB_EXPECT"

    {
        printf '%s=%q\n' GLUSTER_SD "$sd" GLUSTER_DIR "$d" GLUSTER_IMG "$img" \
            GLUSTER_BASE "$base" GLUSTER_TOP "$top" GLUSTER_MOUNT "$MNT" \
            GLUSTER_SERVER "$SERVER" GLUSTER_VOLUME "$VOLUME" GLUSTER_NETNS "$NS" \
            DATA_CENTER "$DC"
    } >"$ROOT/ids"
    printf 'export OVAGENT_DATA_CENTER=%q\n' "$DC" >"$ROOT/env"
}

# Leaves nothing behind of an "up" that failed half-way.
undo_failed_up () {
    local rc=$1
    if [ "$rc" -ne 0 ]; then
        cmd_down || true
    fi
    exit "$rc"
}

cmd_up () {
    local t0=$SECONDS
    command -v glusterd >/dev/null || tb_die "glusterd not installed"
    command -v gluster >/dev/null || tb_die "gluster not installed"
    [ -e /dev/fuse ] || tb_die "/dev/fuse missing"
    mkdir -p "$ROOT" "$DC"
    ROOT=$(cd "$ROOT" && pwd -P)
    DC=$(cd "$DC" && pwd -P)
    G=$ROOT/gluster
    [ ! -e "$G" ] || tb_die "$G exists: run gluster.sh down $ROOT first"
    mkdir -p "$G"
    trap 'undo_failed_up $?' EXIT
    : >"$G/state"

    setup_network
    start_glusterd
    create_volume
    mount_volume
    build_domain
    trap - EXIT
    echo "gluster domain ready on $MNT in $((SECONDS - t0)) s"
}

cmd_down () {
    local line key val pids=() pid i d p sock brick_sockets=() created=()
    local NS='' VETH_HOST='' MNT='' SERVER='' VOLUME=''
    [ -d "$ROOT" ] || return 0
    ROOT=$(cd "$ROOT" && pwd -P)
    G=$ROOT/gluster
    [ -f "$G/state" ] || return 0
    # The state file holds KEY=VALUE lines in printf %q quoting.
    while IFS= read -r line; do
        key=${line%%=*}
        eval "val=${line#*=}"
        case $key in
            NS) NS=$val ;;
            VETH_HOST) VETH_HOST=$val ;;
            MNT) MNT=$val ;;
            SERVER) SERVER=$val ;;
            VOLUME) VOLUME=$val ;;
            CREATED_DIR) created+=("$val") ;;
        esac
    done <"$G/state"
    [[ -z $NS || $NS =~ ^ovagent-gl-[0-9a-f]{6}$ ]] || tb_die "bad state in $G/state"

    if [ -n "$MNT" ]; then
        if is_mounted "$MNT"; then
            for (( i = 0; i < 20; i++ )); do
                umount "$MNT" 2>/dev/null && break
                sleep 0.5
            done
            if is_mounted "$MNT"; then
                echo "gluster.sh: $MNT busy, detaching it" >&2
                umount -l "$MNT"
            fi
        fi
        # The client exits by itself once unmounted.
        if [ -s "$G/fuse.pid" ]; then
            pid=$(head -c 32 "$G/fuse.pid" | tr -dc 0-9)
            if [ -n "$pid" ] && ! tb_wait_gone 10 "$pid"; then
                tb_stop_pids "$pid"
            fi
        fi
        rmdir "$MNT" 2>/dev/null || true
    fi

    mkdir -p "$TB_LOCK_DIR"
    exec 9>"$TB_LOCK_DIR/gluster.lock"
    flock 9
    if [ -n "$NS" ] && [ -e "/run/netns/$NS" ]; then
        # Brick sockets are created under /var/run/gluster whatever the
        # run directory is; their names are on the brick command lines.
        for pid in $(ip netns pids "$NS"); do
            pids+=("$pid")
            while read -r sock; do
                brick_sockets+=("$sock")
            done < <(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null |
                grep -A1 -x -- -S | grep -x '/var/run/gluster/[0-9a-f]*\.socket' || true)
        done
        # Every process in the namespace was started by this script.
        tb_stop_pids "${pids[@]}"
        ip netns del "$NS"
    fi
    if [ -n "$VETH_HOST" ] && ip link show "$VETH_HOST" >/dev/null 2>&1; then
        ip link del "$VETH_HOST"
    fi
    if [ ${#brick_sockets[@]} -gt 0 ]; then
        rm -f "${brick_sockets[@]}"
    fi
    # Recorded innermost first.
    for d in "${created[@]}"; do
        rmdir "$d" 2>/dev/null || true
    done
    # Shared leftovers only when no other test-bed glusterd still runs.
    if [ -f "$TB_LOCK_DIR/gluster.absent" ] && ! ip netns list | grep -q '^ovagent-gl-'; then
        while read -r p; do
            for d in "${SYSTEM_LEFTOVERS[@]}"; do
                if [ "$p" = "$d" ]; then
                    rm -rf "$p"
                fi
            done
        done <"$TB_LOCK_DIR/gluster.absent"
        rm -f "$TB_LOCK_DIR/gluster.absent"
    fi
    exec 9>&-
    rm -rf "$G"
    rm -f "$ROOT/expected.json" "$ROOT/env" "$ROOT/ids"
}

[ $# -ge 2 ] || usage
CMD=$1 ROOT=$2
case $CMD in
    up)
        [ $# -eq 3 ] || usage
        DC=$3
        cmd_up ;;
    down)
        [ $# -eq 2 ] || usage
        cmd_down ;;
    *) usage ;;
esac
