#!/bin/bash
# info on file-domain images: what each volume's qcow2 header says (compat,
# backing string, allocation, bitmaps), backing strings checked against the
# metadata, and how DISK is resolved (SD/IMG, unknown, malformed, ambiguous).

. "$top_srcdir/tests/functions.sh"

requires_core qemu-img
requires_core qemu-io
requires_core jq
requires ovagent

TB=$TESTDIR/tb
cleanup_add filedomain.sh down "$TB"
filedomain.sh up "$TB"
. "$TB/env"
. "$TB/ids"

chain_dir=$NFS_DIR/images/$CHAIN_IMG

# All problem codes anywhere in a JSON document.
codes () {
    jq -r '[.. | objects | select(has("code") and has("message")) | .code] | unique | .[]' "$1"
}

# vol FILE UUID: the volume object of UUID.
vol () {
    jq -c --arg v "$2" '.volumes[] | select(.uuid == $v)' "$1"
}

# check FILE UUID JQ-EXPR: the volume satisfies the expression.
check () {
    local file=$1 uuid=$2 expr=$3
    jq -e --arg v "$uuid" ".volumes[] | select(.uuid == \$v) | $expr" "$file" >/dev/null ||
        fail "volume $uuid: not ($expr): $(vol "$file" "$uuid")"
}

# A persistent bitmap, as a checkpoint leaves it.
qemu-img bitmap --add "$chain_dir/$CHAIN_TOP" ovagent-test-bm

expect_exit 0 ovagent info "$CHAIN_IMG" --json
info=$TESTDIR/info.json
cp "$TESTDIR/out" "$info"
jq -e --arg i "$CHAIN_IMG" '.uuid == $i' "$info" >/dev/null || fail "info: not image $CHAIN_IMG"
jq -e --arg a "$CHAIN_BASE" --arg b "$CHAIN_MID" --arg c "$CHAIN_TOP" \
    '[.volumes[].uuid] == [$a, $b, $c]' "$info" >/dev/null ||
    fail "info: chain is not base, mid, top: $(jq -c '[.volumes[].uuid]' "$info")"

check "$info" "$CHAIN_BASE" '.qcow2_compat == null and .backing == null and .format == "raw"'
check "$info" "$CHAIN_MID" ".qcow2_compat == \"1.1\" and .backing == \"$CHAIN_BASE\""
check "$info" "$CHAIN_TOP" ".qcow2_compat == \"1.1\" and .backing == \"$CHAIN_MID\""
for v in "$CHAIN_BASE" "$CHAIN_MID" "$CHAIN_TOP"; do
    check "$info" "$v" '.actual_size > 0 and .capacity == 1073741824'
    check "$info" "$v" '.active == true'
done
check "$info" "$CHAIN_TOP" \
    '.bitmaps | length == 1 and .[0].name == "ovagent-test-bm" and (.[0].flags | index("auto") != null)'
check "$info" "$CHAIN_MID" '.bitmaps == []'
[ -z "$(codes "$info")" ] || fail "info $CHAIN_IMG: unexpected problems: $(codes "$info")"

# SD/IMG names the same image.
expect_exit 0 ovagent info "$NFS_SD/$CHAIN_IMG" --json
jq -e --arg i "$CHAIN_IMG" '.uuid == $i and (.volumes | length) == 3' "$TESTDIR/out" >/dev/null ||
    fail "info SD/IMG: $(cat "$TESTDIR/out")"

# The legacy "../<img>/<vol>" backing string names the parent correctly.
expect_exit 0 ovagent info "$LEGACY_IMG" --json
cp "$TESTDIR/out" "$TESTDIR/legacy.json"
check "$TESTDIR/legacy.json" "$LEGACY_TOP" ".backing == \"../$LEGACY_IMG/$LEGACY_BASE\""
check "$TESTDIR/legacy.json" "$LEGACY_TOP" '.capacity == 1073741824'
if codes "$TESTDIR/legacy.json" | grep -qx backing-mismatch; then
    fail "legacy backing string ../IMG/VOL reported as a mismatch: $(cat "$TESTDIR/legacy.json")"
