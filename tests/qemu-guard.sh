#!/bin/bash
# The suite's qemu-img/qemu-nbd guard (tests/qemu-guard): every rule tried with a
# command line it accepts (the real tool runs, its status and output kept) and
# one it refuses (logged, said on stderr, exit 1, nothing run); when it enforces.

. "$top_srcdir/tests/functions.sh"

requires_core qemu-img
requires_core qemu-nbd
requires_core nbdinfo
requires_core jq

G=$top_srcdir/tests/qemu-guard
LOG=$TESTDIR/guard.log
: >"$LOG"
n_accepted=0 n_refused=0

# A qemu-img and qemu-nbd that only note they ran: first on PATH behind the
# guard in refusals, so a refused command line that ran anything is seen.
FAKE=$TESTDIR/fake
mkdir "$FAKE"
for t in qemu-img qemu-nbd; do
    printf '#!/bin/bash\necho "$0" >>%q\n' "$TESTDIR/ran" >"$FAKE/$t"
    chmod 0755 "$FAKE/$t"
done

# spec_of FILE [DRIVER]: the json: spec of the qcow2 (or raw) FILE alone.
spec_of () {
    jq -nr --arg f "$1" --arg d "${2:-qcow2}" \
       '{driver: $d, file: {driver: "file", filename: $f}}
        | if $d == "qcow2" then .backing = null else . end
        | "json:" + tojson'
}

show () {
    echo "command: $*" >&2
    echo "stdout:" >&2; head -c 2000 "$TESTDIR/out" >&2
    echo "stderr:" >&2; head -c 2000 "$TESTDIR/err" >&2
    echo "log tail:" >&2; tail -n 2 "$LOG" >&2
}

# guard TOOL ARGS...: TOOL through the guard, enforcing, logging to LOG;
# output in $TESTDIR/out and err, exit status in rc.
guard () {
    local tool=$1
    shift
    rc=0
    OVAGENT_QEMU_GUARD_ENFORCE=1 OVAGENT_QEMU_GUARD_LOG=$LOG \
        "$G/$tool" "$@" >"$TESTDIR/out" 2>"$TESTDIR/err" || rc=$?
}

# accepts RC TOOL ARGS...: the guard logs one "ok TOOL" line and runs the real
# TOOL, which exits RC.
accepts () {
    local want=$1 tool=$2 before
    shift 2
    before=$(wc -l <"$LOG")
    guard "$tool" "$@"
    if grep -q '^qemu-guard:' "$TESTDIR/err" || [ "$rc" -ne "$want" ]; then
        show "$tool" "$@"
        fail "$tool: exit $rc, expected $want from the real tool"
    fi
    [ "$(wc -l <"$LOG")" -eq $((before + 1)) ] && tail -n 1 "$LOG" | grep -q "^ok $tool " || {
        show "$tool" "$@"
        fail "$tool: not logged as one ok line"
    }
    n_accepted=$((n_accepted + 1))
}

# refuses WHAT TOOL ARGS...: the guard refuses, naming WHAT in its log line
# and on stderr, exits 1 and runs nothing.
refuses () {
    local what=$1 tool=$2 before
    shift 2
    before=$(wc -l <"$LOG")
    rm -f "$TESTDIR/ran"
    PATH=$FAKE:$PATH guard "$tool" "$@"
    if [ "$rc" -ne 1 ] || [ -e "$TESTDIR/ran" ] || [ -s "$TESTDIR/out" ]; then
        show "$tool" "$@"
        fail "$tool: a refusal exits 1 without running the tool or writing to stdout (exit $rc)"
    fi
    if [ "$(wc -l <"$LOG")" -ne $((before + 1)) ] ||
           ! tail -n 1 "$LOG" | grep -q "^VIOLATION $tool: " ||
           ! tail -n 1 "$LOG" | grep -qF -- "$what" ||
           ! head -n 1 "$TESTDIR/err" | grep -q "^qemu-guard: VIOLATION $tool: .*" ||
           ! grep -qF -- "$what" "$TESTDIR/err"; then
        show "$tool" "$@"
        fail "$tool: the refusal is not one VIOLATION line naming: $what"
    fi
    n_refused=$((n_refused + 1))
}

