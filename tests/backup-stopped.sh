#!/bin/bash
# ovagent backup of a stopped VM that libvirt does not know (--disk IMG):
# qemu-nbd over each disk's chain, full then incrementals from the top
# volume's enabled bitmap, the next checkpoint added as a bitmap only after
# the receiver committed, under the top volume's sanlock lease (this host has
# joined both domains' lockspaces, as VDSM does); disks of a file domain and
# of a block domain (LVs activated for the backup and deactivated after it).
# Every backup restored and compared with the disk at that point.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

requires_core qemu-img
requires_core qemu-io
requires_core qemu-nbd
requires_core jq
requires_core lvm
requires_core losetup
requires_core sanlock
requires_root
command -v ovagent >/dev/null || fail "ovagent not built"

start_filedomain
TB=$TESTDIR/tb
cleanup_add blockdomain.sh down "$TB"
blockdomain.sh up "$TB" >/dev/null
BENV=$TB/env
BSD=$(. "$TB/ids"; echo "$SD")
# One data center holding the file domains; the block domain is found
# through its PV.
export OVAGENT_DATA_CENTER=$FD/data-center
OVAGENT_LVM_DEVICES=$(. "$BENV"; echo "$OVAGENT_LVM_DEVICES")
OVAGENT_LVM_COMMAND=$(. "$BENV"; echo "$OVAGENT_LVM_COMMAND")
export OVAGENT_LVM_DEVICES OVAGENT_LVM_COMMAND
# The libvirt test driver: no libvirtd, one running VM using none of these disks.
export OVAGENT_LIBVIRT_URI=test:///default
bk_env
D=$NFS_DIR
R=$TESTDIR/repo
# This host in both domains' lockspaces (the block domain's ids and leases
# LVs active), as VDSM keeps an active domain.
blockdomain.sh activate-sanlock "$TB"
start_sanlock
sanlock.sh join "$SL" 1 "$NFS_SD" "$D/dom_md/ids" 1 "$BSD" "/dev/$BSD/ids"

lvm_ () {
    local sub=$1
    shift
    "$OVAGENT_LVM_COMMAND" "$sub" --devices "$OVAGENT_LVM_DEVICES" "$@"
}

# top_bitmaps FILE|BLOCK IMG: the bitmaps of the image's leaf volume.
top_bitmaps () {
    local kind=$1 img=$2 leaf out
    if [ "$kind" = file ]; then
        leaf=$(snapshot.sh leaf "$D" "$img")
        bk_image_bitmaps "$D/images/$img/$leaf"
    else
        leaf=$(snapshot.sh leaf "$BSD" "$img" --block-env "$BENV")
        lvm_ lvchange --available y "$BSD/$leaf" >/dev/null
        out=$(bk_image_bitmaps "/dev/$BSD/$leaf") || true
        lvm_ lvchange --available n "$BSD/$leaf" >/dev/null
        echo "$out"
    fi
}

# source_at NAME DOMAIN IMG [--block-env ENV]: the disk's content now.
source_at () {
    local name=$1
    shift
    snapshot.sh convert "$1" "$2" "$TESTDIR/$name.raw" "${@:3}"
}

# check_result NAME KIND FROM DISK...: the sender's result of a stopped backup.
check_result () {
    local name=$1 kind=$2 from=$3 fromj=null
    shift 3
    [ "$from" = - ] || fromj="\"$from\""
    bk_check "$name: not a $kind of [$*] from $fromj of stopped VM $VM_UUID" "$TESTDIR/$name.json" \
        --arg vm "$VM_UUID" --arg kind "$kind" --argjson from "$fromj" \
        --argjson disks "$(printf '%s\n' "$@" | jq -R . | jq -sc .)" '
        .vm == $vm and .running == false and .skipped == [] and .backup_id == null
        and [.disks[].disk] == $disks
        and all(.disks[]; .kind == $kind and .from_checkpoint == $from
                and (.reason | type == "string" and length > 0)
                and .data_bytes + .zero_bytes + .hole_bytes == .virtual_size)
        and (.checkpoint | test("^[0-9a-f-]{36}$"))'
    bk_check "$name: receive did not commit [$*] as $kind" "$TESTDIR/$name.recv.json" \
        --arg kind "$kind" '.result == "ok" and all(.disks[]; .kind == $kind)'
    bk_no_leftovers "$name"
}

