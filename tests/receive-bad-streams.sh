#!/bin/bash
# receive refuses bad input with its exit code and leaves the repository
# byte for byte as it was: cut, corrupted, trailing and out-of-order streams,
# an unwritable, busy or foreign repository, a busy disk, a signal
# mid-stream, leftovers of a crash; then good incrementals commit and open
# as a qcow2 chain.

. "$top_srcdir/tests/functions.sh"

requires_root
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires_core python3
requires_core xxh128sum
requires ovagent

start_filedomain
agent_env

R=$TESTDIR/repo
D=$R/disks/$CHAIN_IMG
IMGDIR=$NFS_DIR/images/$CHAIN_IMG

# xxh128sum reads the sparse 1 GiB base many times faster than sha256sum.
SUM=xxh128sum

# state: every path, type, size and mode under the repository, and every
# file's digest; equal states mean an unchanged repository.
state () {
    (cd "$R" && find . -printf '%p %y %s %m\n' | LC_ALL=C sort &&
        find . -type f -exec "$SUM" {} + | LC_ALL=C sort)
}

# unchanged WHAT: the repository is as recorded by `state >$TESTDIR/before`.
unchanged () {
    state >"$TESTDIR/after"
    if ! cmp -s "$TESTDIR/before" "$TESTDIR/after"; then
        diff "$TESTDIR/before" "$TESTDIR/after" >&2 || true
        fail "$1: the repository changed"
    fi
    if compgen -G "$D/.incoming-*" >/dev/null; then
        fail "$1: left $(echo "$D"/.incoming-*)"
    fi
}

# refused CODES WHAT FILE: receive of FILE exits with one of CODES (e.g.
# "6 7") and changes nothing.
refused () {
    local codes=$1 what=$2 file=$3 rc=0
    ovagent receive --repo "$R" --json <"$file" >"$TESTDIR/out" 2>"$TESTDIR/err" || rc=$?
    case " $codes " in
        *" $rc "*) ;;
        *) cat "$TESTDIR/err" >&2; fail "$what: exit $rc, expected one of $codes" ;;
    esac
    jq -e '.result == "error"' "$TESTDIR/out" >/dev/null ||
        fail "$what: no JSON error: $(cat "$TESTDIR/out")"
    unchanged "$what"
    echo "ok: $what: exit $rc: $(jq -r .message "$TESTDIR/out")"
}

# frames FILE: "OFFSET TYPE PAYLOAD_LEN" per frame (docs/stream-format.md).
frames () {
    python3 - "$1" <<'EOF'
import struct, sys
data = open(sys.argv[1], 'rb').read()
off = 16
while off + 48 <= len(data):
    ftype, = struct.unpack_from('<I', data, off)
    plen, = struct.unpack_from('<I', data, off + 24)
    print(off, ftype, plen)
    off += 48 + plen
EOF
}

# flip FILE OFFSET OUT: OUT is FILE with the byte at OFFSET inverted.
flip () {
    cp "$1" "$3"
    python3 - "$3" "$2" <<'EOF'
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, 'r+b') as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0xff]))
EOF
}

# ---- the streams ---------------------------------------------------------

ovagent export-chain "$CHAIN_IMG" --output "$TESTDIR/full.strm" 2>/dev/null
ovagent receive --repo "$R" --json <"$TESTDIR/full.strm" >"$TESTDIR/full.json"
ID1=$(jq -r .backup_id "$TESTDIR/full.json")
jq -e '.result == "ok" and .kind == "full" and (.volumes | length) == 3' \
    "$TESTDIR/full.json" >/dev/null || fail "full: $(cat "$TESTDIR/full.json")"

SNAP1=$(snapshot.sh create "$NFS_DIR" "$CHAIN_IMG")
snapshot.sh write "$NFS_DIR" "$CHAIN_IMG" 0x5a 3M 2M 200M 1M >/dev/null
ovagent export-chain "$CHAIN_IMG" --since "$CHAIN_TOP" --output "$TESTDIR/inc1.strm" 2>/dev/null
SNAP2=$(snapshot.sh create "$NFS_DIR" "$CHAIN_IMG")
snapshot.sh write "$NFS_DIR" "$CHAIN_IMG" 0x6b 0 1M >/dev/null
ovagent export-chain "$CHAIN_IMG" --since "$SNAP1" --output "$TESTDIR/inc2.strm" 2>/dev/null

