#!/bin/bash
# Test-bed OpenSSH server: a throwaway sshd on 127.0.0.1 with its own host and
# client keys, and an ssh_config (host alias "tbhost") that checks the host key.
#
#   sshd.sh up DIR [PORT]   start sshd (PORT: a free one is picked when omitted)
#   sshd.sh down DIR        stop it and remove what "up" created in DIR
#
# "up" leaves in DIR: ssh_config, known_hosts, clientkey(.pub), sshd.pid and
# sshd.env (SSHD_PORT, SSH_CONFIG, SSH_IDENTITY, SSH_KNOWN_HOSTS) for tests to source.
# Lines in DIR/sshd_config.extra, when it exists before "up", are added to the
# server's configuration (ExposeAuthInfo, AcceptEnv...); authorized_keys may be
# rewritten while sshd runs.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

SSHD=${SSHD:-/usr/sbin/sshd}

die () {
    echo "sshd.sh: $*" >&2
    exit 1
}

usage () {
    echo "usage: sshd.sh up DIR [PORT] | down DIR" >&2
    exit 2
}

# Only a pid file that names a running sshd started with our config counts:
# a stale file must never make us signal an unrelated process.
our_sshd_pid () {
    local dir=$1 pid
    [ -s "$dir/sshd.pid" ] || return 1
    pid=$(head -c 32 "$dir/sshd.pid" | tr -dc 0-9)
    [ -n "$pid" ] || return 1
    tb_pid_alive "$pid" || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null |
        grep -qF -- "-f $dir/sshd_config" || return 1
    echo "$pid"
}

pick_port () {
    local port
    port=$(( 20000 + RANDOM % 30000 ))
    while ss -Htln "sport = :$port" 2>/dev/null | grep -q .; do
        port=$(( 20000 + RANDOM % 30000 ))
    done
    echo "$port"
}

write_sshd_config () {
    local dir=$1 port=$2
    cat > "$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/hostkey
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
Subsystem sftp internal-sftp
EOF
    if [ -f "$dir/sshd_config.extra" ]; then
        cat "$dir/sshd_config.extra" >> "$dir/sshd_config"
    fi
    # Under the test suite, a command run through this sshd finds the same
    # programs (the qemu-img/qemu-nbd guard first) and logs to the same file.
    if [ -n "${OVAGENT_QEMU_GUARD_LOG:-}" ]; then
        printf 'SetEnv "PATH=%s" "OVAGENT_QEMU_GUARD_LOG=%s"\n' \
               "$PATH" "$OVAGENT_QEMU_GUARD_LOG" >> "$dir/sshd_config"
    fi
}

write_client_files () {
    local dir=$1 port=$2 hostkey
    hostkey=$(cat "$dir/hostkey.pub")
    # Only the two fields "type key"; ssh-keygen appends a comment.
    hostkey=$(echo "$hostkey" | awk '{ print $1, $2 }')
    echo "[127.0.0.1]:$port $hostkey" > "$dir/known_hosts"
    cat > "$dir/ssh_config" <<EOF
Host tbhost
    HostName 127.0.0.1
    Port $port
    User $(id -un)
    IdentityFile $dir/clientkey
    IdentitiesOnly yes
    UserKnownHostsFile $dir/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 10
EOF
    cat > "$dir/sshd.env" <<EOF
SSHD_PORT=$port
SSH_CONFIG=$dir/ssh_config
SSH_IDENTITY=$dir/clientkey
SSH_KNOWN_HOSTS=$dir/known_hosts
EOF
}

cmd_up () {
    local dir=$1 want_port=${2:-} port tries rc
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if our_sshd_pid "$dir" >/dev/null; then
        die "an sshd from $dir is already running"
    fi
    # Undo a half-done start on any failure below.
    UP_DIR=$dir
    trap 'cmd_down "$UP_DIR"' EXIT

    [ -x "$SSHD" ] || die "$SSHD not found"
    # The privilege separation directory; without it sshd exits with 255.
    mkdir -p /run/sshd
    chmod 0755 /run/sshd

    rm -f "$dir/hostkey" "$dir/hostkey.pub" "$dir/clientkey" "$dir/clientkey.pub"
    ssh-keygen -q -t ed25519 -N '' -C ovagent-testbed-host -f "$dir/hostkey"
    ssh-keygen -q -t ed25519 -N '' -C ovagent-testbed-client -f "$dir/clientkey"
    cp "$dir/clientkey.pub" "$dir/authorized_keys"
    chmod 0600 "$dir/authorized_keys"

    # A picked port may be taken between the check and the bind: retry.
    for (( tries = 0; tries < 10; tries++ )); do
        port=${want_port:-$(pick_port)}
        write_sshd_config "$dir" "$port"
        "$SSHD" -t -f "$dir/sshd_config" || die "invalid sshd configuration"
        rm -f "$dir/sshd.pid"
        rc=0
        "$SSHD" -f "$dir/sshd_config" -E "$dir/sshd.log" || rc=$?
        if [ "$rc" -eq 0 ]; then
            break
        fi
        [ -z "$want_port" ] || die "sshd failed to start on port $port (see $dir/sshd.log)"
    done
    [ "$rc" -eq 0 ] || die "sshd failed to start (see $dir/sshd.log)"

    # sshd writes its pid file after it forks into the background.
    for (( tries = 0; tries < 100; tries++ )); do
        our_sshd_pid "$dir" >/dev/null && break
        sleep 0.05
    done
    our_sshd_pid "$dir" >/dev/null || die "sshd did not write $dir/sshd.pid"

    write_client_files "$dir" "$port"
    trap - EXIT
    echo "sshd listening on 127.0.0.1:$port, config $dir/ssh_config"
}

cmd_down () {
    local dir=$1 pid
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    if pid=$(our_sshd_pid "$dir"); then
        tb_stop_pids "$pid"
    fi
    rm -f "$dir/sshd_config" "$dir/sshd_config.extra" "$dir/sshd.pid" "$dir/sshd.log" "$dir/sshd.env" \
        "$dir/hostkey" "$dir/hostkey.pub" "$dir/clientkey" "$dir/clientkey.pub" \
        "$dir/authorized_keys" "$dir/known_hosts" "$dir/ssh_config"
    rmdir "$dir" 2>/dev/null || true
}

[ $# -ge 2 ] || usage
case $1 in
    up)
        [ $# -le 3 ] || usage
        if [ $# -eq 3 ] && ! { [[ $3 =~ ^[0-9]{1,5}$ ]] && (( 10#$3 >= 1 && 10#$3 <= 65535 )); }; then
            die "invalid port: $3"
        fi
        cmd_up "$2" "${3:-}"
        ;;
    down)
        [ $# -eq 2 ] || usage
        cmd_down "$2"
        ;;
    *)
        usage
        ;;
esac
