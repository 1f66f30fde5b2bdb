#!/bin/bash
# list on a block domain (V5 and V4 metadata layouts): VG tags, LV tags and
# metadata slots read through the configured lvm command, as expected.json
# describes them; nothing left active afterwards.

. "$top_srcdir/tests/functions.sh"
. "$top_srcdir/scripts/testbed/lib.sh"

requires_root
requires_core lvm
requires_core losetup
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires ovagent

for version in 5 4; do
    TB=$TESTDIR/tb$version
    cleanup_add blockdomain.sh down "$TB"
    blockdomain.sh up "$TB" --version "$version"
    (
        . "$TB/env"
        . "$TB/ids"

        expect_exit 0 ovagent list --json
        list=$TESTDIR/list$version.json
        cp "$TESTDIR/out" "$list"

        diffs=$(tb_compare_listing "$TB/expected.json" "$list")
        if [ -n "$diffs" ]; then
            printf '%s\n' "$diffs" >&2
            fail "V$version: list --json differs from $TB/expected.json"
        fi

        # A volume being created is skipped.
        if grep -q -- "$INIT_VOL" "$list"; then
            fail "V$version: the OVIRT_VOL_INITIALIZING LV $INIT_VOL is listed"
        fi

        # A cleared slot: the volume is listed, with the problem on it.
        jq -e --arg v "$ZEROED_VOL" \
            '[.domains[].images[].volumes[] | select(.uuid == $v) | .problems[].code] | index("invalid-metadata") != null' \
            "$list" >/dev/null || fail "V$version: no invalid-metadata on $ZEROED_VOL (slot $ZEROED_SLOT)"

        # A stale PU_ tag: chain from the metadata (compared above), and the
        # disagreement shown on the volume.
        jq -e --arg v "$PUMISMATCH_TOP" --arg p "$PUMISMATCH_BASE" \
            '.domains[].images[].volumes[] | select(.uuid == $v) | .parent == $p' "$list" >/dev/null ||
            fail "V$version: $PUMISMATCH_TOP: parent is not the metadata PUUID $PUMISMATCH_BASE"
        jq -e --arg v "$PUMISMATCH_TOP" \
            '.domains[].images[].volumes[] | select(.uuid == $v) | .problems | length > 0' "$list" >/dev/null ||
            fail "V$version: the stale PU_ tag of $PUMISMATCH_TOP is not reported on the volume"

        # Listing reads the metadata LV but leaves nothing active.
        [ ! -e "/dev/$SD" ] || fail "V$version: /dev/$SD left behind: $(ls "/dev/$SD")"
        [ -z "$(ls -A "$OVAGENT_STATE_DIR/activations" 2>/dev/null)" ] ||
            fail "V$version: activation records left: $(ls "$OVAGENT_STATE_DIR/activations")"

        expect_exit 0 ovagent list --domain "$SD" --json
        jq -e --arg sd "$SD" '.domains | length == 1 and .[0].uuid == $sd and .[0].kind == "block"' \
            "$TESTDIR/out" >/dev/null || fail "V$version: list --domain $SD: $(cat "$TESTDIR/out")"

        expect_exit 0 ovagent list
        for img in $(jq -r '.domains[].images[].uuid' "$TB/expected.json"); do
            grep -q -- "$img" "$TESTDIR/out" || fail "V$version: list (table) does not show image $img"
        done
    )
    blockdomain.sh down "$TB"
done

echo PASS
