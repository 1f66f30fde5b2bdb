#!/bin/bash
# ovagent backup when things go wrong: a qcow2 0.10 disk (skipped, refused
# when named), a scratch directory too small, a second backup of the same VM,
# SIGTERM, the receiver gone mid-stream, the VM shut down mid-backup, bitmaps
# left in-use by a killed QEMU. Each time: the right exit code, no job, no
# scratch file or socket, no new checkpoint a later incremental would trust,
# and the next --auto backup restores to the disks' content.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

requires_vm_components qemu-io
command -v ovagent >/dev/null || fail "ovagent not built"

start_filedomain
bk_env
D=$NFS_DIR
R=$TESTDIR/repo
# This host in the domain's lockspace, as VDSM keeps it: a stopped VM's
# bitmaps go in and out under the volumes' leases.
start_sanlock
sanlock.sh join "$SL" 1 "$NFS_SD" "$D/dom_md/ids"

# vda: 256 MiB with 96 MiB of data (a full backup takes a while); vdb: small;
# vdc: qcow2 compat 0.10, which has no persistent bitmaps.
read -r IMG_A VOL_A < <(snapshot.sh disk "$D" 256M)
snapshot.sh write "$D" "$IMG_A" 0x11 0 96M
read -r IMG_B VOL_B < <(snapshot.sh disk "$D" 64M)
snapshot.sh write "$D" "$IMG_B" 0x21 1M 2M
read -r IMG_C VOL_C < <(snapshot.sh disk "$D" 16M)
TOP_A=$D/images/$IMG_A/$VOL_A
TOP_B=$D/images/$IMG_B/$VOL_B
TOP_C=$D/images/$IMG_C/$VOL_C
qemu-img amend -q -f qcow2 -o compat=0.10 "$TOP_C"
TOPS=("$TOP_A" "$TOP_B")
IMGS=("$IMG_A" "$IMG_B")

start_libvirt
new_vm_name bf
VM_UUID=$(bk_uuid)
start_vm () {
    vm.sh create --uuid "$VM_UUID" "$LV" "$VM" "$TOP_A" "$TOP_B" "$TOP_C" >/dev/null
}
start_vm

STATE=$OVAGENT_STATE_DIR/checkpoints/$VM_UUID/state.json

# Background processes of this test (a backup and its stalled reader).
BPID='' RDPID=''
stop_bg () {
    local p
    for p in $BPID $RDPID; do
        kill -KILL "$p" 2>/dev/null || true
    done
}
cleanup_add stop_bg

gw () {
    vm.sh write "$VM" "$1" "write -P $2 $3 $4"
}

# capture NAME: the disks' content now (running: QEMU flushed, read with -U).
capture () {
    local i
    for i in 0 1; do
        if virsh -q -c "$OVAGENT_LIBVIRT_URI" domid "$VM" >/dev/null 2>&1; then
            vm.sh write "$VM" "$i" flush
        fi
        qemu-img convert -U -f qcow2 -O raw "${TOPS[i]}" "$TESTDIR/$1-$i.raw"
    done
}

# restored_equal NAME ID: backup ID of both disks restores to capture NAME.
restored_equal () {
    local i
    for i in 0 1; do
        bk_restore_compare "$1" "$R" "${IMGS[i]}" "$2" "$TESTDIR/$1-$i.raw"
    done
}

# last_cp: the checkpoint state.json holds for both disks ("" if they differ).
last_cp () {
    jq -r --arg a "$IMG_A" --arg b "$IMG_B" '
        if .disks[$a].checkpoint == .disks[$b].checkpoint then .disks[$a].checkpoint // "" else "" end' "$STATE"
}

