#!/bin/bash
# export-chain on the NFS-like V5 file domain, pulled through sshd into
# receive: a full backup of the raw <- qcow2 <- qcow2 chain, then two
# incrementals after snapshots; every restore equals the source at that point.

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

ce_init "$NFS_DIR" "$CHAIN_IMG"
ce_volume "$CHAIN_BASE" raw
ce_volume "$CHAIN_MID" qcow2
ce_volume "$CHAIN_TOP" qcow2

# Full.
ce_pull 1
ce_check_restore 1
ce_check_repo_chain 1
ce_check_backing_strings 1

# A snapshot; the guest overwrites part of every layer, writes new data and
# zeroes part of the raw base's data (qcow2 zero clusters).
ce_snapshot
ce_write 0x44 6M 1M 100M 2M 1020M 4M
ce_write zero 1M 1M
ce_pull 2 --since "${CE_TOP[1]}"
ce_check_restore 2
ce_check_repo_chain 2
ce_check_backing_strings 2

# And again.
ce_snapshot
ce_write 0x55 0 64k 3M 2M 512M 1M
ce_write zero 100M 1M
ce_pull 3 --since "${CE_TOP[2]}"
ce_check_restore 3
ce_check_repo_chain 3
ce_check_backing_strings 3

# verify, and each of the three backups restored again by its id.
ce_final_checks

# The source chain is untouched by the exports: still LEGAL, GEN unchanged.
for v in "${CE_VOLS[@]}"; do
    grep -qx 'LEGALITY=LEGAL' "$NFS_DIR/images/$CHAIN_IMG/$v.meta" ||
        fail "volume $v is no longer LEGAL after the exports"
    grep -qx 'GEN=0' "$NFS_DIR/images/$CHAIN_IMG/$v.meta" ||
        fail "the GEN of volume $v changed during the exports"
done

echo "PASS: export-chain on a V5 file domain, full and two incrementals"