# ---- fixtures (made by this script: not checked) -----------------------------
A=$TESTDIR/a.qcow2
BASE=$TESTDIR/base.qcow2
RAW=$TESTDIR/r.raw
NASTY="$TESTDIR/it's a \"quoted\" name
on two lines.qcow2"
qemu-img create -q -f qcow2 "$BASE" 1M
qemu-io -f qcow2 -c 'write -P 0x5a 0 64k' "$BASE" >/dev/null
qemu-img create -q -f qcow2 -b "$BASE" -F qcow2 "$A" 1M
qemu-img create -q -f raw "$RAW" 1M
qemu-img create -q -f qcow2 "$NASTY" 1M
SA=$(spec_of "$A")
SBASE=$(spec_of "$BASE")
SNASTY=$(spec_of "$NASTY")
# A over BASE, every layer named.
SCHAIN=$(jq -nr --arg a "$A" --arg b "$BASE" \
    '"json:" + ({driver: "qcow2", file: {driver: "file", filename: $a},
                 backing: {driver: "qcow2", file: {driver: "file", filename: $b},
                           backing: null}} | tojson)')

# The refusals really run nothing: the fake tools do note a run.
rm -f "$TESTDIR/ran"
PATH=$FAKE:$PATH OVAGENT_QEMU_GUARD_ENFORCE=1 "$G/qemu-img" --version >/dev/null
[ -s "$TESTDIR/ran" ] || fail "the fake qemu-img behind the guard did not run"
rm -f "$TESTDIR/ran"

# ---- qemu-img info ---------------------------------------------------------------
accepts 0 qemu-img info --output=json "$SA"
qemu-img info --output=json "$SA" >"$TESTDIR/direct.json"
cmp -s "$TESTDIR/out" "$TESTDIR/direct.json" ||
    fail "qemu-img info through the guard printed other than the real tool's JSON"
jq -e --arg a "$A" '.format == "qcow2" and .filename == $a' "$TESTDIR/out" >/dev/null ||
    fail "qemu-img info of a spec did not describe $A"
# The header's backing string is shown, not opened.
accepts 0 qemu-img info -U --output json "$SA"
jq -e --arg b "$BASE" '."backing-filename" == $b and (."backing-image" | not)' "$TESTDIR/out" >/dev/null ||
    fail "qemu-img info of a spec with backing null: unexpected JSON"
accepts 0 qemu-img info --force-share "$SBASE"
# Extra scalar options on nodes; a raw node; a host_device node the real tool
# refuses to open on a regular file: its failure and status come through.
accepts 0 qemu-img info -U --output=json "$(jq -nr --arg f "$A" \
    '"json:" + ({driver: "qcow2", "read-only": true, discard: "ignore", "detect-zeroes": "off",
                 file: {driver: "file", filename: $f, locking: "off", aio: "threads"},
                 backing: null} | tojson)')"
accepts 0 qemu-img info --output=json "$(spec_of "$RAW" raw)"
jq -e '.format == "raw"' "$TESTDIR/out" >/dev/null || fail "raw spec: not read as raw"
accepts 1 qemu-img info "$(jq -nr --arg f "$RAW" \
    '"json:" + ({driver: "raw", file: {driver: "host_device", filename: $f}} | tojson)')"
grep -q "'host_device' driver requires" "$TESTDIR/err" ||
    fail "host_device on a regular file: the real tool's error did not come through"
# A file name with spaces, quotes and a newline: accepted, logged on one line.
accepts 0 qemu-img info --output=json "$SNASTY"
jq -e --arg f "$NASTY" '.filename == $f' "$TESTDIR/out" >/dev/null ||
    fail "qemu-img info of the spec naming a file with quotes and a newline"

