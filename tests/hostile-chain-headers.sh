#!/bin/bash
# A chain's headers are checked against VDSM's metadata before any qemu tool
# opens it, and every layer is opened as the metadata says. A raw base whose
# guest bytes look like a qcow2 header naming a host file, under a snapshot
# whose header records no backing format (an old chain), is exported and
# backed up (chain export and a changed-block backup of the stopped VM) as
# the guest sees it. A snapshot whose header names a host file, a json:
# spec, an external data file, or an absurd size is refused by export-chain,
# backup and info with the exit code and the volume named. A bitmap named
# "-x" in the top volume is never taken for an option.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

requires_core xxh128sum
requires_core qemu-img
requires_core qemu-io
requires_core qemu-nbd
requires_core jq
requires_core python3
requires_root
requires ovagent

start_filedomain
bk_env
export OVAGENT_DATA_CENTER=$FD/data-center
# The libvirt test driver: the VM is stopped and unknown to libvirt.
export OVAGENT_LIBVIRT_URI=test:///default
R=$TESTDIR/repo
# This host in the domain's lockspace, as VDSM keeps it: the stopped VM's
# bitmaps go in under the top volume's lease.
start_sanlock
sanlock.sh join "$SL" 1 "$NFS_SD" "$NFS_DIR/dom_md/ids"
VMID=$(bk_uuid)

SECRET=$TESTDIR/host-secret
for _ in $(seq 4096); do printf 'HOST-SECRET-0123456789abcdef-HOST-SECRET-0123456789abcdef\n'; done \
    >"$SECRET"

read -r IMG BASE < <(snapshot.sh disk "$NFS_DIR" 64M --raw)
B=$NFS_DIR/images/$IMG/$BASE
# The guest's raw disk starts with what looks like a qcow2 header naming
# the host file, and holds data further on.
qemu-img create -q -f qcow2 -u -b "$SECRET" -F raw "$TESTDIR/hdr.qcow2" 1T
dd if="$TESTDIR/hdr.qcow2" of="$B" conv=notrunc status=none
printf 'GUEST-BASE-DATA' | dd of="$B" bs=1 seek=$((8 * 1024 * 1024)) conv=notrunc status=none
LEAF=$(snapshot.sh create "$NFS_DIR" "$IMG")
L=$NFS_DIR/images/$IMG/$LEAF
qemu-io -c 'write -q -P 0x6c 16M 1M' \
    "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"$L\"},\"backing\":{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"$B\"}}}"

# An old chain: the snapshot's header records no backing format, so a qemu
# tool left alone would probe the base, find "qcow2" and follow it.
python3 - "$L" <<'EOF'
import struct, sys
path = sys.argv[1]
with open(path, "r+b") as f:
    head = bytearray(f.read(65536))
    off = struct.unpack(">I", head[100:104])[0]
    while True:
        typ, ln = struct.unpack(">II", head[off:off + 8])
        if typ == 0:
            sys.exit("no backing format extension found")
        if typ == 0xe2792aca:
            head[off:off + 4] = struct.pack(">I", 0x0b0b0b0b)   # unknown: ignored
            break
        off += 8 + (ln + 7) // 8 * 8
    f.seek(0)
    f.write(head)
EOF
qemu-img info -U --output=json -f qcow2 "$L" | jq -e '."backing-filename-format" == null' >/dev/null ||
    fail "the test could not drop the backing format of $L"

# What the guest sees: every layer named by the test itself.
spec="json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"$L\"},\"backing\":{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"$B\"}}}"
qemu-img convert -U -O raw "$spec" "$TESTDIR/guest.raw"
if grep -q HOST-SECRET "$TESTDIR/guest.raw"; then
    fail "the test's own reference holds the secret"
fi
base_sum=$(xxh128sum "$B" | cut -d' ' -f1)

no_secret () {
    if grep -q HOST-SECRET "$1"; then
        fail "$2: the host file $SECRET leaked into $1"
    fi
}

# ---- the old chain, exported and backed up as the guest sees it -------------

ovagent export-chain "$IMG" --output - 2>"$TESTDIR/export.err" |
    ovagent receive --repo "$R" --json >"$TESTDIR/recv.json" 2>"$TESTDIR/recv.err" || {
    bk_show "$TESTDIR/export.err" "$TESTDIR/recv.err"
    fail "the old chain's export was not received"
}
id=$(jq -r .backup_id "$TESTDIR/recv.json")
expect_exit 0 ovagent restore --repo "$R" "$IMG" --backup "$id" --to "$TESTDIR/r1.raw"
cmp "$TESTDIR/r1.raw" "$TESTDIR/guest.raw" || fail "chain export: the restored disk is not the guest's"
no_secret "$TESTDIR/r1.raw" "chain export"

