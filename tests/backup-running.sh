#!/bin/bash
# ovagent backup of a running transient domain whose two qcow2 disks are
# volumes of a file storage domain: full, incremental, differential, the VM
# restarted with the same UUID (libvirt forgot the checkpoints: redefined),
# incremental and --auto; every backup restored and compared with the disks'
# content at that point; the repository, the checkpoints and the state checked.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

requires_vm_components qemu-io
command -v ovagent >/dev/null || fail "ovagent not built"

MiB=$((1024 * 1024))

start_filedomain
bk_env
D=$NFS_DIR

# Disk A: a base and a snapshot (the VM writes into the snapshot); disk B:
# one volume. Both qcow2 compat 1.1, as a V5 domain creates them.
read -r IMG_A _ < <(snapshot.sh disk "$D" 128M)
snapshot.sh write "$D" "$IMG_A" 0x11 0 4M
VOL_A1=$(snapshot.sh create "$D" "$IMG_A")
snapshot.sh write "$D" "$IMG_A" 0x12 2M 2M
read -r IMG_B VOL_B0 < <(snapshot.sh disk "$D" 64M)
snapshot.sh write "$D" "$IMG_B" 0x21 1M 3M
TOP_A=$D/images/$IMG_A/$VOL_A1
TOP_B=$D/images/$IMG_B/$VOL_B0
IMGS=("$IMG_A" "$IMG_B")
TOPS=("$TOP_A" "$TOP_B")
SIZES=($((128 * MiB)) $((64 * MiB)))

# The guest-visible content of each disk, kept up to date with every guest
# write: what the live chain must hold.
for i in 0 1; do
    qemu-img convert -f qcow2 -O raw "${TOPS[i]}" "$TESTDIR/model-$i.raw"
done

start_libvirt

new_vm_name bk
VM_UUID=$(bk_uuid)
got=$(vm.sh create --uuid "$VM_UUID" "$LV" "$VM" "$TOP_A" "$TOP_B")
[ "$got" = "$VM_UUID" ] || fail "vm.sh create --uuid started $got, not $VM_UUID"

# gw DISK PATTERN|zero OFFSET LENGTH: a guest write, also applied to the model.
gw () {
    local i=$1 pat=$2 off=$3 len=$4 how
    if [ "$pat" = zero ]; then how=-z; else how="-P $pat"; fi
    vm.sh write "$VM" "$i" "write $how $off $len"
    qemu-io -f raw -c "write -q $how $off $len" "$TESTDIR/model-$i.raw" >/dev/null
}

# capture STEP: the disks' content now, for the restore of STEP's backup.
# The guest writes only when told, so the live chain read with -U right
# after the backup (QEMU's caches flushed) is what the backup must hold.
capture () {
    local step=$1 i
    for i in 0 1; do
        vm.sh write "$VM" "$i" flush
        qemu-img convert -U -f qcow2 -O raw "${TOPS[i]}" "$TESTDIR/point-$step-$i.raw"
        qemu-img compare -f raw -F raw "$TESTDIR/point-$step-$i.raw" "$TESTDIR/model-$i.raw" \
            >"$TESTDIR/compare.out" 2>&1 || {
            bk_show "$TESTDIR/compare.out"
            fail "step $step: the live disk ${IMGS[i]} does not hold the guest's writes"
        }
    done
}

R=$TESTDIR/repo
IDS=()
CPS=()