refuses "-f (or --format)" qemu-img info -f qcow2 "$A"
refuses "-f (or --format)" qemu-img info --format=qcow2 "$SA"
refuses "--backing-chain" qemu-img info --backing-chain -U --output=json "$SA"
refuses "is not a json: spec" qemu-img info -U "$A"
refuses "is not a json: spec" qemu-img info -U "JSON:{}"
refuses "--output must be json" qemu-img info --output=human "$SA"
refuses "takes 1 positional" qemu-img info "$SA" "$SBASE"
refuses "option --output needs a value" qemu-img info "$SA" --output
refuses "option --object is not in the guard's list" qemu-img info --object secret,id=s,file=/etc/shadow "$SA"
# Nasty specs.
refuses "(qcow2) has no backing member" qemu-img info \
    "$(jq -nr --arg f "$A" '"json:" + ({driver: "qcow2", file: {driver: "file", filename: $f}} | tojson)')"
refuses 'the spec.backing.file names the driver "nbd"' qemu-img info "$(jq -nr --arg a "$A" \
    '"json:" + ({driver: "qcow2", file: {driver: "file", filename: $a},
                 backing: {driver: "qcow2", backing: null,
                           file: {driver: "nbd", server: {type: "unix", path: "/run/x.sock"}}}} | tojson)')"
refuses "has a data-file member" qemu-img info "$(jq -nr --arg f "$A" \
    '"json:" + ({driver: "qcow2", file: {driver: "file", filename: $f}, backing: null,
                 "data-file": {driver: "file", filename: "/etc/shadow"}} | tojson)')"
refuses 'the spec.backing is a JSON string' qemu-img info "$(jq -nr --arg f "$A" \
    '"json:" + ({driver: "qcow2", file: {driver: "file", filename: $f}, backing: "/etc/shadow"} | tojson)')"
refuses '"file.driver"' qemu-img info 'json:{"driver":"raw","file.driver":"file","file.filename":"/etc/shadow"}'
refuses '"backing.file.driver"' qemu-img info "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"$A\"},\"backing\":null,\"backing.file.driver\":\"nbd\"}"
refuses "repeats a member name" qemu-img info "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"$A\"},\"backing\":{\"driver\":\"nbd\"},\"backing\":null}"
refuses "is a JSON array, not an object" qemu-img info 'json:[{"driver":"file","filename":"/etc/shadow"}]'
refuses "is a JSON string, not an object" qemu-img info 'json:"/etc/shadow"'
refuses "not valid JSON" qemu-img info 'json:{"driver":"qcow2",'
refuses "2 JSON values" qemu-img info "$SA ${SA#json:}"
refuses "(raw) has a backing member" qemu-img info \
    'json:{"driver":"raw","file":{"driver":"file","filename":"/x"},"backing":null}'
refuses "(file) has a file member" qemu-img info \
    'json:{"driver":"raw","file":{"driver":"file","filename":"/x","file":{"driver":"file","filename":"/y"}}}'
refuses "(host_device) has no string filename" qemu-img info \
    'json:{"driver":"raw","file":{"driver":"host_device","filename":["/dev/x"]}}'
refuses 'names the driver "vvfat"' qemu-img info 'json:{"driver":"vvfat","dir":"/etc"}'
refuses 'the spec.file names the driver "http"' qemu-img info \
    'json:{"driver":"raw","file":{"driver":"http","url":"http://127.0.0.1/x"}}'
refuses "has no string driver" qemu-img info 'json:{"file":{"driver":"file","filename":"/x"}}'
refuses 'member "encrypt" holds a JSON object' qemu-img info "$(jq -nr --arg f "$A" \
    '"json:" + ({driver: "qcow2", file: {driver: "file", filename: $f}, backing: null,
                 encrypt: {format: "luks", "key-secret": "s"}} | tojson)')"
# A nasty file name in a refused line still makes one log line.
refuses "-f (or --format)" qemu-img info -f qcow2 "$NASTY"

