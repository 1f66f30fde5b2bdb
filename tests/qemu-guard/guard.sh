#!/bin/bash
# The test suite's check of every qemu-img and qemu-nbd command line that ovagent
# (or a unit test) launches: no probed format, no backing string followed.
#
#   guard.sh qemu-img|qemu-nbd ARGS...   (run by the qemu-img and qemu-nbd here)
#
# Enforced when the parent process is ovagent, lt-ovagent, test-* (unit tests)
# or memcheck* (valgrind), or when OVAGENT_QEMU_GUARD_ENFORCE=1; other callers
# (the test scripts building fixtures, and a unit test's own fixture commands,
# which set OVAGENT_QEMU_GUARD_FIXTURE=1 for that command alone) run the real
# tool unchecked. A command
# line that breaks a rule is not run: "VIOLATION TOOL: REASON: ARGV" goes to
# $OVAGENT_QEMU_GUARD_LOG (when set) and to stderr, and the exit status is 1.
# An accepted one is logged as "ok TOOL ARGV" and the real tool replaces this
# script (same arguments, descriptors and exit status). ARGV is shell-quoted,
# one line. The arguments are only ever compared, never evaluated.
#
# The rules: an image qemu opens is a json: spec in which every node names its
# driver (qcow2 or raw over file or host_device), every qcow2 node says what
# its backing is (null or a node) and nothing else names a child node; a file
# ovagent creates or rebases is a plain path whose formats are given by options.

set -u

tool=${1:-}
shift

case $tool in
    qemu-img|qemu-nbd) ;;
    *) echo "qemu-guard: usage: guard.sh qemu-img|qemu-nbd ARGS..." >&2; exit 2 ;;
esac

# The real tool: the first one on PATH that is not a guard's (a directory
# holding guard.sh), else /usr/bin's.
real=/usr/bin/$tool
IFS=: read -r -a path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
    d=${d:-.}
    if [ -f "$d/$tool" ] && [ -x "$d/$tool" ] && [ ! -e "$d/guard.sh" ]; then
        real=$d/$tool
        break
    fi
done

enforce=0
parent=
if [ "${OVAGENT_QEMU_GUARD_ENFORCE:-}" = 1 ]; then
    enforce=1
else
    { read -r parent </proc/$PPID/comm; } 2>/dev/null || true
    case $parent in
        ovagent|lt-ovagent|test-*|memcheck*) enforce=1 ;;
    esac
    # A unit test's own fixture (tests/unit/fixture.h), set only in the
    # environment of that one command, never in the test's own.
    [ "${OVAGENT_QEMU_GUARD_FIXTURE:-}" != 1 ] || enforce=0
fi
[ "$enforce" = 1 ] || exec "$real" "$@"

