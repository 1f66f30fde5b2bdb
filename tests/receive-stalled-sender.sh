#!/bin/bash
# A sender that stalls: while receive waits for it, it holds only R/lock
# shared and the lock of its disk, so verify and restore of the repository
# run and a second receive of that disk is exit 4; after --io-timeout it
# exits 7 naming the sender, with nothing committed or left behind, and one
# that stalls inside the META never made the repository. Receives of two
# disks into one repository run at once and both commit. The other ends:
# import's stdin, and a reader of export-chain's standard output that takes
# nothing (exit 7 naming it).

. "$top_srcdir/tests/functions.sh"

requires_root
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires ovagent

start_filedomain
agent_env test:///default

R=$TESTDIR/repo
D=$R/disks/$CHAIN_IMG
D2=$R/disks/$SINGLE_IMG
STALL=5

# wait_for GLOB WHAT PID: until a path matches GLOB, while PID runs.
wait_for () {
    local glob=$1 what=$2 pid=$3
    until compgen -G "$glob" >/dev/null; do
        kill -0 "$pid" 2>/dev/null || fail "$what: the receive ended before $glob appeared"
        sleep 0.1
    done
}

# finish PID: wait for PID; its exit code in RC (never fails here).
finish () {
    RC=0
    wait "$1" || RC=$?
}

# fifo NAME: a new named pipe $TESTDIR/NAME.
fifo () {
    rm -f "$TESTDIR/$1"
    mkfifo "$TESTDIR/$1"
    echo "$TESTDIR/$1"
}

# no_disk_locks WHAT: R/locks holds no lock file once receives have ended.
no_disk_locks () {
    [ -z "$(ls -A "$R/locks")" ] || fail "$1: lock files left: $(ls -A "$R/locks")"
}

ovagent export-chain "$CHAIN_IMG" --output "$TESTDIR/full.strm" 2>/dev/null
ovagent export-chain "$SINGLE_IMG" --output "$TESTDIR/single.strm" 2>/dev/null
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/full.strm"
ID1=$(jq -r .backup_id "$TESTDIR/out")
NEW=$(snapshot.sh create "$NFS_DIR" "$CHAIN_IMG")
snapshot.sh write "$NFS_DIR" "$CHAIN_IMG" 0x5c 2M 3M 300M 1M >/dev/null
ovagent export-chain "$CHAIN_IMG" --since "$CHAIN_TOP" --output "$TESTDIR/inc.strm" 2>/dev/null
cp "$D/manifest.json" "$TESTDIR/manifest.before"
no_disk_locks "a committed receive"
# As a repository made before R/locks/ existed: the next receive makes it.
rmdir "$R/locks"

# ---- a sender that stalls mid-stream ---------------------------------------

in=$(fifo stall)
ovagent receive --repo "$R" --io-timeout "$STALL" --json <"$in" \
    >"$TESTDIR/stall.out" 2>"$TESTDIR/stall.err" &
rpid=$!
exec {wfd}>"$in"
head -c $((512 * 1024)) "$TESTDIR/inc.strm" >&"$wfd"
wait_for "$D/.incoming-*/*" "stalled receive" "$rpid"
[ -e "$R/locks/$CHAIN_IMG" ] || fail "the stalled receive holds no $R/locks/$CHAIN_IMG"
[ "$(stat -c %a "$R/locks")" = 700 ] || fail "$R/locks was not made 0700"
[ "$(stat -c %a "$R/locks/$CHAIN_IMG")" = 600 ] || fail "$R/locks/$CHAIN_IMG was not made 0600"

# The same disk again: refused at once, naming the disk and the repository.
expect_exit 4 ovagent receive --repo "$R" --json <"$TESTDIR/inc.strm"
jq -e '.result == "error" and .code == "busy"' "$TESTDIR/out" >/dev/null ||
    fail "second receive of the disk: $(cat "$TESTDIR/out")"
grep -q "another ovagent receive is writing disk $CHAIN_IMG to $R" "$TESTDIR/err" ||
    fail "the busy error does not say who holds what: $(cat "$TESTDIR/err")"
kill -0 "$rpid" 2>/dev/null || fail "the stalled receive ended during the second receive"

# Readers run alongside it.
expect_exit 0 ovagent verify --repo "$R" --json
jq -e '.result == "ok" and .backups == 1' "$TESTDIR/out" >/dev/null ||
    fail "verify during a stalled receive: $(cat "$TESTDIR/out")"