# ---- qemu-img check ------------------------------------------------------------
accepts 0 qemu-img check -q -U --output=json "$SA"
# A leaked cluster (the L1 table's refcount raised to 2): the real tool's
# status 3 and report come through.
LEAK=$TESTDIR/leak.qcow2
qemu-img create -q -f qcow2 "$LEAK" 1M
printf '\000\002' | dd of="$LEAK" bs=1 seek=$((0x20006)) conv=notrunc status=none
rc=0; qemu-img check "$LEAK" >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 3 ] || fail "fixture: qemu-img check of $LEAK exits $rc, not 3 (leaks)"
accepts 3 qemu-img check --output=json "$(spec_of "$LEAK")"
jq -e '.leaks == 1' "$TESTDIR/out" >/dev/null || fail "check: the real tool's leak report did not come through"
refuses "option -r is not in the guard's list" qemu-img check -r all "$(spec_of "$LEAK")"
refuses "-f (or --format)" qemu-img check -f qcow2 "$SA"
refuses "is not a json: spec" qemu-img check "$A"

# ---- qemu-img bitmap -----------------------------------------------------------
accepts 0 qemu-img bitmap --add "$SA" b0
accepts 0 qemu-img bitmap --add --disable -g 128k "$SA" b1
accepts 0 qemu-img bitmap --merge b0 -- "$SA" b1
accepts 0 qemu-img bitmap --enable "$SA" b1
accepts 0 qemu-img bitmap --clear "$SA" b1
accepts 0 qemu-img bitmap --remove "$SA" b1
[ "$(qemu-img info -U --output=json "$A" | jq -c '[."format-specific".data.bitmaps[].name]')" = '["b0"]' ] ||
    fail "bitmap through the guard: $A does not hold exactly b0"
refuses "-f (or --format)" qemu-img bitmap --add -f qcow2 "$A" b2
refuses "merges from another image" qemu-img bitmap --merge b0 -b "$BASE" "$SA" b2
refuses "names another image's format" qemu-img bitmap --merge b0 -F qcow2 "$SA" b2
refuses "is not a json: spec" qemu-img bitmap --add "$A" b2
refuses "takes 2 positional" qemu-img bitmap --add "$SA"

# ---- qemu-img create -------------------------------------------------------------
accepts 0 qemu-img create -q -f qcow2 -o compat=1.1 -- "$TESTDIR/c1.qcow2" 1M
[ -f "$TESTDIR/c1.qcow2" ] || fail "create through the guard made no file"
accepts 0 qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 -u "$TESTDIR/c2.qcow2" 1M
[ "$(qemu-img info --output=json -U "$TESTDIR/c2.qcow2" | jq -r '."backing-filename"')" = base.qcow2 ] ||
    fail "create -b -F -u: the backing string was not written"
exec 3>"$TESTDIR/fd.raw"
accepts 0 qemu-img create -q -f raw /dev/fd/3 1M
exec 3>&-
[ "$(stat -c %s "$TESTDIR/fd.raw")" -eq 1048576 ] || fail "create -f raw /dev/fd/3: not 1 MiB"

# Refused with the real tool behind the guard: the file is not created.
guard qemu-img create -q -f qcow2 -b "$BASE" -F qcow2 "$TESTDIR/c3.qcow2" 1M
[ "$rc" -eq 1 ] && [ ! -e "$TESTDIR/c3.qcow2" ] ||
    fail "create -b without -u: exit $rc, or the file was created"
grep -qF -- "create -b without -u" "$TESTDIR/err" || fail "create -b without -u: no reason given"
refuses "create -b without -u" qemu-img create -q -f qcow2 -b "$BASE" -F qcow2 "$TESTDIR/c3.qcow2" 1M
refuses "create -b without -F" qemu-img create -q -f qcow2 -u -b "$BASE" "$TESTDIR/c3.qcow2" 1M
refuses "create without -f" qemu-img create "$TESTDIR/c3.qcow2" 1M
refuses "-f vmdk: ovagent's images are qcow2 or raw" qemu-img create -f vmdk "$TESTDIR/c3" 1M
refuses "-o sets backing_file" qemu-img create -f qcow2 -o compat=1.1,backing_file=/etc/shadow,backing_fmt=raw "$TESTDIR/c3.qcow2" 1M
refuses "-o sets data_file" qemu-img create -f qcow2 -o "data_file=/etc/shadow" "$TESTDIR/c3.qcow2" 1M
refuses "is not a plain path" qemu-img create -f qcow2 "$SA" 1M
refuses "is not a plain path" qemu-img create -f raw "nbd:unix:/run/x.sock" 1M
refuses "takes 2 positional" qemu-img create -f qcow2 -u -b "$BASE" -F qcow2 "$TESTDIR/c3.qcow2"
[ ! -e "$TESTDIR/c3.qcow2" ] && [ ! -e "$TESTDIR/c3" ] || fail "a refused create made a file"