# untouched WHAT CHECKPOINTS: after a failed or refused run of a running VM:
# no job, no leftovers, libvirt's checkpoints and QEMU's bitmaps unchanged,
# nothing pending, the disks' last checkpoint unchanged.
untouched () {
    local what=$1 cps=$2 got
    bk_no_job "$VM"
    bk_no_leftovers "$what"
    got=$(bk_checkpoints "$VM")
    [ "$got" = "$cps" ] || fail "$what: libvirt's checkpoints are [$got], expected [$cps]"
    got=$(bk_query_bitmaps "$VM")
    [ "$got" = "$(tr ' ' '\n' <<<"$cps" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
        fail "$what: QEMU holds bitmaps [$got], expected [$cps]"
    bk_check "$what: state.json has a pending backup or another last checkpoint" "$STATE" \
        --arg a "$IMG_A" --arg b "$IMG_B" --arg cp "${cps##* }" \
        '.pending == null and .disks[$a].checkpoint == $cp and .disks[$b].checkpoint == $cp'
}

# start_stalled NAME ARGS...: `backup ARGS --output -` into a pipe nobody
# reads until release; BPID is the backup.
start_stalled () {
    local name=$1
    shift
    rm -f "$TESTDIR/data.fifo" "$TESTDIR/go.fifo"
    mkfifo "$TESTDIR/data.fifo" "$TESTDIR/go.fifo"
    { read -r _ <"$TESTDIR/go.fifo"; cat >/dev/null; } <"$TESTDIR/data.fifo" &
    RDPID=$!
    ovagent backup "$@" --output - --json >"$TESTDIR/data.fifo" 2>"$TESTDIR/$name.err" &
    BPID=$!
}

release () {
    timeout 10 bash -c 'echo go >"$1"' _ "$TESTDIR/go.fifo" || true
}

# wait_bg WHAT: the backup's exit code in RC, within 60 s.
wait_bg () {
    local i
    for (( i = 0; i < 600; i++ )); do
        kill -0 "$BPID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$BPID" 2>/dev/null; then
        bk_show "$TESTDIR/$1.err"
        fail "$1: the backup did not end within 60 s"
    fi
    RC=0
    wait "$BPID" || RC=$?
    wait "$RDPID" 2>/dev/null || true
    BPID='' RDPID=''
}

# wait_job WHAT: until libvirt runs the backup job and the state records it.
wait_job () {
    local i
    for (( i = 0; i < 300; i++ )); do
        if virsh -q -c "$OVAGENT_LIBVIRT_URI" domjobinfo "$VM" 2>/dev/null | grep -Eq '^Job type: +Unbounded' &&
            [ "$(jq -r '.pending.checkpoint // ""' "$STATE" 2>/dev/null)" != "" ]; then
            PENDING=$(jq -r .pending.checkpoint "$STATE")
            return 0
        fi
        kill -0 "$BPID" 2>/dev/null || { bk_show "$TESTDIR/$1.err"; fail "$1: the backup ended early"; }
        sleep 0.1
    done
    bk_show "$TESTDIR/$1.err"
    fail "$1: no backup job after 30 s"
}

# ---- 1. a full backup; the compat 0.10 disk is skipped --------------------
bk_backup_ok f1 "$R" "$VM" --full
bk_check "full: not vda, vdb full with vdc skipped for its compat" "$TESTDIR/f1.json" \
    --arg a "$IMG_A" --arg b "$IMG_B" --arg c "$IMG_C" '
    [.disks[] | {target, disk, kind}] == [{target: "vda", disk: $a, kind: "full"},
                                          {target: "vdb", disk: $b, kind: "full"}]
    and (.skipped | length) == 1 and .skipped[0].target == "vdc" and .skipped[0].disk == $c
    and (.skipped[0].reason | test("0[.]10"))'
CP1=$(jq -r .checkpoint "$TESTDIR/f1.json")
ID1=$BK_ID
capture p1
untouched "full" "$CP1"

# ---- 2. the compat 0.10 disk named: refused with the advice ----------------
for d in vdc "$IMG_C"; do
    expect_exit 5 ovagent backup "$VM" --disk "$d" --full --output "$(bk_fresh)"
    if ! grep -q 'qemu-img amend' "$TESTDIR/err" || ! grep -q 'compat=1.1' "$TESTDIR/err"; then
        cat "$TESTDIR/err" >&2
        fail "--disk $d (compat 0.10): no 'qemu-img amend -o compat=1.1' advice"
    fi
    untouched "compat 0.10 refused" "$CP1"
done

# ---- 3. scratch directory too small: exit 8 before the VM is touched -------
SMALL=$TESTDIR/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=1M ovagent-test "$SMALL"
cleanup_add umount "$SMALL"
gw 0 0x31 1M 1M
expect_exit 8 ovagent backup "$VM" --incremental --scratch-dir "$SMALL" --output "$(bk_fresh)" --json
grep -qF "$SMALL" "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "the no-space error does not name $SMALL"; }
[ -z "$(ls -A "$SMALL")" ] || fail "something was left in the small scratch directory: $(ls -A "$SMALL")"
untouched "scratch too small" "$CP1"

# ---- 4. a second backup while one runs: exit 4; the first ends on SIGTERM --
start_stalled f4 "$VM" --full
wait_job f4
expect_exit 4 ovagent backup "$VM" --incremental --output "$(bk_fresh)" --json
grep -qE "$VM|$VM_UUID" "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "the busy error does not name the VM"; }
[ "$(jq -r .pending.checkpoint "$STATE")" = "$PENDING" ] ||
    fail "the refused second backup changed the pending record"
kill -TERM "$BPID"
release
wait_bg f4
[ "$RC" -ne 0 ] || { bk_show "$TESTDIR/f4.err"; fail "a backup ended by SIGTERM exited 0"; }
untouched "SIGTERM" "$CP1"

# ---- 5. the receiver gone mid-stream ----------------------------------------
gw 0 0x41 8M 32M
gw 1 0x42 0 64k
set +e
ovagent backup "$VM" --incremental --output - --json 2>"$TESTDIR/f5.err" | head -c 1M >/dev/null
rcs=("${PIPESTATUS[@]}")
set -e
[ "${rcs[0]}" -ne 0 ] || { bk_show "$TESTDIR/f5.err"; fail "backup into a reader that quit exited 0"; }
tail -n 1 "$TESTDIR/f5.err" >"$TESTDIR/f5.json"
jq -e '.result == "error"' "$TESTDIR/f5.json" >/dev/null 2>&1 || {
    bk_show "$TESTDIR/f5.err"
    fail "receiver gone: the last line of stderr is not a JSON error result"
}
untouched "receiver gone" "$CP1"

# A receive killed with SIGKILL while it writes (its own run_dir: what a
# killed receiver leaves is not the sender's).
rm -f "$TESTDIR/data.fifo"
mkfifo "$TESTDIR/data.fifo"
mkdir -p "$TESTDIR/run-recv"
OVAGENT_RUN_DIR=$TESTDIR/run-recv ovagent receive --repo "$TESTDIR/repo-killed" \
    <"$TESTDIR/data.fifo" >/dev/null 2>&1 &
RDPID=$!
# Killed on purpose below: no job report from the shell.
disown "$RDPID"
ovagent backup "$VM" --full --requests 1 --output - --json >"$TESTDIR/data.fifo" 2>"$TESTDIR/f5b.err" &
BPID=$!
for (( i = 0; i < 300; i++ )); do
    [ -n "$(find "$TESTDIR/repo-killed" -name "$IMG_A.qcow2" 2>/dev/null)" ] && break
    sleep 0.1
done
kill -KILL "$RDPID"
wait_bg f5b
[ "$RC" -ne 0 ] || { bk_show "$TESTDIR/f5b.err"; fail "backup into a receive killed with SIGKILL exited 0"; }
untouched "receive killed" "$CP1"
# The killed receive's qemu-nbd, if any, is ours to stop.
for p in $(pgrep -f -- "$TESTDIR/run-recv" || true); do
    echo "NOTE: qemu-nbd $p of the killed receive still running: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" >&2
    kill "$p" 2>/dev/null || true
done

# The next --auto is an incremental from the last good checkpoint.
bk_backup_ok f6 "$R" "$VM" --auto
bk_check "--auto after the failures: not incremental from $CP1 with a reason" "$TESTDIR/f6.json" \
    --arg cp "$CP1" 'all(.disks[]; .kind == "incremental" and .from_checkpoint == $cp
                        and (.reason | length > 0)) and (.disks | length) == 2'
