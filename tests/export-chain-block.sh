#!/bin/bash
# export-chain on a block domain (V5, LVs on a loop-device PV, activation
# through the configured lvm command): a full backup of the raw <- qcow2 <-
# qcow2 chain and two incrementals after snapshots, pulled through sshd.
# The sender activates what it reads and deactivates only that, leaves no
# activation record, and sends a qcow2 LV only up to its image end offset.

. "$top_srcdir/tests/functions.sh"
# shellcheck source=../scripts/testbed/chain-e2e.sh
. "$top_srcdir/scripts/testbed/chain-e2e.sh"

requires_root
requires_core lvm
requires_core losetup
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires_core ssh
requires_core sshd

MiB=$((1024 * 1024))
TB=$TESTDIR/tb
cleanup_add blockdomain.sh down "$TB"
blockdomain.sh up "$TB" >/dev/null
. "$TB/env"
. "$TB/ids"
# The libvirt test driver: one running VM, using none of these volumes.
export OVAGENT_LIBVIRT_URI=test:///default

lvm () {
    local sub=$1
    shift
    "$OVAGENT_LVM_COMMAND" "$sub" --devices "$OVAGENT_LVM_DEVICES" "$@"
}

lv_size () {
    local s
    s=$(lvm lvs --noheadings --units b --nosuffix -o lv_size "$SD/$1")
    echo "${s//[[:space:]]/}"
}

# The qcow2 image end offset of a volume, read from its activated LV.
end_offset () {
    local v=$1 was_active='' off
    [ -e "/dev/$SD/$v" ] && was_active=1
    [ -n "$was_active" ] || lvm lvchange --available y "$SD/$v"
    # Without its backing chain, which need not be active.
    off=$(qemu-img check -U --output=json \
        "json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":{\"driver\":\"host_device\",\"filename\":\"/dev/$SD/$v\"}}" |
        jq '."image-end-offset"')
    [ -n "$was_active" ] || lvm lvchange --available n "$SD/$v"
    echo "$off"
}

# After an export: none of the chain's LVs active unless listed as active
# before, and no activation record left in state_dir.
check_released () {
    local what=$1 v k keep
    shift
    for v in "${CE_VOLS[@]}"; do
        keep=''
        for k in "$@"; do
            [ "$k" = "$v" ] && keep=1
        done
        if [ -n "$keep" ]; then
            [ -e "/dev/$SD/$v" ] || fail "$what: $v was active before the export and is not after it"
        else
            [ ! -e "/dev/$SD/$v" ] || fail "$what: /dev/$SD/$v left active"
        fi
    done
    [ -z "$(ls -A "$OVAGENT_STATE_DIR/activations" 2>/dev/null)" ] ||
        fail "$what: activation records left: $(ls "$OVAGENT_STATE_DIR/activations")"
}

# The repository copy of qcow2 volume V of STEP is the LV up to its image
# end offset, not the whole LV.
check_qcow2_copy () {
    local step=$1 v=$2 f end
    f=$CE_REPO/disks/$CHAIN_IMG/${CE_ID[$step]}/$v.qcow2
    end=$(end_offset "$v")
    [ "$(stat -c %s "$f")" -eq "$end" ] ||
        fail "step $step: $f is $(stat -c %s "$f") bytes; the LV's image end offset is $end (LV $(lv_size "$v") bytes)"
}

ce_init "$SD" "$CHAIN_IMG" "$TB/env"
ce_volume "$CHAIN_BASE" raw
ce_volume "$CHAIN_MID" qcow2
ce_volume "$CHAIN_TOP" qcow2
check_released "before the first export"

# Full, through the pipe.
ce_pull 1
check_released "full backup"
check_qcow2_copy 1 "$CHAIN_MID"
check_qcow2_copy 1 "$CHAIN_TOP"
repo_base=$CE_REPO/disks/$CHAIN_IMG/${CE_ID[1]}/$CHAIN_BASE.raw
[ "$(stat -c %s "$repo_base")" -eq $((1024 * MiB)) ] ||
    fail "the raw base LV's copy is $(stat -c %s "$repo_base") bytes, not its 1 GiB capacity"
ce_check_restore 1
ce_check_repo_chain 1
ce_check_backing_strings 1

# A snapshot (a new LV with its tags and slot), guest writes, and an
# incremental through a stream file, to read the sender's own numbers.
ce_snapshot
snap1=$(ce_leaf)
ce_write 0x44 6M 1M 100M 2M
ce_write zero 1M 1M
ce_pull_file 2 --since "$CHAIN_TOP"
check_released "first incremental"
check_qcow2_copy 2 "$snap1"
lvsize=$(lv_size "$snap1")
end=$(end_offset "$snap1")
jq -e --argjson eo "$end" --argjson lv "$lvsize" \
    '.bytes_read <= $eo and .bytes_read * 4 < $lv' "$TESTDIR/export-2.json" >/dev/null || {
    ce_show "$TESTDIR/export-2.json"
    fail "first incremental: bytes_read is over the image end offset $end of a $lvsize-byte LV"
}
ce_check_restore 2
ce_check_repo_chain 2
ce_check_backing_strings 2

# Another, with the new leaf already active (as for a VM that was started
# and is off again): the sender refreshes it and leaves it active.
ce_snapshot
snap2=$(ce_leaf)
ce_write 0x55 0 64k 3M 2M 512M 1M
lvm lvchange --available y "$SD/$snap2"
cleanup_add "$OVAGENT_LVM_COMMAND" lvchange --devices "$OVAGENT_LVM_DEVICES" --available n "$SD/$snap2"
ce_pull 3 --since "$snap1"
check_released "second incremental" "$snap2"
check_qcow2_copy 3 "$snap2"
lvm lvchange --available n "$SD/$snap2"
check_released "after deactivating $snap2"
ce_check_restore 3
ce_check_repo_chain 3
ce_check_backing_strings 3

ce_final_checks

echo "PASS: export-chain on a block domain, full and two incrementals"