# ---- qemu-img rebase -------------------------------------------------------------
cp "$A" "$TESTDIR/rb.qcow2"
accepts 0 qemu-img rebase -q -u -f qcow2 -b ../elsewhere/base.qcow2 -F qcow2 "$TESTDIR/rb.qcow2"
[ "$(qemu-img info --output=json -U "$TESTDIR/rb.qcow2" | jq -r '."backing-filename"')" = ../elsewhere/base.qcow2 ] ||
    fail "rebase -u through the guard did not write the backing string"
accepts 0 qemu-img rebase -u -f qcow2 -b "" -- "$TESTDIR/rb.qcow2"
qemu-img info --output=json -U "$TESTDIR/rb.qcow2" | jq -e '."backing-filename" | not' >/dev/null ||
    fail "rebase -u -b '' through the guard left a backing string"
refuses "rebase without -u" qemu-img rebase -f qcow2 -b "$BASE" -F qcow2 "$TESTDIR/rb.qcow2"
refuses "rebase without -f" qemu-img rebase -u -b "$BASE" -F qcow2 "$TESTDIR/rb.qcow2"
refuses "rebase -b without -F" qemu-img rebase -u -f qcow2 -b "$BASE" "$TESTDIR/rb.qcow2"
refuses "rebase without -b" qemu-img rebase -u -f qcow2 -F qcow2 "$TESTDIR/rb.qcow2"
refuses "is not a plain path" qemu-img rebase -u -f qcow2 -b "" "$SA"

# ---- qemu-img convert ------------------------------------------------------------
accepts 0 qemu-img convert -q -O raw -W -m 2 -S 64k -t writeback -T writeback -U "$SCHAIN" "$TESTDIR/cv.raw"
qemu-img convert -O raw -f qcow2 "$A" "$TESTDIR/direct.raw"
cmp -s "$TESTDIR/cv.raw" "$TESTDIR/direct.raw" ||
    fail "convert of the chain's spec differs from the real tool's conversion of the chain"
accepts 0 qemu-img convert -q -O qcow2 -o compat=1.1 -- "$SBASE" "$TESTDIR/cv.qcow2"
accepts 0 qemu-img convert -p -n -O qcow2 "$SBASE" "$TESTDIR/c1.qcow2"
truncate -s 1M "$TESTDIR/c2.raw"
accepts 0 qemu-img convert -q -n --target-is-zero -S 4k -O raw "$SBASE" "$TESTDIR/c2.raw"
refuses "-f (or --format)" qemu-img convert -f qcow2 -O raw "$A" "$TESTDIR/x.raw"
refuses "-B gives the target a backing file" qemu-img convert -O qcow2 -B "$BASE" "$SA" "$TESTDIR/x.qcow2"
refuses "-F names a backing format" qemu-img convert -O qcow2 -F qcow2 "$SA" "$TESTDIR/x.qcow2"
refuses "--image-opts" qemu-img convert --image-opts -O raw "driver=qcow2,file.filename=$A" "$TESTDIR/x.raw"
refuses "--target-image-opts" qemu-img convert --target-image-opts -O raw "$SA" "driver=raw,file.filename=/x"
refuses "convert without -O" qemu-img convert "$SA" "$TESTDIR/x.raw"
refuses "source 2" qemu-img convert -O raw "$SA" "$A" "$TESTDIR/x.raw"
refuses "the target" qemu-img convert -O raw "$SA" "nbd+unix:///?socket=/run/x.sock"
refuses "-o sets backing_file" qemu-img convert -O qcow2 -o backing_file=/etc/shadow "$SA" "$TESTDIR/x.qcow2"
refuses "option -c is not in the guard's list" qemu-img convert -c -O qcow2 "$SA" "$TESTDIR/x.qcow2"
[ ! -e "$TESTDIR/x.raw" ] && [ ! -e "$TESTDIR/x.qcow2" ] || fail "a refused convert wrote a file"

