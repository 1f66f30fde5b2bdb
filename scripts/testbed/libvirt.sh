#!/bin/bash
# Test-bed libvirt: virtlogd and libvirtd started by hand (no systemd), shared
# by concurrent test runs and stopped only by the last one, only if started here.
#
#   libvirt.sh up ROOT      start the daemons unless running; register ROOT as a user
#   libvirt.sh down ROOT    unregister ROOT; the last user stops what "up" started
#   libvirt.sh status       exit 0 when qemu:///system answers
#
# Daemons found running that this script did not start are never stopped.
# Shared state lives in $OVAGENT_TB_LIBVIRT_STATE (default /run/ovagent-testbed/libvirt).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

URI=qemu:///system
STATE=${OVAGENT_TB_LIBVIRT_STATE:-/run/ovagent-testbed/libvirt}
VIRTLOGD_PIDFILE=/run/virtlogd.pid
LIBVIRTD_PIDFILE=/run/libvirtd.pid

die () {
    echo "libvirt.sh: $*" >&2
    exit 1
}

usage () {
    echo "usage: libvirt.sh up ROOT | down ROOT | status" >&2
    exit 2
}

# daemon_pid PIDFILE NAME: the pid of the running daemon NAME named by PIDFILE.
daemon_pid () {
    local pidfile=$1 name=$2 pid comm
    [ -s "$pidfile" ] || return 1
    pid=$(head -c 32 "$pidfile" | tr -dc 0-9)
    [ -n "$pid" ] || return 1
    tb_pid_alive "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [ "$comm" = "$name" ] || return 1
    echo "$pid"
}

# Serialises up/down of concurrent test runs.
take_lock () {
    mkdir -p "$STATE/users"
    exec 9>"$STATE/lock"
    flock 9
}

user_key () {
    printf '%s' "$1" | sha1sum | cut -c1-16
}

# A user whose ROOT is gone ended without "down" (killed): forget it.
prune_users () {
    local f root
    for f in "$STATE"/users/*; do
        [ -e "$f" ] || continue
        root=$(head -c 4096 "$f")
        [ -d "$root" ] || rm -f "$f"
    done
}

wait_for_libvirtd () {
    local i
    # The first connection after an install probes QEMU's capabilities: seconds.
    for (( i = 0; i < 120; i++ )); do
        if virsh -c "$URI" version >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    die "libvirtd does not answer on $URI"
}

cmd_up () {
    local root=$1 key
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    command -v virtlogd >/dev/null || die "virtlogd not installed"
    command -v libvirtd >/dev/null || die "libvirtd not installed"
    take_lock
    # Undo a half-done start on any failure below.
    UP_ROOT=$root
    trap 'cmd_down "$UP_ROOT"' EXIT
    prune_users
    key=$(user_key "$root")
    printf '%s' "$root" > "$STATE/users/$key"
    echo "$key" > "$root/libvirt.state"

    # libvirtd refuses to start without virtlogd's socket.
    if ! daemon_pid "$VIRTLOGD_PIDFILE" virtlogd >/dev/null; then
        rm -f "$STATE/started-virtlogd"
        virtlogd -d 9>&- || die "virtlogd failed to start"
        touch "$STATE/started-virtlogd"
    fi
    if ! daemon_pid "$LIBVIRTD_PIDFILE" libvirtd >/dev/null; then
        rm -f "$STATE/started-libvirtd"
        # Not -l: listening on TCP needs TLS certificates.
        libvirtd -d 9>&- || die "libvirtd failed to start"
        touch "$STATE/started-libvirtd"
    fi
    wait_for_libvirtd
    trap - EXIT
}

wait_for_pidfile () {
    local pidfile=$1 name=$2 i
    for (( i = 0; i < 100; i++ )); do
        daemon_pid "$pidfile" "$name" >/dev/null && return 0
        sleep 0.05
    done
    return 1
}

cmd_down () {
    local root=$1 key pid
    [ -d "$root" ] || return 0
    root=$(cd "$root" && pwd)
    [ -e "$root/libvirt.state" ] || return 0
    [ -d "$STATE" ] || { rm -f "$root/libvirt.state"; return 0; }
    take_lock
    key=$(user_key "$root")
    rm -f "$STATE/users/$key"
    prune_users
    if ! compgen -G "$STATE/users/*" >/dev/null; then
        if [ -e "$STATE/started-libvirtd" ]; then
            # The pid file appears a moment after "libvirtd -d" returns.
            wait_for_pidfile "$LIBVIRTD_PIDFILE" libvirtd || true
            if pid=$(daemon_pid "$LIBVIRTD_PIDFILE" libvirtd); then
                tb_stop_pids "$pid"
            fi
            rm -f "$STATE/started-libvirtd"
        fi
        if [ -e "$STATE/started-virtlogd" ]; then
            wait_for_pidfile "$VIRTLOGD_PIDFILE" virtlogd || true
            if pid=$(daemon_pid "$VIRTLOGD_PIDFILE" virtlogd); then
                tb_stop_pids "$pid"
            fi
            rm -f "$STATE/started-virtlogd"
        fi
    fi
    rm -f "$root/libvirt.state"
}

cmd_status () {
    local pid
    if pid=$(daemon_pid "$VIRTLOGD_PIDFILE" virtlogd); then
        echo "virtlogd: running (pid $pid)"
    else
        echo "virtlogd: stopped"
    fi
    if pid=$(daemon_pid "$LIBVIRTD_PIDFILE" libvirtd); then
        echo "libvirtd: running (pid $pid)"
    else
        echo "libvirtd: stopped"
    fi
    virsh -c "$URI" version >/dev/null 2>&1
}

[ $# -ge 1 ] || usage
case $1 in
    up)
        [ $# -eq 2 ] || usage
        cmd_up "$2"
        ;;
    down)
        [ $# -eq 2 ] || usage
        cmd_down "$2"
        ;;
    status)
        [ $# -eq 1 ] || usage
        cmd_status
        ;;
    *)
        usage
        ;;
esac
