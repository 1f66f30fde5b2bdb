#!/bin/bash
# The man page and the bash completion keep up with the options: every option
# `ovagent [CMD] --long-options` lists is documented and completed, exactly.

# shellcheck source=functions.sh
. "${srcdir:-$(dirname "$0")}/functions.sh"

requires ovagent

top=${top_srcdir:-$(dirname "$0")/..}
pod=$top/packaging/ovagent.pod
completion=$top/packaging/ovagent.bash-completion
[ -f "$pod" ] || fail "no man page source $pod"
[ -f "$completion" ] || fail "no bash completion $completion"

problems=()
problem () {
    problems+=("$*")
}

# pod_section REGEX: the man page from the =head1/=head2 line matching
# REGEX up to the next one.
pod_section () {
    awk -v re="$1" '/^=head[12] / { on = ($0 ~ re) } on' "$pod"
}

# mentions TEXT OPTION: TEXT names OPTION in bold, as POD names options
# (B<--to> is not B<--to-volume>, and the -o of a qemu-img example is none).
mentions () {
    grep -qE -- "B<$2([^A-Za-z0-9-]|\$)" <<<"$1"
}

# completes WORD...: what the completion offers for the last WORD, one a
# line, sorted; the function runs in a bash of its own, as a shell would.
completes () {
    bash --norc --noprofile -c '
        . "$1" || exit 1
        shift
        COMP_WORDS=("$@")
        COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        _ovagent
        (( ${#COMPREPLY[@]} == 0 )) || printf "%s\n" "${COMPREPLY[@]}"
    ' _ "$completion" "$@" | sort
}

# same_set WHAT EXPECTED ACTUAL [LACKS HAS]: one problem per word in only
# one of the two lists.
same_set () {
    local what=$1 lacks=${4:-is not offered} has=${5:-is offered but not accepted} w
    for w in $(comm -23 <(sort <<<"$2") <(sort <<<"$3")); do
        problem "$what: $w $lacks"
    done
    for w in $(comm -13 <(sort <<<"$2") <(sort <<<"$3")); do
        problem "$what: $w $has"
    done
}

ovagent --long-options >"$TESTDIR/global" || fail "ovagent --long-options failed"
ovagent --short-options >"$TESTDIR/global-short" || fail "ovagent --short-options failed"
ovagent --list-commands >"$TESTDIR/commands" || fail "ovagent --list-commands failed"
grep -qx -- --json "$TESTDIR/global" || fail "--long-options does not list --json"
grep -qx -- -q "$TESTDIR/global-short" || fail "--short-options does not list -q"
grep -qx list "$TESTDIR/commands" || fail "--list-commands does not list list"
! grep -v -- '^--[a-z][a-z-]*$' "$TESTDIR/global" || fail "--long-options: not one option a line"
! grep -v -- '^-[A-Za-z?]$' "$TESTDIR/global-short" || fail "--short-options: not one option a line"

# Global options (and the listing options themselves) are documented once,
# under GLOBAL OPTIONS.
globals=$(pod_section '^=head1 GLOBAL OPTIONS$')
[ -n "$globals" ] || fail "the man page has no GLOBAL OPTIONS section"
for opt in $(cat "$TESTDIR/global" "$TESTDIR/global-short") --long-options --short-options --list-commands; do
    mentions "$globals" "$opt" ||
        problem "man page: global option $opt is not under GLOBAL OPTIONS"
done

# The completion before a command: the global options and the commands.
same_set "completion of 'ovagent --'" "$(cat "$TESTDIR/global")" "$(completes ovagent --)"
same_set "completion of 'ovagent '" "$(cat "$TESTDIR/commands")" "$(completes ovagent '')"

# Every command: its own options under its heading (=head2 ovagent CMD ...),
# the ones it shares with the global options under GLOBAL OPTIONS; the
# completion offers exactly what it accepts.
while read -r cmd; do
    ovagent "$cmd" --long-options >"$TESTDIR/$cmd.long" ||
        fail "ovagent $cmd --long-options failed"
    ovagent "$cmd" --short-options >"$TESTDIR/$cmd.short" ||
        fail "ovagent $cmd --short-options failed"
    section=$(pod_section "^=head2 ovagent $cmd( |\$)")
    if [ -z "$section" ]; then
        problem "man page: no '=head2 ovagent $cmd' section"
        continue
    fi
    for opt in $(cat "$TESTDIR/$cmd.long" "$TESTDIR/$cmd.short"); do
        if grep -qxF -- "$opt" "$TESTDIR/global" "$TESTDIR/global-short"; then
            continue
        fi
        mentions "$section" "$opt" ||
            problem "man page: $cmd option $opt is not under 'ovagent $cmd'"
    done
    same_set "completion of 'ovagent $cmd --'" "$(cat "$TESTDIR/$cmd.long")" \
        "$(completes ovagent "$cmd" --)"
done <"$TESTDIR/commands"

# The options the completion skips the value of, when it looks for the
# command and its arguments, are those that take one (--help shows
# --opt=VALUE), but --compress, whose level comes only after '='.
# shellcheck disable=SC1090
with_arg=$(. "$completion" && tr '|' '\n' <<<"${_ovagent_with_arg:-}")
{
    ovagent --help
    while read -r cmd; do
        ovagent "$cmd" --help
    done <"$TESTDIR/commands"
} | sed -nE 's/^  (-([A-Za-z]), )?--([a-z][a-z-]*)=.*/-\2 --\3/p' |
    tr ' ' '\n' | grep -vx -- - | grep -vx -- --compress | sort -u >"$TESTDIR/with-arg"
same_set "completion: _ovagent_with_arg" "$(cat "$TESTDIR/with-arg")" "$with_arg" \
    "is missing (it takes a value)" "takes no value"

if (( ${#problems[@]} > 0 )); then
    printf 'FAIL: %s\n' "${problems[@]}" >&2
    exit 1
fi
echo "PASS: $(wc -l <"$TESTDIR/commands") commands: the man page documents and the completion offers every option"
