#!/bin/bash
# receive never deletes a backup its manifest does not list: with
# manifest.json deleted, or replaced by an older copy (as a crash between a
# backup's rename and its manifest's leaves it), the next receive moves the
# unlisted backup directories to .unlisted/TIME/ byte for byte, names them
# in a warning, and commits its own backup; a refused stream moves nothing.

. "$top_srcdir/tests/functions.sh"

requires_core xxh128sum
requires_root
requires_core qemu-img
requires_core jq
requires ovagent

start_filedomain
agent_env

# sums DIR: the digest of every file under DIR, by path relative to DIR.
sums () {
    (cd "$1" && find . -type f -exec xxh128sum {} + | LC_ALL=C sort -k2)
}

# received R FILE: receive FILE into R; ID is the new backup's id.
received () {
    expect_exit 0 ovagent receive --repo "$1" --json <"$2"
    ID=$(jq -r .backup_id "$TESTDIR/out")
}

# moved_aside D ID...: each backup ID is gone from D, is in the one new
# directory under D/.unlisted byte for byte as it was (sums in
# $TESTDIR/ID.sums), and the receive's warning named it. ASIDE is that
# directory.
moved_aside () {
    local d=$1 id
    shift
    ASIDE=$(compgen -G "$d/.unlisted/*") || fail "nothing was moved to $d/.unlisted"
    [ "$(wc -l <<<"$ASIDE")" -eq 1 ] || fail "more than one directory in $d/.unlisted: $ASIDE"
    for id in "$@"; do
        [ ! -e "$d/$id" ] || fail "$d/$id is still there"
        sums "$ASIDE/$id" | cmp -s - "$TESTDIR/$id.sums" || fail "$ASIDE/$id differs from $id"
        grep -qF "$d/$id is not listed in manifest.json" "$TESTDIR/err" ||
            fail "no warning names $id: $(cat "$TESTDIR/err")"
    done
    echo "ok: moved to $ASIDE byte for byte: $*"
}

ovagent export-chain "$CHAIN_IMG" --output "$TESTDIR/full.strm" 2>/dev/null
SNAP=$(snapshot.sh create "$NFS_DIR" "$CHAIN_IMG")
snapshot.sh write "$NFS_DIR" "$CHAIN_IMG" 0x5a 1M 1M >/dev/null
ovagent export-chain "$CHAIN_IMG" --since "$CHAIN_TOP" --output "$TESTDIR/inc.strm" 2>/dev/null
snapshot.sh convert "$NFS_DIR" "$CHAIN_IMG" "$TESTDIR/at-snap.raw"
snapshot.sh create "$NFS_DIR" "$CHAIN_IMG" >/dev/null
snapshot.sh write "$NFS_DIR" "$CHAIN_IMG" 0x6b 3M 1M >/dev/null
ovagent export-chain "$CHAIN_IMG" --since "$SNAP" --output "$TESTDIR/inc2.strm" 2>/dev/null
ovagent export-chain "$CHAIN_IMG" --output "$TESTDIR/full2.strm" 2>/dev/null
snapshot.sh convert "$NFS_DIR" "$CHAIN_IMG" "$TESTDIR/at-leaf.raw"

# ---- manifest.json deleted ------------------------------------------------

R=$TESTDIR/repo1
D=$R/disks/$CHAIN_IMG
received "$R" "$TESTDIR/full.strm"
ID1=$ID
received "$R" "$TESTDIR/inc.strm"
ID2=$ID
sums "$D/$ID1" >"$TESTDIR/$ID1.sums"
sums "$D/$ID2" >"$TESTDIR/$ID2.sums"

rm "$D/manifest.json"
# An incremental cannot continue a disk without a manifest: refused before
# anything is moved.
expect_exit 6 ovagent receive --repo "$R" <"$TESTDIR/inc.strm"
[ -d "$D/$ID1" ] && [ -d "$D/$ID2" ] && [ ! -e "$D/.unlisted" ] ||
    fail "a refused stream moved something: $(ls -A "$D")"

received "$R" "$TESTDIR/full2.strm"
ID3=$ID
moved_aside "$D" "$ID1" "$ID2"
grep -q "(there is none)" "$TESTDIR/err" || fail "the warning does not say the manifest is missing"
jq -e --arg id "$ID3" '[.backups[].id] == [$id]' "$D/manifest.json" >/dev/null ||
    fail "the new manifest: $(cat "$D/manifest.json")"
expect_exit 0 ovagent verify --repo "$R" --json
# Moved together, the two backups still open as one chain.
qemu-img compare -q -U "$ASIDE/$ID2/$SNAP.qcow2" "$TESTDIR/at-snap.raw" ||
    fail "the chain moved aside no longer reads as the disk"
rm -f "$TESTDIR/r.raw"
expect_exit 0 ovagent restore --repo "$R" "$CHAIN_IMG" --to "$TESTDIR/r.raw"
qemu-img compare -q -f raw -F raw "$TESTDIR/r.raw" "$TESTDIR/at-leaf.raw" ||
    fail "the new backup does not restore as the disk"

# ---- manifest.json replaced by an older copy --------------------------------

# The state a crash leaves between a backup's rename and its manifest's:
# the directory is there, the manifest does not list it.
R=$TESTDIR/repo2
D=$R/disks/$CHAIN_IMG
received "$R" "$TESTDIR/full.strm"
ID1=$ID
cp "$D/manifest.json" "$TESTDIR/manifest.old"
received "$R" "$TESTDIR/inc.strm"
ID2=$ID
sums "$D/$ID2" >"$TESTDIR/$ID2.sums"
sums "$D/$ID1" >"$TESTDIR/$ID1.sums"
cp "$TESTDIR/manifest.old" "$D/manifest.json"

# An incremental continuing the unlisted backup: refused, nothing moved.
expect_exit 6 ovagent receive --repo "$R" <"$TESTDIR/inc2.strm"
grep -q "latest volume of disk $CHAIN_IMG is $CHAIN_TOP" "$TESTDIR/err" ||
    fail "incremental on the old manifest: $(cat "$TESTDIR/err")"
[ -d "$D/$ID2" ] && [ ! -e "$D/.unlisted" ] || fail "a refused stream moved something"

received "$R" "$TESTDIR/full2.strm"
ID3=$ID
moved_aside "$D" "$ID2"
sums "$D/$ID1" | cmp -s - "$TESTDIR/$ID1.sums" || fail "the listed backup $ID1 changed"
jq -e --arg a "$ID1" --arg b "$ID3" '[.backups[].id] == [$a, $b]' "$D/manifest.json" >/dev/null ||
    fail "the new manifest: $(cat "$D/manifest.json")"
expect_exit 0 ovagent verify --repo "$R" --json
jq -e '.backups == 2' "$TESTDIR/out" >/dev/null || fail "verify: $(cat "$TESTDIR/out")"
rm -f "$TESTDIR/r.raw"
expect_exit 0 ovagent restore --repo "$R" "$CHAIN_IMG" --backup "$ID1" --to "$TESTDIR/r.raw"
qemu-img compare -q -U -f raw -F qcow2 "$TESTDIR/r.raw" "$D/$ID1/$CHAIN_TOP.qcow2" ||
    fail "the listed backup $ID1 no longer restores"

# A second run finds nothing unlisted and moves nothing more.
received "$R" "$TESTDIR/full2.strm"
[ "$(compgen -G "$D/.unlisted/*" | wc -l)" -eq 1 ] || fail "a second run moved something"
! grep -q "is not listed" "$TESTDIR/err" || fail "a second run warned: $(cat "$TESTDIR/err")"
echo "unlisted backups moved aside, never deleted"
