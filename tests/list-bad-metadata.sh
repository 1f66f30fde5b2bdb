#!/bin/bash
# list with damaged metadata: a garbage .meta, a .meta missing a required
# key and a domain whose _SHA_CKSUM no longer matches are reported as
# problems on what they damage; the listing goes on and exits 0.

. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/scripts/testbed/lib.sh"

requires_core qemu-img
requires_core qemu-io
requires_core jq
requires ovagent

TB=$TESTDIR/tb
cleanup_add filedomain.sh down "$TB"
filedomain.sh up "$TB"
. "$TB/env"
. "$TB/ids"

# Garbage where a record should be.
printf 'garbage\n\001\002\377 not a record\n=\n==EOF\n' >"$NFS_DIR/images/$SINGLE_IMG/$SINGLE_VOL.meta"
# A record without FORMAT (required).
sed -i '/^FORMAT=/d' "$POSIX_DIR/images/$LEGACY_IMG/$LEGACY_TOP.meta"
# Domain metadata changed behind the seal's back.
gl_md=$(ls -d "$DATA_CENTER"/mnt/glusterSD/*/"$GLUSTER_SD")/dom_md/metadata
sed -i 's/^DESCRIPTION=.*/DESCRIPTION=edited by hand/' "$gl_md"

expect_exit 0 ovagent list --json
list=$TESTDIR/list.json
cp "$TESTDIR/out" "$list"

# vol_codes VOL: the problem codes on that volume (wherever it is listed).
vol_codes () {
    jq -r --arg v "$1" '[.domains[].images[].volumes[] | select(.uuid == $v) | .problems[]?.code] | unique | .[]' "$list"
}
img_codes () {
    jq -r --arg i "$1" '[.domains[].images[] | select(.uuid == $i) | .problems[]?.code] | unique | .[]' "$list"
}

for v in "$SINGLE_VOL" "$LEGACY_TOP"; do
    vol_codes "$v" | grep -qx invalid-metadata ||
        fail "volume $v: no invalid-metadata problem: $(jq -c --arg v "$v" '.domains[].images[].volumes[] | select(.uuid == $v)' "$list")"
done
for i in "$SINGLE_IMG" "$LEGACY_IMG"; do
    img_codes "$i" | grep -qx invalid-metadata ||
        fail "image $i: no invalid-metadata problem: $(img_codes "$i" | tr '\n' ' ')"
done
# The damaged volumes are still listed, by the name of their file.
jq -e --arg v "$SINGLE_VOL" --arg i "$SINGLE_IMG" \
    '[.domains[].images[] | select(.uuid == $i) | .volumes[].uuid] == [$v]' "$list" >/dev/null ||
    fail "image $SINGLE_IMG does not list volume $SINGLE_VOL"
jq -e --arg i "$LEGACY_IMG" '[.domains[].images[] | select(.uuid == $i) | .volumes[]] | length == 2' \
    "$list" >/dev/null || fail "image $LEGACY_IMG does not list both volumes"

jq -e --arg sd "$GLUSTER_SD" '.domains[] | select(.uuid == $sd) | .problems | map(.code) | index("domain-metadata") != null' \
    "$list" >/dev/null ||
    fail "domain $GLUSTER_SD: no domain-metadata problem: $(jq -c --arg sd "$GLUSTER_SD" '.domains[] | select(.uuid == $sd) | .problems' "$list")"

# Everything else is as it was.
jq --arg a "$SINGLE_IMG" --arg b "$LEGACY_IMG" --arg sd "$GLUSTER_SD" '
    .domains |= map(select(.uuid != $sd) | .images |= map(select(.uuid != $a and .uuid != $b)))' \
    "$TB/expected.json" >"$TESTDIR/expected-rest.json"
jq --arg a "$SINGLE_IMG" --arg b "$LEGACY_IMG" --arg sd "$GLUSTER_SD" '
    .domains |= map(select(.uuid != $sd) | .images |= map(select(.uuid != $a and .uuid != $b)))' \
    "$list" >"$TESTDIR/list-rest.json"
diffs=$(tb_compare_listing "$TESTDIR/expected-rest.json" "$TESTDIR/list-rest.json")
if [ -n "$diffs" ]; then
    printf '%s\n' "$diffs" >&2
    fail "images without damage are listed differently"
fi

# The table still lists, and says something is wrong.
expect_exit 0 ovagent list
grep -q -- "$CHAIN_IMG" "$TESTDIR/out" || fail "list (table) lost image $CHAIN_IMG"
grep -q -- "invalid-metadata" "$TESTDIR/out" "$TESTDIR/err" || fail "list (table) does not mention invalid-metadata"

echo PASS