fi

# compat 0.10 on the LocalFS domain.
expect_exit 0 ovagent info "$LOCALFS_IMG" --json
check "$TESTDIR/out" "$LOCALFS_VOL" '.qcow2_compat == "0.10"'

# A backing string naming another volume than the metadata parent.
wrong=$(cat /proc/sys/kernel/random/uuid)
qemu-img rebase -u -f qcow2 -b "$wrong" -F qcow2 "$chain_dir/$CHAIN_TOP"
expect_exit 0 ovagent info "$CHAIN_IMG" --json
cp "$TESTDIR/out" "$TESTDIR/mismatch.json"
check "$TESTDIR/mismatch.json" "$CHAIN_TOP" ".backing == \"$wrong\""
codes "$TESTDIR/mismatch.json" | grep -qx backing-mismatch ||
    fail "no backing-mismatch for $CHAIN_TOP backed by $wrong: $(vol "$TESTDIR/mismatch.json" "$CHAIN_TOP")"
jq -e --arg v "$CHAIN_TOP" '.volumes[] | select(.uuid == $v) | .problems | map(.code) | index("backing-mismatch") != null' \
    "$TESTDIR/mismatch.json" >/dev/null || fail "backing-mismatch is not on volume $CHAIN_TOP"
qemu-img rebase -u -f qcow2 -b "$CHAIN_MID" -F qcow2 "$chain_dir/$CHAIN_TOP"

# Unknown image: not found. Malformed UUIDs: usage.
expect_exit 3 ovagent info "$(cat /proc/sys/kernel/random/uuid)"
expect_exit 3 ovagent info "$(cat /proc/sys/kernel/random/uuid)" --json
jq -e '.result == "error" and .code == "not-found"' "$TESTDIR/out" >/dev/null ||
    fail "info unknown --json: $(cat "$TESTDIR/out")"
for bad in not-a-uuid "${CHAIN_IMG}x" "${CHAIN_IMG:0:35}" "../$CHAIN_IMG" "$NFS_SD/../$CHAIN_IMG" \
        "$NFS_SD/$CHAIN_IMG/$CHAIN_TOP" "$NFS_SD/" ""; do
    expect_exit 2 ovagent info "$bad"
done

# The same image UUID in two domains: ambiguous until SD/IMG says which.
cp -a "$NFS_DIR/images/$SINGLE_IMG" "$POSIX_DIR/images/"
expect_exit 2 ovagent info "$SINGLE_IMG"
grep -q -- "$NFS_SD/$SINGLE_IMG" "$TESTDIR/err" || fail "ambiguous: $NFS_SD/$SINGLE_IMG not named: $(cat "$TESTDIR/err")"
grep -q -- "$POSIX_SD/$SINGLE_IMG" "$TESTDIR/err" || fail "ambiguous: $POSIX_SD/$SINGLE_IMG not named: $(cat "$TESTDIR/err")"
expect_exit 2 ovagent info "$SINGLE_IMG" --json
jq -e '.result == "error" and .code == "usage"' "$TESTDIR/out" >/dev/null ||
    fail "ambiguous --json: $(cat "$TESTDIR/out")"
for sd in "$NFS_SD" "$POSIX_SD"; do
    expect_exit 0 ovagent info "$sd/$SINGLE_IMG" --json
    jq -e --arg sd "$sd" --arg v "$SINGLE_VOL" \
        '.domain == $sd and (.volumes | length) == 1 and .volumes[0].uuid == $v
         and (.volumes[0].path | contains("/" + $sd + "/images/"))' "$TESTDIR/out" >/dev/null ||
        fail "info $sd/$SINGLE_IMG: $(cat "$TESTDIR/out")"
done

# The human form names every volume of the chain.
expect_exit 0 ovagent info "$CHAIN_IMG"
for v in "$CHAIN_BASE" "$CHAIN_MID" "$CHAIN_TOP"; do
    grep -q -- "$v" "$TESTDIR/out" || fail "info (text) does not show volume $v"
done

echo "PASS"
