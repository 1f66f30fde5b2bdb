#!/bin/bash
# Test-bed sanlock: two "hosts" on this machine, each a real sanlock daemon
# with a run directory of its own (SANLOCK_RUN_DIR: its socket and pid file),
# without a watchdog, joining the lockspaces of the test-bed domains and
# holding volume leases the way VDSM and its VMs do.
#
#   sanlock.sh up DIR               start host 1 (DIR/host1: the daemon ovagent
#                                   is told about in DIR/env) and host 2 (DIR/host2)
#   sanlock.sh join DIR HOST SD IDS [HOST SD IDS]...
#                                   HOST (1 or 2) joins the lockspace of domain SD
#                                   whose host-id area is IDS (dom_md/ids, or
#                                   /dev/SD/ids), as host id HOST; all at once
#   sanlock.sh hold DIR HOST SD VOL PATH OFFSET
#                                   a process of HOST holding the lease of volume VOL
#                                   (PATH at OFFSET); prints its pid once it holds it
#   sanlock.sh release DIR PID      end that process; returns once its daemon has
#                                   released the lease
#   sanlock.sh leases DIR HOST      the leases HOST holds: "SD:VOL:PATH:OFFSET:LVER p PID"
#   sanlock.sh down DIR             end the holders, stop the daemons, remove DIR
#
# Root here lacks CAP_SYS_RESOURCE, which the daemon's setrlimit calls need:
# "up" builds setrlimit-shim.c into DIR and preloads it. The domains' areas
# are initialised by the test-bed domain scripts (lib.sh tb_lockspace_init,
# tb_volume_lease) with a 2 s I/O timeout, so a join takes seconds.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

SANLOCK=${SANLOCK:-/usr/sbin/sanlock}
MARKER=.ovagent-sanlock-testbed
IO_TIMEOUT=2