# ---- qemu-img commit -------------------------------------------------------------
# An empty top T over A over BASE, BASE the base: its node the one without a
# backing member. A (with a persistent bitmap, which qemu rewrites in a file
# it opens read-write) is only read.
T=$TESTDIR/t.qcow2
qemu-img create -q -f qcow2 "$T" 1M
qemu-img bitmap --add "$A" guard-test
SBASEOPEN=$(jq -nr --arg t "$T" --arg a "$A" --arg b "$BASE" \
    '"json:" + ({driver: "qcow2", file: {driver: "file", filename: $t},
                 backing: {driver: "qcow2", file: {driver: "file", filename: $a},
                           backing: {driver: "qcow2", file: {driver: "file", filename: $b}}}} | tojson)')
before=$(sha256sum <"$A")
accepts 0 qemu-img commit -q -d -b "$BASE" -- "$SBASEOPEN"
[ "$(sha256sum <"$A")" = "$before" ] || fail "commit -d -b changed a layer between the top and the base"
# Into a raw bottom node.
SRAWBASE=$(jq -nr --arg t "$T" --arg r "$RAW" \
    '"json:" + ({driver: "qcow2", file: {driver: "file", filename: $t},
                 backing: {driver: "raw", file: {driver: "file", filename: $r}}} | tojson)')
accepts 0 qemu-img commit -q -d -b "$RAW" -- "$SRAWBASE"
refuses "commit without -d" qemu-img commit -q -b "$BASE" -- "$SBASEOPEN"
refuses "commit without -b" qemu-img commit -q -d -- "$SCHAIN"
refuses "not the base node" qemu-img commit -q -d -b "$A" -- "$SBASEOPEN"
refuses "option -r is not in the guard's list" qemu-img commit -r -q -d -b "$BASE" -- "$SBASEOPEN"
refuses "not the base node" qemu-img commit -q -d -b "$BASE" -- "$SCHAIN"
refuses "is not a json: spec" qemu-img commit -q -d -b "$BASE" -- "$A"
refuses "-f (or --format)" qemu-img commit -f qcow2 -q -d -b "$BASE" -- "$SBASEOPEN"
# A second node without a backing member (a raw one cannot be the base then).
refuses "not the base node" qemu-img commit -q -d -b "$RAW" -- "$SBASEOPEN"

# ---- qemu-img: other subcommands and global options --------------------------
for sub in measure amend map compare resize snapshot dd; do
    refuses "subcommand $sub not in the guard's list" qemu-img "$sub" "$SA"
done
refuses "subcommand '' not in the guard's list" qemu-img
refuses "subcommand -T not in the guard's list" qemu-img -T 'bdrv_*' info "$SA"
accepts 0 qemu-img --version
grep -q '^qemu-img version' "$TESTDIR/out" || fail "qemu-img --version: not the real tool's output"

# ---- qemu-nbd ---------------------------------------------------------------------
SOCK=$TESTDIR/nbd.sock
stop_nbd () {
    [ -s "$TESTDIR/nbd.pid" ] && kill "$(cat "$TESTDIR/nbd.pid")" 2>/dev/null || true
}
cleanup_add stop_nbd
accepts 0 qemu-nbd --fork --pid-file="$TESTDIR/nbd.pid" -k "$SOCK" -r -t --shared=2 \
    --cache=writeback --aio=threads -B b0 -A -x '' --discard=ignore --detect-zeroes=off -- "$SA"
