#!/bin/bash
# Volume leases: ovagent writes into a volume of a shared domain only while it
# holds the volume's sanlock lease, taken as VDSM takes it. While a second
# host (a sanlock daemon of its own, host id 2) holds the lease, a stopped
# VM's backup (file and block domain), checkpoints --delete and import
# --to-volume (file volume and LV) are refused with exit 4 naming the volume
# and host id 2, nothing written; once host 2 lets go they go on. ovagent
# keeps no lease after any exit, SIGKILL included (the daemon releases it,
# host 2 can take it, and the next backup undoes the dead one under the
# lease). A domain whose lockspace this host has not joined and a sanlock
# daemon that cannot be reached are refused (exit 5) with the reason; a
# LocalFS domain has no volume leases and needs none.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

for c in qemu-img qemu-io qemu-nbd jq lvm losetup sanlock; do
    requires_core "$c"
done
requires_root
command -v ovagent >/dev/null || fail "ovagent not built"

start_filedomain
TB=$TESTDIR/tb
cleanup_add blockdomain.sh down "$TB"
blockdomain.sh up "$TB" --spare >/dev/null
BENV=$TB/env
BSD=$(. "$TB/ids"; echo "$SD")
SPARE_COW_IMG=$(. "$TB/ids"; echo "$SPARE_COW_IMG")
SPARE_COW_VOL=$(. "$TB/ids"; echo "$SPARE_COW_VOL")
export OVAGENT_DATA_CENTER=$FD/data-center
OVAGENT_LVM_DEVICES=$(. "$BENV"; echo "$OVAGENT_LVM_DEVICES")
OVAGENT_LVM_COMMAND=$(. "$BENV"; echo "$OVAGENT_LVM_COMMAND")
export OVAGENT_LVM_DEVICES OVAGENT_LVM_COMMAND
# libvirt's test driver: no VM of it uses these volumes, so only the leases
# stand between ovagent and a VM running on another host.
agent_env test:///default
D=$NFS_DIR
R=$TESTDIR/repo
MiB=$((1024 * 1024))

# Both hosts join the NFS domain and the block domain (whose ids and leases
# LVs are active, as VDSM keeps them); neither joins the POSIX domain.
blockdomain.sh activate-sanlock "$TB"
start_sanlock
sanlock.sh join "$SL" 1 "$NFS_SD" "$D/dom_md/ids" 1 "$BSD" "/dev/$BSD/ids" \
    2 "$NFS_SD" "$D/dom_md/ids" 2 "$BSD" "/dev/$BSD/ids"

lvm_ () {
    local sub=$1
    shift
    "$OVAGENT_LVM_COMMAND" "$sub" --devices "$OVAGENT_LVM_DEVICES" "$@"
}

# no_lease_held WHAT: ovagent's host holds no lease.
no_lease_held () {
    local held
    held=$(sanlock.sh leases "$SL" 1)
    [ -z "$held" ] || fail "$1: leases left held by host 1: $held"
}

# hold_file IMG VOL, hold_block VOL: host 2 takes the volume's lease, where
# VDSM keeps it; HOLDER is the holding process.
hold_file () {
    HOLDER=$(sanlock.sh hold "$SL" 2 "$NFS_SD" "$2" "$D/images/$1/$2.lease" 0)
}
hold_block () {
    local slot
    slot=$(lvm_ lvs --noheadings -o lv_tags "$BSD/$1" | tr ',' '\n' |
        sed -n 's/^ *MD_\([0-9]*\) *$/\1/p')
    [ -n "$slot" ] || fail "LV $BSD/$1 has no MD_ tag"
    HOLDER=$(sanlock.sh hold "$SL" 2 "$BSD" "$1" "/dev/$BSD/leases" $(( (100 + slot) * MiB )))
}
let_go () {
    sanlock.sh release "$SL" "$HOLDER"
}

# refused_for_host2 WHAT VOL ERRFILE: the refusal names VOL and host id 2.
refused_for_host2 () {
    if ! grep -q "$2" "$3" || ! grep -q 'host id 2 holds its sanlock lease' "$3"; then
        bk_show "$3"
        fail "$1: the refusal does not name volume $2 and host id 2"
    fi
}

# expect_send_exit NAME CODE: the sender of backup NAME exited CODE.
expect_send_exit () {
    if [ "$BK_RC_SEND" -ne "$2" ]; then
        bk_show "$TESTDIR/$1.err" "$TESTDIR/$1.recv.err"
        fail "$1: backup exited $BK_RC_SEND, expected $2"
    fi
}

