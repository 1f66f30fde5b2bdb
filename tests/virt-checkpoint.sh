#!/bin/bash
# Checkpoints and pull-mode backups of a running domain through virt/
# (backup-job.c, checkpoint.c, bitmaps.c; driven by virt-checkpoint-driver):
# full, incremental, checkpoints forgotten by a transient domain restart and
# redefined, delete, and a scratch directory too small refused before the VM
# is touched.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

requires_vm_components nbdinfo

DRIVER=$top_builddir/tests/virt-checkpoint-driver
[ -x "$DRIVER" ] || fail "virt-checkpoint-driver not built (make check builds it)"
URI=qemu:///system
MiB=$((1024 * 1024))

start_libvirt

DISKS=$TESTDIR/disks
mkdir -p "$DISKS"
for d in vda vdb; do
    qemu-img create -q -f qcow2 -o compat=1.1 "$DISKS/$d.qcow2" 64M
done

new_vm_name cp
vm_uuid=$(vm.sh create "$LV" "$VM" "$DISKS/vda.qcow2" "$DISKS/vdb.qcow2")

RUN=$TESTDIR/run
SCRATCH=$TESTDIR/scratch
STATE=$TESTDIR/state
drv () {
    "$DRIVER" --uri "$URI" --run-dir "$RUN" --scratch-dir "$SCRATCH" \
        --state-dir "$STATE" "$@"
}
new_uuid () {
    cat /proc/sys/kernel/random/uuid
}
json_check () {
    local what=$1 file=$2; shift 2
    jq -e "$@" "$file" >/dev/null || {
        cat "$file" >&2
        fail "$what"
    }
}
no_job () {
    vm_no_job "$URI" "$VM" "$1"
}
# dirty DISK_INDEX: the dirty extents "offset+length ..." of the running backup.
dirty () {
    local uri ctx
    uri=$(jq -r ".disks[$1].uri" "$TESTDIR/begin.json")
    ctx=$(jq -r ".disks[$1].bitmap_context" "$TESTDIR/begin.json")
    nbdinfo --json --map="$ctx" "$uri" |
        jq -r '[.[] | select(.type == 1) | "\(.offset)+\(.length)"] | join(" ")'
}
end_backup () {
    local id sock
    id=$(jq -r .backup_id "$TESTDIR/begin.json")
    sock=$(jq -r .socket "$TESTDIR/begin.json")
    expect_exit 0 drv end "$VM" "$id"
    [ ! -e "$sock" ] || fail "socket $sock still exists after end"
    [ ! -e "$SCRATCH/backup-$id" ] || fail "scratch directory left after end"
    no_job "after end"
}

# The disks, as libvirt and their headers say.
expect_exit 0 drv disks "$VM"
json_check "disks not listed as qcow2 that can be backed up" "$TESTDIR/out" \
    --arg d "$DISKS" '[.[] | {target, path, format, unsupported, virtual_size}] ==
    [{target: "vda", path: "\($d)/vda.qcow2", format: "qcow2", unsupported: null, virtual_size: 67108864},
     {target: "vdb", path: "\($d)/vdb.qcow2", format: "qcow2", unsupported: null, virtual_size: 67108864}]'

# Full backup with a first checkpoint; QEMU must be able to bind the socket
# under a run directory it could not write to before.
CP1=$(new_uuid)
vm.sh write "$VM" 0 "write -P 0x11 0 1M"
expect_exit 0 drv begin-full "$VM" "$CP1"
cp "$TESTDIR/out" "$TESTDIR/begin.json"
json_check "full backup did not export both disks without bitmaps" "$TESTDIR/begin.json" \
    '[.disks[] | {target, export, bitmap_context, incremental}] ==
     [{target: "vda", export: "vda", bitmap_context: null, incremental: false},
      {target: "vdb", export: "vdb", bitmap_context: null, incremental: false}]'
sock=$(jq -r .socket "$TESTDIR/begin.json")
[ -S "$sock" ] || fail "no NBD socket at $sock"
[ "$(stat -c %a "$(dirname "$sock")")" = 770 ] || fail "socket directory is not 0770"
uri=$(jq -r '.disks[0].uri' "$TESTDIR/begin.json")
[[ $uri == "nbd+unix:///vda?socket=$sock" ]] || fail "unexpected NBD URI $uri"
nbdinfo --json --map "$uri" > "$TESTDIR/map.json" || fail "nbdinfo --map failed on $uri"
json_check "the full export does not show the 1 MiB written as data" "$TESTDIR/map.json" \
    '.[0] | .offset == 0 and .length >= 1048576 and (.type % 2) == 0'
info=$(virsh -q -c "$URI" domjobinfo "$VM") || fail "domjobinfo failed"
grep -Eq '^Job type: +Unbounded' <<<"$info" || {
    echo "$info" >&2
    fail "no backup job while the export is open"
}
end_backup
# Idempotent: ending again finds no job and succeeds.
expect_exit 0 drv end "$VM" "$(jq -r .backup_id "$TESTDIR/begin.json")"
expect_exit 0 drv list "$VM"
json_check "checkpoint $CP1 not created" "$TESTDIR/out" --arg c "$CP1" '. == [$c]'

# Guest writes, then an incremental shows exactly them.
vm.sh write "$VM" 0 "write -P 0x55 1M 64k"
vm.sh write "$VM" 1 "write -P 0x66 2M 128k"
CP2=$(new_uuid)
expect_exit 0 drv begin-inc "$VM" "$CP1" "$CP2"
cp "$TESTDIR/out" "$TESTDIR/begin.json"
json_check "incremental exports lack bitmap contexts" "$TESTDIR/begin.json" \
    '[.disks[] | .bitmap_context] == ["qemu:dirty-bitmap:backup-vda", "qemu:dirty-bitmap:backup-vdb"]'