state >"$TESTDIR/before"
size=$(stat -c %s "$TESTDIR/inc1.strm")
frames "$TESTDIR/inc1.strm" >"$TESTDIR/frames"
end_off=$(awk '$2 == 7 { print $1 }' "$TESTDIR/frames")
data_off=$(awk '$2 == 3 && $3 > 8192 { print $1; exit }' "$TESTDIR/frames")
meta_off=$(awk '$2 == 1 { print $1; exit }' "$TESTDIR/frames")
[ -n "$end_off" ] && [ -n "$data_off" ] && [ -n "$meta_off" ] ||
    fail "cannot find the STREAM_END, DATA and META frames of inc1.strm"

# ---- cut streams -----------------------------------------------------------

cuts=(0 10 16 $((meta_off + 20)) $((end_off - 1)) "$end_off" $((end_off + 30)) $((size - 1)))
for _ in 1 2 3 4 5; do
    cuts+=($(( (RANDOM * 32768 + RANDOM) % size )))
done
for cut in "${cuts[@]}"; do
    head -c "$cut" "$TESTDIR/inc1.strm" >"$TESTDIR/cut.strm"
    refused "6 7" "stream cut at byte $cut of $size" "$TESTDIR/cut.strm"
done

# ---- corrupted streams -----------------------------------------------------

flip "$TESTDIR/inc1.strm" $((data_off + 48 + 4097)) "$TESTDIR/bad.strm"
refused 6 "one flipped byte in a DATA payload" "$TESTDIR/bad.strm"

# A digit of the META JSON: "version":1 becomes "version":N... any byte of
# the payload breaks its hash.
meta_digit=$(python3 - "$TESTDIR/inc1.strm" "$meta_off" <<'EOF'
import sys
data = open(sys.argv[1], 'rb').read()
off = int(sys.argv[2]) + 48
i = data.index(b'"capacity":', off) + len(b'"capacity":')
print(i)
EOF
)
flip "$TESTDIR/inc1.strm" "$meta_digit" "$TESTDIR/bad.strm"
refused 6 "a changed size in the metadata" "$TESTDIR/bad.strm"

flip "$TESTDIR/inc1.strm" $((data_off + 8)) "$TESTDIR/bad.strm"
refused 6 "a changed offset in a frame header" "$TESTDIR/bad.strm"

cp "$TESTDIR/inc1.strm" "$TESTDIR/bad.strm"
printf 'x' >>"$TESTDIR/bad.strm"
refused 6 "a byte after the end of the stream" "$TESTDIR/bad.strm"

head -c 1048576 /dev/urandom >"$TESTDIR/bad.strm"
refused 6 "random bytes" "$TESTDIR/bad.strm"

# ---- streams that do not continue the repository ----------------------------

refused 6 "an incremental whose since is not the latest volume" "$TESTDIR/inc2.strm"
grep -q "latest volume of disk $CHAIN_IMG is $CHAIN_TOP" "$TESTDIR/err" ||
    fail "the refusal does not name the latest volume: $(cat "$TESTDIR/err")"

# A qcow2 volume with an external data file: qemu would open a path of the
# backup server along with it. Refused before any qemu tool opens it.
read -r DF_IMG DF_VOL < <(snapshot.sh disk "$NFS_DIR" 1G)
head -c 1M /dev/urandom >"$TESTDIR/datafile"
rm "$NFS_DIR/images/$DF_IMG/$DF_VOL"
qemu-img create -q -f qcow2 -o "data_file=$TESTDIR/datafile,data_file_raw=on" \
    "$NFS_DIR/images/$DF_IMG/$DF_VOL" 1G