bk_backup_ok cbt-full "$R" "$VMID" --disk "$IMG" --full
bk_restore_compare "stopped VM, full" "$R" "$IMG" "$BK_ID" "$TESTDIR/guest.raw"
[ "$(xxh128sum "$B" | cut -d' ' -f1)" = "$base_sum" ] || fail "the raw base changed"
bk_backup_ok cbt-inc "$R" "$VMID" --disk "$IMG" --incremental
bk_restore_compare "stopped VM, incremental" "$R" "$IMG" "$BK_ID" "$TESTDIR/guest.raw"

# The documented recipe opens both backups as the guest saw them.
load_backup_spec_recipe
for b in "$id" "$BK_ID"; do
    rm -f "$TESTDIR/recipe.raw"
    (cd "$R/disks/$IMG" && qemu-img convert -O raw "$(backup_spec "$b")" "$TESTDIR/recipe.raw")
    cmp "$TESTDIR/recipe.raw" "$TESTDIR/guest.raw" ||
        fail "the documented recipe does not give backup $b as the guest saw it"
done

# ---- headers that contradict the metadata ------------------------------------

cp --sparse=always "$L" "$TESTDIR/leaf.good"

# refused WHAT CODE PATTERN: export-chain, backup and info say so.
refused () {
    local what=$1 code=$2 pattern=$3
    expect_exit "$code" ovagent export-chain "$IMG" --output "$(bk_fresh)"
    grep -qE "$pattern" "$TESTDIR/err" && grep -q "$LEAF" "$TESTDIR/err" || {
        bk_show "$TESTDIR/err"
        fail "$what: export-chain did not name the volume and /$pattern/"
    }
    [ ! -e "$TESTDIR/x.strm" ] || fail "$what: export-chain left a stream file"
    expect_exit "$code" ovagent backup "$VMID" --disk "$IMG" --full --output "$(bk_fresh)"
    grep -qE "$pattern" "$TESTDIR/err" || {
        bk_show "$TESTDIR/err"
        fail "$what: backup did not say /$pattern/"
    }
    expect_exit 0 ovagent info "$IMG" --json
    bk_check "$what: info shows no problem on the volume" "$TESTDIR/out" \
        --arg v "$LEAF" '[.volumes[] | select(.uuid == $v) | .problems[]] | length > 0'
    cp --sparse=always "$TESTDIR/leaf.good" "$L"
}

qemu-img rebase -u -f qcow2 -b "$SECRET" -F raw "$L"
refused "a backing file naming a host file" 6 'backing'

qemu-img rebase -u -f qcow2 \
    -b "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"$SECRET\"}}" -F raw "$L"
refused "a json: backing file" 6 'backing'

rm -f "$L"
qemu-img create -q -f qcow2 -o "data_file=$TESTDIR/datafile" -u -b "$BASE" -F raw "$L" 64M
refused "an external data file" 5 'external data file'

python3 - "$L" <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(24)
    f.write(struct.pack(">Q", 1 << 60))
EOF
refused "a virtual size of 2^60 bytes" 6 'virtual size'

# ---- a bitmap named like an option -------------------------------------------

qemu-img bitmap --add -f qcow2 -- "$L" -x
expect_exit 0 ovagent info "$IMG" --json
bk_check "info does not list bitmap -x" "$TESTDIR/out" \
    --arg v "$LEAF" '.volumes[] | select(.uuid == $v) | [.bitmaps[].name] | index("-x") != null'
bk_backup_ok cbt-after-x "$R" "$VMID" --disk "$IMG" --auto
bk_restore_compare "backup with bitmap -x present" "$R" "$IMG" "$BK_ID" "$TESTDIR/guest.raw"
expect_exit 2 ovagent checkpoints "$VMID" --delete -x
qemu-img info -U --output=json -f qcow2 "$L" |
    jq -e '[."format-specific".data.bitmaps[].name] | index("-x") != null' >/dev/null ||
    fail "bitmap -x went away"
[ "$(xxh128sum "$B" | cut -d' ' -f1)" = "$base_sum" ] || fail "the raw base changed"
# Every qemu tool ovagent ran here was checked by the guard (no violation,
# or the exit handler fails the test), and there were such runs.
for tool in qemu-img qemu-nbd; do
    [ -n "$(qemu_guard_launches "$tool")" ] || fail "no $tool launch by ovagent was checked"
done
echo "$(qemu_guard_launches qemu-img | wc -l) qemu-img and $(qemu_guard_launches qemu-nbd | wc -l) qemu-nbd launches by ovagent checked"
echo "every header was checked before qemu opened it"
