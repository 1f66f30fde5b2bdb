#!/bin/bash
# serve refuses, through a real sshd, every command line a restricted key may
# not run: shell metacharacters and substitutions, another program, variables
# set in the line, each option that changes where trust comes from, files
# named by the client, a --repo that leaves the repository root by '..', a
# link or a push, commands of the other role, deleting commands under
# --append-only, over-long, non-UTF-8 and control-character lines, no
# command at all, a forced command without its role. The catalogue
# (backups) runs for every target key, prune and forget for those that are
# not append-only. Each is exit 2 with a message saying why, nothing on
# standard output (a JSON error when the line asked for JSON), one audit line
# (exit 2, refused), and nothing run. Without its audit socket serve runs
# nothing (exit 1).

. "$top_srcdir/tests/functions.sh"

requires_serve_components

start_filedomain
agent_env
start_serve_sshd

serve_conf host "run_dir=$OVAGENT_RUN_DIR" "state_dir=$OVAGENT_STATE_DIR" \
    libvirt_uri=test:///default lvm_devices=
serve_conf target "run_dir=$OVAGENT_RUN_DIR" "state_dir=$OVAGENT_STATE_DIR"
serve_key h host --role host
serve_key t target --role target --repo-root "$ROOT"
serve_key a target --role target --repo-root "$ROOT" --append-only

IMG=0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b
VM=5d3f0a2e-1b4c-4d6e-8f70-a1b2c3d4e5f6
CP=aaaa0b1c-2d3e-4f5a-8b6c-7d8e9f0a1b2c
# What a refused line must never create.
P=$TESTDIR/pwned
OUT=$TESTDIR/outside
mkdir -p "$OUT"
ln -s "$OUT" "$ROOT/link"

sv () {
    ssh -F "$SERVE_SSH_CONFIG" "$@"
}

count=0
# refused ALIAS NEEDLE LINE: the key ALIAS sends LINE; exit 2, NEEDLE on
# stderr, no standard output, one audit line: refused, exit 2, no bytes.
refused () {
    local alias=$1 needle=$2 line=$3
    expect_exit 2 sv -T "$alias" "$line" </dev/null
    grep -qF -- "$needle" "$TESTDIR/err" ||
        fail "'$line': stderr '$(cat "$TESTDIR/err")' does not say '$needle'"
    [ "$(wc -l <"$TESTDIR/err")" -eq 1 ] || fail "'$line': more than one line on stderr: $(cat "$TESTDIR/err")"
    [ ! -s "$TESTDIR/out" ] || fail "'$line': standard output: $(cat "$TESTDIR/out")"
    audit_expect "'$line'" ' serve role=("(host|target)"|-) ' ' exit=2 in=0 out=0 refused="'
    count=$((count + 1))
}

# accepted ALIAS CODE LINE: the key ALIAS runs LINE (--json): not refused,
# its own exit status CODE, one audit line with that status and no refusal.
accepted () {
    local alias=$1 code=$2 line=$3
    expect_exit "$code" sv -T "$alias" "$line"
    audit_next
    grep -qE " exit=$code " <<<"$AUDIT_LINE" || fail "'$line': audit line '$AUDIT_LINE' does not say exit=$code"
    if grep -q ' refused=' <<<"$AUDIT_LINE"; then
        fail "'$line' was refused: $AUDIT_LINE"
    fi
}

# --- shell syntax: never a shell -------------------------------------------
refused h "';' is a shell metacharacter" "ovagent list; touch $P"
refused h "'&' is a shell metacharacter" "ovagent list && touch $P"
refused h "'|' is a shell metacharacter" "ovagent list | touch $P"
refused h "'\$' is a shell metacharacter" "ovagent info \$(touch $P)"
refused h "'\`' is a shell metacharacter" "ovagent info \`touch $P\`"
refused h "'>' is a shell metacharacter" "ovagent list >$P"
refused h "'\$' inside double quotes would be expanded" "ovagent info \"\$(touch $P)\""
refused h "control character U+000A" "ovagent list
touch $P"
refused h "control character U+001B" $'ovagent info \e[2J'
refused h "not valid UTF-8" $'ovagent info \xff\xfe'
refused h "longer than 8192 bytes" "ovagent info '$(head -c 9000 /dev/zero | tr '\0' x)'"
refused h "single quote is never closed" "ovagent info 'x"

