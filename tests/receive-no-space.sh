#!/bin/bash
# receive into a repository on a small loop-mounted ext4 that a stream does
# not fit: exit 8 naming the file system, everything written removed (df
# shows the space back), the manifest and the earlier backup untouched.

. "$top_srcdir/tests/functions.sh"

requires_core xxh128sum
requires_root
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires_core losetup
requires_core mkfs.ext4
requires ovagent

start_filedomain
agent_env

# A 64 MiB file system for the repository.
small_fs 64M
R=$MNT/repo

# A first backup that fits (about 12 MiB of data).
ovagent export-chain "$CHAIN_IMG" --output "$TESTDIR/small.strm" 2>/dev/null
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/small.strm"

# A disk holding 100 MiB of data, sent uncompressed: a little larger than
# the 64 MiB file system on its own.
read -r BIG_IMG BIG_VOL < <(snapshot.sh disk "$NFS_DIR" 1G)
snapshot.sh write "$NFS_DIR" "$BIG_IMG" 0x5a 0 100M >/dev/null
qemu-io -f qcow2 -c "write -q -P 0xa5 200M 1M" "$NFS_DIR/images/$BIG_IMG/$BIG_VOL" >/dev/null
ovagent export-chain "$BIG_IMG" --output "$TESTDIR/big.strm" 2>/dev/null
[ "$(stat -c %s "$TESTDIR/big.strm")" -gt $((100 * 1024 * 1024)) ] ||
    fail "the big stream is smaller than 100 MiB"

state () {
    (cd "$R" && find . -printf '%p %y %s %m\n' | LC_ALL=C sort &&
        find . -type f -exec xxh128sum {} + | LC_ALL=C sort)
}
sync
state >"$TESTDIR/before"
used_before=$(df --output=used -B1 "$MNT" | tail -n 1)

expect_exit 8 ovagent receive --repo "$R" --json <"$TESTDIR/big.strm"
jq -e '.result == "error" and .code == "no-space"' "$TESTDIR/out" >/dev/null ||
    fail "no JSON no-space error: $(cat "$TESTDIR/out")"
grep -q "no space left on the file system of $R" "$TESTDIR/err" ||
    fail "the error does not name the repository: $(cat "$TESTDIR/err")"
echo "ok: $(jq -r .message "$TESTDIR/out")"

state >"$TESTDIR/after"
diff "$TESTDIR/before" "$TESTDIR/after" >&2 || fail "the repository changed"
if compgen -G "$R/disks/*/.incoming-*" >/dev/null; then
    fail "left $(echo "$R"/disks/*/.incoming-*)"
fi
[ ! -e "$R/disks/$BIG_IMG/manifest.json" ] || fail "a manifest was written for $BIG_IMG"

sync
used_after=$(df --output=used -B1 "$MNT" | tail -n 1)
# The disk's empty directory may stay: allow a few blocks.
[ "$used_after" -le $((used_before + 64 * 1024)) ] ||
    fail "space not given back: $used_before bytes used before, $used_after after"
echo "ok: df used $used_before before, $used_after after"

# The earlier backup still verifies, and a stream that fits still commits.
expect_exit 0 ovagent verify --repo "$R"
snapshot.sh create "$NFS_DIR" "$CHAIN_IMG" >/dev/null
ovagent export-chain "$CHAIN_IMG" --since "$CHAIN_TOP" --output "$TESTDIR/inc.strm" 2>/dev/null
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/inc.strm"
jq -e '.kind == "incremental"' "$TESTDIR/out" >/dev/null || fail "inc: $(cat "$TESTDIR/out")"
