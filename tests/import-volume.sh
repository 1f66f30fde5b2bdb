#!/bin/bash
# Restore end to end: a repository built by export-chain | receive, then
# restore --to FILE, restore --output - | import into a new file, an empty
# file-domain volume and the LVs of a block domain (a preallocated raw LV
# holding old bytes, a qcow2 LV), each compared with the source chain, written
# under the volume's sanlock lease (this host has joined both domains'
# lockspaces); and import's refusals: a smaller volume, a volume a running VM
# uses, a chain stream, a --format that disagrees with the volume's metadata.

. "$top_srcdir/tests/functions.sh"

requires_core qemu-img
requires_core qemu-io
requires_core qemu-nbd
requires_core jq
requires_core losetup
requires_core sanlock
requires_root
command -v ovagent >/dev/null || fail "ovagent not built"

GiB=$((1024 * 1024 * 1024))
MiB=$((1024 * 1024))
. "$top_srcdir/scripts/testbed/lib.sh"

FD=$TESTDIR/fd
cleanup_add filedomain.sh down "$FD"
filedomain.sh up "$FD"
. "$FD/ids"
export OVAGENT_DATA_CENTER=$DATA_CENTER
export OVAGENT_LVM_DEVICES=
export OVAGENT_RUN_DIR=$TESTDIR/run
export OVAGENT_STATE_DIR=$TESTDIR/state
# No libvirtd until the running-VM case: import warns and goes on, and
# export-chain is told which volume to stop at (--to).
export OVAGENT_LIBVIRT_URI=qemu:///system

# The block domain for the LV imports below; this host joins both
# domains' lockspaces (the block domain's ids and leases LVs active), as
# VDSM does for the active domains of a host.
BD=$TESTDIR/bd
cleanup_add blockdomain.sh down "$BD"
blockdomain.sh up "$BD" --spare
blockdomain.sh activate-sanlock "$BD"
bd_ids () { (. "$BD/ids"; eval "echo \$$1"); }
BSD=$(bd_ids SD)
start_sanlock
sanlock.sh join "$SL" 1 "$NFS_SD" "$NFS_DIR/dom_md/ids" 1 "$BSD" "/dev/$BSD/ids"