# after_backup STEP KIND FROM: the sender's and receiver's results of a
# backup of both disks, checkpoint and job state; sets IDS[STEP], CPS[STEP].
after_backup () {
    local step=$1 kind=$2 from=$3 res=$TESTDIR/b$1.json recv=$TESTDIR/b$1.recv.json
    local fromj=null cp
    [ "$from" = - ] || fromj="\"$from\""
    bk_check "step $step: the result is not a $kind of vda, vdb from $fromj" "$res" \
        --arg vm "$VM_UUID" --arg name "$VM" --arg a "$IMG_A" --arg b "$IMG_B" \
        --arg sd "$NFS_SD" --arg va "$VOL_A1" --arg vb "$VOL_B0" \
        --arg kind "$kind" --argjson from "$fromj" '
        .vm == $vm and .name == $name and .running == true
        and (.job | test("^[0-9a-f-]{36}$")) and (.checkpoint | test("^[0-9a-f-]{36}$"))
        and .backup_id == null and .skipped == [] and .recovered == null
        and ([.disks[] | {target, disk, domain, volume, kind, from_checkpoint}] ==
             [{target: "vda", disk: $a, domain: $sd, volume: $va, kind: $kind, from_checkpoint: $from},
              {target: "vdb", disk: $b, domain: $sd, volume: $vb, kind: $kind, from_checkpoint: $from}])
        and all(.disks[]; (.reason | type == "string" and length > 0)
                and .data_bytes + .zero_bytes + .hole_bytes == .virtual_size)
        and ([.disks[].virtual_size] == [134217728, 67108864])
        and .data_bytes == ([.disks[].data_bytes] | add)
        and .bytes_sent > .data_bytes and (.seconds | type == "number")'
    cp=$(jq -r .checkpoint "$res")
    [ "$(jq -r .job "$res")" != "$cp" ] || fail "step $step: job and checkpoint share a UUID"
    bk_check "step $step: receive did not commit both disks as one $kind" "$recv" \
        --arg a "$IMG_A" --arg b "$IMG_B" --arg kind "$kind" --arg id "$(jq -r .backup_id "$recv")" '
        (.backup_id | test("^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4,}$"))
        and ([.disks[] | {disk, kind}] | sort_by(.disk)) ==
            ([{disk: $a, kind: $kind}, {disk: $b, kind: $kind}] | sort_by(.disk))
        and all(.disks[]; .backup_id == $id)'
    IDS[step]=$(jq -r .backup_id "$recv")
    CPS[step]=$cp
    bk_no_job "$VM"
    bk_no_leftovers "step $step"
    [ -f "$OVAGENT_STATE_DIR/checkpoints/$VM_UUID/$cp.xml" ] ||
        fail "step $step: checkpoint XML of $cp not saved in state_dir"
    bk_check "step $step: state.json does not make $cp the disks' last checkpoint" \
        "$OVAGENT_STATE_DIR/checkpoints/$VM_UUID/state.json" \
        --arg a "$IMG_A" --arg b "$IMG_B" --arg cp "$cp" --arg vm "$VM_UUID" '
        .vm == $vm and .pending == null and .disks[$a].checkpoint == $cp
        and .disks[$b].checkpoint == $cp and .disks[$a].target == "vda"'
    capture "$step"
}

# 1. Full.
bk_backup_ok b1 "$R" "$VM" --full
after_backup 1 full -
bk_check "full: data_bytes is not the allocated data (4 MiB, 3 MiB)" "$TESTDIR/b1.json" \
    '[.disks[].data_bytes] == [4194304, 3145728]'
[ "$(bk_checkpoints "$VM")" = "${CPS[1]}" ] ||
    fail "full: libvirt's checkpoints are [$(bk_checkpoints "$VM")], expected ${CPS[1]}"

# 2. Guest writes over old data and into new areas; incremental.
gw 0 0x31 1M 64k
gw 0 0x32 100M 1M
gw 1 0x41 0 128k
bk_backup_ok b2 "$R" "$VM" --incremental
after_backup 2 incremental "${CPS[1]}"
bk_check "incremental: moved more than the dirty blocks (vda 1 MiB + 64 KiB, vdb 128 KiB)" \
    "$TESTDIR/b2.json" '[.disks[] | .data_bytes + .zero_bytes] == [1114112, 131072]'
[ "$(bk_checkpoints "$VM")" = "${CPS[1]} ${CPS[2]}" ] ||
    fail "incremental: checkpoints [$(bk_checkpoints "$VM")]"

# 3. Zeroes over earlier data, more writes; differential from the first.
gw 0 zero 0 1M
gw 0 0x33 50M 64k
gw 1 0x42 10M 64k
gw 1 zero 1M 64k
bk_backup_ok b3 "$R" "$VM" --differential --from "${CPS[1]}"
after_backup 3 differential "${CPS[1]}"
bk_check "differential: not everything dirty since the full (vda 2 MiB + 128 KiB, vdb 256 KiB)" \
    "$TESTDIR/b3.json" '[.disks[] | .data_bytes + .zero_bytes] == [2228224, 262144]
                         and .disks[0].zero_bytes >= 1048576 and .disks[1].zero_bytes >= 65536'