state_json () {
    echo "$OVAGENT_STATE_DIR/checkpoints/$VM_UUID/state.json"
}

# ---- a file domain: a two-volume chain and a single volume ----------------
read -r IMG_A VOL_A0 < <(snapshot.sh disk "$D" 128M)
snapshot.sh write "$D" "$IMG_A" 0x11 0 4M
VOL_A1=$(snapshot.sh create "$D" "$IMG_A")
snapshot.sh write "$D" "$IMG_A" 0x12 2M 2M
read -r IMG_B VOL_B0 < <(snapshot.sh disk "$D" 64M)
snapshot.sh write "$D" "$IMG_B" 0x21 1M 3M
VM_UUID=$(bk_uuid)

# Usage: a VM libvirt does not know needs its disks named, and a UUID.
expect_exit 2 ovagent backup "$VM_UUID" --full --output "$(bk_fresh)"
expect_exit 2 ovagent backup not-a-uuid --disk "$IMG_A" --full --output "$(bk_fresh)"
# Nothing to continue from yet.
expect_exit 3 ovagent backup "$VM_UUID" --disk "$IMG_A" --incremental --output "$(bk_fresh)"
grep -qi 'full' "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "no advice to take a full backup first"; }
[ -z "$(top_bitmaps file "$IMG_A")" ] || fail "a refused backup added a bitmap"

# 1. Full.
bk_backup_ok s1 "$R" "$VM_UUID" --disk "$IMG_A" --disk "$IMG_B" --full
check_result s1 full - "$IMG_A" "$IMG_B"
CP1=$(jq -r .checkpoint "$TESTDIR/s1.json")
ID1=$BK_ID
bk_check "s1: data_bytes is not the allocated data (4 MiB, 3 MiB)" "$TESTDIR/s1.json" \
    --arg a "$VOL_A1" --arg b "$VOL_B0" --arg sd "$NFS_SD" \
    '[.disks[].data_bytes] == [4194304, 3145728] and [.disks[].volume] == [$a, $b]
     and all(.disks[]; .domain == $sd)'
for img in "$IMG_A" "$IMG_B"; do
    [ "$(top_bitmaps file "$img")" = "${CP1}[auto]" ] ||
        fail "s1: the top volume of $img has bitmaps [$(top_bitmaps file "$img")], expected ${CP1}[auto]"
done
[ -z "$(bk_image_bitmaps "$D/images/$IMG_A/$VOL_A0")" ] ||
    fail "s1: a bitmap was added to the base volume of $IMG_A: $(bk_image_bitmaps "$D/images/$IMG_A/$VOL_A0")"
[ -f "$OVAGENT_STATE_DIR/checkpoints/$VM_UUID/$CP1.xml" ] || fail "s1: no saved checkpoint XML for $CP1"
bk_check "s1: state does not record $CP1 for both disks" "$(state_json)" \
    --arg a "$IMG_A" --arg b "$IMG_B" --arg cp "$CP1" \
    '.pending == null and .disks[$a].checkpoint == $cp and .disks[$b].checkpoint == $cp'
source_at p1-a "$D" "$IMG_A"
source_at p1-b "$D" "$IMG_B"

# 2. Writes (new data, overwrites, zeroes over data); incremental.
snapshot.sh write "$D" "$IMG_A" 0x31 1M 64k 100M 1M
snapshot.sh write "$D" "$IMG_A" zero 0 1M
snapshot.sh write "$D" "$IMG_B" 0x41 0 128k
snapshot.sh write "$D" "$IMG_B" zero 2M 64k
bk_backup_ok s2 "$R" "$VM_UUID" --disk "$IMG_A" --disk "$IMG_B" --incremental
check_result s2 incremental "$CP1" "$IMG_A" "$IMG_B"
CP2=$(jq -r .checkpoint "$TESTDIR/s2.json")
ID2=$BK_ID
bk_check "s2: not exactly the dirty blocks (vda 2 MiB + 64 KiB, vdb 192 KiB)" "$TESTDIR/s2.json" \
    '[.disks[] | .data_bytes + .zero_bytes] == [2162688, 196608]
     and .disks[0].zero_bytes >= 1048576 and .disks[1].zero_bytes >= 65536'