bk_check "receive: the incremental is not backed by the full" "$TESTDIR/f6.recv.json" \
    --arg p "$ID1" 'all(.disks[]; .kind == "incremental" and .parent == $p)'
CP2=$(jq -r .checkpoint "$TESTDIR/f6.json")
ID2=$BK_ID
capture p2
untouched "--auto after the failures" "$CP1 $CP2"

# ---- 6. the VM shut down during the backup ----------------------------------
gw 0 0x51 40M 32M
start_stalled f7 "$VM" --incremental --requests 1
wait_job f7
NEWCP=$PENDING
vm.sh destroy "$LV" "$VM"
release
wait_bg f7
[ "$RC" -ne 0 ] || { bk_show "$TESTDIR/f7.err"; fail "a backup of a VM shut down under it exited 0"; }
bk_no_leftovers "VM shut down"
# None of the failed runs left its bitmap in the images: only the two
# committed checkpoints are there.
for i in 0 1; do
    got=$(bk_image_bitmaps "${TOPS[i]}" | sed 's/\[[^]]*\]//g')
    [ "$got" = "$(printf '%s\n' "$CP1" "$CP2" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
        fail "after the failed runs ${IMGS[i]} holds bitmaps [$got], expected [$CP1 $CP2]"
done
bk_check "VM shut down: state.json still pending or trusting $NEWCP" "$STATE" --arg cp "$NEWCP" \
    '.pending == null and all(.disks[]; .checkpoint != $cp)'
for i in 0 1; do
    case " $(bk_image_bitmaps "${TOPS[i]}") " in
        *" ${NEWCP}["*) fail "VM shut down: the bitmap of the failed checkpoint $NEWCP is still in ${IMGS[i]}" ;;
    esac
