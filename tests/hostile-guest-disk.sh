#!/bin/bash
# A guest owns every byte of its disks. A raw disk whose first bytes are a
# qcow2 header naming a host file (an absolute path, a json: spec, an nbd:
# URL served by a qemu-nbd the test runs) is exported, received, restored
# and imported as exactly those bytes, never as the host file; changed-block
# backups of the stopped and of the running VM refuse it (a raw disk, exit
# 5) without writing into it, and back up the VM's other disk; the volume is
# byte for byte the same afterwards. Restore and import never write through
# a planted link and leave their files 0600; a running backup's scratch
# directory is root's and QEMU owns only its scratch files.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

requires_core xxh128sum
requires_vm_components qemu-nbd qemu-io
requires ovagent

start_filedomain
start_libvirt
export OVAGENT_LIBVIRT_URI=qemu:///system
bk_env
export OVAGENT_DATA_CENTER=$FD/data-center
R=$TESTDIR/repo

# The host's secret: what a followed header would bring into a backup.
SECRET=$TESTDIR/host-secret
for _ in $(seq 4096); do printf 'HOST-SECRET-0123456789abcdef-HOST-SECRET-0123456789abcdef\n'; done \
    >"$SECRET"
SOCK=$TESTDIR/secret.sock
kill_pidfile () {
    [ -s "$1" ] && kill "$(cat "$1")" 2>/dev/null
    return 0
}
cleanup_add kill_pidfile "$TESTDIR/secret-nbd.pid"
qemu-nbd -r -f raw -t -k "$SOCK" --fork --pid-file="$TESTDIR/secret-nbd.pid" "$SECRET"

read -r IMG VOL < <(snapshot.sh disk "$NFS_DIR" 64M --raw)
V=$NFS_DIR/images/$IMG/$VOL
# Guest data away from the header, to see it come back.
printf 'GUEST-DATA-AT-32M' | dd of="$V" bs=1 seek=$((32 * 1024 * 1024)) conv=notrunc status=none

# no_secret FILE WHAT: FILE holds nothing of the host's secret.
no_secret () {
    if grep -q HOST-SECRET "$1"; then
        fail "$2: the host file $SECRET leaked into $1"
    fi
}

# guest_header BACKING: the volume's first bytes become a qcow2 header that
# claims 1 TiB and names BACKING as its raw backing file.
guest_header () {
    rm -f "$TESTDIR/hdr.qcow2"
    qemu-img create -q -f qcow2 -u -b "$1" -F raw "$TESTDIR/hdr.qcow2" 1T
    dd if="$TESTDIR/hdr.qcow2" of="$V" conv=notrunc status=none
}

sum_of () {
    xxh128sum "$1" | cut -d' ' -f1
}