[ "$(nbdinfo --size "nbd+unix:///?socket=$SOCK")" -eq 1048576 ] ||
    fail "the qemu-nbd the guard let through does not serve the image"
stop_nbd
accepts 0 qemu-nbd --version
refuses "-f (or --format)" qemu-nbd --format=qcow2 -r -k "$TESTDIR/refused.sock" "$A"
refuses "-f (or --format)" qemu-nbd -rfqcow2 -k "$TESTDIR/refused.sock" "$SA"
refuses "--image-opts is not used" qemu-nbd --image-opts -r -k "$TESTDIR/refused.sock" "driver=qcow2,file.filename=$A"
refuses "-c (or --connect)" qemu-nbd -c /dev/nbd0 "$SA"
refuses "-c (or --connect)" qemu-nbd --connect=/dev/nbd0 "$SA"
refuses "takes 1 positional" qemu-nbd -r -k "$TESTDIR/refused.sock" "$SA" "$SBASE"
refuses "takes 1 positional" qemu-nbd -r -k "$TESTDIR/refused.sock"
refuses "is not a json: spec" qemu-nbd -r -k "$TESTDIR/refused.sock" -- "$A"
refuses "option -k needs a value" qemu-nbd -r "$SA" -k
# An option's value is never taken for the image: here the spec is the
# export name and the image is the plain path.
refuses "the image $A is not a json: spec" qemu-nbd -r -x "$SA" "$A"
refuses "the image $A is not a json: spec" qemu-nbd -r --description "$SA" -k "$TESTDIR/refused.sock" "$A"
refuses "option -L is not in the guard's list" qemu-nbd --list -k "$TESTDIR/refused.sock" "$SA"
refuses "(qcow2) has no backing member" qemu-nbd -r -k "$TESTDIR/refused.sock" \
    "$(jq -nr --arg f "$A" '"json:" + ({driver: "qcow2", file: {driver: "file", filename: $f}} | tojson)')"
[ ! -e "$TESTDIR/refused.sock" ] || fail "a refused qemu-nbd made its socket"

# ---- when the guard enforces -------------------------------------------------------
# Called by the test script itself (parent bash, no variable): unchecked.
rc=0
before=$(wc -l <"$LOG")
env -u OVAGENT_QEMU_GUARD_ENFORCE OVAGENT_QEMU_GUARD_LOG="$LOG" \
    "$G/qemu-img" info --output=json "$A" >"$TESTDIR/out" 2>"$TESTDIR/err" || rc=$?
[ "$rc" -eq 0 ] && jq -e --arg a "$A" '.filename == $a' "$TESTDIR/out" >/dev/null ||
    fail "a bare qemu-img info from the test script did not pass through"
[ "$(wc -l <"$LOG")" -eq "$before" ] || fail "an unchecked call was logged"
# Called by a process named like ovagent, a unit test or valgrind: checked.
# A unit test (or valgrind) that keeps the tool's stderr to itself still
# gets the refusal on its own stderr.
mkdir "$TESTDIR/names"
for name in ovagent lt-ovagent test-probe memcheck-amd64-; do
    ln -s /bin/bash "$TESTDIR/names/$name"
    before=$(wc -l <"$LOG")
    rc=0
    env -u OVAGENT_QEMU_GUARD_ENFORCE OVAGENT_QEMU_GUARD_LOG="$LOG" \
        "$TESTDIR/names/$name" -c '"$1" info -f qcow2 "$2" 2>/dev/null; exit $?' - "$G/qemu-img" "$A" \
        >/dev/null 2>"$TESTDIR/parent.err" || rc=$?
    [ "$rc" -eq 1 ] && [ "$(wc -l <"$LOG")" -eq $((before + 1)) ] &&
        tail -n 1 "$LOG" | grep -q '^VIOLATION qemu-img: -f' ||
        fail "called by a process named $name, qemu-img info -f was not refused"
    case $name in
        test-*|memcheck*)
            grep -q '^qemu-guard: VIOLATION qemu-img: -f' "$TESTDIR/parent.err" ||
                fail "called by $name, the refusal is not on the caller's stderr" ;;
        *)
            [ ! -s "$TESTDIR/parent.err" ] ||
                fail "called by $name, the guard wrote to the caller's stderr" ;;
    esac
    env -u OVAGENT_QEMU_GUARD_ENFORCE OVAGENT_QEMU_GUARD_LOG="$LOG" \
        "$TESTDIR/names/$name" -c '"$1" info "$2" >/dev/null; exit $?' - "$G/qemu-img" "$SA" ||
        fail "called by a process named $name, qemu-img info of a spec was refused"
    tail -n 1 "$LOG" | grep -q '^ok qemu-img info ' ||
        fail "called by a process named $name, the accepted launch was not logged"
    n_accepted=$((n_accepted + 1)) n_refused=$((n_refused + 1))