if ovagent export-chain "$DF_IMG" --output "$TESTDIR/datafile.strm" 2>/dev/null; then
    refused 5 "a qcow2 volume with an external data file" "$TESTDIR/datafile.strm"
    [ ! -e "$R/disks/$DF_IMG" ] || fail "a directory was left for disk $DF_IMG"
fi

# ---- the repository itself ------------------------------------------------

: >"$TESTDIR/plainfile"
expect_exit 2 ovagent receive --repo "$TESTDIR/plainfile" <"$TESTDIR/inc1.strm"
grep -q "not a directory" "$TESTDIR/err" || fail "plain file: $(cat "$TESTDIR/err")"

mkdir -p "$TESTDIR/foreign"
echo data >"$TESTDIR/foreign/keep"
expect_exit 2 ovagent receive --repo "$TESTDIR/foreign" <"$TESTDIR/inc1.strm"
grep -q "not an ovagent repository" "$TESTDIR/err" || fail "foreign dir: $(cat "$TESTDIR/err")"
[ "$(ls -A "$TESTDIR/foreign")" = keep ] || fail "the foreign directory was changed"

# Busy: a run that rewrites backups (prune, forget) holds R/lock
# exclusively; then another receive writes the same disk (its lock file).
exec {lockfd}<"$R/lock"
flock -x "$lockfd"
expect_exit 4 ovagent receive --repo "$R" <"$TESTDIR/inc1.strm"
grep -q "$R is locked exclusively by another ovagent run (prune or forget" "$TESTDIR/err" ||
    fail "busy: $(cat "$TESTDIR/err")"
exec {lockfd}<&-
unchanged "exclusively locked repository"
exec {lockfd}>"$R/locks/$CHAIN_IMG"
flock -x "$lockfd"
expect_exit 4 ovagent receive --repo "$R" <"$TESTDIR/inc1.strm"
grep -q "another ovagent receive is writing disk $CHAIN_IMG to $R" "$TESTDIR/err" ||
    fail "busy disk: $(cat "$TESTDIR/err")"
exec {lockfd}>&-
rm "$R/locks/$CHAIN_IMG"
unchanged "busy disk"

# Unwritable: a read-only bind mount over the repository. Not a lack of
# space: exit 1, naming the lock it could not open for writing.
if mount --bind "$R" "$R" 2>/dev/null; then
    cleanup_add umount "$R"
    mount -o remount,ro,bind "$R"
    expect_exit 1 ovagent receive --repo "$R" <"$TESTDIR/inc1.strm"
    grep -q "Read-only file system" "$TESTDIR/err" || fail "read-only: $(cat "$TESTDIR/err")"
    # Readers still work on it.
    expect_exit 0 ovagent verify --repo "$R"
    umount "$R"
    unchanged "read-only repository"
else
    echo "skipped the read-only repository case: bind mounts are not allowed here" >&2
fi

# ---- a signal mid-stream ----------------------------------------------------

mkfifo "$TESTDIR/fifo"
ovagent receive --repo "$R" <"$TESTDIR/fifo" >"$TESTDIR/out" 2>"$TESTDIR/err" &
rpid=$!
exec {fifofd}>"$TESTDIR/fifo"
head -c $((data_off + 48 + 65536)) "$TESTDIR/inc1.strm" >&"$fifofd"
for _ in $(seq 50); do
    compgen -G "$D/.incoming-*/*" >/dev/null && break
    sleep 0.1
done
compgen -G "$D/.incoming-*/*" >/dev/null || fail "signal: receive wrote no file"
kill -TERM "$rpid"
rc=0
wait "$rpid" || rc=$?
exec {fifofd}>&-
[ "$rc" -ne 0 ] || fail "signal: receive succeeded"
grep -q "interrupted" "$TESTDIR/err" || fail "signal: $(cat "$TESTDIR/err")"
unchanged "SIGTERM mid-stream"
echo "ok: SIGTERM mid-stream: exit $rc"

# ---- leftovers of a crash -------------------------------------------------

