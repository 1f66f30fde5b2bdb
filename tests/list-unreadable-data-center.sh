#!/bin/bash
# list when the data center directory cannot be read: exit 1 with a message
# naming the path, and the JSON error object on stdout with --json.

. "$top_srcdir/tests/functions.sh"

requires_core jq
requires ovagent

dc=/nonexistent/ovagent-test-$$/data-center
export OVAGENT_DATA_CENTER=$dc
# No block storage to look at either.
export OVAGENT_LVM_DEVICES=
export OVAGENT_STATE_DIR=$TESTDIR/state OVAGENT_RUN_DIR=$TESTDIR/run

expect_exit 1 ovagent list
grep -qF -- "$dc" "$TESTDIR/err" || fail "the message does not name $dc: $(cat "$TESTDIR/err")"
[ ! -s "$TESTDIR/out" ] || fail "list printed on stdout: $(cat "$TESTDIR/out")"

expect_exit 1 ovagent list --json
jq -e --arg dc "$dc" '.result == "error" and .code == "internal" and (.message | contains($dc))' \
    "$TESTDIR/out" >/dev/null || fail "list --json: $(cat "$TESTDIR/out")"
[ "$(jq -s length "$TESTDIR/out")" -eq 1 ] || fail "list --json printed more than one object"

# A data center that is a file, not a directory.
: >"$TESTDIR/dc-file"
export OVAGENT_DATA_CENTER=$TESTDIR/dc-file
expect_exit 1 ovagent list --json
jq -e '.result == "error" and .code == "internal"' "$TESTDIR/out" >/dev/null ||
    fail "list --json on a file: $(cat "$TESTDIR/out")"

# An unreadable directory (as a user other than root would see it).
if [ "$(id -u)" -ne 0 ]; then
    mkdir -m 000 "$TESTDIR/dc-closed"
    export OVAGENT_DATA_CENTER=$TESTDIR/dc-closed
    expect_exit 1 ovagent list
    grep -qF -- "$TESTDIR/dc-closed" "$TESTDIR/err" || fail "the message does not name dc-closed"
fi

echo PASS