done

# ---- the real tool --------------------------------------------------------------------
# Found on PATH behind the guard, or behind a second copy of it; /usr/bin's
# when PATH holds nothing else; never the guard again.
cp -a "$G" "$TESTDIR/guard2"
for p in "$G:$TESTDIR/guard2:$PATH" "$G" "$TESTDIR/guard2:$G:/usr/bin"; do
    before=$(wc -l <"$LOG")
    PATH=$p OVAGENT_QEMU_GUARD_ENFORCE=1 OVAGENT_QEMU_GUARD_LOG=$LOG \
        qemu-img --version >"$TESTDIR/out" 2>&1 ||
        fail "PATH=$p: qemu-img --version through the guard failed"
    grep -q '^qemu-img version' "$TESTDIR/out" &&
        [ "$(wc -l <"$LOG")" -eq $((before + 1)) ] ||
        fail "PATH=$p: not the real qemu-img once"
done
# No jq: a spec cannot be checked, so it is refused.
mkdir "$TESTDIR/empty"
rm -f "$TESTDIR/ran"
PATH=$TESTDIR/empty:$FAKE guard qemu-img info "$SA"
[ "$rc" -eq 1 ] && grep -q 'jq is missing' "$TESTDIR/err" && [ ! -e "$TESTDIR/ran" ] ||
    fail "without jq the guard did not refuse a spec it cannot check"

# ---- the suite's wiring -------------------------------------------------------------
# Every test reaches the guard first on PATH.
q=$(command -v qemu-img) n=$(command -v qemu-nbd)
[ -e "${q%/*}/guard.sh" ] && [ -e "${n%/*}/guard.sh" ] ||
    fail "qemu-img ($q) or qemu-nbd ($n) on the tests' PATH is not the guard's"
# A test whose ovagent launched against the rules fails at exit, even one
# that expected (and got) a failure, or that skips; the helper lists the
# launches that were let through.
cat >"$TESTDIR/child.sh" <<'EOF'
. "$top_srcdir/tests/functions.sh"
case $1 in
    refused)
        expect_exit 1 env OVAGENT_QEMU_GUARD_ENFORCE=1 "$G/qemu-img" info -f qcow2 "$A"
        exit "$2" ;;
    accepted)
        OVAGENT_QEMU_GUARD_ENFORCE=1 "$G/qemu-img" info "$SA" >/dev/null
        qemu_guard_launches qemu-img
        qemu_guard_launches qemu-nbd ;;
esac
EOF
for status in 0 77; do
    rc=0
    G=$G A=$A bash "$TESTDIR/child.sh" refused "$status" >"$TESTDIR/out" 2>"$TESTDIR/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q '^VIOLATION qemu-img: -f' "$TESTDIR/err" || {
        show child.sh refused "$status"
        fail "a test ending with status $status after a refused launch did not fail"
    }
done
rc=0
G=$G SA=$SA bash "$TESTDIR/child.sh" accepted >"$TESTDIR/out" 2>"$TESTDIR/err" || rc=$?
[ "$rc" -eq 0 ] && [ "$(wc -l <"$TESTDIR/out")" -eq 1 ] && grep -q '^ok qemu-img info ' "$TESTDIR/out" || {
    show child.sh accepted
    fail "qemu_guard_launches: not the one accepted qemu-img launch"
}

# Every line of the log is one launch (no line broken by a quoted newline).
[ "$(wc -l <"$LOG")" -eq "$(grep -c '^\(ok qemu-\(img\|nbd\) \|VIOLATION qemu-\(img\|nbd\): \)' "$LOG")" ] ||
    fail "the guard log holds a line that is not one launch"

echo "PASS: qemu guard: $n_accepted accepted command lines ran the real tool, $n_refused refused ran nothing"