n=0
for backing in "$SECRET" \
               "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"$SECRET\"}}" \
               "nbd+unix:///?socket=$SOCK"; do
    n=$((n + 1))
    guest_header "$backing"
    before=$(sum_of "$V")
    echo "case $n: the raw disk starts with a qcow2 header naming $backing"

    # What the host says of it: a raw volume, no header, no backing.
    expect_exit 0 ovagent info "$IMG" --json
    bk_check "case $n: info reads the raw volume as something else" "$TESTDIR/out" \
        --arg v "$VOL" '.volumes[] | select(.uuid == $v) | .format == "raw"
            and .disk_format == "raw" and .backing == null and .qcow2_compat == null
            and .virtual_size == 67108864'

    # Chain export, receive, restore: the bytes, the whole bytes, nothing else.
    ovagent export-chain "$IMG" --output - 2>"$TESTDIR/export.err" |
        ovagent receive --repo "$R" --json >"$TESTDIR/recv.json" 2>"$TESTDIR/recv.err" || {
        bk_show "$TESTDIR/export.err" "$TESTDIR/recv.err"
        fail "case $n: the chain export of the raw disk was not received"
    }
    id=$(jq -r .backup_id "$TESTDIR/recv.json")
    rm -f "$TESTDIR/r.raw" "$TESTDIR/i.raw"
    expect_exit 0 ovagent restore --repo "$R" "$IMG" --backup "$id" --to "$TESTDIR/r.raw"
    cmp "$TESTDIR/r.raw" "$V" || fail "case $n: the restored disk is not the raw volume"
    no_secret "$TESTDIR/r.raw" "case $n: restore --to"
    ovagent restore --repo "$R" "$IMG" --backup "$id" --output - |
        ovagent import --to "$TESTDIR/i.raw" >/dev/null 2>"$TESTDIR/import.err" || {
        bk_show "$TESTDIR/import.err"
        fail "case $n: restore | import failed"
    }
    cmp "$TESTDIR/i.raw" "$V" || fail "case $n: the imported disk is not the raw volume"
    no_secret "$TESTDIR/i.raw" "case $n: restore | import"
    expect_exit 0 ovagent verify --repo "$R" "$IMG" --backup "$id"

    # A changed-block backup of the stopped VM: a raw disk cannot hold a
    # checkpoint; refused before anything is written into it.
    expect_exit 5 ovagent backup "$(bk_uuid)" --disk "$IMG" --full --output "$(bk_fresh)"
    grep -q 'raw disk' "$TESTDIR/err" || {
        bk_show "$TESTDIR/err"
        fail "case $n: the stopped backup did not say the disk is raw"
    }
    [ "$(sum_of "$V")" = "$before" ] || fail "case $n: the raw volume changed"
done

# ---- the qemu recipes of docs/repository.md §6 name every format too --------

load_backup_spec_recipe
(
    cd "$R/disks/$IMG"
    SPEC=$(backup_spec "$(jq -r '.backups[-1].id' manifest.json)")
    qemu-img info -U --output=json "$SPEC" |
        jq -e '.format == "raw" and ."virtual-size" == 67108864' >/dev/null ||
        fail "the recipe's spec does not open the backup as raw"
    qemu-img convert -O raw "$SPEC" "$TESTDIR/recipe.raw"
)
cmp "$TESTDIR/recipe.raw" "$V" || fail "the documented recipe does not give the guest's bytes"

# ---- restore and import never write through a planted link -----------------

VICTIM=$TESTDIR/victim
echo "precious" >"$VICTIM"
chmod 0644 "$VICTIM"
victim_sum=$(sum_of "$VICTIM")
for target in "$TESTDIR/t1.raw" "$TESTDIR/t2.raw"; do
    ln -sf "$VICTIM" "$target.part"
done
ln -sf "$VICTIM" "$TESTDIR/t3.raw"
expect_exit 2 ovagent restore --repo "$R" "$IMG" --to "$TESTDIR/t1.raw"
# import refuses before it reads the stream, so restore sees its reader go.
ovagent restore --repo "$R" "$IMG" --output - 2>/dev/null |
    { ovagent import --to "$TESTDIR/t2.raw" >/dev/null 2>"$TESTDIR/import.err"; echo $? >"$TESTDIR/import.rc"; } ||
    true
[ "$(cat "$TESTDIR/import.rc")" = 2 ] || {
    bk_show "$TESTDIR/import.err"
    fail "import --to over a planted .part link exited $(cat "$TESTDIR/import.rc"), not 2"
}
expect_exit 2 ovagent restore --repo "$R" "$IMG" --to "$TESTDIR/t3.raw"
[ "$(sum_of "$VICTIM")" = "$victim_sum" ] || fail "a file was written through a planted link"
[ "$(stat -c %a "$VICTIM")" = 644 ] || fail "the link's target changed mode"
for f in "$TESTDIR/t1.raw.part" "$TESTDIR/t2.raw.part" "$TESTDIR/t3.raw"; do
    [ -L "$f" ] || fail "$f is no longer the planted link"