top_bitmaps_block () {
    local out
    lvm_ lvchange --available y "$BSD/$1" >/dev/null
    out=$(bk_image_bitmaps "/dev/$BSD/$1") || true
    lvm_ lvchange --available n "$BSD/$1" >/dev/null
    echo "$out"
}

# ---- a stopped VM's backup, file domain --------------------------------------
read -r IMG_F VOL_F < <(snapshot.sh disk "$D" 64M)
snapshot.sh write "$D" "$IMG_F" 0x11 0 4M
VM=$(bk_uuid)

hold_file "$IMG_F" "$VOL_F"
bk_backup f1 "$R" "$VM" --disk "$IMG_F" --full
expect_send_exit f1 4
refused_for_host2 f1 "$VOL_F" "$TESTDIR/f1.err"
[ "$BK_RC_RECV" -ne 0 ] && [ ! -e "$R" ] || fail "f1: the receiver stored something"
[ -z "$(bk_image_bitmaps "$D/images/$IMG_F/$VOL_F")" ] ||
    fail "f1: a bitmap was added while host 2 held the lease"
no_lease_held f1
let_go

bk_backup_ok f2 "$R" "$VM" --disk "$IMG_F" --full
CP_F=$(jq -r .checkpoint "$TESTDIR/f2.json")
[ "$(bk_image_bitmaps "$D/images/$IMG_F/$VOL_F")" = "${CP_F}[auto]" ] ||
    fail "f2: bitmaps [$(bk_image_bitmaps "$D/images/$IMG_F/$VOL_F")], expected ${CP_F}[auto]"
no_lease_held f2
snapshot.sh convert "$D" "$IMG_F" "$TESTDIR/f2.raw"

# ---- checkpoints --delete on the stopped VM -----------------------------------
hold_file "$IMG_F" "$VOL_F"
expect_exit 4 ovagent checkpoints "$VM" --delete "$CP_F"
refused_for_host2 "checkpoints --delete" "$VOL_F" "$TESTDIR/err"
[ "$(bk_image_bitmaps "$D/images/$IMG_F/$VOL_F")" = "${CP_F}[auto]" ] ||
    fail "checkpoints --delete changed the bitmaps while host 2 held the lease"
no_lease_held "refused checkpoints --delete"
let_go
expect_exit 0 ovagent checkpoints "$VM" --delete "$CP_F" --json
[ -z "$(bk_image_bitmaps "$D/images/$IMG_F/$VOL_F")" ] ||
    fail "checkpoints --delete left bitmaps [$(bk_image_bitmaps "$D/images/$IMG_F/$VOL_F")]"
no_lease_held "checkpoints --delete"

# ---- a stopped VM's backup, block domain --------------------------------------
read -r IMG_B VOL_B < <(snapshot.sh disk "$BSD" 128M --block-env "$BENV")
snapshot.sh write "$BSD" "$IMG_B" 0x21 0 2M --block-env "$BENV"
VM_B=$(bk_uuid)

hold_block "$VOL_B"
bk_backup b1 "$R" "$VM_B" --disk "$IMG_B" --full
expect_send_exit b1 4
refused_for_host2 b1 "$VOL_B" "$TESTDIR/b1.err"
[ ! -e "$R/disks/$IMG_B" ] || fail "b1: the receiver stored disk $IMG_B"
[ ! -e "/dev/$BSD/$VOL_B" ] || fail "b1: the refused backup left LV $VOL_B active"
[ -z "$(top_bitmaps_block "$VOL_B")" ] || fail "b1: a bitmap was added while host 2 held the lease"
no_lease_held b1
let_go

bk_backup_ok b2 "$R" "$VM_B" --disk "$IMG_B" --full
CP_B=$(jq -r .checkpoint "$TESTDIR/b2.json")
[ "$(top_bitmaps_block "$VOL_B")" = "${CP_B}[auto]" ] ||
    fail "b2: bitmaps [$(top_bitmaps_block "$VOL_B")], expected ${CP_B}[auto]"
[ ! -e "/dev/$BSD/$VOL_B" ] || fail "b2: LV $VOL_B left active"
no_lease_held b2

# ---- import --to-volume: an empty file volume and an LV -----------------------
ovagent restore --repo "$R" "$IMG_F" --output - >"$TESTDIR/restore.stream" ||
    fail "restore --output - failed"