# 4. The VM restarted as VDSM restarts it: same UUID, checkpoints forgotten.
vm.sh destroy "$LV" "$VM"
for i in 0 1; do
    names=$(bk_image_bitmaps "${TOPS[i]}")
    # libvirt keeps every checkpoint's bitmap recording.
    want=$(printf '%s[auto]\n' "${CPS[1]}" "${CPS[2]}" "${CPS[3]}")
    want=$(sort <<<"$want" | tr '\n' ' ')
    [ "$names " = "$want" ] || fail "stopped ${IMGS[i]}: bitmaps [$names], expected [$want]"
done
vm.sh create --uuid "$VM_UUID" "$LV" "$VM" "$TOP_A" "$TOP_B" >/dev/null
[ -z "$(bk_checkpoints "$VM")" ] || fail "libvirt kept checkpoints over a transient restart"
gw 0 0x51 3M 64k
gw 1 0x52 20M 64k
bk_backup_ok b4 "$R" "$VM" --incremental
after_backup 4 incremental "${CPS[3]}"
bk_check "incremental after the restart did not redefine the three checkpoints" \
    "$TESTDIR/b4.json" --arg a "${CPS[1]}" --arg b "${CPS[2]}" --arg c "${CPS[3]}" \
    '.redefined == [$a, $b, $c]'
bk_check "incremental after the restart: not just the writes since (64 KiB each)" \
    "$TESTDIR/b4.json" '[.disks[] | .data_bytes + .zero_bytes] == [65536, 65536]'
[ "$(bk_checkpoints "$VM")" = "${CPS[1]} ${CPS[2]} ${CPS[3]} ${CPS[4]}" ] ||
    fail "after the restart: checkpoints [$(bk_checkpoints "$VM")]"

# 5. --auto: an incremental, and says why.
gw 0 0x61 7M 64k
gw 1 0x62 30M 128k
bk_backup_ok b5 "$R" "$VM" --auto
after_backup 5 incremental "${CPS[4]}"
bk_check "--auto redefined something again" "$TESTDIR/b5.json" '.redefined == []'
bk_check "--auto: not just the writes since (vda 64 KiB, vdb 128 KiB)" \
    "$TESTDIR/b5.json" '[.disks[] | .data_bytes + .zero_bytes] == [65536, 131072]'

# The repository: one manifest per disk, kinds, parents and checkpoints as
# the backups made them; every top opens with its chain.
for i in 0 1; do
    img=${IMGS[i]}
    m=$R/disks/$img/manifest.json
    bk_check "manifest of $img: kinds, parents, checkpoints" "$m" \
        --arg vm "$VM_UUID" --argjson ids "$(printf '%s\n' "${IDS[@]}" | jq -R . | jq -sc .)" \
        --argjson cps "$(printf '%s\n' "${CPS[@]}" | jq -R . | jq -sc .)" '
        [.backups[] | {id, kind, parent, checkpoint, from_checkpoint, vm}] ==
        [{id: $ids[0], kind: "full", parent: null, checkpoint: $cps[0], from_checkpoint: null, vm: $vm},
         {id: $ids[1], kind: "incremental", parent: $ids[0], checkpoint: $cps[1], from_checkpoint: $cps[0], vm: $vm},
         {id: $ids[2], kind: "differential", parent: $ids[0], checkpoint: $cps[2], from_checkpoint: $cps[0], vm: $vm},
         {id: $ids[3], kind: "incremental", parent: $ids[2], checkpoint: $cps[3], from_checkpoint: $cps[2], vm: $vm},
         {id: $ids[4], kind: "incremental", parent: $ids[3], checkpoint: $cps[4], from_checkpoint: $cps[3], vm: $vm}]'
    bk_check "manifest of $img: volume files and backing strings" "$m" --arg img "$img" '
        [.backups[] | .volumes | length] == [1, 1, 1, 1, 1]
        and all(.backups[]; .volumes[0].uuid == $img and .volumes[0].format == "qcow2"
                and .volumes[0].file == "\(.id)/\($img).qcow2")
        and ([.backups[] | .volumes[0].backing] ==
             [null, "../\(.backups[0].id)/\($img).qcow2", "../\(.backups[0].id)/\($img).qcow2",
              "../\(.backups[2].id)/\($img).qcow2", "../\(.backups[3].id)/\($img).qcow2"])'
    # Chain lengths: full 1, incremental 2, differential 2 (on the full), 3, 4.
    n=1
    for step in 1 2 3 4 5; do
        top=$R/disks/$img/${IDS[step]}/$img.qcow2
        qemu-img info --backing-chain --output=json "$top" >"$TESTDIR/chain.json" 2>&1 || {
            bk_show "$TESTDIR/chain.json"
            fail "qemu-img info --backing-chain $top fails"
        }
        case $step in 1) n=1 ;; 2) n=2 ;; 3) n=2 ;; 4) n=3 ;; 5) n=4 ;; esac
        bk_check "step $step: the backing chain of $top is not $n long" "$TESTDIR/chain.json" \
            --argjson n "$n" --argjson size "${SIZES[i]}" \
            '(if type == "array" then . else [.] end) | length == $n
             and all(.[]; .format == "qcow2" and ."virtual-size" == $size)'
        bk_check "step $step: the repository file of $img has a dirty bitmap or old compat" \
            "$TESTDIR/chain.json" '(if type == "array" then .[0] else . end)
             | ."format-specific".data.compat == "1.1"'
    done
