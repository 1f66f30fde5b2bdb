#!/bin/bash
# A running libvirt domain using a file domain's 3-volume chain: "info" shows
# which VM uses each volume and whether it writes to it, and forgets the VM
# once it is destroyed.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

# shellcheck disable=SC2119  # no component beyond the common ones
requires_vm_components
command -v ovagent >/dev/null || fail "ovagent not built"

start_filedomain
export OVAGENT_LVM_DEVICES=
export OVAGENT_LIBVIRT_URI=qemu:///system

# The leaf of the raw <- qcow2 <- qcow2 chain; QEMU follows the relative
# backing strings to the other two volumes.
top_path=$(jq -r --arg img "$CHAIN_IMG" '
    .domains[].images[] | select(.uuid == $img) | .volumes[-1].path' "$FD/expected.json")
[ -f "$top_path" ] || fail "no leaf volume for image $CHAIN_IMG in $FD/expected.json"

start_libvirt

new_vm_name test
vm_uuid=$(vm.sh create "$LV" "$VM" "$top_path")
uuid_re='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
[[ $vm_uuid =~ $uuid_re ]] || fail "vm.sh create printed no UUID: $vm_uuid"

# A guest write, the way a running guest dirties its disk.
vm.sh write "$VM" 0 'write -P 0x5a 0 64k'
vm.sh write "$VM" 0 'write -P 0x5b 8M 128k'

expect_exit 0 ovagent info "$CHAIN_IMG" --json
cp "$TESTDIR/out" "$TESTDIR/info-running.json"
check () {
    local what=$1 filter=$2
    jq -e --arg vm "$VM" --arg uuid "$vm_uuid" \
          --arg base "$CHAIN_BASE" --arg mid "$CHAIN_MID" --arg top "$CHAIN_TOP" \
          "$filter" "$TESTDIR/out" >/dev/null || {
        cat "$TESTDIR/out" >&2
        fail "$what"
    }
}
check "info does not list the chain base, mid, top" \
    '[.volumes[].uuid] == [$base, $mid, $top]'
check "the leaf is not shown as written by $VM (vda)" '
    (.volumes[] | select(.uuid == $top) | .used_by)
    == [{vm: $vm, vm_uuid: $uuid, target: "vda", writable: true}]'
check "the base is not shown as read by $VM" '
    (.volumes[] | select(.uuid == $base) | .used_by)
    == [{vm: $vm, vm_uuid: $uuid, target: "vda", writable: false}]'
check "the middle volume is not shown as read by $VM" '
    (.volumes[] | select(.uuid == $mid) | .used_by)
    == [{vm: $vm, vm_uuid: $uuid, target: "vda", writable: false}]'

# An image no VM uses.
expect_exit 0 ovagent info "$SINGLE_IMG" --json
check "an image no VM uses shows users" \
    'all(.volumes[]; .used_by == [])'

vm.sh destroy "$LV" "$VM"
virsh -c qemu:///system domid "$VM" >/dev/null 2>&1 && fail "$VM still exists after destroy"

expect_exit 0 ovagent info "$CHAIN_IMG" --json
check "the chain still shows a user after the VM was destroyed" \
    '(.volumes | length) == 3 and all(.volumes[]; .used_by == [])'

# The guest's writes landed in the leaf.
qemu-io -r -f qcow2 -c 'read -P 0x5a 0 64k' -c 'read -P 0x5b 8M 128k' "$top_path" \
    >"$TESTDIR/qemu-io.out" || fail "qemu-io failed on $top_path"
grep -q 'Pattern verification failed' "$TESTDIR/qemu-io.out" &&
    fail "the guest's writes are not in $top_path"

echo "PASS: info shows the running VM"