usage () {
    sed -n '7,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# client HOST ARGS...: `sanlock client ARGS` against HOST's daemon.
client () {
    local host=$1
    shift
    SANLOCK_RUN_DIR=$DIR/host$host "$SANLOCK" client "$@"
}

# A pid started by "up" or "hold" for this DIR: alive and with our run
# directory in its environment; never an unrelated process.
ours () {
    local pid=$1 host
    tb_pid_alive "$pid" || return 1
    for host in 1 2; do
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null |
            grep -qxF "SANLOCK_RUN_DIR=$DIR/host$host" && return 0
    done
    return 1
}

check_host () {
    [[ $1 =~ ^[12]$ ]] || tb_die "host must be 1 or 2, not $1"
}

# wait_for SECONDS CMD...: until CMD succeeds, at most SECONDS.
wait_for () {
    local secs=$1 i
    shift
    for (( i = 0; i < secs * 10; i++ )); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

status_works () {
    client "$1" status >/dev/null 2>&1
}

cmd_up () {
    if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
        tb_die "$DIR exists and is not empty"
    fi
    [ -x "$SANLOCK" ] || tb_die "$SANLOCK not installed (scripts/setup installs sanlock)"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    touch "$DIR/$MARKER"
    trap 'rc=$?; [ $rc -eq 0 ] || cmd_down; exit $rc' EXIT
    "${CC:-cc}" -shared -fPIC -O2 -Wall -o "$DIR/setrlimit-shim.so" \
        "$HERE/setrlimit-shim.c" -ldl || tb_die "cannot build the setrlimit shim"
    local host pid
    for host in 1 2; do
        mkdir -p "$DIR/host$host"
        # -w 0: no watchdog; -l 0: no mlockall; logs only to host$host.log.
        SANLOCK_RUN_DIR=$DIR/host$host LD_PRELOAD=$DIR/setrlimit-shim.so \
            setsid "$SANLOCK" daemon -D -w 0 -l 0 -U root -G root -L -1 -S -1 \
            </dev/null >"$DIR/host$host.log" 2>&1 &
        pid=$!
        echo "$pid" >"$DIR/host$host.pid"
    done
    for host in 1 2; do
        wait_for 15 status_works "$host" || {
            tail -n 20 "$DIR/host$host.log" >&2
            tb_die "the sanlock daemon of host $host did not start"
        }
    done
    printf 'export OVAGENT_SANLOCK_RUN_DIR=%q\n' "$DIR/host1" >"$DIR/env"
    trap - EXIT
}

cmd_join () {
    [ $(( $# % 3 )) -eq 0 ] && [ $# -gt 0 ] || usage
    local pids=() what=() host sd ids i rc=0
    while [ $# -gt 0 ]; do
        host=$1 sd=$2 ids=$3
        shift 3
        check_host "$host"
        client "$host" add_lockspace -s "$sd:$host:$(tb_sanlock_path "$ids"):0" \
            -o "$IO_TIMEOUT" >"$DIR/join.$host.$sd.log" 2>&1 &
        pids+=($!)
        what+=("host $host, lockspace $sd ($ids)")
    done
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            echo "sanlock.sh: joining failed: ${what[$i]}" >&2
            rc=1
        fi
    done
    [ "$rc" -eq 0 ] || { cat "$DIR"/join.*.log >&2; exit 1; }
}

# holds HOST RES PID: HOST's daemon shows PID holding RES.
holds () {
    client "$1" status 2>/dev/null | grep -q "^r $2:.* p $3\$"
}

cmd_hold () {
    [ $# -eq 5 ] || usage
    local host=$1 sd=$2 vol=$3 path=$4 offset=$5 pid log
    check_host "$host"
    log=$DIR/hold.$vol.log
    # The client registers, acquires and then becomes sleep: one pid holds it.
    SANLOCK_RUN_DIR=$DIR/host$host setsid "$SANLOCK" client command \
        -r "$sd:$vol:$(tb_sanlock_path "$path"):$offset" -c /bin/sleep 3600 \
        </dev/null >"$log" 2>&1 &
    pid=$!
    echo "$pid" >>"$DIR/holders"
    if ! wait_for 30 holds "$host" "$sd:$vol" "$pid"; then
        cat "$log" >&2
        tb_die "host $host could not take the lease of $sd:$vol"
    fi
    echo "$pid"
}

released () {
    ! client 1 status 2>/dev/null | grep -q " p $1\$" &&
        ! client 2 status 2>/dev/null | grep -q " p $1\$"
}

cmd_release () {
    [ $# -eq 1 ] && [[ $1 =~ ^[0-9]+$ ]] || usage
    local pid=$1
    grep -qx "$pid" "$DIR/holders" 2>/dev/null || tb_die "$pid is not a holder of $DIR"
    if ours "$pid"; then
        tb_stop_pids "$pid"
    fi
    # The daemon releases a dead client's leases by writing to the lease
    # areas; on a loaded machine that waits for I/O. A daemon that still
    # lists the holder after that is asked to release its leases for it
    # (seen on loaded CI machines: the holder gone, its lease listed); if
    # even that fails, say what the daemons saw.
    if ! wait_for 30 released "$pid"; then
        local host res
        for host in 1 2; do
            client "$host" status 2>/dev/null | sed -n "s/^r \(.*\):[0-9]* p $pid\$/\1/p" |
                while read -r res; do
                    echo "sanlock.sh: host $host still lists pid $pid holding $res; releasing it" >&2
                    client "$host" release -r "$res" -p "$pid" >&2 2>&1 || true
                done
        done
    fi
    if ! wait_for 30 released "$pid"; then
        local host
        ps -o pid,stat,comm -p "$pid" >&2 || true
        for host in 1 2; do
            echo "sanlock.sh: host $host status:" >&2
            client "$host" status >&2 2>&1 || true
            client "$host" log_dump 2>&1 | tail -n 40 >&2 || true
        done
        tb_die "the daemon did not release the lease of pid $pid"
    fi
}

cmd_leases () {
    [ $# -eq 1 ] || usage
    check_host "$1"
    client "$1" status | sed -n 's/^r //p'
}

cmd_down () {
    [ -d "$DIR" ] || return 0
    [ -e "$DIR/$MARKER" ] || tb_die "$DIR was not made by ${0##*/} up; not removing it"
    DIR=$(cd "$DIR" && pwd -P)
    local pid pids=() host
    if [ -s "$DIR/holders" ]; then
        while read -r pid; do
            ours "$pid" && pids+=("$pid")
        done <"$DIR/holders"
    fi
    tb_stop_pids "${pids[@]}"
    pids=()
    for host in 1 2; do
        [ -s "$DIR/host$host.pid" ] || continue
        pid=$(tr -dc 0-9 <"$DIR/host$host.pid")
        if [ -n "$pid" ] && ours "$pid"; then
            # Leaves every lockspace (the host-id leases go free) and exits.
            client "$host" shutdown -f 1 >/dev/null 2>&1 || true
            pids+=("$pid")
        fi
    done
    if [ ${#pids[@]} -gt 0 ] && ! tb_wait_gone 15 "${pids[@]}"; then
        tb_stop_pids "${pids[@]}"
    fi
    rm -rf "$DIR"
}

[ $# -ge 2 ] || usage
CMD=$1 DIR=$2
shift 2
case $CMD in
    up) [ $# -eq 0 ] || usage; cmd_up ;;
    join|hold|release|leases)
        [ -e "$DIR/$MARKER" ] || tb_die "$DIR: no test-bed sanlock (sanlock.sh up first)"
        DIR=$(cd "$DIR" && pwd -P)
        "cmd_$CMD" "$@" ;;
    down) [ $# -eq 0 ] || usage; cmd_down ;;
    *) usage ;;
esac