expect_exit 0 ovagent restore --repo "$R" "$CHAIN_IMG" --to "$TESTDIR/during.raw" --json
jq -e --arg b "$ID1" '.backup_id == $b' "$TESTDIR/out" >/dev/null ||
    fail "restore during a stalled receive: $(cat "$TESTDIR/out")"
qemu-img convert -U -O raw "$NFS_DIR/images/$CHAIN_IMG/$CHAIN_TOP" "$TESTDIR/at1.raw"
qemu-img compare -q -f raw -F raw "$TESTDIR/during.raw" "$TESTDIR/at1.raw" ||
    fail "the disk restored during a stalled receive is not the first backup"

# Then nothing more comes: exit 7 naming the sender and the limit.
finish "$rpid"
exec {wfd}>&-
[ "$RC" -eq 7 ] || { cat "$TESTDIR/stall.err" >&2; fail "stalled receive: exit $RC, expected 7"; }
jq -e '.code == "transport"' "$TESTDIR/stall.out" >/dev/null ||
    fail "stalled receive: $(cat "$TESTDIR/stall.out")"
grep -q "the sender sent nothing for $STALL s (io_timeout); nothing was committed to $R" \
    "$TESTDIR/stall.err" || fail "stalled receive: $(cat "$TESTDIR/stall.err")"
! compgen -G "$D/.incoming-*" >/dev/null || fail "the stalled receive left $(echo "$D"/.incoming-*)"
cmp -s "$D/manifest.json" "$TESTDIR/manifest.before" || fail "the stalled receive changed the manifest"
[ "$(ls "$D")" = "$(printf '%s\n' "$ID1" manifest.json)" ] ||
    fail "the disk directory holds more than its backup: $(ls -A "$D")"
no_disk_locks "a stalled receive"
echo "ok: $(cat "$TESTDIR/stall.err")"

# ---- a sender that stalls inside the META ----------------------------------

NEWR=$TESTDIR/never/repo
in=$(fifo meta)
ovagent receive --repo "$NEWR" --io-timeout 1 <"$in" 2>"$TESTDIR/meta.err" &
rpid=$!
exec {wfd}>"$in"
head -c 100 "$TESTDIR/full.strm" >&"$wfd"
finish "$rpid"
exec {wfd}>&-
[ "$RC" -eq 7 ] || { cat "$TESTDIR/meta.err" >&2; fail "stall in META: exit $RC, expected 7"; }
grep -q "the sender sent nothing for 1 s (io_timeout)" "$TESTDIR/meta.err" ||
    fail "stall in META: $(cat "$TESTDIR/meta.err")"
[ ! -e "$TESTDIR/never" ] || fail "a receive that never had a META made $TESTDIR/never"

# ---- two disks into one repository at once --------------------------------

ina=$(fifo a)
inb=$(fifo b)
ovagent receive --repo "$R" --json <"$ina" >"$TESTDIR/a.out" 2>"$TESTDIR/a.err" &
apid=$!
ovagent receive --repo "$R" --json <"$inb" >"$TESTDIR/b.out" 2>"$TESTDIR/b.err" &
bpid=$!
exec {afd}>"$ina" {bfd}>"$inb"
head -c $((512 * 1024)) "$TESTDIR/inc.strm" >&"$afd"
head -c $((512 * 1024)) "$TESTDIR/single.strm" >&"$bfd"
wait_for "$D/.incoming-*/*" "receive of disk $CHAIN_IMG" "$apid"
wait_for "$D2/.incoming-*/*" "receive of disk $SINGLE_IMG" "$bpid"
# Both are half-way through now; then each gets the rest.
tail -c +$((512 * 1024 + 1)) "$TESTDIR/inc.strm" >&"$afd"
exec {afd}>&-
tail -c +$((512 * 1024 + 1)) "$TESTDIR/single.strm" >&"$bfd"
exec {bfd}>&-
finish "$apid"
[ "$RC" -eq 0 ] || { cat "$TESTDIR/a.err" >&2; fail "receive of disk $CHAIN_IMG: exit $RC"; }
finish "$bpid"
[ "$RC" -eq 0 ] || { cat "$TESTDIR/b.err" >&2; fail "receive of disk $SINGLE_IMG: exit $RC"; }
ID2=$(jq -r .backup_id "$TESTDIR/a.out")
jq -e --arg v "$NEW" '.kind == "incremental" and .volumes == [$v]' "$TESTDIR/a.out" >/dev/null ||
    fail "receive of disk $CHAIN_IMG: $(cat "$TESTDIR/a.out")"
