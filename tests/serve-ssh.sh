#!/bin/bash
# serve through a real sshd: keys restricted with restrict,command="ovagent
# serve ..." run what their role allows, as the README's recipes run them: a
# full and an incremental pull (host key | target key), a push from a host to
# a target key (export-chain --target), a restore into an empty volume
# through two serve keys, verify, list, info, checkpoints, version; the
# client's environment changes nothing; every call leaves one audit line
# with the client, the key, the role, the command line, its exit status and
# the stream bytes it moved, also when the command is killed or serve gets a
# signal (passed on to the command).

. "$top_srcdir/tests/functions.sh"

requires_serve_components

start_filedomain
agent_env
. "$top_srcdir/scripts/testbed/lib.sh"
# import --to-volume writes under the volume's lease: this host has joined
# the domain's lockspace, as VDSM does.
start_sanlock
sanlock.sh join "$SL" 1 "$NFS_SD" "$NFS_DIR/dom_md/ids"
start_serve_sshd

serve_conf host "data_center=$OVAGENT_DATA_CENTER" lvm_devices= \
    "run_dir=$OVAGENT_RUN_DIR" "state_dir=$OVAGENT_STATE_DIR" \
    libvirt_uri=test:///default "sanlock_run_dir=$OVAGENT_SANLOCK_RUN_DIR"
serve_conf target "run_dir=$TESTDIR/target-run" "state_dir=$TESTDIR/target-state"
mkdir -p "$TESTDIR/target-run"
serve_key h host --role host
serve_key t target --role target --repo-root "$ROOT"
serve_key a target --role target --repo-root "$ROOT" --append-only
# The keys' fingerprints, as patterns ("SHA256:" and base64: '+' escaped).
fp_h=$(sed 's/[+]/\\+/g' "$TESTDIR/keys/h.fp")
fp_t=$(sed 's/[+]/\\+/g' "$TESTDIR/keys/t.fp")
fp_a=$(sed 's/[+]/\\+/g' "$TESTDIR/keys/a.fp")

sv () {
    ssh -F "$SERVE_SSH_CONFIG" "$@"
}

# audit_bytes LINE: "IN OUT" of an audit line.
audit_bytes () {
    sed -n 's/.* in=\([0-9]*\) out=\([0-9]*\).*/\1 \2/p' <<<"$1"
}

# audit_pair: the next two audit lines (two serve calls in a pipeline, in
# either order) as AUDIT_HOST and AUDIT_TARGET.
audit_pair () {
    local first
    audit_next
    first=$AUDIT_LINE
    audit_next
    if grep -q 'role="host"' <<<"$first"; then
        AUDIT_HOST=$first AUDIT_TARGET=$AUDIT_LINE
    else
        AUDIT_HOST=$AUDIT_LINE AUDIT_TARGET=$first
    fi
    grep -q 'role="host"' <<<"$AUDIT_HOST" || fail "no host audit line: $AUDIT_HOST"
    grep -q 'role="target"' <<<"$AUDIT_TARGET" || fail "no target audit line: $AUDIT_TARGET"
}

# --- small commands, and what an audit line holds ---------------------------
expect_exit 0 sv h ovagent version --json
jq -e '.version | test("^[0-9]+\\.")' "$TESTDIR/out" >/dev/null || fail "version: $(cat "$TESTDIR/out")"
audit_expect "version" '^<3[0-7]>' ' ovagent\[[0-9]+\]: serve ' 'role="host"' \
    'client="127\.0\.0\.1 [0-9]+ '"$SSHD_PORT"'"' "key=\"ssh-ed25519 $fp_h\"" \
    'command="ovagent version --json"' ' exit=0 in=0 out=0$'

expect_exit 0 sv t ovagent version
audit_expect "target version" 'role="target"' "key=\"ssh-ed25519 $fp_t\"" ' exit=0 '

expect_exit 0 sv h ovagent list --json
jq -e --arg sd "$NFS_SD" 'any(.domains[]; .uuid == $sd)' "$TESTDIR/out" >/dev/null ||
    fail "list through serve does not show $NFS_SD: $(cat "$TESTDIR/out")"
