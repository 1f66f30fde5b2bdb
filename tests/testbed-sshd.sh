#!/bin/bash
# The test-bed sshd: key login with strict host key checking works, commands
# run with the suite's PATH, a wrong host key is refused, and "down" leaves no
# sshd behind.

. "$top_srcdir/tests/functions.sh"

requires_core sshd
requires_core ssh
requires_core ssh-keygen
requires_root

S=$TESTDIR/sshd
cleanup_add sshd.sh down "$S"
sshd.sh up "$S" >/dev/null

pid=$(cat "$S/sshd.pid")
kill -0 "$pid" || fail "sshd (pid $pid) is not running"
. "$S/sshd.env"
[ -n "$SSHD_PORT" ] || fail "sshd.env has no port"

out=$(ssh -F "$S/ssh_config" tbhost 'echo hi') || fail "ssh to tbhost failed"
[ "$out" = hi ] || fail "unexpected output from ssh: $out"

# A command through it runs with the suite's PATH (the qemu guard first) and
# guard log, as ovagent on this side does.
out=$(ssh -F "$S/ssh_config" tbhost 'command -v qemu-img; echo "$OVAGENT_QEMU_GUARD_LOG"') ||
    fail "ssh to tbhost failed"
[ "$out" = "$(command -v qemu-img)
$OVAGENT_QEMU_GUARD_LOG" ] || fail "a command through sshd sees another qemu-img or guard log: $out"

grep -q '^ *StrictHostKeyChecking yes' "$S/ssh_config" ||
    fail "ssh_config does not check host keys strictly"

# A known_hosts entry with another key for the same host must be refused.
ssh-keygen -q -t ed25519 -N '' -f "$TESTDIR/otherkey"
cp "$S/known_hosts" "$TESTDIR/known_hosts.good"
echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$TESTDIR/otherkey.pub")" > "$S/known_hosts"
rc=0
ssh -F "$S/ssh_config" tbhost 'echo hi' >"$TESTDIR/out" 2>"$TESTDIR/err" || rc=$?
[ "$rc" -ne 0 ] || fail "ssh accepted a host key that does not match known_hosts"
grep -qi 'host key' "$TESTDIR/err" ||
    { cat "$TESTDIR/err" >&2; fail "ssh failed, but not because of the host key"; }

# An empty known_hosts must be refused too (no trust on first use).
: > "$S/known_hosts"
rc=0
ssh -F "$S/ssh_config" tbhost 'echo hi' >"$TESTDIR/out" 2>"$TESTDIR/err" || rc=$?
[ "$rc" -ne 0 ] || fail "ssh accepted an unknown host key"
[ ! -s "$S/known_hosts" ] || fail "ssh added an unknown host key to known_hosts"

cp "$TESTDIR/known_hosts.good" "$S/known_hosts"
out=$(ssh -F "$S/ssh_config" tbhost 'echo again') || fail "ssh failed after restoring known_hosts"
[ "$out" = again ] || fail "unexpected output from ssh: $out"

sshd.sh down "$S"
# A zombie waiting for PID 1 to reap it is not running.
if kill -0 "$pid" 2>/dev/null; then
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null || echo 'Z')
    [ "${state%% *}" = Z ] || fail "sshd (pid $pid) still running after down"
fi
[ ! -e "$S/sshd.pid" ] || fail "down left the pid file behind"
# down is idempotent.
sshd.sh down "$S"

echo "PASS: testbed sshd"