done

for step in 1 2 3 4 5; do
    for i in 0 1; do
        bk_restore_compare "step $step" "$R" "${IMGS[i]}" "${IDS[step]}" "$TESTDIR/point-$step-$i.raw"
    done
done
expect_exit 0 ovagent verify --repo "$R" --json
bk_check "verify: not ok over 2 disks and 10 backups" "$TESTDIR/out" \
    '.result == "ok" and .disks == 2 and .backups == 10 and .files == 10'

# What the agent knows of the checkpoints: libvirt's and its own, in order.
expect_exit 0 ovagent checkpoints "$VM" --json
cp "$TESTDIR/out" "$TESTDIR/checkpoints.json"
bk_check "checkpoints: not the five, parents first, known to libvirt and saved" \
    "$TESTDIR/checkpoints.json" --argjson cps "$(printf '%s\n' "${CPS[@]}" | jq -R . | jq -sc .)" \
    --arg a "$IMG_A" --arg b "$IMG_B" '
    (if type == "array" then . else .checkpoints end) as $c
    | [$c[].name] == $cps
    and [$c[].parent] == [null] + $cps[0:4]
    and all($c[]; .known_to_libvirt == true and .saved == true
            and ([.disks[].target] | sort) == ["vda", "vdb"])
    and ($c[-1].last_for | sort) == ([$a, $b] | sort)
    and all($c[0:4][]; .last_for == [])
    and (if type == "object" then .pending == null else true end)'
expect_exit 0 ovagent checkpoints "$VM_UUID"
for step in 1 2 3 4 5; do
    grep -qF "${CPS[step]}" "$TESTDIR/out" || fail "checkpoints (text) does not list ${CPS[step]}"
done

# Retention: the oldest checkpoint deleted (libvirt merges its bitmap into
# the next one); an unknown one is not found.
expect_exit 0 ovagent checkpoints "$VM" --delete "${CPS[1]}" --json
[ "$(bk_checkpoints "$VM")" = "${CPS[2]} ${CPS[3]} ${CPS[4]} ${CPS[5]}" ] ||
    fail "after --delete ${CPS[1]}: checkpoints [$(bk_checkpoints "$VM")]"
[ ! -e "$OVAGENT_STATE_DIR/checkpoints/$VM_UUID/${CPS[1]}.xml" ] ||
    fail "the saved XML of the deleted checkpoint ${CPS[1]} is left"
expect_exit 3 ovagent checkpoints "$VM" --delete "$(bk_uuid)"

# The images keep the other four bitmaps once QEMU stored them, none in use.
vm.sh destroy "$LV" "$VM"
for i in 0 1; do
    names=$(bk_image_bitmaps "${TOPS[i]}")
    want=$(printf '%s[auto]\n' "${CPS[2]}" "${CPS[3]}" "${CPS[4]}" "${CPS[5]}")
    want=$(sort <<<"$want" | tr '\n' ' ')
    [ "$names " = "$want" ] || fail "${IMGS[i]} after the last backup: bitmaps [$names], expected [$want]"
    qemu-img check -q -f qcow2 "${TOPS[i]}" || fail "qemu-img check ${TOPS[i]} fails"
done
bk_no_leftovers "the end"

echo "PASS: backup of a running VM: full, incremental, differential, restart + redefine, auto"
