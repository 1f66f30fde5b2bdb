#!/bin/bash
# The command line contract: exit codes, one-line usage errors that say what
# to type, JSON error objects, help with examples, version; on an empty host.

# shellcheck source=functions.sh
. "${srcdir:-$(dirname "$0")}/functions.sh"

requires ovagent
requires jq

# An empty data center and no block devices: nothing to find, nothing to run.
mkdir -p "$TESTDIR/dc/mnt"
: >"$TESTDIR/empty.conf"
for v in $(env | sed -n 's/^\(OVAGENT_[A-Z_]*\)=.*/\1/p'); do
    unset "$v"
done
export OVAGENT_CONFIG=$TESTDIR/empty.conf
export OVAGENT_DATA_CENTER=$TESTDIR/dc
export OVAGENT_LVM_DEVICES=''
export OVAGENT_SYSLOG=false

SD=5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60
IMG=0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b

# one_line_error PATTERN: stderr is exactly one line and matches PATTERN.
one_line_error () {
    local lines
    lines=$(wc -l <"$TESTDIR/err")
    if [ "$lines" -ne 1 ]; then
        cat "$TESTDIR/err" >&2
        fail "expected one line on stderr, got $lines"
    fi
    grep -qE -- "$1" "$TESTDIR/err" ||
        fail "stderr '$(cat "$TESTDIR/err")' does not match '$1'"
}

# usage_error PATTERN ARGS...: exit 2, one line on stderr, nothing on stdout.
usage_error () {
    local pattern=$1; shift
    expect_exit 2 ovagent "$@"
    one_line_error "$pattern"
    [ ! -s "$TESTDIR/out" ] || fail "ovagent $*: unexpected stdout: $(cat "$TESTDIR/out")"
}

# No command: the usage on stderr, exit 2.
expect_exit 2 ovagent
grep -q 'Usage: ovagent' "$TESTDIR/err" || fail "no usage printed without a command"
grep -q "no command given" "$TESTDIR/err" || fail "no error without a command"

# Help, in every spelling.
expect_exit 0 ovagent --help
grep -q '^Commands:' "$TESTDIR/out" || fail "--help lists no commands"
for cmd in list info export-chain backup checkpoints receive backups verify prune forget restore import serve version help; do
    grep -q "^  $cmd " "$TESTDIR/out" || fail "--help does not list $cmd"
done
expect_exit 0 ovagent help
grep -q '^Commands:' "$TESTDIR/out" || fail "'help' lists no commands"
for cmd in list info backup checkpoints backups prune forget serve version help; do
    expect_exit 0 ovagent "$cmd" --help
    grep -q "Usage:" "$TESTDIR/out" || fail "$cmd --help: no usage"
    grep -q "Example" "$TESTDIR/out" || fail "$cmd --help: no examples"
    grep -q "ovagent $cmd" "$TESTDIR/out" || fail "$cmd --help: no example of $cmd"
    expect_exit 0 ovagent help "$cmd"
    grep -q "Example" "$TESTDIR/out" || fail "help $cmd: no examples"
done

# The listings for completion: one word a line on stdout, exit 0, no
# configuration read (even a broken one), and none of them in --help.
OVAGENT_CONFIG=$TESTDIR/nosuch.conf expect_exit 0 ovagent --list-commands
[ "$(head -1 "$TESTDIR/out")" = list ] || fail "--list-commands does not begin with list"
OVAGENT_CONFIG=$TESTDIR/nosuch.conf expect_exit 0 ovagent list --long-options
grep -qx -- --domain "$TESTDIR/out" || fail "list --long-options lacks --domain"
grep -qx -- --json "$TESTDIR/out" || fail "list --long-options lacks --json"
! grep -qx -- --version "$TESTDIR/out" || fail "list --long-options lists --version"
expect_exit 0 ovagent list --short-options
[ "$(tr '\n' ' ' <"$TESTDIR/out")" = "-d -q -v -h " ] ||
    fail "list --short-options: $(cat "$TESTDIR/out")"
expect_exit 0 ovagent --long-options
grep -qx -- --version "$TESTDIR/out" || fail "--long-options lacks --version"
[ ! -s "$TESTDIR/err" ] || fail "--long-options wrote to stderr: $(cat "$TESTDIR/err")"
for cmd in "" list backup; do
    # shellcheck disable=SC2086
    expect_exit 0 ovagent $cmd --help
    ! grep -qE -- '--(long-options|short-options|list-commands)' "$TESTDIR/out" ||
        fail "ovagent $cmd --help shows a listing option"