audit_expect "list" 'command="ovagent list --json"' ' exit=0 '

expect_exit 0 sv h "ovagent info $NFS_SD/$CHAIN_IMG --json"
jq -e --arg t "$CHAIN_TOP" '.volumes[-1].uuid == $t' "$TESTDIR/out" >/dev/null ||
    fail "info through serve: $(cat "$TESTDIR/out")"
audit_expect "info" "command=\"ovagent info $NFS_SD/$CHAIN_IMG --json\"" ' exit=0 '

# The absolute path of this binary is ovagent too (remote_command may name it).
expect_exit 0 sv h "$top_builddir/agent/ovagent" version
audit_expect "version by path" ' exit=0 '

# checkpoints of libvirt's test VM (the host's libvirt_uri is test:///default).
expect_exit 0 sv h ovagent checkpoints test --json
jq -e '.name == "test" and .checkpoints == []' "$TESTDIR/out" >/dev/null ||
    fail "checkpoints through serve: $(cat "$TESTDIR/out")"
audit_expect "checkpoints" 'command="ovagent checkpoints test --json"' ' exit=0 '

# backup runs (the test VM has no oVirt disk: its own refusal, exit 5, and
# the audit line carries its error).
expect_exit 5 sv h ovagent backup test --full --output - --json
audit_expect "backup" 'command="ovagent backup test --full --output - --json"' \
    ' exit=5 ' 'error=".*no disk that can be backed up'

# --- the client's environment: passed by sshd, ignored by serve -------------
mkdir -p "$TESTDIR/empty-dc/mnt"
printf '[ovagent]\ndata_center = %s\n' "$TESTDIR/empty-dc" >"$TESTDIR/evil.conf"
setenv="OVAGENT_DATA_CENTER=$TESTDIR/empty-dc OVAGENT_CONFIG=$TESTDIR/evil.conf OVAGENT_AUDIT_SOCKET=/dev/null"
# sshd hands these to the session (the unrestricted test-bed key shows it)...
expect_exit 0 ssh -F "$S/ssh_config" -o "SetEnv=$setenv" tbhost 'echo "$OVAGENT_DATA_CENTER $OVAGENT_CONFIG"'
[ "$(cat "$TESTDIR/out")" = "$TESTDIR/empty-dc $TESTDIR/evil.conf" ] ||
    fail "sshd did not pass the client's environment: $(cat "$TESTDIR/out")"
# ... and serve lists the configured data center all the same, and audits.
expect_exit 0 sv -o "SetEnv=$setenv" h ovagent list --json
jq -e --arg sd "$NFS_SD" 'any(.domains[]; .uuid == $sd)' "$TESTDIR/out" >/dev/null ||
    fail "the client's OVAGENT_* changed what serve lists: $(cat "$TESTDIR/out")"
audit_expect "list with the client's environment" 'command="ovagent list --json"' ' exit=0 '

# --- a full and an incremental pull: ssh host ... | ssh target receive -------
read -r IMG BASE < <(snapshot.sh disk "$NFS_DIR" 64M)
snapshot.sh write "$NFS_DIR" "$IMG" 0x11 0 1M 8M 2M
R=$ROOT/pulled

# pull NAME ARGS...: ssh h ovagent export-chain IMG --output - ARGS | ssh t
# ovagent receive --repo R --json; the result in $TESTDIR/NAME.json.
pull () {
    local name=$1
    shift
    serve_pipe "$name" h "ovagent export-chain $IMG --output - $*" \
        t "ovagent receive --repo $R --json"
    audit_pair
    local moved sent received
    moved=$(jq .bytes_received "$TESTDIR/$name.json")
    sent=$(audit_bytes "$AUDIT_HOST")
    received=$(audit_bytes "$AUDIT_TARGET")
    [ "$sent" = "0 $moved" ] || fail "$name: host audit says in/out '$sent', the stream was $moved bytes: $AUDIT_HOST"
    [ "$received" = "$moved 0" ] || fail "$name: target audit says in/out '$received', the stream was $moved bytes: $AUDIT_TARGET"
    grep -q ' exit=0 ' <<<"$AUDIT_HOST" || fail "$name: $AUDIT_HOST"
    grep -q ' exit=0 ' <<<"$AUDIT_TARGET" || fail "$name: $AUDIT_TARGET"
}