top_path=$(jq -r --arg img "$CHAIN_IMG" '
    .domains[].images[] | select(.uuid == $img) | .volumes[-1].path' "$FD/expected.json")
[ -f "$top_path" ] || fail "no leaf volume for image $CHAIN_IMG"

# same_as_source FILE FORMAT: guest data of FILE equals the source chain's.
same_as_source () {
    qemu-img compare -U -q -f "$2" -F qcow2 "$1" "$top_path" ||
        fail "$1 ($2) differs from the chain of $CHAIN_IMG"
}

# run_ok CMD...: like expect_exit 0, output kept in $TESTDIR/out.
run_ok () {
    expect_exit 0 "$@"
}

# --- the repository --------------------------------------------------------
R=$TESTDIR/repo
ovagent export-chain "$CHAIN_IMG" --to "$CHAIN_TOP" --output - 2>"$TESTDIR/send.err" |
    ovagent receive --repo "$R" --json >"$TESTDIR/receive.json" 2>"$TESTDIR/receive.err" || {
    cat "$TESTDIR/send.err" "$TESTDIR/receive.err" >&2
    fail "export-chain | receive failed"
}
backup_id=$(jq -r .backup_id "$TESTDIR/receive.json")
if [ -z "$backup_id" ] || [ "$backup_id" = null ]; then
    fail "receive gave no backup id"
fi

# --- restore --to ------------------------------------------------------------
run_ok ovagent restore --repo "$R" "$CHAIN_IMG" --to "$TESTDIR/x.raw" --json
jq -e --arg id "$backup_id" --arg disk "$CHAIN_IMG" --arg p "$TESTDIR/x.raw" '
    .result == "ok" and .backup_id == $id and .disk == $disk and .path == $p
    and .format == "raw" and (.bytes_written | type) == "number"' "$TESTDIR/out" >/dev/null ||
    fail "restore --to result: $(cat "$TESTDIR/out")"
same_as_source "$TESTDIR/x.raw" raw
# Sparse: the 1 GiB disk holds 10 MiB of data.
alloc=$(( $(stat -c %b "$TESTDIR/x.raw") * $(stat -c %B "$TESTDIR/x.raw") ))
[ "$alloc" -lt $((64 * MiB)) ] || fail "restored raw file is not sparse ($alloc bytes allocated)"
run_ok ovagent restore --repo "$R" "$CHAIN_IMG" --backup "$backup_id" \
    --to "$TESTDIR/x.qcow2" --format qcow2
same_as_source "$TESTDIR/x.qcow2" qcow2
expect_exit 2 ovagent restore --repo "$R" "$CHAIN_IMG" --to "$TESTDIR/x.raw"
expect_exit 3 ovagent restore --repo "$R" "$(tb_uuid)" --to "$TESTDIR/none.raw"
if [ -e "$TESTDIR/none.raw" ] || [ -e "$TESTDIR/none.raw.part" ]; then
    fail "a failed restore left a file behind"
fi

# The stream, once, replayed into every import below.
ovagent restore --repo "$R" "$CHAIN_IMG" --output - >"$TESTDIR/restore.stream" ||
    fail "restore --output - failed"
[ -z "$(ls -A "$OVAGENT_RUN_DIR")" ] || fail "restore left $(ls "$OVAGENT_RUN_DIR") in run_dir"

# --- import --to -----------------------------------------------------------
for fmt in raw qcow2; do
    expect_exit 0 ovagent import --to "$TESTDIR/y.$fmt" --format "$fmt" --json \
        <"$TESTDIR/restore.stream"
    jq -e --arg p "$TESTDIR/y.$fmt" --arg f "$fmt" '
        .result == "ok" and .target == $p and .format == $f
        and .data_bytes > 0 and .data_bytes + .zero_bytes == 1073741824' \
        "$TESTDIR/out" >/dev/null || fail "import --to result: $(cat "$TESTDIR/out")"
    same_as_source "$TESTDIR/y.$fmt" "$fmt"
done
# Through a pipe, as a controller runs it.
ovagent restore --repo "$R" "$CHAIN_IMG" --output - |
    ovagent import --to "$TESTDIR/z.raw" >/dev/null || fail "restore | import --to failed"
same_as_source "$TESTDIR/z.raw" raw
expect_exit 2 ovagent import --to "$TESTDIR/z.raw" <"$TESTDIR/restore.stream"
# A stream cut short leaves no file.
head -c 100000 "$TESTDIR/restore.stream" >"$TESTDIR/cut.stream"
expect_exit 7 ovagent import --to "$TESTDIR/cut.raw" <"$TESTDIR/cut.stream"
if [ -e "$TESTDIR/cut.raw" ] || [ -e "$TESTDIR/cut.raw.part" ]; then
    fail "a failed import left a file behind"
fi

# A chain stream is for receive.
ovagent export-chain "$CHAIN_IMG" --to "$CHAIN_TOP" --output - >"$TESTDIR/chain.stream" 2>/dev/null ||
    fail "export-chain --output - failed"
expect_exit 2 ovagent import --to "$TESTDIR/c.raw" <"$TESTDIR/chain.stream"
grep -q "chain stream" "$TESTDIR/err" || fail "no 'chain stream' in: $(cat "$TESTDIR/err")"

# --- import --to-volume, file domain -----------------------------------------
# new_file_volume FORMAT CAPACITY: an empty leaf volume in an image of its
# own in the NFS domain, as the engine creates one; prints SD/IMG/VOL.
new_file_volume () {
    local img vol dir qfmt=raw
    [ "$1" = COW ] && qfmt=qcow2
    img=$(tb_uuid); vol=$(tb_uuid); dir=$NFS_DIR/images/$img
    mkdir -p "$dir"
    qemu-img create -q -f "$qfmt" "$dir/$vol" "$2"
    chmod 0660 "$dir/$vol"
    tb_vol_record 5 "$NFS_SD" "$img" "" "$1" LEAF "$2" | tb_write_file "$dir/$vol.meta"
    : >"$dir/$vol.lease"
    tb_volume_lease "$NFS_SD" "$vol" "$dir/$vol.lease"
    printf '%s/%s/%s\n' "$NFS_SD" "$img" "$vol"
}

vol_path () {
    printf '%s/images/%s' "$NFS_DIR" "${1#*/}"
}

raw_target=$(new_file_volume RAW "$GiB")
# Old bytes where the disk has none: import must zero them.
qemu-io -f raw -c 'write -q -P 0x99 100M 1M' "$(vol_path "$raw_target")" >/dev/null
expect_exit 0 ovagent import --to-volume "$raw_target" --json <"$TESTDIR/restore.stream"
jq -e --arg t "$raw_target" '.result == "ok" and .target == $t and .format == "raw"' \
    "$TESTDIR/out" >/dev/null || fail "import --to-volume result: $(cat "$TESTDIR/out")"
same_as_source "$(vol_path "$raw_target")" raw

cow_target=$(new_file_volume COW "$GiB")
expect_exit 0 ovagent import --to-volume "$cow_target" --json <"$TESTDIR/restore.stream"
jq -e '.format == "qcow2"' "$TESTDIR/out" >/dev/null || fail "not imported as qcow2"
same_as_source "$(vol_path "$cow_target")" qcow2

# Refusals, each leaving the volume as it was.
small_target=$(new_file_volume RAW $((512 * MiB)))
expect_exit 2 ovagent import --to-volume "$small_target" <"$TESTDIR/restore.stream"
grep -q "smaller than the disk" "$TESTDIR/err" || fail "no size refusal: $(cat "$TESTDIR/err")"
expect_exit 2 ovagent import --to-volume "$cow_target" --format raw <"$TESTDIR/restore.stream"
expect_exit 3 ovagent import --to-volume "$NFS_SD/$CHAIN_IMG/$(tb_uuid)" <"$TESTDIR/restore.stream"
expect_exit 2 ovagent import --to-volume "$NFS_SD/$CHAIN_IMG/$CHAIN_MID" <"$TESTDIR/restore.stream"
expect_exit 2 ovagent import --to-volume "not/a/volume" <"$TESTDIR/restore.stream"

# --- import --to-volume, block domain ----------------------------------------
LOOP=$(bd_ids LOOP)
SHIM=$top_srcdir/scripts/testbed/lvm-shim
bd_env () {
    (. "$BD/env"; export OVAGENT_LIBVIRT_URI; "$@")
}
lv () {
    "$SHIM" lvchange --devices "$LOOP" --autobackup n --available "$1" "$BSD/$2" >/dev/null
}

for kind in RAW COW; do
    img=$(bd_ids "SPARE_${kind}_IMG"); vol=$(bd_ids "SPARE_${kind}_VOL")
    fmt=raw; [ "$kind" = COW ] && fmt=qcow2
    expect_exit 0 bd_env ovagent import --to-volume "$BSD/$img/$vol" --json \
        <"$TESTDIR/restore.stream"
    jq -e --arg f "$fmt" '.result == "ok" and .format == $f' "$TESTDIR/out" >/dev/null ||
        fail "block import result: $(cat "$TESTDIR/out")"
    [ ! -e "/dev/$BSD/$vol" ] || fail "import left LV $vol active"
    [ -z "$(ls -A "$BD/state/activations" 2>/dev/null)" ] ||
        fail "import left activation records: $(ls "$BD/state/activations")"
    lv y "$vol"
    cleanup_add lv n "$vol"
    same_as_source "/dev/$BSD/$vol" "$fmt"
    lv n "$vol"
done

# --- a volume a running VM uses ----------------------------------------------
if command -v libvirtd >/dev/null && command -v virsh >/dev/null &&
   command -v qemu-system-x86_64 >/dev/null; then
    LV=$TESTDIR/libvirt
    cleanup_add libvirt.sh down "$LV"
    libvirt.sh up "$LV"
    VM=ovagent-test-$(head -c 8 /proc/sys/kernel/random/uuid)
    cleanup_add vm.sh destroy "$LV" "$VM"
    vm.sh create "$LV" "$VM" "$(vol_path "$raw_target")" >/dev/null
    expect_exit 4 ovagent import --to-volume "$raw_target" <"$TESTDIR/restore.stream"
    grep -q "$VM" "$TESTDIR/err" || fail "the refusal does not name $VM: $(cat "$TESTDIR/err")"
    vm.sh destroy "$LV" "$VM"
elif [ "${CI:-}" = true ]; then
    fail "libvirtd, virsh or qemu-system-x86_64 missing (CI=true: not skipping)"
else
    echo "note: no libvirt here, the running-VM refusal is not tested" >&2
fi

[ -z "$(ls -A "$OVAGENT_RUN_DIR")" ] || fail "left $(ls "$OVAGENT_RUN_DIR") in run_dir"
[ -z "$(sanlock.sh leases "$SL" 1)" ] || fail "leases left held: $(sanlock.sh leases "$SL" 1)"
echo "PASS: restore and import"
