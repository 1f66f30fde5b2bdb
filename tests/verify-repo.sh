#!/bin/bash
# verify re-reads a repository against its manifests: ok after receive; the
# manifest's block digests match a recomputation with split and xxh128sum
# (also for a volume with a persistent bitmap, which qemu-img rebase rewrites
# beyond the header); one flipped byte, a missing file, a rewritten backing
# string or an edited manifest is exit 6 naming the file; DISK and --backup
# choose what is read.

. "$top_srcdir/tests/functions.sh"

requires_root
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires ovagent

start_filedomain
agent_env

R=$TESTDIR/repo
D=$R/disks/$CHAIN_IMG

# verify on a path that is no repository.
expect_exit 3 ovagent verify --repo "$TESTDIR/nothing"

# Two backups of the chain disk, one of another disk.
ovagent export-chain "$CHAIN_IMG" --output "$TESTDIR/full.strm" 2>/dev/null
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/full.strm"
ID1=$(jq -r .backup_id "$TESTDIR/out")
NEW=$(snapshot.sh create "$NFS_DIR" "$CHAIN_IMG")
snapshot.sh write "$NFS_DIR" "$CHAIN_IMG" 0x42 7M 1M >/dev/null
# A persistent bitmap, as incremental backup leaves on a volume: opening the
# file read-write (qemu-img rebase -u) stores it again outside the header.
qemu-img bitmap --add "$NFS_DIR/images/$CHAIN_IMG/$NEW" ovagent-test
snapshot.sh write "$NFS_DIR" "$CHAIN_IMG" 0x43 12M 1M >/dev/null
ovagent export-chain "$CHAIN_IMG" --since "$CHAIN_TOP" --output "$TESTDIR/inc.strm" 2>/dev/null
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/inc.strm"
ID2=$(jq -r .backup_id "$TESTDIR/out")
ovagent export-chain "$SINGLE_IMG" --output "$TESTDIR/single.strm" 2>/dev/null
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/single.strm"

expect_exit 0 ovagent verify --repo "$R" --json
jq -e '.result == "ok" and .disks == 2 and .backups == 3 and .files == 5 and .bytes > 1073741824' \
    "$TESTDIR/out" >/dev/null || fail "verify: $(cat "$TESTDIR/out")"
expect_exit 0 ovagent verify --repo "$R"
grep -q "^ok: 2 disks, 3 backups, 5 files" "$TESTDIR/out" || fail "verify: $(cat "$TESTDIR/out")"

# The manifest's digests, recomputed without ovagent (docs/repository.md §2):
# the XXH3-128 of each 2 MiB block (xxh128sum prints the canonical form),
# block 0's last, packed into bytes and hashed again.
block_digest () {
    local hashes
    hashes=$(split -b 2M --filter=xxh128sum "$1" | cut -c1-32)
    { sed 1d <<<"$hashes"; sed -n 1p <<<"$hashes"; } | xxd -r -p | xxh128sum | cut -c1-32
}
requires_core xxh128sum
requires_core xxd
{
    n=0
    while read -r digest file size; do
        got=xxh3-128-blocks-2m:$(block_digest "$D/$file")
        [ "$got" = "$digest" ] || fail "$file: recomputed $got, the manifest says $digest"
        [ "$(stat -c %s "$D/$file")" = "$size" ] || fail "$file: not $size bytes"
        n=$((n + 1))
    done < <(jq -r '.backups[].volumes[] | "\(.digest) \(.file) \(.size)"' "$D/manifest.json")
    [ "$n" -eq 4 ] || fail "recomputed $n digests, expected 4"
    echo "ok: $n digests recomputed with split and xxh128sum"
}
[ "$(qemu-img info -U --output=json "$D/$ID2/$NEW.qcow2" | jq -r '."format-specific".data.bitmaps[0].name')" = ovagent-test ] ||
    fail "the incremental lost its bitmap"

# Choosing what to verify.
expect_exit 0 ovagent verify --repo "$R" "$CHAIN_IMG" --json
jq -e '.disks == 1 and .backups == 2 and .files == 4' "$TESTDIR/out" >/dev/null ||
    fail "verify DISK: $(cat "$TESTDIR/out")"
expect_exit 0 ovagent verify --repo "$R" "$CHAIN_IMG" --backup "$ID2" --json
jq -e '.disks == 1 and .backups == 1 and .files == 1' "$TESTDIR/out" >/dev/null ||
    fail "verify --backup: $(cat "$TESTDIR/out")"
expect_exit 3 ovagent verify --repo "$R" "$OVF_IMG"
expect_exit 3 ovagent verify --repo "$R" "$CHAIN_IMG" --backup 20200101T000000Z-000000
expect_exit 2 ovagent verify --repo "$R" --backup "$ID2"
expect_exit 2 ovagent verify --repo "$R" "$CHAIN_IMG" --backup "../$ID2"
expect_exit 2 ovagent verify --repo "$R" not-a-uuid
expect_exit 2 ovagent verify "$CHAIN_IMG"

