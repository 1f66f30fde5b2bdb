#!/bin/bash
# export-chain --target into a remote command that takes nothing from the
# SSH channel: after --io-timeout the push fails with exit 7 naming the
# channel; with no limit, SIGTERM still ends the waiting push at once.

. "$top_srcdir/tests/functions.sh"

requires_core sshd
requires_core ssh-keygen
requires_core qemu-img
requires_core jq
requires_root
requires ovagent

start_sshd
start_filedomain
agent_env test:///default

# The remote "receiver": says it started, then reads nothing until the
# test lets it go (also at exit, so that sshd's child never outlives us:
# the test's directory going away lets it go too).
cat >"$TESTDIR/stalled-receiver" <<EOF
#!/bin/bash
touch "$TESTDIR/started.\$\$"
until [ -e "$TESTDIR/release" ] || [ ! -d "$TESTDIR" ]; do sleep 0.1; done
EOF
chmod 0755 "$TESTDIR/stalled-receiver"
cleanup_add touch "$TESTDIR/release"

export OVAGENT_REMOTE_COMMAND=$TESTDIR/stalled-receiver
export OVAGENT_SSH_KEY=$S/clientkey
export OVAGENT_SSH_KNOWN_HOSTS=$S/known_hosts
target=ssh://root@127.0.0.1:$SSHD_PORT$TESTDIR/repo

# The chain disk's stream (11 MiB) is more than the channel window and the
# pipe to the receiver hold.
expect_exit 7 ovagent export-chain "$CHAIN_IMG" --target "$target" --io-timeout 2 --json
jq -e '.result == "error" and .code == "transport"' "$TESTDIR/out" >/dev/null ||
    fail "push to a stalled receiver: $(cat "$TESTDIR/out")"
grep -q "the SSH channel to ssh://root@127.0.0.1:$SSHD_PORT accepted nothing for 2 s (io_timeout)" \
    "$TESTDIR/err" || fail "push to a stalled receiver: $(cat "$TESTDIR/err")"
compgen -G "$TESTDIR/started.*" >/dev/null || fail "the remote receiver never ran"
echo "ok: $(cat "$TESTDIR/err")"

# No limit: the push waits until a signal ends it, which it does at once.
rm -f "$TESTDIR"/started.*
ovagent export-chain "$CHAIN_IMG" --target "$target" --io-timeout 0 \
    >"$TESTDIR/term.out" 2>"$TESTDIR/term.err" &
pid=$!
until compgen -G "$TESTDIR/started.*" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$TESTDIR/term.err" >&2; fail "the push ended before the receiver ran"; }
    sleep 0.1
done
kill -TERM "$pid"
for (( i = 0; i < 300; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "the push did not end within 30 s of SIGTERM"
rc=0
wait "$pid" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || fail "the push exited $rc after SIGTERM"
grep -q "signal" "$TESTDIR/term.err" || fail "SIGTERM: $(cat "$TESTDIR/term.err")"
echo "ok: $(cat "$TESTDIR/term.err")"

touch "$TESTDIR/release"
echo "PASS: a push into a receiver that takes nothing times out, or ends on a signal"