pull full
jq -e '.kind == "full"' "$TESTDIR/full.json" >/dev/null || fail "full pull: $(cat "$TESTDIR/full.json")"
full_id=$(jq -r .backup_id "$TESTDIR/full.json")
snapshot.sh convert "$NFS_DIR" "$IMG" "$TESTDIR/at-full.raw"

snapshot.sh create "$NFS_DIR" "$IMG" >/dev/null
snapshot.sh write "$NFS_DIR" "$IMG" 0x22 4M 1M
# --compress last: an option whose value is optional takes no argument.
pull incremental --since "$BASE" --compress
jq -e '.kind == "incremental"' "$TESTDIR/incremental.json" >/dev/null ||
    fail "incremental pull: $(cat "$TESTDIR/incremental.json")"
inc_id=$(jq -r .backup_id "$TESTDIR/incremental.json")
snapshot.sh convert "$NFS_DIR" "$IMG" "$TESTDIR/at-inc.raw"

# Both backups restore to what the disk held (read locally, as root).
expect_exit 0 ovagent restore --repo "$R" "$IMG" --backup "$full_id" --to "$TESTDIR/r-full.raw"
qemu-img compare -q -f raw -F raw "$TESTDIR/r-full.raw" "$TESTDIR/at-full.raw" ||
    fail "the full pull does not restore to the disk's content"
expect_exit 0 ovagent restore --repo "$R" "$IMG" --to "$TESTDIR/r-inc.raw"
qemu-img compare -q -f raw -F raw "$TESTDIR/r-inc.raw" "$TESTDIR/at-inc.raw" ||
    fail "the incremental pull does not restore to the disk's content"

# verify through the target key, and through an append-only one.
expect_exit 0 sv t "ovagent verify --repo $R --json"
jq -e '.result == "ok"' "$TESTDIR/out" >/dev/null || fail "verify: $(cat "$TESTDIR/out")"
audit_expect "verify" 'role="target"' "command=\"ovagent verify --repo $R --json\"" ' exit=0 '
expect_exit 0 sv a "ovagent verify --repo $R $IMG --backup $inc_id"
audit_expect "verify, append-only" "key=\"ssh-ed25519 $fp_a\"" ' exit=0 '

# --- a push from the host to a target key ---------------------------------
# export-chain --target runs "ovagent receive --repo 'PATH' --json" there.
P=$ROOT/pushed
expect_exit 0 env OVAGENT_SSH_KEY="$TESTDIR/keys/t" OVAGENT_SSH_KNOWN_HOSTS="$S/known_hosts" \
    ovagent export-chain "$CHAIN_IMG" --to "$CHAIN_TOP" \
    --target "ssh://root@127.0.0.1:$SSHD_PORT$P" --json
jq -e '.result == "ok" and .remote.result == "ok" and .remote.backup_id == .backup_id' \
    "$TESTDIR/out" >/dev/null || fail "push to a serve key: $(cat "$TESTDIR/out")"
sent=$(jq .bytes_sent "$TESTDIR/out")
audit_expect "push" 'role="target"' "command=\"ovagent receive --repo '$P' --json\"" \
    " exit=0 in=$sent out=0\$"
expect_exit 0 ovagent verify --repo "$P"

# --- restore into an empty volume through two serve keys --------------------
vimg=$(tb_uuid)
vvol=$(tb_uuid)
mkdir -p "$NFS_DIR/images/$vimg"
qemu-img create -q -f raw "$NFS_DIR/images/$vimg/$vvol" 64M
chmod 0660 "$NFS_DIR/images/$vimg/$vvol"
tb_vol_record 5 "$NFS_SD" "$vimg" "" RAW LEAF $((64 * 1024 * 1024)) | tb_write_file "$NFS_DIR/images/$vimg/$vvol.meta"
: >"$NFS_DIR/images/$vimg/$vvol.lease"
tb_volume_lease "$NFS_SD" "$vvol" "$NFS_DIR/images/$vimg/$vvol.lease"
serve_pipe import t "ovagent restore --repo $R $IMG --output -" \
    h "ovagent import --to-volume $NFS_SD/$vimg/$vvol --json"