# An .incoming dir is an interrupted receive's own work: removed. Backup
# directories the manifest does not list (renamed just before a crash, or
# dropped from a manifest put back from an older copy) and anything else
# unlisted are moved aside to .unlisted/TIME/, never removed.
mkdir "$D/20200101T000000Z-000001" "$D/20200101T000000Z-000002" \
    "$D/.incoming-20200101T000000Z-000003"
touch "$D/20200101T000000Z-000001/x.qcow2" "$D/.incoming-20200101T000000Z-000003/y.qcow2"
echo note >"$D/notes.txt"

# ---- good incrementals ------------------------------------------------------

expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/inc1.strm"
[ ! -e "$D/.incoming-20200101T000000Z-000003" ] || fail "the stale .incoming dir was not removed"
aside=$(compgen -G "$D/.unlisted/*") || fail "nothing was moved to $D/.unlisted"
[ -f "$aside/20200101T000000Z-000001/x.qcow2" ] && [ -d "$aside/20200101T000000Z-000002" ] &&
    [ "$(cat "$aside/notes.txt")" = note ] || fail "unlisted entries not moved aside: $(ls -R "$D")"
[ ! -e "$D/20200101T000000Z-000001" ] && [ ! -e "$D/notes.txt" ] ||
    fail "unlisted entries left in place: $(ls "$D")"
for name in 20200101T000000Z-000001 20200101T000000Z-000002 '"notes.txt"'; do
    grep -qF "$D/$name is not listed in manifest.json: moved to $aside/" "$TESTDIR/err" ||
        fail "$name moved aside without a warning: $(cat "$TESTDIR/err")"
done
rm -r "$D/.unlisted"
ID2=$(jq -r .backup_id "$TESTDIR/out")
jq -e --arg s "$SNAP1" '.kind == "incremental" and .volumes == [$s]' "$TESTDIR/out" >/dev/null ||
    fail "inc1: $(cat "$TESTDIR/out")"

expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/inc2.strm"
ID3=$(jq -r .backup_id "$TESTDIR/out")
jq -e '[.backups[].id]' "$D/manifest.json" >"$TESTDIR/ids.json"
jq -e --arg a "$ID1" --arg b "$ID2" --arg c "$ID3" '. == [$a, $b, $c]' "$TESTDIR/ids.json" >/dev/null ||
    fail "manifest backups: $(cat "$TESTDIR/ids.json")"

top=$D/$ID3/$SNAP2.qcow2
qemu-img info --backing-chain --output=json "$top" >"$TESTDIR/chain.json"
jq -r '.[].filename' "$TESTDIR/chain.json" | sed "s|^$D/||" >"$TESTDIR/chain.txt"
cat >"$TESTDIR/chain.want" <<EOF
$ID3/$SNAP2.qcow2
$ID3/../$ID2/$SNAP1.qcow2
$ID3/../$ID2/../$ID1/$CHAIN_TOP.qcow2
$ID3/../$ID2/../$ID1/$CHAIN_MID.qcow2
$ID3/../$ID2/../$ID1/$CHAIN_BASE.raw
EOF
diff "$TESTDIR/chain.want" "$TESTDIR/chain.txt" >&2 || fail "backing chain of $top"
qemu-img compare -U "$IMGDIR/$SNAP2" "$top" >/dev/null ||
    fail "the repository chain differs from the source chain"
qemu-img compare -U "$IMGDIR/$SNAP1" "$D/$ID2/$SNAP1.qcow2" >/dev/null ||
    fail "backup $ID2 differs from the source at $SNAP1"
expect_exit 0 ovagent verify --repo "$R" --json
jq -e '.disks == 1 and .backups == 3 and .files == 5' "$TESTDIR/out" >/dev/null ||
    fail "verify: $(cat "$TESTDIR/out")"

# A restore stream is not a backup.
if ovagent restore --repo "$R" "$CHAIN_IMG" --output - >"$TESTDIR/restore.strm" 2>/dev/null; then
    state >"$TESTDIR/before"
    refused 2 "a restore stream" "$TESTDIR/restore.strm"
    grep -q "use ovagent import" "$TESTDIR/err" || fail "restore stream: $(cat "$TESTDIR/err")"
fi
echo "all bad streams refused, repository unchanged"