# --- another program, variables in the line ---------------------------------
refused h "serve runs ovagent only" "touch $P"
refused h "serve runs ovagent only" "sh -c 'touch $P'"
refused h "serve runs ovagent only" "/usr/bin/env ovagent list"
refused h "sets a variable" "OVAGENT_DATA_CENTER=/x ovagent list"
refused h "serve runs ovagent only" "env OVAGENT_DATA_CENTER=/x ovagent list"

# --- options that change where trust comes from -----------------------------
printf '[ovagent]\nlvm_command = /usr/bin/touch\n' >"$TESTDIR/evil.conf"
refused h "option --config is refused" "ovagent --config $TESTDIR/evil.conf list"
refused h "option --config is refused" "ovagent list --config=$TESTDIR/evil.conf"
refused h "option --data-center is refused" "ovagent list --data-center /x"
refused h "option --lvm-command is refused" "ovagent info $IMG --lvm-command /usr/bin/touch"
refused h "option --lvm-devices is refused" "ovagent list --lvm-devices /dev/loop0"
refused h "option --run-dir is refused" "ovagent list --run-dir /tmp"
refused h "option --state-dir is refused" "ovagent list --state-dir /tmp"
refused h "option --scratch-dir is refused" "ovagent backup test --full --output - --scratch-dir /tmp"
refused h "option --target is refused" "ovagent export-chain $IMG --target ssh://root@127.0.0.1:$SSHD_PORT$ROOT/x"
refused h "--output takes - (this SSH channel)" "ovagent export-chain $IMG --output $P"
refused h "option --to of 'import' is refused" "ovagent import --to $P"
refused t "option --to of 'restore' is refused" "ovagent restore --repo $ROOT/r $IMG --to $P"

# --- what the roles do not run ------------------------------------------------
refused h "needs the VM's UUID" "ovagent checkpoints test --delete $CP"
refused h "deletes only ovagent's own checkpoints" "ovagent checkpoints $VM --delete $CP"
refused h "'receive' is not a command for this key" "ovagent receive --repo $ROOT/r"
refused t "'list' is not a command for this key" "ovagent list"
refused t "'export-chain' is not a command for this key" "ovagent export-chain $IMG --output -"
# prune and forget run for a target key (a missing repository is their own
# exit 3), never for an append-only one, not even as a dry run.
accepted t 3 "ovagent prune --repo $ROOT/r --keep-last 1 --json"
jq -e '.result == "error" and .code == "not-found"' "$TESTDIR/out" >/dev/null ||
    fail "prune through a target key: $(cat "$TESTDIR/out")"
accepted t 3 "ovagent forget --repo $ROOT/r $IMG --backup 20261122T031000Z-3f2a9c --dry-run"
refused a "'prune' deletes backups, and this key is append-only" "ovagent prune --repo $ROOT/r --keep-last 1"
refused a "'prune' deletes backups, and this key is append-only" "ovagent prune --repo $ROOT/r --keep-daily 7 --dry-run"
refused a "'forget' deletes backups, and this key is append-only" "ovagent forget --repo $ROOT/r $IMG --backup 20261122T031000Z-3f2a9c"
refused t "--keep-within takes a duration such as 36h" "ovagent prune --repo $ROOT/r --keep-within 1000000d"
refused t "--keep-daily takes a number from 1 to" "ovagent prune --repo $ROOT/r --keep-daily 0"
refused t "outside the repository root" "ovagent prune --repo $ROOT/link --keep-last 1"
refused t "--backup takes a backup id" "ovagent forget --repo $ROOT/r $IMG --backup ../x"
# The catalogue is for every target key, append-only ones too: it only reads
# (a missing repository is the command's own exit 3, nothing made).
accepted t 3 "ovagent backups --repo $ROOT/r --json"
jq -e '.result == "error" and .code == "not-found"' "$TESTDIR/out" >/dev/null ||
    fail "backups through a target key: $(cat "$TESTDIR/out")"
