# Sourced by every integration test: prerequisites, a cleanup stack run by
# one EXIT trap, and a private scratch directory.

set -euo pipefail

# A missing prerequisite skips (77), except core components under CI=true,
# where the suite must fail rather than pass without testing anything.
skip () {
    echo "SKIP: $*" >&2
    exit 77
}

fail () {
    echo "FAIL: $*" >&2
    exit 1
}

requires () {
    command -v "$1" >/dev/null 2>&1 || skip "$1 not installed"
}

requires_core () {
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ "${CI:-}" = true ]; then
            fail "core component $1 is missing (CI=true: not skipping)"
        fi
        skip "$1 not installed"
    fi
}

requires_root () {
    [ "$(id -u)" -eq 0 ] || skip "needs root"
}

# cleanup_add CMD...: run CMD at exit (last added runs first), even on failure.
_cleanups=()
cleanup_add () {
    _cleanups+=("$(printf '%q ' "$@")")
}
_run_cleanups () {
    local rc=$? i
    for (( i=${#_cleanups[@]}-1; i>=0; i-- )); do
        eval "${_cleanups[$i]}" || true
    done
    exit $rc
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

# A private scratch directory, removed at exit.
TESTDIR=$(mktemp -d "${TMPDIR:-/tmp}/ovagent-test.XXXXXX")
cleanup_add rm -rf "$TESTDIR"

# expect_exit CODE CMD...: run CMD, require exit code CODE; stderr in $TESTDIR/err.
expect_exit () {
    local want=$1 rc=0; shift
    "$@" >"$TESTDIR/out" 2>"$TESTDIR/err" || rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "command: $*" >&2
        echo "stdout:" >&2; cat "$TESTDIR/out" >&2
        echo "stderr:" >&2; cat "$TESTDIR/err" >&2
        fail "exit code $rc, expected $want"
    fi
}
