#!/bin/bash
# list on the file test bed (NFS V5, POSIX V4, Gluster layout, LocalFS):
# every domain, image and chain as expected.json describes it.

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

expect_exit 0 ovagent list --json
cp "$TESTDIR/out" "$TESTDIR/list.json"
jq -e . "$TESTDIR/list.json" >/dev/null || fail "list --json: not JSON"

diffs=$(tb_compare_listing "$TB/expected.json" "$TESTDIR/list.json")
if [ -n "$diffs" ]; then
    printf '%s\n' "$diffs" >&2
    fail "list --json differs from $TB/expected.json"
fi

# Problems are objects with a stable code and a message.
jq -e '[.domains[] | .problems[], (.images[] | .problems[], (.volumes[] | .problems[]?))]
       | all(type == "object" and (.code | type) == "string" and (.message | type) == "string")' \
    "$TESTDIR/list.json" >/dev/null || fail "a problem is not {code, message}"

# An image being deleted is never listed.
if grep -q -e "$REMOVED_IMG" -e "$REMOVED_VOL" "$TESTDIR/list.json"; then
    fail "the _remove_me_ image $REMOVED_IMG is listed"
fi

# --domain: that domain alone, the same as in the full listing.
for sd in "$NFS_SD" "$POSIX_SD" "$LOCALFS_SD"; do
    expect_exit 0 ovagent list --domain "$sd" --json
    jq -e --arg sd "$sd" '.domains | length == 1 and .[0].uuid == $sd' "$TESTDIR/out" >/dev/null ||
        fail "list --domain $sd: $(cat "$TESTDIR/out")"
    jq --arg sd "$sd" '.domains |= map(select(.uuid == $sd))' "$TB/expected.json" \
        >"$TESTDIR/expected-one.json"
    diffs=$(tb_compare_listing "$TESTDIR/expected-one.json" "$TESTDIR/out")
    if [ -n "$diffs" ]; then
        printf '%s\n' "$diffs" >&2
        fail "list --domain $sd differs from expected.json"
    fi
done

# The table (stdout is not a TTY here) names every image.
expect_exit 0 ovagent list
for img in $(jq -r '.domains[].images[].uuid' "$TB/expected.json"); do
    grep -q -- "$img" "$TESTDIR/out" || fail "list (table) does not show image $img"
done
grep -q -- "$REMOVED_IMG" "$TESTDIR/out" && fail "list (table) shows the _remove_me_ image"

echo "PASS: $(jq '[.domains[].images[]] | length' "$TB/expected.json") images in 4 file domains"
