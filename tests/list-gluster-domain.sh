#!/bin/bash
# A GlusterFS storage domain on a real glusterd, FUSE-mounted where VDSM mounts
# it: "list" finds it as glusterfs with its chain, "info" reads the qcow2 headers.

. "$top_srcdir/tests/functions.sh"
# shellcheck source=../scripts/testbed/lib.sh
. "$top_srcdir/scripts/testbed/lib.sh"

requires_core glusterd
requires_core gluster
requires_core qemu-img
requires_core jq
requires_root
[ -e /dev/fuse ] || skip "no /dev/fuse"
command -v ovagent >/dev/null || fail "ovagent not built"

R=$TESTDIR/gluster
DC=$TESTDIR/data-center
cleanup_add gluster.sh down "$R"
gluster.sh up "$R" "$DC" >/dev/null
. "$R/ids"

export OVAGENT_DATA_CENTER=$DC
export OVAGENT_LVM_DEVICES=

expect_exit 0 ovagent list --json
cp "$TESTDIR/out" "$TESTDIR/list.json"
jq -e . "$TESTDIR/list.json" >/dev/null || fail "list --json printed invalid JSON"

# The whole listing: one domain, its image and chain base first.
diffs=$(tb_compare_listing "$R/expected.json" "$TESTDIR/list.json")
if [ -n "$diffs" ]; then
    echo "$diffs" >&2
    fail "list --json differs from $R/expected.json"
fi

# Spelled out for the reader of a failure.
jq -e --arg sd "$GLUSTER_SD" --arg prefix "$DC/mnt/glusterSD/" '
    .domains[] | select(.uuid == $sd)
    | .kind == "file" and .storage == "glusterfs" and .version == 5
      and (.path | startswith($prefix))' "$TESTDIR/list.json" >/dev/null ||
    fail "the gluster domain is not listed as a glusterfs file domain under mnt/glusterSD"
jq -e --arg sd "$GLUSTER_SD" --arg img "$GLUSTER_IMG" \
      --arg base "$GLUSTER_BASE" --arg top "$GLUSTER_TOP" '
    .domains[] | select(.uuid == $sd) | .images[] | select(.uuid == $img)
    | [.volumes[] | [.uuid, .parent, .voltype]]
      == [[$base, null, "internal"], [$top, $base, "leaf"]]' \
    "$TESTDIR/list.json" >/dev/null ||
    fail "the chain of image $GLUSTER_IMG is not base $GLUSTER_BASE -> top $GLUSTER_TOP"

# --domain narrows the listing to this domain.
expect_exit 0 ovagent list --domain "$GLUSTER_SD" --json
jq -e --arg sd "$GLUSTER_SD" '[.domains[].uuid] == [$sd]' "$TESTDIR/out" >/dev/null ||
    fail "list --domain $GLUSTER_SD lists other domains"

# info reads the qcow2 headers through the FUSE mount.
expect_exit 0 ovagent info "$GLUSTER_IMG" --json
cp "$TESTDIR/out" "$TESTDIR/info.json"
jq -e --arg img "$GLUSTER_IMG" --arg base "$GLUSTER_BASE" --arg top "$GLUSTER_TOP" '
    .uuid == $img
    and ([.volumes[].uuid] == [$base, $top])
    and (.volumes[0].backing == null)
    and (.volumes[1].backing == $base)
    and all(.volumes[]; .format == "cow" and (.qcow2_compat | tostring) == "1.1"
                        and .capacity == 1073741824 and .actual_size > 0)' \
    "$TESTDIR/info.json" >/dev/null || {
    cat "$TESTDIR/info.json" >&2
    fail "info $GLUSTER_IMG does not show the qcow2 chain read over FUSE"
}

# The same image named with its domain.
expect_exit 0 ovagent info "$GLUSTER_SD/$GLUSTER_IMG" --json
jq -e --arg img "$GLUSTER_IMG" '.uuid == $img' "$TESTDIR/out" >/dev/null ||
    fail "info $GLUSTER_SD/$GLUSTER_IMG shows another image"

echo "PASS: gluster domain"