read -r IMG_T VOL_T < <(snapshot.sh disk "$D" 64M)
TARGET=$D/images/$IMG_T/$VOL_T
before=$(md5sum <"$TARGET")

hold_file "$IMG_T" "$VOL_T"
expect_exit 4 ovagent import --to-volume "$NFS_SD/$IMG_T/$VOL_T" <"$TESTDIR/restore.stream"
refused_for_host2 "import into a file volume" "$VOL_T" "$TESTDIR/err"
[ "$(md5sum <"$TARGET")" = "$before" ] || fail "import wrote into $VOL_T while host 2 held the lease"
no_lease_held "refused import"
let_go
# Another process of this host (a VDSM job) holding it is a refusal too.
HOLDER=$(sanlock.sh hold "$SL" 1 "$NFS_SD" "$VOL_T" "$D/images/$IMG_T/$VOL_T.lease" 0)
expect_exit 4 ovagent import --to-volume "$NFS_SD/$IMG_T/$VOL_T" <"$TESTDIR/restore.stream"
grep -q "volume $NFS_SD/$IMG_T/$VOL_T is in use on this host" "$TESTDIR/err" ||
    { cat "$TESTDIR/err" >&2; fail "the refusal does not say another process of this host holds it"; }
[ "$(md5sum <"$TARGET")" = "$before" ] || fail "import wrote into $VOL_T while another process held the lease"
let_go
# A lease area VDSM never wrote (an empty .lease): no lease, no write.
cp "$D/images/$IMG_T/$VOL_T.lease" "$TESTDIR/lease.good"
: >"$D/images/$IMG_T/$VOL_T.lease"
expect_exit 6 ovagent import --to-volume "$NFS_SD/$IMG_T/$VOL_T" <"$TESTDIR/restore.stream"
grep -q "has no usable lease" "$TESTDIR/err" ||
    { cat "$TESTDIR/err" >&2; fail "an empty lease file is not said to hold no lease"; }
[ "$(md5sum <"$TARGET")" = "$before" ] || fail "import wrote into $VOL_T without its lease"
cp "$TESTDIR/lease.good" "$D/images/$IMG_T/$VOL_T.lease"
expect_exit 0 ovagent import --to-volume "$NFS_SD/$IMG_T/$VOL_T" <"$TESTDIR/restore.stream"
qemu-img compare -q -f qcow2 -F raw "$TARGET" "$TESTDIR/f2.raw" ||
    fail "the imported volume differs from the disk backed up"
no_lease_held import

hold_block "$SPARE_COW_VOL"
expect_exit 4 ovagent import --to-volume "$BSD/$SPARE_COW_IMG/$SPARE_COW_VOL" \
    <"$TESTDIR/restore.stream"
refused_for_host2 "import into an LV" "$SPARE_COW_VOL" "$TESTDIR/err"
[ ! -e "/dev/$BSD/$SPARE_COW_VOL" ] || fail "the refused import left LV $SPARE_COW_VOL active"
no_lease_held "refused import into an LV"
let_go
expect_exit 0 ovagent import --to-volume "$BSD/$SPARE_COW_IMG/$SPARE_COW_VOL" \
    <"$TESTDIR/restore.stream"
no_lease_held "import into an LV"

# ---- SIGKILL while the lease is held -------------------------------------------
# A reader that never reads: the backup holds the lease while it waits to
# write more than a pipe holds.
snapshot.sh write "$D" "$IMG_F" 0x31 8M 16M
mkfifo "$TESTDIR/stalled"
sleep 3600 <"$TESTDIR/stalled" &
READER=$!
stop_reader () {
    kill "$READER" 2>/dev/null || true
}
cleanup_add stop_reader
ovagent backup "$VM" --disk "$IMG_F" --full --output - >"$TESTDIR/stalled" 2>"$TESTDIR/k.err" &
AGENT=$!
held_by_agent () {
    sanlock.sh leases "$SL" 1 | grep -q "^$NFS_SD:$VOL_F:.* p $AGENT\$"
}
for (( i = 0; i < 600; i++ )); do
    held_by_agent && break
    kill -0 "$AGENT" 2>/dev/null || break
    sleep 0.1
done
held_by_agent || { bk_show "$TESTDIR/k.err"; fail "the stalled backup does not hold the lease of $VOL_F"; }
kill -KILL "$AGENT"
wait "$AGENT" 2>/dev/null || true
# Its qemu-nbd ends on the parent-death signal, a moment later; until then
# it holds the image's lock, which the next backup needs to add its bitmap.
for (( i = 0; i < 600; i++ )); do
    pgrep -f "qemu-nbd.*$VOL_F" >/dev/null || break
    sleep 0.1