# quote WORD: WORD as a shell reads it back, in $REPLY: plain words bare,
# others in single quotes, those with control characters in $'...'.
sq="'\\''"
quote () {
    if [[ $1 =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then
        REPLY=$1
    elif [[ $1 != *[[:cntrl:]]* ]]; then
        REPLY="'${1//\'/$sq}'"
    else
        printf -v REPLY '%q' "$1"
    fi
}

argv_q=
for a in "$@"; do
    quote "$a"
    argv_q+=${argv_q:+ }$REPLY
done

log_line () {
    [ -n "${OVAGENT_QEMU_GUARD_LOG:-}" ] || return 0
    { printf '%s\n' "$1" >>"$OVAGENT_QEMU_GUARD_LOG"; } 2>/dev/null || true
}

# violation REASON: log it, say it on stderr, exit 1 without running the tool.
# A unit test keeps the tool's stderr to itself: the line goes to the test's
# own stderr (its log) too.
violation () {
    local line="VIOLATION $tool: ${1//$'\n'/\\n}: $argv_q"
    log_line "$line"
    printf 'qemu-guard: %s\n' "$line" >&2
    case $parent in
        test-*|memcheck*)
            { printf 'qemu-guard: %s\n' "$line" >>"/proc/$PPID/fd/2"; } 2>/dev/null || true ;;
    esac
    exit 1
}

# ---- the node rules, one jq program ----------------------------------------
# Input: the text after "json:" as jq's stream events (so a repeated member
# name is seen). Output: the first broken rule, or nothing.
read -r -d '' spec_rules <<'EOF'
def scalar: type != "object" and type != "array";
def extras($at; $nodes):
  to_entries[]
  | select(.key as $k | any($nodes[]; . == $k) | not)
  | select(.value | scalar | not)
  | "\($at) member \(.key | tojson) holds a JSON \(.value | type): only file and backing may hold a node, other members are scalars";
def problems($at):
  if type != "object" then "\($at) is a JSON \(type), not a node object"
  else
    (keys_unsorted[] | select(contains("."))
     | "\($at) has the dotted member name \(tojson): qemu reads it as an option of a child node"),
    (if (.driver | type) != "string" then "\($at) has no string driver"
     else .driver as $d
     | if $d == "qcow2" then
         (if (.file | type) != "object" then "\($at) (qcow2) has no file node"
          else .file | problems("\($at).file") end),
         (if has("backing") | not then "\($at) (qcow2) has no backing member: name it (null or a node) or qemu opens the header's backing string"
          elif .backing == null then empty
          else .backing | problems("\($at).backing") end),
         (if has("data-file") then "\($at) (qcow2) has a data-file member" else empty end),
         extras($at; ["driver", "file", "backing"])
       elif $d == "raw" then
         (if (.file | type) != "object" then "\($at) (raw) has no file node"
          else .file | problems("\($at).file") end),
         (if has("backing") then "\($at) (raw) has a backing member" else empty end),
         extras($at; ["driver", "file"])
       elif $d == "file" or $d == "host_device" then
         (if (.filename | type) != "string" then "\($at) (\($d)) has no string filename" else empty end),
         (if has("file") then "\($at) (\($d)) has a file member" else empty end),
         (if has("backing") then "\($at) (\($d)) has a backing member" else empty end),
         extras($at; ["driver", "filename"])
       else "\($at) names the driver \($d | tojson): only qcow2, raw, file and host_device"
       end
     end)
  end;
[inputs] as $events
| [fromstream($events[])] as $values
| if ($values | length) != 1 then "the text after json: is \($values | length) JSON values, not one object"
  elif ($values[0] | type) != "object" then "the text after json: is a JSON \($values[0] | type), not an object"
  elif ($values[0] | length) > 0 and
       ([$values[0] | paths(scalar or length == 0)] | length) != ($events | map(select(length == 2)) | length)
  then "the JSON object repeats a member name"
  else [$values[0] | problems("the spec")] | first // empty
  end
EOF

# spec WHAT ARG: ARG must be a json: spec whose every node follows the rules.
spec () {
    local what=$1 arg=$2 problem rc=0
    if [[ $arg != json:* ]]; then
        quote "$arg"
        violation "$what $REPLY is not a json: spec (qemu would probe its format and follow its backing string)"
    fi
    command -v jq >/dev/null 2>&1 ||
        violation "jq is missing: the guard cannot check the json: spec of $what"
    problem=$(jq -n -r --stream "$spec_rules" <<<"${arg#json:}" 2>/dev/null) || rc=$?
    [ "$rc" -eq 0 ] || violation "$what: the text after json: is not valid JSON"
    [ -z "$problem" ] || violation "$what: $problem"
}

# plain WHAT ARG: ARG is a file name qemu takes as a path, not as a spec or a
# protocol (as qemu does: a ':' before any '/').
plain () {
    local what=$1 arg=$2 head
    quote "$arg"
    [ -n "$arg" ] || violation "$what is empty"
    head=${arg%%/*}
    [[ $head != *:* ]] || violation "$what $REPLY is not a plain path (qemu reads a protocol or a json: spec in it)"
}

# ---- options ----------------------------------------------------------------
# parse VALUE-SHORT VALUE-LONG ARGS...: getopt_long's reading of ARGS into
# opts (canonical names: "-f", "--output"), vals (their values, "" for a
# flag) and pos (positional arguments). VALUE-SHORT holds the letters that
# take a value; VALUE-LONG the long names that do (" --name --other ").
# A long name that is another spelling of a short option becomes it
# (long_alias).
declare -A long_alias=()
parse () {
    local vshort=$1 vlong=$2 a name i c pending=
    shift 2
    opts=() vals=() pos=()
    while [ $# -gt 0 ]; do
        a=$1
        shift
        if [ -n "$pending" ]; then
            opts+=("$pending") vals+=("$a")
            pending=
            continue
        fi
        case $a in
            --)
                pos+=("$@")
                break ;;
            --?*=*)
                name=${a%%=*}
                opts+=("${long_alias[$name]:-$name}") vals+=("${a#*=}") ;;
            --?*)
                if [[ $vlong == *" $a "* ]]; then
                    pending=${long_alias[$a]:-$a}
                else
                    opts+=("${long_alias[$a]:-$a}") vals+=("")
                fi ;;
            -?*)
                for (( i = 1; i < ${#a}; i++ )); do
                    c=${a:i:1}
                    if [[ $vshort != *"$c"* ]]; then
                        opts+=("-$c") vals+=("")
                    elif (( i + 1 < ${#a} )); then
                        opts+=("-$c") vals+=("${a:i+1}")
                        break
                    else
                        pending=-$c
                    fi
                done ;;
            *)
                pos+=("$a") ;;
        esac
    done
    if [ -n "$pending" ]; then
        quote "$pending"
        violation "option $REPLY needs a value"
    fi
}

# has OPT: OPT was given; its last value (the one qemu uses) in $REPLY.
has () {
    local i found=1
    for i in "${!opts[@]}"; do
        if [ "${opts[$i]}" = "$1" ]; then
            REPLY=${vals[$i]}
            found=0
        fi
    done
    return $found
}

forbid () {
    ! has "$1" || violation "$1 $2"
}

need () {
    has "$1" || violation "$2"
}

# only OPT...: every option given is one of OPT.
only () {
    local o a ok
    for o in "${opts[@]}"; do
        ok=0
        for a in "$@"; do
                 [ "$o" != "$a" ] || { ok=1; break; }
        done
        quote "$o"
        [ "$ok" = 1 ] || violation "option $REPLY is not in the guard's list for $cmd"
    done
}

# formats OPT: every value given to OPT is qcow2 or raw.
formats () {
    local i
    for i in "${!opts[@]}"; do
        [ "${opts[$i]}" = "$1" ] || continue
        case ${vals[$i]} in
            qcow2|raw) ;;
            *) quote "${vals[$i]}"; violation "$1 $REPLY: ovagent's images are qcow2 or raw" ;;
        esac
    done
}

# no_backing_in_o: no -o sets what -b/-B/-F do (they are checked there).
no_backing_in_o () {
    local i rest part key
    for i in "${!opts[@]}"; do
        [ "${opts[$i]}" = -o ] || continue
        rest=${vals[$i]//,,/}
        while :; do
            part=${rest%%,*}
            key=${part%%=*}
            case $key in
                backing_file|backing_fmt|data_file|data_file_raw)
                    violation "-o sets $key: a backing or data file is named with -b, -F and -u only" ;;
            esac
                 [[ $rest == *,* ]] || break
            rest=${rest#*,}
        done
    done
}

npos () {
    [ "${#pos[@]}" -eq "$1" ] ||
        violation "$cmd takes $1 positional argument(s) here ($2), got ${#pos[@]}"
}

output_json () {
    local i
    for i in "${!opts[@]}"; do
        [ "${opts[$i]}" != --output ] || [ "${vals[$i]}" = json ] ||
            violation "--output must be json"
    done
}

# ---- qemu-img ---------------------------------------------------------------
IMG_VSHORT=fFoObBSmtTglsr
IMG_VLONG=" --object --output --merge --cache --format --repair "
FORMAT_HINT="the format must be the json: spec's driver, not an option"

img_info () {
    parse "${IMG_VSHORT/r/}" "$IMG_VLONG" "$@"
    forbid --backing-chain "makes qemu-img open the backing files the image's header names"
    forbid -f "(or --format): $FORMAT_HINT"
    only -U --output
    output_json
    npos 1 "the image"
    spec "the image" "${pos[0]}"
}

img_check () {
    parse "$IMG_VSHORT" "$IMG_VLONG" "$@"
    forbid -f "(or --format): $FORMAT_HINT"
    only -U --output -q
    output_json
    npos 1 "the image"
    spec "the image" "${pos[0]}"
}

img_bitmap () {
    parse "${IMG_VSHORT/r/}" "$IMG_VLONG" "$@"
    forbid -f "(or --format): $FORMAT_HINT"
    forbid -b "merges from another image: ovagent merges bitmaps within one image"
    forbid -F "names another image's format: ovagent merges bitmaps within one image"
    only --add --remove --enable --disable --clear --merge -g
    npos 2 "the image and the bitmap"
    spec "the image" "${pos[0]}"
}

img_create () {
    parse "${IMG_VSHORT/r/}" "$IMG_VLONG" "$@"
    need -f "create without -f: the new image's format must be named"
    only -q -o -u -f -b -F
    formats -f
    formats -F
    no_backing_in_o
    if has -b; then
        need -F "create -b without -F: qemu-img would probe the backing file's format"
        need -u "create -b without -u: qemu-img would open the backing file"
    fi
    npos 2 "the file and the size"
    plain "the new file" "${pos[0]}"
}

img_rebase () {
    parse "${IMG_VSHORT/r/}" "$IMG_VLONG" "$@"
    only -q -U -u -f -b -F
    need -u "rebase without -u: qemu-img would open the old and new backing chains"
    need -f "rebase without -f: qemu-img would probe the image's format"
    need -b "rebase without -b: the new backing string must be given"
    has -b
    if [ -n "$REPLY" ]; then
        need -F "rebase -b without -F: the backing format would be probed when opened"
    fi
    formats -f
    formats -F
    npos 1 "the image"
    plain "the image" "${pos[0]}"
}

img_convert () {
    local i
    parse "${IMG_VSHORT/r/}" "$IMG_VLONG" "$@"
    forbid -f "(or --format): $FORMAT_HINT"
    forbid -B "gives the target a backing file"
    forbid -F "names a backing format: the target gets no backing file"
    forbid --image-opts "is not used: sources are json: specs"
    forbid --target-image-opts "is not used: the target is a plain path"
    need -O "convert without -O: the target's format must be named"
    only -q -n -p -S -W -m -t -T -o -U -O --target-is-zero
    formats -O
    no_backing_in_o
    [ "${#pos[@]}" -ge 2 ] ||
        violation "$cmd takes one or more sources and the target, got ${#pos[@]} positional argument(s)"
    for (( i = 0; i < ${#pos[@]} - 1; i++ )); do
        spec "source $((i + 1))" "${pos[$i]}"
    done
    plain "the target" "${pos[${#pos[@]} - 1]}"
}

# commit -b BASE: the one exception to naming every backing. qemu-img finds
# the -b file in a chain only by the name qemu gives its node, which is the
# plain path only for a node whose backing it opened from the header; so
# the base is the one qcow2 node without a backing member (ovagent checks
# the headers under it against the manifest first), named by -b.
img_commit () {
    local base bases named
    parse "${IMG_VSHORT/r/}" "$IMG_VLONG" "$@"
    forbid -f "(or --format): $FORMAT_HINT"
    forbid --image-opts "is not used: the image is a json: spec"
    only -q -d -p -t -b
    need -d "commit without -d: qemu-img would empty the top image"
    need -b "commit without -b: the base must be named"
    has -b
    base=$REPLY
    plain "the base" "$base"
    npos 1 "the image"
    [[ ${pos[0]} == json:* ]] || spec "the image" "${pos[0]}"
    bases=$(jq -r '[.. | objects | select(.driver == "qcow2" and (has("backing") | not)) | .file.filename] | length' \
        <<<"${pos[0]#json:}" 2>/dev/null) || violation "the image: the text after json: is not valid JSON"
    [ "$bases" = 1 ] ||
        violation "commit: $bases qcow2 nodes of the image have no backing member; only the base may"
    named=$(jq -r '.. | objects | select(.driver == "qcow2" and (has("backing") | not)) | .file.filename' \
        <<<"${pos[0]#json:}")
    [ "$named" = "$base" ] || violation "commit -b names a file that is not the base node (the one without a backing member)"
    spec "the image" "json:$(jq -c 'walk(if type == "object" and .driver == "qcow2" and (has("backing") | not) then .backing = null else . end)' <<<"${pos[0]#json:}")"
}

check_qemu_img () {
    long_alias=([--format]=-f [--force-share]=-U [--repair]=-r)
    local sub=${1:-}
    [ $# -eq 0 ] || shift
    cmd="qemu-img $sub"
    case $sub in
        info) img_info "$@" ;;
        check) img_check "$@" ;;
        bitmap) img_bitmap "$@" ;;
        create) img_create "$@" ;;
        rebase) img_rebase "$@" ;;
        convert) img_convert "$@" ;;
        commit) img_commit "$@" ;;
        --version|-V|--help|-h)
                 [ $# -eq 0 ] || violation "$sub takes no further argument" ;;
        *)
            quote "$sub"
            violation "subcommand $REPLY not in the guard's list: extend the guard with its rules first" ;;
    esac
}

# ---- qemu-nbd ---------------------------------------------------------------
check_qemu_nbd () {
    cmd=qemu-nbd
    if [ $# -eq 1 ]; then
        case $1 in
            --version|-V|--help|-h) return 0 ;;
        esac
    fi
    long_alias=([--socket]=-k [--bitmap]=-B [--shared]=-e [--export-name]=-x
                [--description]=-D [--bind]=-b [--port]=-p [--offset]=-o
                [--load-snapshot]=-l [--trace]=-T [--format]=-f [--connect]=-c
                [--read-only]=-r [--persistent]=-t [--verbose]=-v
                [--allocation-depth]=-A [--nocache]=-n [--snapshot]=-s
                [--disconnect]=-d [--list]=-L)
    parse kBeDxbpolTfc " --socket --bitmap --shared --cache --aio --discard --detect-zeroes --pid-file --export-name --description --bind --port --offset --load-snapshot --trace --object --tls-creds --tls-authz --tls-hostname --handshake-limit --format --connect " "$@"
    forbid -f "(or --format): $FORMAT_HINT"
    forbid --image-opts "is not used: the image is a json: spec"
    forbid -c "(or --connect) attaches a kernel NBD device"
    only -k -B -e --cache --aio --discard --detect-zeroes --pid-file -x -D -b -p -o -l -T \
         --object --tls-creds --tls-authz --handshake-limit -r -t -v --fork -A -n -s
    npos 1 "the image"
    spec "the image" "${pos[0]}"
}

cmd=$tool
if [ "$tool" = qemu-img ]; then
    check_qemu_img "$@"
else
    check_qemu_nbd "$@"
fi
log_line "ok $tool $argv_q"
exec "$real" "$@"
