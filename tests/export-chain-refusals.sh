#!/bin/bash
# export-chain refuses what it must, with the documented exit codes: bad
# arguments, unknown disks and volumes, broken chains, ILLEGAL volumes,
# metadata changed during the copy, a terminal as output, and the leaf a
# running VM writes to (the default export stops at its parent).
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

requires_core qemu-img
requires_core qemu-io
requires_core jq
requires_root
command -v ovagent >/dev/null || fail "ovagent not built"

start_filedomain
export OVAGENT_LVM_DEVICES=
export OVAGENT_STATE_DIR=$TESTDIR/state
# libvirt's test driver: reachable, and none of its VMs uses our volumes.
export OVAGENT_LIBVIRT_URI=test:///default

# volumes IMG: the chain of IMG as expected.json lists it, base first.
volumes () {
    jq -r --arg img "$1" '.domains[].images[] | select(.uuid == $img) | .volumes[].uuid' \
        "$FD/expected.json"
}

# meta STREAM: the META frame's JSON (the first frame; never compressed).
meta () {
    local len
    len=$(od -An -t u4 -j 40 -N 4 "$1" | tr -d ' ')
    head -c $(( 64 + len )) "$1" | tail -c "$len"
}

# expect_message TEXT: stderr of the last expect_exit mentions TEXT.
expect_message () {
    grep -qF -- "$1" "$TESTDIR/err" || {
        cat "$TESTDIR/err" >&2
        fail "the error does not mention '$1'"
    }
}

OUT=$TESTDIR/stream
nowhere=/dev/null

# ---- usage (2) ----
expect_exit 2 ovagent export-chain not-a-uuid --output "$nowhere"
expect_exit 2 ovagent export-chain "$CHAIN_IMG"
expect_message "--output"
expect_exit 2 ovagent export-chain "$CHAIN_IMG" --output "$nowhere" --target ssh://h/r
expect_exit 2 ovagent export-chain "$CHAIN_IMG" --output "$nowhere" --since 1234
expect_exit 2 ovagent export-chain "$CHAIN_IMG" --output "$nowhere" --compress=25
expect_exit 2 ovagent export-chain "$CHAIN_IMG" --target 'ssh://h/r;rm -rf /'
expect_exit 2 ovagent export-chain "$CHAIN_IMG" --output "$nowhere" \
    --since "$CHAIN_MID" --to "$CHAIN_BASE"
# An existing file is never overwritten.
echo keep >"$OUT"
expect_exit 2 ovagent export-chain "$CHAIN_IMG" --output "$OUT"
expect_message "exists"
[ "$(cat "$OUT")" = keep ] || fail "an existing --output file was changed"
rm -f "$OUT"

# Standard output on a terminal.
if command -v script >/dev/null; then
    rc=0
    script -qec "ovagent export-chain $CHAIN_IMG --output -" /dev/null \
        >"$TESTDIR/tty.out" 2>&1 || rc=$?
    [ "$rc" -eq 2 ] || { cat "$TESTDIR/tty.out" >&2; fail "--output - to a terminal: exit $rc, expected 2"; }
    grep -q "terminal" "$TESTDIR/tty.out" || fail "the terminal refusal does not say why"
else
    echo "SKIP part: no script(1) to give ovagent a terminal"
fi

# ---- not found (3) ----
expect_exit 3 ovagent export-chain "$(cat /proc/sys/kernel/random/uuid)" --output "$nowhere"
expect_exit 3 ovagent export-chain "$CHAIN_IMG" --output "$nowhere" --since "$SINGLE_VOL"
expect_message "is not in the chain of disk $CHAIN_IMG"
expect_message "$CHAIN_BASE, $CHAIN_MID, $CHAIN_TOP"
expect_exit 3 ovagent export-chain "$CHAIN_IMG" --output "$nowhere" --to "$SINGLE_VOL"
# Nothing newer than --since.
expect_exit 3 ovagent export-chain "$CHAIN_IMG" --output "$nowhere" --since "$CHAIN_TOP"
expect_message "nothing to send"

