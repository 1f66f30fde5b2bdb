#!/bin/bash
# info on a block-domain image: the qcow2 headers are read from the LVs,
# which the agent activates through the lvm command and deactivates after,
# leaving alone an LV that was active before it ran.

. "$top_srcdir/tests/functions.sh"

requires_root
requires_core lvm
requires_core losetup
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires ovagent

TB=$TESTDIR/tb
cleanup_add blockdomain.sh down "$TB"
blockdomain.sh up "$TB"
. "$TB/env"
. "$TB/ids"

check () {
    local file=$1 uuid=$2 expr=$3
    jq -e --arg v "$uuid" ".volumes[] | select(.uuid == \$v) | $expr" "$file" >/dev/null ||
        fail "volume $uuid: not ($expr): $(jq -c --arg v "$uuid" '.volumes[] | select(.uuid == $v)' "$file")"
}
codes () {
    jq -r '[.. | objects | select(has("code") and has("message")) | .code] | unique | .[]' "$1"
}
shim () {
    "$OVAGENT_LVM_COMMAND" lvchange --devices "$OVAGENT_LVM_DEVICES" --autobackup n "$@"
}

# Nothing active: info activates the chain and deactivates it again.
expect_exit 0 ovagent info "$CHAIN_IMG" --json
info=$TESTDIR/info.json
cp "$TESTDIR/out" "$info"
jq -e --arg a "$CHAIN_BASE" --arg b "$CHAIN_MID" --arg c "$CHAIN_TOP" \
    '[.volumes[].uuid] == [$a, $b, $c]' "$info" >/dev/null ||
    fail "chain is not base, mid, top: $(jq -c '[.volumes[].uuid]' "$info")"
check "$info" "$CHAIN_BASE" '.qcow2_compat == null and .backing == null and .format == "raw"'
check "$info" "$CHAIN_MID" ".qcow2_compat == \"1.1\" and .backing == \"$CHAIN_BASE\" and .backing_format == \"raw\""
check "$info" "$CHAIN_TOP" ".qcow2_compat == \"1.1\" and .backing == \"$CHAIN_MID\" and .backing_format == \"qcow2\""
for v in "$CHAIN_BASE" "$CHAIN_MID" "$CHAIN_TOP"; do
    check "$info" "$v" '.actual_size > 0 and .virtual_size == 1073741824 and .capacity == 1073741824'
    check "$info" "$v" ".active == false and .path == \"/dev/$SD/$v\""
done
[ -z "$(codes "$info")" ] || fail "unexpected problems: $(codes "$info")"
[ ! -e "/dev/$SD" ] || fail "LVs left active after info: $(ls "/dev/$SD")"
[ -z "$(ls -A "$OVAGENT_STATE_DIR/activations" 2>/dev/null)" ] ||
    fail "activation records left: $(ls "$OVAGENT_STATE_DIR/activations")"

# One LV already active (as VDSM would leave a prepared image): reported
# active, and still active after info; the others are deactivated.
shim --available y "$SD/$CHAIN_BASE"
cleanup_add "$OVAGENT_LVM_COMMAND" lvchange --devices "$OVAGENT_LVM_DEVICES" --available n "$SD/$CHAIN_BASE"
expect_exit 0 ovagent info "$SD/$CHAIN_IMG" --json
cp "$TESTDIR/out" "$TESTDIR/info2.json"
check "$TESTDIR/info2.json" "$CHAIN_BASE" '.active == true'
check "$TESTDIR/info2.json" "$CHAIN_MID" '.active == false'
check "$TESTDIR/info2.json" "$CHAIN_TOP" ".active == false and .backing == \"$CHAIN_MID\""
[ -e "/dev/$SD/$CHAIN_BASE" ] || fail "info deactivated $CHAIN_BASE, which it did not activate"
for v in "$CHAIN_MID" "$CHAIN_TOP"; do
    [ ! -e "/dev/$SD/$v" ] || fail "info left $v active"
done
shim --available n "$SD/$CHAIN_BASE"
[ ! -e "/dev/$SD" ] || fail "/dev/$SD still there: $(ls "/dev/$SD")"

# A stale PU_ tag: the metadata parent is followed, and the qcow2 backing
# string agrees with it.
expect_exit 0 ovagent info "$PUMISMATCH_IMG" --json
cp "$TESTDIR/out" "$TESTDIR/pu.json"
jq -e --arg a "$PUMISMATCH_BASE" --arg b "$PUMISMATCH_TOP" '[.volumes[].uuid] == [$a, $b]' \
    "$TESTDIR/pu.json" >/dev/null || fail "PU_ mismatch image: $(jq -c '[.volumes[].uuid]' "$TESTDIR/pu.json")"
check "$TESTDIR/pu.json" "$PUMISMATCH_TOP" ".backing == \"$PUMISMATCH_BASE\" and .parent == \"$PUMISMATCH_BASE\""
if codes "$TESTDIR/pu.json" | grep -qx backing-mismatch; then
    fail "PU_ mismatch image: backing-mismatch reported, but metadata and qcow2 agree"
fi
[ ! -e "/dev/$SD" ] || fail "LVs left active: $(ls "/dev/$SD")"

# A single qcow2 volume, by SD/IMG; the human form.
expect_exit 0 ovagent info "$SD/$SINGLE_IMG" --json
check "$TESTDIR/out" "$SINGLE_VOL" '.qcow2_compat == "1.1" and .backing == null and .format == "cow"'
expect_exit 0 ovagent info "$CHAIN_IMG"
for v in "$CHAIN_BASE" "$CHAIN_MID" "$CHAIN_TOP"; do
    grep -q -- "$v" "$TESTDIR/out" || fail "info (text) does not show volume $v"
done

# The LV being created is no image's volume.
expect_exit 3 ovagent info "$INIT_VOL"
[ ! -e "/dev/$SD" ] || fail "LVs left active: $(ls "/dev/$SD")"

echo PASS