# One flipped byte inside the data of the raw base (0x11 at 0..4M), in block 0.
base=$D/$ID1/$CHAIN_BASE.raw
cp --sparse=always "$base" "$TESTDIR/base.saved"
printf '\x12' | dd of="$base" bs=1 seek=$((1024 * 1024 + 7)) conv=notrunc status=none
expect_exit 6 ovagent verify --repo "$R" --json
jq -e '.result == "error" and .code == "integrity"' "$TESTDIR/out" >/dev/null ||
    fail "verify after a flipped byte: $(cat "$TESTDIR/out")"
grep -q "$base: digest xxh3-128-blocks-2m:[0-9a-f]\{32\}, the manifest says xxh3-128-blocks-2m:[0-9a-f]\{32\}" "$TESTDIR/err" ||
    fail "the error does not name the file and digests: $(cat "$TESTDIR/err")"
grep -q "1 problem in" "$TESTDIR/err" || fail "more than one problem: $(cat "$TESTDIR/err")"
echo "ok: $(cat "$TESTDIR/err")"
expect_exit 6 ovagent verify --repo "$R" "$CHAIN_IMG" --backup "$ID1"
# The other backup of the disk and the other disk do not hold that file.
expect_exit 0 ovagent verify --repo "$R" "$CHAIN_IMG" --backup "$ID2"
expect_exit 0 ovagent verify --repo "$R" "$SINGLE_IMG"
cp --sparse=always "$TESTDIR/base.saved" "$base"
expect_exit 0 ovagent verify --repo "$R"
# ... and one in block 1 (the digest hashes block 0 apart).
printf '\x12' | dd of="$base" bs=1 seek=$((3 * 1024 * 1024 + 5)) conv=notrunc status=none
expect_exit 6 ovagent verify --repo "$R" "$CHAIN_IMG" --backup "$ID1"
grep -q "$base: digest" "$TESTDIR/err" || fail "block 1: $(cat "$TESTDIR/err")"
cp --sparse=always "$TESTDIR/base.saved" "$base"
expect_exit 0 ovagent verify --repo "$R"

# A missing file.
top=$D/$ID2/$NEW.qcow2
mv "$top" "$TESTDIR/top.saved"
expect_exit 6 ovagent verify --repo "$R" "$CHAIN_IMG"
grep -q "$top" "$TESTDIR/err" || fail "missing file not named: $(cat "$TESTDIR/err")"
mv "$TESTDIR/top.saved" "$top"

# A file replaced by a symbolic link to an identical copy.
cp --sparse=always "$top" "$TESTDIR/top.copy"
mv "$top" "$TESTDIR/top.saved"
ln -s "$TESTDIR/top.copy" "$top"
expect_exit 6 ovagent verify --repo "$R" "$CHAIN_IMG"
grep -q "symbolic link" "$TESTDIR/err" || fail "symlink: $(cat "$TESTDIR/err")"
rm "$top"
mv "$TESTDIR/top.saved" "$top"

# A backing string pointing elsewhere (the file changes too).
cp "$top" "$TESTDIR/top.saved"
qemu-img rebase -u -f qcow2 -b "/etc/passwd" -F raw "$top"
expect_exit 6 ovagent verify --repo "$R" "$CHAIN_IMG"
grep -q "$top: backing file \"/etc/passwd\", the manifest says \"../$ID1/$CHAIN_TOP.qcow2\"" \
    "$TESTDIR/err" || fail "backing not named: $(cat "$TESTDIR/err")"
cp "$TESTDIR/top.saved" "$top"

# An edited manifest naming a file outside the repository.
cp "$D/manifest.json" "$TESTDIR/manifest.saved"
jq --arg f "../../../../etc/passwd" '.backups[0].volumes[0].file = $f' \
    "$TESTDIR/manifest.saved" >"$D/manifest.json"
expect_exit 6 ovagent verify --repo "$R"
grep -q "manifest.json: backup $ID1 volume 0: file is" "$TESTDIR/err" ||
    fail "edited manifest: $(cat "$TESTDIR/err")"
cp "$TESTDIR/manifest.saved" "$D/manifest.json"

expect_exit 0 ovagent verify --repo "$R" --json
jq -e '.files == 5' "$TESTDIR/out" >/dev/null || fail "final verify: $(cat "$TESTDIR/out")"

# A run that rewrites backups (prune, forget) holds the lock exclusively:
# readers are refused, not blocked.
exec {lockfd}<"$R/lock"
flock -x "$lockfd"
expect_exit 4 ovagent verify --repo "$R"
exec {lockfd}<&-
echo "verify ok"