accepted a 3 "ovagent backups --repo $ROOT/r $IMG"
refused t "DISK takes an image UUID" "ovagent backups --repo $ROOT/r ../$IMG"
refused a "outside the repository root" "ovagent backups --repo $ROOT/link"
refused h "'backups' is not a command for this key" "ovagent backups --repo $ROOT/r"
refused h "unknown command \"serve\"" "ovagent serve --role target --repo-root /"
refused h "unknown command \"help\"" "ovagent help"
refused h "option \"--version\" is not allowed before the command" "ovagent --version"
refused h "option \"--bogus\" is not allowed for 'list'" "ovagent list --bogus"
refused h "DISK takes an image UUID or SD_UUID/IMG_UUID" "ovagent info ../../etc"
refused h "no command given" ""

# --- repositories outside the root ------------------------------------------
refused t "'..' is not allowed" "ovagent receive --repo $ROOT/../escape"
refused t "outside the repository root" "ovagent receive --repo $ROOT/link/r"
refused t "outside the repository root" "ovagent receive --repo $OUT/r"
refused t "must be an absolute path" "ovagent verify --repo backups"
refused a "outside the repository root" "ovagent restore --repo $ROOT/link $IMG --output -"

# A push whose path is outside the root: the remote receive is refused and
# says so through the push (its exit status, its message).
expect_exit 2 env OVAGENT_SSH_KEY="$TESTDIR/keys/t" OVAGENT_SSH_KNOWN_HOSTS="$S/known_hosts" \
    ovagent export-chain "$CHAIN_IMG" --to "$CHAIN_TOP" --target "ssh://root@127.0.0.1:$SSHD_PORT$OUT/pushed" --json
audit_expect "push outside the root" 'command="ovagent receive --repo '"'$OUT/pushed'"' --json"' \
    ' exit=2 in=0 out=0 refused=".*outside the repository root'
count=$((count + 1))

# --- a refusal asked for as JSON is JSON ---------------------------------------
expect_exit 2 sv h "ovagent --json list --config /x"
jq -e '.result == "error" and .code == "usage" and (.message | test("--config is refused"))' \
    "$TESTDIR/out" >/dev/null || fail "no JSON refusal: $(cat "$TESTDIR/out")"
audit_expect "JSON refusal" ' exit=2 ' 'refused='
count=$((count + 1))

# --- a forced command the operator got wrong runs nothing either ---------------
serve_key no-role host
serve_key no-root target --role target
serve_key host-append host --role host --append-only
refused no-role "serve needs --role host or --role target" "ovagent version"
refused no-root "serve --role target needs --repo-root DIR" "ovagent version"
refused host-append "--repo-root and --append-only are for serve --role target" "ovagent version"

# Nothing runs unless its audit line can be sent.
serve_conf no-audit "audit_socket=$TESTDIR/no-such.sock"
serve_key no-audit no-audit --role host
expect_exit 1 sv -T no-audit "ovagent version"
grep -q "serve runs nothing it cannot audit (audit_socket): cannot connect to the system log at $TESTDIR/no-such.sock" \
    "$TESTDIR/err" || fail "no audit, no run: $(cat "$TESTDIR/err")"
[ ! -s "$TESTDIR/out" ] || fail "ran without an audit line: $(cat "$TESTDIR/out")"

# Nothing ran: no file made, nothing created outside the root or under it.
[ ! -e "$P" ] || fail "a refused line ran: $P exists"
[ -z "$(ls -A "$OUT")" ] || fail "a refused line wrote outside the root: $(ls -A "$OUT")"
[ "$(ls -A "$ROOT")" = link ] || fail "a refused line wrote under the root: $(ls -A "$ROOT")"
[ ! -e "$TESTDIR/escape" ] || fail "a refused line made $TESTDIR/escape"
audit_end
[ "$count" -ge 30 ] || fail "only $count refusals tried"
echo "PASS: serve refused $count command lines, each audited, nothing run"