done
start_vm
capture p3
bk_backup_ok f8 "$R" "$VM" --auto
# The disks forgot the checkpoint the failed run left in them: a full.
bk_check "--auto after the shutdown is not a full of both disks" "$TESTDIR/f8.json" \
    --arg cp "$NEWCP" '(.disks | length) == 2 and all(.disks[]; .kind == "full"
                        and .from_checkpoint == null and (.reason | length > 0))'
CP3=$(jq -r .checkpoint "$TESTDIR/f8.json")
ID3=$BK_ID
bk_no_job "$VM"
bk_no_leftovers "--auto after the shutdown"

# ---- 7. bitmaps left in-use by a QEMU killed with SIGKILL ------------------
# Stored at a clean stop, marked in-use when the next QEMU opens them.
vm.sh destroy "$LV" "$VM"
start_vm
vm.sh kill "$LV" "$VM"
for i in 0 1; do
    case " $(bk_image_bitmaps "${TOPS[i]}") " in
        *" ${CP3}[auto,in-use] "*) ;;
        *) fail "precondition: bitmap $CP3 of ${IMGS[i]} not in-use after SIGKILL: $(bk_image_bitmaps "${TOPS[i]}")" ;;
    esac
done
expect_exit 5 ovagent backup "$VM_UUID" --disk "$IMG_A" --disk "$IMG_B" --incremental \
    --output "$(bk_fresh)" --json
grep -qF "$CP3" "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "the in-use refusal does not name bitmap $CP3"; }
grep -qiE 'in.use' "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "the in-use refusal does not say in-use"; }
capture p4
bk_backup_ok f9 "$R" "$VM_UUID" --disk "$IMG_A" --disk "$IMG_B" --auto
bk_check "--auto over in-use bitmaps: not a full of both disks" "$TESTDIR/f9.json" \
    '(.disks | length) == 2 and all(.disks[]; .kind == "full" and .from_checkpoint == null
     and (.reason | length > 0)) and .running == false'
ID4=$BK_ID
CP4=$(jq -r .checkpoint "$TESTDIR/f9.json")
for i in 0 1; do
    case " $(bk_image_bitmaps "${TOPS[i]}") " in
        *" ${CP4}[auto] "*) ;;
        *) fail "after the full over in-use bitmaps: no enabled bitmap $CP4 in ${IMGS[i]}: $(bk_image_bitmaps "${TOPS[i]}")" ;;
    esac
done

# ---- 8. the compat 0.10 disk of the stopped VM -----------------------------
expect_exit 5 ovagent backup "$VM_UUID" --disk "$IMG_C" --full --output "$(bk_fresh)"
grep -q 'qemu-img amend' "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "stopped compat 0.10: no qemu-img amend advice"; }
[ -z "$(bk_image_bitmaps "$TOP_C")" ] || fail "a bitmap appeared in the compat 0.10 disk"

# Every committed backup restores to the content at its point.
restored_equal p1 "$ID1"
restored_equal p2 "$ID2"
restored_equal p3 "$ID3"
restored_equal p4 "$ID4"
expect_exit 0 ovagent verify --repo "$R"
bk_no_leftovers "the end"

echo "PASS: backup failure paths: refusals, busy, SIGTERM, receiver gone, VM shut down, in-use bitmaps"