jq -e '.format == "raw"' "$TESTDIR/import.json" >/dev/null ||
    fail "import through serve: $(cat "$TESTDIR/import.json")"
qemu-img compare -q -f raw -F raw "$NFS_DIR/images/$vimg/$vvol" "$TESTDIR/at-inc.raw" ||
    fail "the volume restored through serve keys differs from the disk"
audit_pair
read -r t_in t_out < <(audit_bytes "$AUDIT_TARGET")
read -r h_in h_out < <(audit_bytes "$AUDIT_HOST")
[ "$t_in" -eq 0 ] && [ "$t_out" -gt 0 ] && [ "$h_in" -eq "$t_out" ] && [ "$h_out" -eq 0 ] ||
    fail "restore | import: the audit lines disagree on the bytes: $AUDIT_TARGET / $AUDIT_HOST"

# --- a command that is killed, or whose serve gets a signal ----------------
# is_target_serve PID: PID is this program run as the target key's serve
# (not the login shell that may run it without exec).
is_target_serve () {
    local argv
    mapfile -d '' -t argv <"/proc/$1/cmdline" 2>/dev/null || return 1
    [ "${argv[0]:-}" = "$top_builddir/agent/ovagent" ] &&
        [[ " ${argv[*]} " == *" --config $TESTDIR/target.conf serve "* ]]
}

# serve_pids: "PARENT CHILD" once the target key's serve has forked its
# command (both run this program with the same command line).
serve_pids () {
    local pid ppid i
    for (( i = 0; i < 600; i++ )); do
        for pid in $(pgrep -f -- "--config $TESTDIR/target.conf serve" || true); do
            ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
            if is_target_serve "$pid" && is_target_serve "$ppid"; then
                echo "$ppid $pid"
                return 0
            fi
        done
        sleep 0.1
    done
    fail "the serve of the target key never started its command"
}

# stalled_receive NAME SIGNAL WHO: a receive whose client sends nothing; WHO
# (parent or child) gets SIGNAL. Leaves ssh's exit status in STALLED_RC.
stalled_receive () {
    local name=$1 sig=$2 who=$3 fifo=$TESTDIR/$1.fifo pids ssh_pid
    mkfifo "$fifo"
    sv t "ovagent receive --repo $ROOT/$name" <"$fifo" >"$TESTDIR/$name.out" 2>"$TESTDIR/$name.err" &
    ssh_pid=$!
    exec 7>"$fifo"
    read -r -a pids < <(serve_pids)
    if [ "$who" = parent ]; then
        kill -s "$sig" "${pids[0]}"
    else
        kill -s "$sig" "${pids[1]}"
    fi
    STALLED_RC=0
    wait "$ssh_pid" || STALLED_RC=$?
    exec 7>&-
}

stalled_receive killed KILL child
[ "$STALLED_RC" -eq 137 ] || fail "a command killed by SIGKILL: ssh exited $STALLED_RC: $(cat "$TESTDIR/killed.err")"
audit_expect "killed command" "command=\"ovagent receive --repo $ROOT/killed\"" ' exit=137 in=0 out=0$'

stalled_receive interrupted TERM parent
[ "$STALLED_RC" -eq 1 ] || fail "SIGTERM to serve: ssh exited $STALLED_RC: $(cat "$TESTDIR/interrupted.err")"
audit_expect "SIGTERM to serve" ' exit=1 in=0 out=0 error="receive interrupted by a signal'
[ ! -e "$ROOT/killed" ] && [ ! -e "$ROOT/interrupted" ] || fail "a receive that got nothing made a repository"

audit_end
echo "PASS: serve through sshd runs what each role allows, audited"