done
for f in r.raw i.raw; do
    [ "$(stat -c %a "$TESTDIR/$f")" = 600 ] || fail "$f is mode $(stat -c %a "$TESTDIR/$f"), not 0600"
done
rm -f "$TESTDIR/q.qcow2"
expect_exit 0 ovagent restore --repo "$R" "$IMG" --to "$TESTDIR/q.qcow2" --format qcow2
[ "$(stat -c %a "$TESTDIR/q.qcow2")" = 600 ] || fail "a qcow2 restore is not 0600"
qemu-img compare -f qcow2 -F raw "$TESTDIR/q.qcow2" "$V" >/dev/null ||
    fail "the qcow2 restore differs from the raw volume"

# ---- the running VM ----------------------------------------------------------

read -r IMG2 VOL2 < <(snapshot.sh disk "$NFS_DIR" 64M)
V2=$NFS_DIR/images/$IMG2/$VOL2
snapshot.sh write "$NFS_DIR" "$IMG2" 0x5a 1M 1M
new_vm_name hostile
before=$(sum_of "$V")
vm.sh create "$LV" "$VM" "raw:$V" "qcow2:$V2" >/dev/null

# Named, the raw disk is refused; in the whole VM it is skipped with why.
expect_exit 5 ovagent backup "$VM" --disk vda --full --output "$(bk_fresh)"
grep -q 'raw disk' "$TESTDIR/err" || { bk_show "$TESTDIR/err"; fail "vda: no 'raw disk' reason"; }

# While the job runs (the reader waits), the scratch directory is root's
# and only the scratch files are QEMU's.
ovagent backup "$VM" --full --output - --json 2>"$TESTDIR/run.err" | {
    sleep 2
    find "$OVAGENT_SCRATCH_DIR" -mindepth 1 -printf '%y %u %m %p\n' >"$TESTDIR/scratch.ls"
    cat >"$TESTDIR/run.strm"
}
grep -q . "$TESTDIR/scratch.ls" || fail "no scratch directory seen during the backup"
while read -r type user mode path; do
    case $type in
        d) [ "$user $mode" = "root 711" ] ||
               fail "scratch directory $path is $user $mode, not root 711" ;;
        f) [ "$user" != root ] && [ "$mode" = 660 ] ||
               fail "scratch file $path is $user $mode, not QEMU's 660" ;;
        *) fail "unexpected $type in the scratch directory: $path" ;;
    esac
done <"$TESTDIR/scratch.ls"
tail -n 1 "$TESTDIR/run.err" >"$TESTDIR/run.json"
bk_check "the running backup did not skip the raw disk and back up the other" "$TESTDIR/run.json" \
    --arg img "$IMG" --arg img2 "$IMG2" '.result == "ok"
        and ([.skipped[] | select(.disk == $img and (.reason | test("raw")))] | length) == 1
        and [.disks[].disk] == [$img2]'
ovagent receive --repo "$R" --json <"$TESTDIR/run.strm" >"$TESTDIR/recv.json" ||
    fail "the running VM's backup was not received"
no_secret "$TESTDIR/run.strm" "the running VM's backup stream"
bk_no_job "$VM"
bk_no_leftovers "after the running backup"
vm.sh destroy "$LV" "$VM"
[ "$(sum_of "$V")" = "$before" ] || fail "the raw volume changed while the VM ran"
# Every qemu tool ovagent ran here was checked by the guard (no violation,
# or the exit handler fails the test), and there were such runs.
for tool in qemu-img qemu-nbd; do
    [ -n "$(qemu_guard_launches "$tool")" ] || fail "no $tool launch by ovagent was checked"
done
echo "$(qemu_guard_launches qemu-img | wc -l) qemu-img and $(qemu_guard_launches qemu-nbd | wc -l) qemu-nbd launches by ovagent checked"
echo "every guest-made header was read as the guest's bytes"