done
if pgrep -f "qemu-nbd.*$VOL_F" >/dev/null; then
    for pid in $(pgrep -f "qemu-nbd.*$VOL_F"); do
        ps -o pid,ppid,stat,wchan:32,etime,args -p "$pid" >&2 || true
        grep -E '^(State|PPid|SigPnd|ShdPnd|SigBlk|SigIgn|SigCgt)' "/proc/$pid/status" >&2 || true
        cat "/proc/$pid/stack" >&2 2>/dev/null || true
        # Not left behind for the next test.
        kill -TERM "$pid" 2>/dev/null || true
    done
    fail "the killed backup's qemu-nbd is still running after 60 s"
fi
for (( i = 0; i < 300; i++ )); do
    [ -n "$(sanlock.sh leases "$SL" 1)" ] || break
    sleep 0.1
done
no_lease_held "ovagent killed with SIGKILL"
# Released on storage too: the other host can take it.
hold_file "$IMG_F" "$VOL_F"
let_go
stop_reader

# The next backup undoes the dead one (its checkpoint never reached the
# image) and goes on, under the lease again.
bk_backup_ok f3 "$R" "$VM" --disk "$IMG_F" --auto
grep -q 'did not finish; undoing it' "$TESTDIR/f3.err" ||
    { bk_show "$TESTDIR/f3.err"; fail "f3: the killed backup was not undone"; }
CP_F3=$(jq -r .checkpoint "$TESTDIR/f3.json")
[ "$(bk_image_bitmaps "$D/images/$IMG_F/$VOL_F")" = "${CP_F3}[auto]" ] ||
    fail "f3: bitmaps [$(bk_image_bitmaps "$D/images/$IMG_F/$VOL_F")], expected ${CP_F3}[auto]"
no_lease_held f3

# ---- refusals with their reasons ------------------------------------------------
# This host has not joined the POSIX domain's lockspace.
read -r IMG_P VOL_P < <(snapshot.sh disk "$POSIX_DIR" 64M)
snapshot.sh write "$POSIX_DIR" "$IMG_P" 0x41 0 1M
expect_exit 5 ovagent backup "$(bk_uuid)" --disk "$IMG_P" --full --output "$(bk_fresh)"
grep -q "has not joined the sanlock lockspace of storage domain $POSIX_SD" "$TESTDIR/err" ||
    { cat "$TESTDIR/err" >&2; fail "the refusal does not say this host has not joined $POSIX_SD"; }
grep -q 'is this host Up' "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "no advice"; }
[ -z "$(bk_image_bitmaps "$POSIX_DIR/images/$IMG_P/$VOL_P")" ] ||
    fail "a bitmap was added without the lease"
[ ! -e "$TESTDIR/x.strm" ] || fail "the refused backup left its output behind"

# No sanlock daemon where the configuration says.
expect_exit 5 env OVAGENT_SANLOCK_RUN_DIR="$TESTDIR/no-sanlock" \
    ovagent backup "$VM" --disk "$IMG_F" --auto --output "$(bk_fresh)"
grep -q "cannot reach the sanlock daemon at $TESTDIR/no-sanlock/sanlock.sock" "$TESTDIR/err" ||
    { cat "$TESTDIR/err" >&2; fail "the refusal does not name the daemon's socket"; }

# A LocalFS domain keeps no volume leases: nothing to join, none taken.
LOCALFS_DIR=$OVAGENT_DATA_CENTER/mnt/_localfs_data/$LOCALFS_SD
read -r IMG_L VOL_L < <(snapshot.sh disk "$LOCALFS_DIR" 64M)
[ ! -e "$LOCALFS_DIR/images/$IMG_L/$VOL_L.lease" ] || fail "the LocalFS volume has a lease file"
bk_backup_ok l1 "$R" "$(bk_uuid)" --disk "$IMG_L" --full --verbose
grep -q 'keeps no volume leases' "$TESTDIR/l1.err" ||
    { bk_show "$TESTDIR/l1.err"; fail "l1: no word of the LocalFS domain keeping no leases"; }
[ -n "$(bk_image_bitmaps "$LOCALFS_DIR/images/$IMG_L/$VOL_L")" ] || fail "l1: no bitmap added"

no_lease_held "the end"
expect_exit 0 ovagent verify --repo "$R"
echo "PASS: volume leases: refused while another host holds them, released however ovagent ends"