# ---- integrity (6): chains that are not one line, ILLEGAL volumes ----
for img in "$TWOLEAVES_IMG" "$LOOP_IMG" "$ORPHAN_IMG" "$CLEARED_IMG"; do
    expect_exit 6 ovagent export-chain "$img" --output "$OUT"
    expect_message "chain problems"
    [ ! -e "$OUT" ] || fail "a refused export left $OUT behind"
done
mapfile -t ill < <(volumes "$ILLEGAL_IMG")
expect_exit 6 ovagent export-chain "$ILLEGAL_IMG" --output "$OUT"
expect_message "${ill[1]}"
expect_message "not LEGAL"
[ ! -e "$OUT" ] || fail "a refused export left $OUT behind"
# The LEGAL base alone is fine.
expect_exit 0 ovagent export-chain "$ILLEGAL_IMG" --to "${ill[0]}" --output "$nowhere"

# ---- what is sent ----
expect_exit 0 ovagent export-chain "$CHAIN_IMG" --output "$OUT" --json
jq -e --arg b "$CHAIN_BASE" --arg m "$CHAIN_MID" --arg t "$CHAIN_TOP" \
    '.result == "ok" and .volumes == [$b, $m, $t] and .bytes_sent > 0' "$TESTDIR/out" >/dev/null ||
    fail "unexpected result: $(cat "$TESTDIR/out")"
[ "$(stat -c %a "$OUT")" = 600 ] || fail "$OUT is not mode 0600"
meta "$OUT" | jq -e --arg img "$CHAIN_IMG" --arg b "$CHAIN_BASE" --arg m "$CHAIN_MID" \
    --arg t "$CHAIN_TOP" --arg sd "$NFS_SD" '
    .format == "ovagent-stream" and .mode == "chain" and .disk == $img and .since == null
    and .domain == {uuid: $sd, kind: "file", storage: "nfs", version: 5}
    and ([.volumes[].uuid] == [$b, $m, $t])
    and .volumes[0].parent == null and .volumes[0].format == "raw"
    and .volumes[1].parent == $b and .volumes[1].qcow2_compat == "1.1"
    and .volumes[2].backing == $m and .volumes[2].metadata.PUUID == $m
    and .volumes[2].metadata.VOLTYPE == "LEAF" and .volumes[2].generation == 0' >/dev/null ||
    { meta "$OUT" >&2; fail "unexpected META for a full export"; }
rm -f "$OUT"

expect_exit 0 ovagent export-chain "$CHAIN_IMG" --since "$CHAIN_MID" --output "$OUT"
meta "$OUT" | jq -e --arg m "$CHAIN_MID" --arg t "$CHAIN_TOP" '
    .since == $m and [.volumes[].uuid] == [$t]' >/dev/null ||
    { meta "$OUT" >&2; fail "unexpected META for --since"; }
rm -f "$OUT"

# ---- metadata changed while the volumes were read (6) ----
# Through a FIFO the sender blocks once the pipe is full; the top volume's
# GEN changes meanwhile, as a merge or an extend would change it.
FIFO=$TESTDIR/fifo
mkfifo "$FIFO"
top_meta=$NFS_DIR/images/$CHAIN_IMG/$CHAIN_TOP.meta
cp "$top_meta" "$TESTDIR/top.meta.orig"
rc=0
ovagent export-chain "$CHAIN_IMG" --output "$FIFO" >"$TESTDIR/gen.out" 2>"$TESTDIR/gen.err" &
pid=$!
exec 3<"$FIFO"
dd bs=65536 count=1 iflag=fullblock status=none <&3 >"$TESTDIR/gen.stream"
sed 's/^GEN=0$/GEN=1/' "$TESTDIR/top.meta.orig" >"$top_meta.new"
mv -f "$top_meta.new" "$top_meta"
cat <&3 >>"$TESTDIR/gen.stream"
exec 3<&-
wait "$pid" || rc=$?
[ "$rc" -eq 6 ] || { cat "$TESTDIR/gen.err" >&2; fail "GEN changed during the copy: exit $rc, expected 6"; }
grep -q "changed while it was read (generation 0 → 1)" "$TESTDIR/gen.err" ||
    { cat "$TESTDIR/gen.err" >&2; fail "the GEN change is not explained"; }