done

# Unknown commands, with a suggestion when one is close.
usage_error "unknown command 'lsit'; did you mean 'list'\\? See 'ovagent --help'" lsit
usage_error "did you mean 'info'" inof
usage_error "did you mean 'version'" versoin
usage_error "unknown command 'frobnicate'" frobnicate
usage_error "unknown command 'lsit'" help lsit

# Options.
usage_error "unknown option --bogus.*ovagent list --help" list --bogus
usage_error "unknown option --bogus.*ovagent --help" --bogus list
usage_error "unknown log level 'nosuch'" --log-level nosuch list
usage_error "unknown log level 'nosuch'" list --log-level=nosuch
usage_error "unknown progress mode 'fast'" --progress=fast list
usage_error "absolute path" list --data-center relative/dc
usage_error "--domain" list --domain
usage_error "takes no command" --version list

# Arguments.
usage_error "missing DISK.*usage: ovagent info DISK" info
usage_error "not 'not-a-uuid'" info not-a-uuid
usage_error "not '$SD/$IMG/extra'" info "$SD/$IMG/extra"
usage_error "not 'bad/$IMG'" info "bad/$IMG"
usage_error "not '$SD/'" info "$SD/"
usage_error "unexpected argument 'extra'" info "$IMG" extra
usage_error "--domain needs a storage domain UUID.*not 'bad'" list --domain bad
usage_error "unexpected argument 'extra'" list extra
usage_error "unexpected argument 'extra'" version extra
usage_error "missing VM.*usage: ovagent checkpoints VM" checkpoints
usage_error "unexpected argument 'extra' after VM" checkpoints vm1 extra
usage_error "--delete: invalid checkpoint name" checkpoints vm1 --delete ../x

# --json turns any error into one JSON object on stdout, wherever it is.
for args in "--json lsit" "lsit --json" "list --bogus --json" "info not-a-uuid --json" "--json info"; do
    # shellcheck disable=SC2086
    expect_exit 2 ovagent $args
    one_line_error "error"
    jq -e '.result == "error" and .code == "usage" and (.message | length > 0)' \
        "$TESTDIR/out" >/dev/null || fail "ovagent $args: no JSON error object: $(cat "$TESTDIR/out")"
done

# Not found is 3, as JSON too.
expect_exit 3 ovagent list --domain "$SD"
one_line_error "$SD"
expect_exit 3 ovagent info "$IMG" --json
jq -e '.result == "error" and .code == "not-found"' "$TESTDIR/out" >/dev/null ||
    fail "info of a missing disk: no not-found object"

# The empty host lists nothing, and global options work on either side.
expect_exit 0 ovagent list
expect_exit 0 ovagent list --json
jq -e '.domains == []' "$TESTDIR/out" >/dev/null || fail "list --json on an empty host: $(cat "$TESTDIR/out")"
expect_exit 0 ovagent --json --quiet list
jq -e '.domains == []' "$TESTDIR/out" >/dev/null || fail "--json before the command is ignored"
expect_exit 0 ovagent -v -v --progress=json list --progress none
[ -s "$TESTDIR/err" ] || fail "-v -v logs nothing"

# Version.
expect_exit 0 ovagent version
grep -qE '^ovagent [0-9]+\.[0-9]+\.[0-9]+$' "$TESTDIR/out" || fail "version: $(cat "$TESTDIR/out")"
expect_exit 0 ovagent --version
grep -qE '^ovagent [0-9]+\.[0-9]+\.[0-9]+$' "$TESTDIR/out" || fail "--version: $(cat "$TESTDIR/out")"
expect_exit 0 ovagent version --json
jq -e '(.version | test("^[0-9]+\\.[0-9]+\\.[0-9]+$")) and (.glib | type == "string")' \
    "$TESTDIR/out" >/dev/null || fail "version --json: $(cat "$TESTDIR/out")"
[ "$(wc -l <"$TESTDIR/out")" -eq 1 ] || fail "version --json is not one line when piped"
# version needs no configuration, even a broken one.
OVAGENT_CONFIG=$TESTDIR/nosuch.conf expect_exit 0 ovagent version

echo "PASS: cli-usage"