# The new checkpoint is a new enabled bitmap; the old one stays (whether it
# keeps recording is not the point: only the newest is read from).
for img in "$IMG_A" "$IMG_B"; do
    got=$(top_bitmaps file "$img")
    if ! [[ " $got " == *" ${CP2}[auto] "* && " $got " == *" ${CP1}["* && $got != *in-use* ]] ||
        [ "$(wc -w <<<"$got")" -ne 2 ]; then
        fail "s2: bitmaps of $img [$got], expected $CP1 and $CP2 (enabled)"
    fi
done
source_at p2-a "$D" "$IMG_A"
source_at p2-b "$D" "$IMG_B"

# A stopped VM has only its newest bitmap to read from.
expect_exit 5 ovagent backup "$VM_UUID" --disk "$IMG_A" --differential --from "$CP1" \
    --output "$(bk_fresh)"
grep -q "$CP1" "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "the refused differential does not name $CP1"; }

# 3. --auto: incremental from the last checkpoint; a disk without writes moves nothing.
snapshot.sh write "$D" "$IMG_A" 0x51 3M 64k
bk_backup_ok s3 "$R" "$VM_UUID" --disk "$IMG_A" --disk "$IMG_B" --auto
check_result s3 incremental "$CP2" "$IMG_A" "$IMG_B"
CP3=$(jq -r .checkpoint "$TESTDIR/s3.json")
ID3=$BK_ID
bk_check "s3: not exactly the dirty blocks (vda 64 KiB, vdb none)" "$TESTDIR/s3.json" \
    '[.disks[] | .data_bytes + .zero_bytes] == [65536, 0]'
source_at p3-a "$D" "$IMG_A"
source_at p3-b "$D" "$IMG_B"

for img in "$IMG_A" "$IMG_B"; do
    bk_check "manifest of $img: kinds, parents, checkpoints" "$R/disks/$img/manifest.json" \
        --arg vm "$VM_UUID" --arg i1 "$ID1" --arg i2 "$ID2" --arg i3 "$ID3" \
        --arg c1 "$CP1" --arg c2 "$CP2" --arg c3 "$CP3" '
        [.backups[] | {id, kind, parent, checkpoint, from_checkpoint, vm}] ==
        [{id: $i1, kind: "full", parent: null, checkpoint: $c1, from_checkpoint: null, vm: $vm},
         {id: $i2, kind: "incremental", parent: $i1, checkpoint: $c2, from_checkpoint: $c1, vm: $vm},
         {id: $i3, kind: "incremental", parent: $i2, checkpoint: $c3, from_checkpoint: $c2, vm: $vm}]'
    qemu-img info --backing-chain "$R/disks/$img/$ID3/$img.qcow2" >/dev/null ||
        fail "qemu-img info --backing-chain of the last backup of $img fails"
done
for s in 1 2 3; do
    id_var=ID$s
    bk_restore_compare "s$s" "$R" "$IMG_A" "${!id_var}" "$TESTDIR/p$s-a.raw"
    bk_restore_compare "s$s" "$R" "$IMG_B" "${!id_var}" "$TESTDIR/p$s-b.raw"
done
expect_exit 0 ovagent verify --repo "$R"

expect_exit 0 ovagent checkpoints "$VM_UUID" --json
bk_check "checkpoints of the stopped VM: not $CP1, $CP2, $CP3 saved, unknown to libvirt" \
    "$TESTDIR/out" --arg a "$CP1" --arg b "$CP2" --arg c "$CP3" --arg ia "$IMG_A" --arg ib "$IMG_B" '
    (if type == "array" then . else .checkpoints end) as $cps
    | [$cps[].name] == [$a, $b, $c] and [$cps[].parent] == [null, $a, $b]
    and all($cps[]; .saved == true and .known_to_libvirt == false)
    and ($cps[2].last_for | sort) == ([$ia, $ib] | sort)'
for img in "$IMG_A" "$IMG_B"; do
    leaf=$(snapshot.sh leaf "$D" "$img")
    qemu-img check -q -f qcow2 "$D/images/$img/$leaf" || fail "qemu-img check of $img's leaf fails"
done