jq -e --arg d "$SINGLE_IMG" '.kind == "full" and .disk == $d' "$TESTDIR/b.out" >/dev/null ||
    fail "receive of disk $SINGLE_IMG: $(cat "$TESTDIR/b.out")"
jq -e --arg a "$ID1" --arg b "$ID2" '[.backups[].id] == [$a, $b]' "$D/manifest.json" >/dev/null ||
    fail "manifest of $CHAIN_IMG: $(jq -c '[.backups[].id]' "$D/manifest.json")"
expect_exit 0 ovagent verify --repo "$R" --json
jq -e '.disks == 2 and .backups == 3' "$TESTDIR/out" >/dev/null ||
    fail "verify after two receives at once: $(cat "$TESTDIR/out")"
expect_exit 0 ovagent restore --repo "$R" "$CHAIN_IMG" --to "$TESTDIR/at2.raw"
qemu-img convert -U -O raw "$NFS_DIR/images/$CHAIN_IMG/$NEW" "$TESTDIR/src2.raw"
qemu-img compare -q -f raw -F raw "$TESTDIR/at2.raw" "$TESTDIR/src2.raw" ||
    fail "backup $ID2 received alongside another disk differs from the source"
no_disk_locks "two receives at once"
echo "ok: disks $CHAIN_IMG and $SINGLE_IMG received at once"

# ---- import: its sender stalls ---------------------------------------------

ovagent restore --repo "$R" "$SINGLE_IMG" --output - >"$TESTDIR/restore.strm"
in=$(fifo imp)
ovagent import --to "$TESTDIR/imported.raw" --io-timeout 1 <"$in" 2>"$TESTDIR/imp.err" &
ipid=$!
exec {wfd}>"$in"
head -c $((256 * 1024)) "$TESTDIR/restore.strm" >&"$wfd"
finish "$ipid"
exec {wfd}>&-
[ "$RC" -eq 7 ] || { cat "$TESTDIR/imp.err" >&2; fail "stalled import: exit $RC, expected 7"; }
grep -q "the sender of the stream on standard input sent nothing for 1 s (io_timeout)" \
    "$TESTDIR/imp.err" || fail "stalled import: $(cat "$TESTDIR/imp.err")"
! compgen -G "$TESTDIR/imported.raw*" >/dev/null ||
    fail "the stalled import left $(echo "$TESTDIR"/imported.raw*)"

# ---- export-chain: a reader of standard output that takes nothing ---------

# The pipe stays open (a closed one is EPIPE, another failure): the
# reader holds it and reads nothing.
out=$(fifo reader)
ovagent export-chain "$CHAIN_IMG" --output - --io-timeout 2 >"$out" 2>"$TESTDIR/send.err" &
spid=$!
exec {rfd}<"$out"
finish "$spid"
exec {rfd}<&-
[ "$RC" -eq 7 ] || { cat "$TESTDIR/send.err" >&2; fail "export to a stalled reader: exit $RC, expected 7"; }
grep -q "the reader of standard output took nothing for 2 s (io_timeout)" "$TESTDIR/send.err" ||
    fail "export to a stalled reader: $(cat "$TESTDIR/send.err")"

# --io-timeout and io_timeout are checked like every other value.
expect_exit 2 ovagent receive --repo "$R" --io-timeout 86401 <"$TESTDIR/inc.strm"
grep -q -- "--io-timeout takes whole seconds from 1 to 86400, or 0 for no limit, not '86401'" \
    "$TESTDIR/err" || fail "--io-timeout 86401: $(cat "$TESTDIR/err")"
expect_exit 2 env OVAGENT_IO_TIMEOUT=-1 ovagent receive --repo "$R" <"$TESTDIR/inc.strm"
grep -q "OVAGENT_IO_TIMEOUT: io_timeout: invalid value '-1'" "$TESTDIR/err" ||
    fail "OVAGENT_IO_TIMEOUT=-1: $(cat "$TESTDIR/err")"

echo "PASS: stalled senders and readers time out; receives of other disks and readers run alongside"
