#!/bin/bash
# export-chain on the V4 POSIX domain whose leaf still has the legacy
# "../<img>/<vol>" backing string: the repository's files get backing strings
# of their own (read from each file's header, without opening the chain),
# and restores equal the source after a full and two incrementals.

. "$top_srcdir/tests/functions.sh"
# shellcheck source=../scripts/testbed/chain-e2e.sh
. "$top_srcdir/scripts/testbed/chain-e2e.sh"

requires_root
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires_core ssh
requires_core sshd

start_filedomain
export OVAGENT_LVM_DEVICES=
export OVAGENT_STATE_DIR=$TESTDIR/state OVAGENT_RUN_DIR=$TESTDIR/run
# The libvirt test driver: one running VM, using none of these volumes.
export OVAGENT_LIBVIRT_URI=test:///default
mkdir -p "$OVAGENT_STATE_DIR" "$OVAGENT_RUN_DIR"

# The fixture is what this test is about.
src_top=$POSIX_DIR/images/$LEGACY_IMG/$LEGACY_TOP
[ "$(ce_backing_of "$src_top")" = "../$LEGACY_IMG/$LEGACY_BASE" ] ||
    fail "the fixture's leaf $src_top has no legacy backing string"
grep -qx 'SIZE=2097152' "$POSIX_DIR/images/$LEGACY_IMG/$LEGACY_TOP.meta" ||
    fail "the fixture's leaf record is not a V4 one (SIZE)"

ce_init "$POSIX_DIR" "$LEGACY_IMG"
ce_volume "$LEGACY_BASE" qcow2
ce_volume "$LEGACY_TOP" qcow2

ce_pull 1
ce_check_backing_strings 1
ce_check_repo_chain 1
ce_check_restore 1
# The source is only read.
[ "$(ce_backing_of "$src_top")" = "../$LEGACY_IMG/$LEGACY_BASE" ] ||
    fail "the export changed the source's backing string"

ce_snapshot
snap1=$(ce_leaf)
grep -qx 'VOLTYPE=INTERNAL' "$POSIX_DIR/images/$LEGACY_IMG/$LEGACY_TOP.meta" ||
    fail "snapshot.sh left $LEGACY_TOP a LEAF"
ce_write 0x63 1536k 1M 300M 3M
ce_pull 2 --since "$LEGACY_TOP"
ce_check_backing_strings 2
ce_check_repo_chain 2
ce_check_restore 2

ce_snapshot
ce_write 0x64 0 512k
ce_write zero 3M 1M
ce_pull 3 --since "$snap1"
ce_check_backing_strings 3
ce_check_repo_chain 3
ce_check_restore 3

ce_final_checks

echo "PASS: export-chain on a V4 domain with legacy backing strings"