# Deleting the newest checkpoint of a stopped VM: its bitmap is merged into
# the previous one and removed, its saved XML goes, the disks forget it and
# their next --auto is full.
expect_exit 3 ovagent checkpoints "$VM_UUID" --delete "$(bk_uuid)"
expect_exit 0 ovagent checkpoints "$VM_UUID" --delete "$CP3" --json
for img in "$IMG_A" "$IMG_B"; do
    got=$(top_bitmaps file "$img" | sed 's/\[[^]]*\]//g')
    [ "$got" = "$(printf '%s\n' "$CP1" "$CP2" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
        fail "after --delete $CP3: bitmaps of $img [$got], expected [$CP1 $CP2]"
done
[ ! -e "$OVAGENT_STATE_DIR/checkpoints/$VM_UUID/$CP3.xml" ] || fail "the saved XML of $CP3 is left"
bk_check "after --delete $CP3: the disks still trust it" "$(state_json)" --arg cp "$CP3" \
    'all(.disks[]; .checkpoint != $cp)'
snapshot.sh write "$D" "$IMG_B" 0x61 5M 64k
bk_backup_ok s4 "$R" "$VM_UUID" --disk "$IMG_A" --disk "$IMG_B" --auto
check_result s4 full - "$IMG_A" "$IMG_B"
source_at p4-a "$D" "$IMG_A"
source_at p4-b "$D" "$IMG_B"
bk_restore_compare "s4" "$R" "$IMG_A" "$BK_ID" "$TESTDIR/p4-a.raw"
bk_restore_compare "s4" "$R" "$IMG_B" "$BK_ID" "$TESTDIR/p4-b.raw"

# ---- a block domain: LVs activated for the backup only --------------------
read -r IMG_C _ < <(snapshot.sh disk "$BSD" 256M --block-env "$BENV")
snapshot.sh write "$BSD" "$IMG_C" 0x71 0 2M --block-env "$BENV"
VOL_C1=$(snapshot.sh create "$BSD" "$IMG_C" --block-env "$BENV")
snapshot.sh write "$BSD" "$IMG_C" 0x72 1M 2M --block-env "$BENV"
VM_UUID=$(bk_uuid)
# Only the LVs sanlock uses stay active (VDSM's, not ovagent's).
no_active_lvs () {
    local left
    left=$(find "/dev/$BSD" -mindepth 1 ! -name ids ! -name leases 2>/dev/null | head -5) || true
    [ -z "$left" ] || fail "$1: LVs left active: $left"
    [ -z "$(ls -A "$OVAGENT_STATE_DIR/activations" 2>/dev/null)" ] ||
        fail "$1: activation records left: $(ls "$OVAGENT_STATE_DIR/activations")"
}

bk_backup_ok b1 "$R" "$VM_UUID" --disk "$IMG_C" --full
check_result b1 full - "$IMG_C"
CPB1=$(jq -r .checkpoint "$TESTDIR/b1.json")
IDB1=$BK_ID
bk_check "b1: not the block volume, or not its 3 MiB of data" "$TESTDIR/b1.json" \
    --arg sd "$BSD" --arg v "$VOL_C1" \
    '.disks[0].domain == $sd and .disks[0].volume == $v and .disks[0].data_bytes == 3145728'
no_active_lvs b1
[ "$(top_bitmaps block "$IMG_C")" = "${CPB1}[auto]" ] ||
    fail "b1: the top LV has bitmaps [$(top_bitmaps block "$IMG_C")], expected ${CPB1}[auto]"
source_at pb1 "$BSD" "$IMG_C" --block-env "$BENV"

snapshot.sh write "$BSD" "$IMG_C" 0x73 5M 64k 200M 64k --block-env "$BENV"
bk_backup_ok b2 "$R" "$VM_UUID" --disk "$IMG_C" --incremental
check_result b2 incremental "$CPB1" "$IMG_C"
IDB2=$BK_ID
bk_check "b2: not exactly the 128 KiB written" "$TESTDIR/b2.json" \
    '.disks[0].data_bytes + .disks[0].zero_bytes == 131072'
no_active_lvs b2
source_at pb2 "$BSD" "$IMG_C" --block-env "$BENV"
bk_restore_compare "block full" "$R" "$IMG_C" "$IDB1" "$TESTDIR/pb1.raw"
bk_restore_compare "block incremental" "$R" "$IMG_C" "$IDB2" "$TESTDIR/pb2.raw"

expect_exit 0 ovagent verify --repo "$R" --json
bk_check "verify: not ok over 3 disks and 10 backups" "$TESTDIR/out" \
    '.result == "ok" and .disks == 3 and .backups == 10'
bk_no_leftovers "the end"
[ -z "$(sanlock.sh leases "$SL" 1)" ] || fail "leases left held: $(sanlock.sh leases "$SL" 1)"

echo "PASS: backup of a stopped VM through qemu-nbd, file and block domains"
