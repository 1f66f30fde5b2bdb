#!/bin/bash
# export-chain on a GlusterFS domain read through its real FUSE mount, pulled
# through sshd into receive: a full backup and two incrementals after
# snapshots made on the mount; every restore equals the source at that point.

. "$top_srcdir/tests/functions.sh"
# shellcheck source=../scripts/testbed/chain-e2e.sh
. "$top_srcdir/scripts/testbed/chain-e2e.sh"

requires_core glusterd
requires_core gluster
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires_core ssh
requires_core sshd
requires_root
[ -e /dev/fuse ] || skip "no /dev/fuse"

R=$TESTDIR/gluster
DC=$TESTDIR/data-center
cleanup_add gluster.sh down "$R"
gluster.sh up "$R" "$DC" >/dev/null
. "$R/ids"
. "$R/env"
export OVAGENT_LVM_DEVICES=
export OVAGENT_STATE_DIR=$TESTDIR/state OVAGENT_RUN_DIR=$TESTDIR/run
# The libvirt test driver: one running VM, using none of these volumes.
export OVAGENT_LIBVIRT_URI=test:///default
mkdir -p "$OVAGENT_STATE_DIR" "$OVAGENT_RUN_DIR"

# The volumes really are on the FUSE mount.
[ "$(stat -f -c %T "$GLUSTER_DIR")" = fuseblk ] || [ "$(stat -f -c %T "$GLUSTER_DIR")" = fuse ] ||
    fail "$GLUSTER_DIR is not on a FUSE mount: $(stat -f -c %T "$GLUSTER_DIR")"

ce_init "$GLUSTER_DIR" "$GLUSTER_IMG"
ce_volume "$GLUSTER_BASE" qcow2
ce_volume "$GLUSTER_TOP" qcow2

ce_pull 1
ce_check_restore 1
ce_check_repo_chain 1
ce_check_backing_strings 1

ce_snapshot
ce_write 0x73 512k 1M 200M 4M
ce_pull 2 --since "${CE_TOP[1]}"
ce_check_restore 2
ce_check_repo_chain 2
ce_check_backing_strings 2

ce_snapshot
ce_write 0x74 1M 64k 900M 2M
ce_write zero 0 256k
ce_pull 3 --since "${CE_TOP[2]}"
ce_check_restore 3
ce_check_repo_chain 3
ce_check_backing_strings 3

ce_final_checks

echo "PASS: export-chain on a GlusterFS domain through its FUSE mount"