[ "$(dirty 0)" = "$MiB+65536" ] || fail "vda dirty extents: $(dirty 0), expected $MiB+65536"
[ "$(dirty 1)" = "$((2 * MiB))+131072" ] || fail "vdb dirty extents: $(dirty 1)"
end_backup
expect_exit 0 drv list "$VM"
json_check "checkpoints not $CP1 -> $CP2" "$TESTDIR/out" --arg a "$CP1" --arg b "$CP2" '. == [$a, $b]'

expect_exit 0 drv save "$VM" "$CP1"
expect_exit 0 drv save "$VM" "$CP2"
saved=$STATE/checkpoints/$vm_uuid/$CP2.xml
[ "$(stat -c %a "$saved")" = 600 ] || fail "saved checkpoint XML is not 0600"
grep -q "<parent>" "$saved" || fail "saved XML of $CP2 names no parent"

# A transient domain restarted: libvirt forgot the checkpoints, the qcow2
# kept the bitmaps.
vm.sh destroy "$LV" "$VM"
for d in vda vdb; do
    expect_exit 0 "$DRIVER" check-bitmap "$DISKS/$d.qcow2" "$CP2"
    json_check "bitmap $CP2 not valid in the stopped $d" "$TESTDIR/out" '.ok == true'
done
old_uuid=$vm_uuid
vm_uuid=$(vm.sh create "$LV" "$VM" "$DISKS/vda.qcow2" "$DISKS/vdb.qcow2")
# vm.sh gives each start a new UUID; VDSM keeps the VM's.
mv "$STATE/checkpoints/$old_uuid" "$STATE/checkpoints/$vm_uuid"
[ -z "$(virsh -q -c "$URI" checkpoint-list "$VM" --name)" ] ||
    fail "libvirt still knows checkpoints after the restart"
expect_exit 0 "$DRIVER" check-bitmap --running "$DISKS/vda.qcow2" "$CP1"
json_check "bitmap $CP1 not valid in the running vda" "$TESTDIR/out" '.ok == true'
expect_exit 0 "$DRIVER" check-bitmap "$DISKS/vda.qcow2" "no-such-bitmap"
json_check "a missing bitmap is not reported by name" "$TESTDIR/out" \
    '.ok == false and (.reason | test("bitmap no-such-bitmap is not in the top volume"))'

expect_exit 0 drv redefine "$VM"
json_check "redefine did not restore $CP1, $CP2 in order" "$TESTDIR/out" \
    --arg a "$CP1" --arg b "$CP2" '. == [$a, $b]'
expect_exit 0 drv list "$VM"
json_check "list after redefine" "$TESTDIR/out" --arg a "$CP1" --arg b "$CP2" '. == [$a, $b]'
expect_exit 0 drv redefine "$VM"
json_check "a second redefine did something" "$TESTDIR/out" '. == []'

# Incremental from a redefined checkpoint.
vm.sh write "$VM" 0 "write -P 0x77 4M 64k"
CP3=$(new_uuid)
expect_exit 0 drv begin-inc "$VM" "$CP2" "$CP3"
cp "$TESTDIR/out" "$TESTDIR/begin.json"
[ "$(dirty 0)" = "$((4 * MiB))+65536" ] || fail "vda dirty after redefine: $(dirty 0)"
[ "$(dirty 1)" = "" ] || fail "vdb dirty after redefine: $(dirty 1)"
end_backup
expect_exit 0 drv save "$VM" "$CP3"

# Deleting the newest: its bitmap goes from the disks and its saved XML too.
expect_exit 0 drv delete "$VM" "$CP3"
expect_exit 0 drv list "$VM"
json_check "list after delete" "$TESTDIR/out" --arg a "$CP1" --arg b "$CP2" '. == [$a, $b]'
[ ! -e "$STATE/checkpoints/$vm_uuid/$CP3.xml" ] || fail "saved XML of $CP3 left"
expect_exit 0 "$DRIVER" check-bitmap --running "$DISKS/vda.qcow2" "$CP3"
json_check "bitmap $CP3 still in vda" "$TESTDIR/out" '.ok == false'

# Not enough scratch space: refused before the VM is touched.
SMALL=$TESTDIR/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=1M ovagent-test "$SMALL"
cleanup_add umount "$SMALL"
expect_exit 8 "$DRIVER" --uri "$URI" --run-dir "$RUN" --scratch-dir "$SMALL" \
    begin-full "$VM" "$(new_uuid)"
grep -q "scratch directory $SMALL has" "$TESTDIR/err" || {
    cat "$TESTDIR/err" >&2
    fail "no-space error does not name the scratch directory"
}
no_job "after the no-space refusal"
[ -z "$(ls -A "$SMALL")" ] || fail "something was created in $SMALL"
expect_exit 0 drv list "$VM"
json_check "the refused backup changed the checkpoints" "$TESTDIR/out" \
    --arg a "$CP1" --arg b "$CP2" '. == [$a, $b]'

# Offline, the images hold exactly the bitmaps of the checkpoints left.
vm.sh destroy "$LV" "$VM"
for d in vda vdb; do
    names=$(qemu-img info -U --output=json "$DISKS/$d.qcow2" |
        jq -r '[."format-specific".data.bitmaps[]?.name] | sort | join(" ")')
    want=$(printf '%s\n' "$CP1" "$CP2" | sort | tr '\n' ' ')
    [ "$names " = "$want" ] || fail "$d bitmaps: $names, expected $want"
done

echo "PASS: checkpoints and pull backups through virt/"