# The stream ends without its trailer, so no receiver takes it for complete.
if grep -aq '"frames":' "$TESTDIR/gen.stream"; then
    fail "the stream of a changed chain has a STREAM_END"
fi
cp "$TESTDIR/top.meta.orig" "$top_meta"

# ---- libvirt unreachable: a LEAF only when --to names it ----
(
    export OVAGENT_LIBVIRT_URI="qemu+unix:///system?socket=$TESTDIR/no-libvirt-sock"
    expect_exit 4 ovagent export-chain "$CHAIN_IMG" --output "$nowhere"
    expect_message "--to"
    expect_exit 0 ovagent export-chain "$CHAIN_IMG" --to "$CHAIN_TOP" --output "$nowhere"
    expect_exit 0 ovagent export-chain "$CHAIN_IMG" --to "$CHAIN_MID" --output "$nowhere"
)

# ---- a running VM writes to the leaf ----
if ! command -v libvirtd >/dev/null || ! command -v virsh >/dev/null ||
   ! command -v qemu-system-x86_64 >/dev/null; then
    if [ "${CI:-}" = true ]; then
        fail "libvirtd, virsh or qemu-system-x86_64 missing (CI=true: not skipping)"
    fi
    echo "SKIP part: no libvirt to run a VM"
    echo "PASS: export-chain refusals"
    exit 0
fi
export OVAGENT_LIBVIRT_URI=qemu:///system
LV=$TESTDIR/libvirt
cleanup_add libvirt.sh down "$LV"
libvirt.sh up "$LV"
VM=ovagent-test-$(head -c 8 /proc/sys/kernel/random/uuid)
cleanup_add vm.sh destroy "$LV" "$VM"
vm.sh create "$LV" "$VM" "$NFS_DIR/images/$CHAIN_IMG/$CHAIN_TOP" >/dev/null

# Default: up to the parent of the leaf the VM writes to.
expect_exit 0 ovagent export-chain "$CHAIN_IMG" --output "$OUT" --json
jq -e --arg b "$CHAIN_BASE" --arg m "$CHAIN_MID" '.volumes == [$b, $m]' "$TESTDIR/out" >/dev/null ||
    fail "with $VM running, the default export is not base..mid: $(cat "$TESTDIR/out")"
meta "$OUT" | jq -e --arg b "$CHAIN_BASE" --arg m "$CHAIN_MID" \
    '[.volumes[].uuid] == [$b, $m]' >/dev/null || fail "META does not stop at the parent"
rm -f "$OUT"

# Asking for the leaf: busy, naming the VM.
expect_exit 4 ovagent export-chain "$CHAIN_IMG" --to "$CHAIN_TOP" --output "$OUT"
expect_message "$VM"
[ ! -e "$OUT" ] || fail "a refused export left $OUT behind"
# After mid there is only the leaf in use: busy, take a snapshot first.
expect_exit 4 ovagent export-chain "$CHAIN_IMG" --since "$CHAIN_MID" --output "$nowhere"
expect_message "snapshot"

vm.sh destroy "$LV" "$VM"

# --json with the stream on stdout: the stream alone goes to stdout (the
# result must not be appended to it), so a receiver commits it.
ovagent export-chain "$CHAIN_IMG" --output - --json 2>"$TESTDIR/err" |
    ovagent receive --repo "$TESTDIR/json-repo" --json >"$TESTDIR/out" ||
    fail "export-chain --output - --json | receive failed: $(cat "$TESTDIR/err")"
jq -e '.result == "ok"' "$TESTDIR/out" >/dev/null || fail "receive result: $(cat "$TESTDIR/out")"
echo "PASS: export-chain refusals"
