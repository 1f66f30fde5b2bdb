#!/bin/bash
# A block export killed mid-stream: after SIGKILL the LVs it activated stay
# active with their activation records until the next run (list) deactivates
# them; after SIGTERM the sender deactivates them itself and fails.

. "$top_srcdir/tests/functions.sh"

requires_root
requires_core lvm
requires_core losetup
requires_core qemu-img
requires_core qemu-io
requires_core jq
command -v ovagent >/dev/null || fail "ovagent not built"

TB=$TESTDIR/tb
cleanup_add blockdomain.sh down "$TB"
blockdomain.sh up "$TB"
. "$TB/env"
. "$TB/ids"
# libvirt's test driver: reachable, and none of its VMs uses our volumes.
export OVAGENT_LIBVIRT_URI=test:///default

CHAIN=("$CHAIN_BASE" "$CHAIN_MID" "$CHAIN_TOP")
RECORDS=$OVAGENT_STATE_DIR/activations

assert_active () {
    local v
    for v in "${CHAIN[@]}"; do
        [ -e "/dev/$SD/$v" ] || fail "$1: LV $SD/$v is not active"
        [ -e "$RECORDS/$SD.$v" ] || fail "$1: no activation record for $SD/$v"
    done
}

assert_inactive () {
    local v
    for v in "${CHAIN[@]}"; do
        [ ! -e "/dev/$SD/$v" ] || fail "$1: LV $SD/$v is still active"
        [ ! -e "$RECORDS/$SD.$v" ] || fail "$1: activation record $SD.$v left behind"
    done
}

# A sender still running when the test fails.
stop_sender () {
    kill -KILL "$1" 2>/dev/null || true
}

assert_inactive "before the test"
FIFO=$TESTDIR/fifo
mkfifo "$FIFO"

# ---- SIGKILL: the stream on standard output, a reader that stalls ----
ovagent export-chain "$CHAIN_IMG" --output - >"$FIFO" 2>"$TESTDIR/kill.err" &
pid=$!
cleanup_add stop_sender "$pid"
exec 3<"$FIFO"
# The first bytes come only after every LV of the range was activated; the
# sender then blocks on the full pipe.
dd bs=65536 count=1 iflag=fullblock status=none <&3 >/dev/null
assert_active "while sending"
kill -KILL "$pid"
rc=0
wait "$pid" 2>/dev/null || rc=$?
[ "$rc" -eq 137 ] || fail "the sender exited $rc, not killed by SIGKILL"
exec 3<&-
assert_active "after SIGKILL"

# The next run that looks at block domains cleans up after the dead one.
expect_exit 0 ovagent list --json
assert_inactive "after the next run"

# ---- SIGTERM: the sender deactivates its LVs before exiting ----
ovagent export-chain "$CHAIN_IMG" --output "$FIFO" >"$TESTDIR/term.out" 2>"$TESTDIR/term.err" &
pid=$!
cleanup_add stop_sender "$pid"
exec 3<"$FIFO"
dd bs=65536 count=1 iflag=fullblock status=none <&3 >/dev/null
assert_active "while sending"
kill -TERM "$pid"
# The reader stays stalled: the sender must not wait for it.
rc=0
for (( i = 0; i < 300; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "the sender did not exit within 30 s of SIGTERM"
wait "$pid" || rc=$?
# The stream it left is cut short: the reader sees end of file.
timeout 10 cat <&3 >/dev/null || fail "the reader did not see the end of the stream"
exec 3<&-
[ "$rc" -ne 0 ] || fail "the sender exited 0 after SIGTERM"
[ "$rc" -lt 128 ] || fail "the sender died of a signal ($rc) instead of cleaning up"
grep -q "signal" "$TESTDIR/term.err" || { cat "$TESTDIR/term.err" >&2; fail "the error does not say it was stopped by a signal"; }
assert_inactive "after SIGTERM"
cat "$TESTDIR/term.err"

# ---- and a complete export deactivates too ----
expect_exit 0 ovagent export-chain "$CHAIN_IMG" --output /dev/null --json
assert_inactive "after a complete export"

echo "PASS: export-chain killed"
