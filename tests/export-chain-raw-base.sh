#!/bin/bash
# export-chain of a chain whose base is a large sparse raw volume: its holes
# are skipped (hole_bytes, a stream far smaller than the volume), the
# repository's raw file stays sparse, and a full plus two incrementals with
# qcow2 snapshots on top restore to the source at each point.

. "$top_srcdir/tests/functions.sh"
# shellcheck source=../scripts/testbed/chain-e2e.sh
. "$top_srcdir/scripts/testbed/chain-e2e.sh"

requires_root
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires_core ssh
requires_core sshd

GiB=$((1024 * 1024 * 1024))
MiB=$((1024 * 1024))
CAP=$((8 * GiB))

start_filedomain
export OVAGENT_LVM_DEVICES=
export OVAGENT_STATE_DIR=$TESTDIR/state OVAGENT_RUN_DIR=$TESTDIR/run
# The libvirt test driver: one running VM, using none of these volumes.
export OVAGENT_LIBVIRT_URI=test:///default
mkdir -p "$OVAGENT_STATE_DIR" "$OVAGENT_RUN_DIR"

# A new 8 GiB raw disk holding 4 MiB of data, at its start, middle and end.
read -r IMG BASE < <(snapshot.sh disk "$NFS_DIR" "$CAP" --raw)
ce_init "$NFS_DIR" "$IMG"
ce_volume "$BASE" raw
ce_write 0x11 0 1M 3G 2M $((CAP - MiB)) 1M
base_path=$NFS_DIR/images/$IMG/$BASE
[ "$(stat -c %s "$base_path")" -eq "$CAP" ] || fail "the raw base is not $CAP bytes long"

# Full: the raw base alone, its holes skipped.
ce_pull_file 1
res=$TESTDIR/export-1.json
stream_size=$(stat -c %s "$TESTDIR/1.stream")
jq -e --argjson cap "$CAP" --argjson mib "$MiB" '
    .hole_bytes >= $cap - 64 * $mib and .hole_bytes <= $cap - 4 * $mib
    and .bytes_read >= 4 * $mib and .bytes_read <= 64 * $mib
    and .data_bytes >= 4 * $mib
    and .bytes_read + .hole_bytes == $cap' "$res" >/dev/null || {
    ce_show "$res"
    fail "export of the sparse raw base: expected ~$((CAP / MiB - 4)) MiB of holes skipped and ~4 MiB read"
}
[ "$stream_size" -lt $((64 * MiB)) ] ||
    fail "the stream of an 8 GiB raw volume holding 4 MiB is $stream_size bytes"
ce_check_restore 1
ce_check_repo_chain 1
ce_check_backing_strings 1
repo_base=$CE_REPO/disks/$IMG/${CE_ID[1]}/$BASE.raw
[ "$(stat -c %s "$repo_base")" -eq "$CAP" ] ||
    fail "$repo_base is $(stat -c %s "$repo_base") bytes, not the volume's $CAP"
allocated=$(( $(stat -c %b "$repo_base") * $(stat -c %B "$repo_base") ))
[ "$allocated" -lt $((64 * MiB)) ] ||
    fail "$repo_base is not sparse: $allocated bytes allocated for 4 MiB of data"

# A qcow2 snapshot on the raw base, through the pipe.
ce_snapshot
ce_write 0x22 512k 1M 4G 8M
ce_write zero $((3 * GiB + MiB)) 512k
ce_pull 2 --since "$BASE"
ce_check_restore 2
ce_check_repo_chain 2
ce_check_backing_strings 2

# And another, through a file again: only the new qcow2 volume moves.
ce_snapshot
ce_write 0x33 $((CAP - 2 * MiB)) 2M
ce_pull_file 3 --since "${CE_TOP[2]}"
jq -e --argjson mib "$MiB" '.bytes_read <= 16 * $mib' "$TESTDIR/export-3.json" >/dev/null || {
    ce_show "$TESTDIR/export-3.json"
    fail "an incremental of one small qcow2 volume read more than 16 MiB"
}
ce_check_restore 3
ce_check_repo_chain 3
ce_check_backing_strings 3

ce_final_checks

echo "PASS: export-chain of a chain with a sparse raw base"
