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
# Then the test fails if the qemu guard refused a launch, whatever its own
# verdict (a test expecting ovagent to fail passes through here too), and
# TESTDIR goes.
_cleanups=()
cleanup_add () {
    _cleanups+=("$(printf '%q ' "$@")")
}
_run_cleanups () {
    local rc=$? i
    for (( i=${#_cleanups[@]}-1; i>=0; i-- )); do
        eval "${_cleanups[$i]}" || true
    done
    if [ -n "${_qemu_guard_log:-}" ] && grep -q '^VIOLATION ' "$_qemu_guard_log" 2>/dev/null; then
        echo "FAIL: qemu-img/qemu-nbd launched against the rules (tests/qemu-guard/guard.sh):" >&2
        grep '^VIOLATION ' "$_qemu_guard_log" >&2
        rc=1
    fi
    [ -z "${TESTDIR:-}" ] || rm -rf "$TESTDIR"
    exit $rc
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

# A private scratch directory, removed at exit.
TESTDIR=$(mktemp -d "${TMPDIR:-/tmp}/ovagent-test.XXXXXX")

# Every qemu-img and qemu-nbd the tests reach on PATH is tests/qemu-guard's:
# it checks the launches by ovagent and records them here.
_qemu_guard_log=$TESTDIR/qemu-guard.log
export OVAGENT_QEMU_GUARD_LOG=$_qemu_guard_log

# qemu_guard_launches TOOL: the launches of TOOL (qemu-img or qemu-nbd) the
# guard checked and let run, one "ok TOOL ARGV" line each.
qemu_guard_launches () {
    grep "^ok $1 " "$_qemu_guard_log" 2>/dev/null || true
}

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

# ---- test-bed storage and running VMs -------------------------------------

# start_filedomain: the test-bed file domains in FD ($TESTDIR/fd), removed
# at exit; their ids and the agent's settings for them (env) sourced.
# small_fs SIZE [MKFS-OPTION...]: a new ext4 file system of SIZE (truncate's
# units) on a loop device, mounted at $TESTDIR/mnt, both undone at exit;
# skips the test when no loop device or mount is available. Sets MNT.
small_fs () {
    local size=$1 loop
    shift
    truncate -s "$size" "$TESTDIR/fs.img"
    mkfs.ext4 -q -F "$@" "$TESTDIR/fs.img"
    loop=$(losetup --find --show "$TESTDIR/fs.img") || skip "no loop device available"
    cleanup_add losetup -d "$loop"
    MNT=$TESTDIR/mnt
    mkdir -p "$MNT"
    mount "$loop" "$MNT" || skip "cannot mount ext4 from $loop"
    cleanup_add umount "$MNT"
}

start_filedomain () {
    FD=$TESTDIR/fd
    cleanup_add filedomain.sh down "$FD"
    filedomain.sh up "$FD" >/dev/null
    . "$FD/ids"
    . "$FD/env"
}

# start_sshd: a test-bed sshd on 127.0.0.1 with its keys in S
# ($TESTDIR/sshd), stopped at exit; its port and files (sshd.env) sourced.
start_sshd () {
    S=$TESTDIR/sshd
    cleanup_add sshd.sh down "$S"
    sshd.sh up "$S" >/dev/null
    . "$S/sshd.env"
}

# start_sanlock: the test bed's two sanlock daemons (hosts 1 and 2) in SL
# ($TESTDIR/sanlock), stopped at exit, ovagent talking to host 1's
# (OVAGENT_SANLOCK_RUN_DIR). Start it after the domains it is to join
# (their cleanups then run after it); join with sanlock.sh join "$SL" ....
start_sanlock () {
    requires_core sanlock
    SL=$TESTDIR/sanlock
    cleanup_add sanlock.sh down "$SL"
    sanlock.sh up "$SL"
    . "$SL/env"
}

# ---- serve: restricted SSH keys -------------------------------------------

# requires_serve_components: what a test of serve through sshd needs.
requires_serve_components () {
    local c
    for c in sshd ssh-keygen qemu-img jq python3; do
        requires_core "$c"
    done
    requires_root
    requires ovagent
}

# serve_pipe NAME ALIAS1 LINE1 ALIAS2 LINE2: ssh ALIAS1 LINE1 | ssh ALIAS2
# LINE2 through SERVE_SSH_CONFIG; both must exit 0. The second one's output
# goes to $TESTDIR/NAME.json, the stderrs to NAME.1.err and NAME.2.err.
serve_pipe () {
    local name=$1 rcs
    set +e
    ssh -F "$SERVE_SSH_CONFIG" "$2" "$3" 2>"$TESTDIR/$name.1.err" |
        ssh -F "$SERVE_SSH_CONFIG" "$4" "$5" >"$TESTDIR/$name.json" 2>"$TESTDIR/$name.2.err"
    rcs=("${PIPESTATUS[@]}")
    set -e
    if [ "${rcs[0]}" -ne 0 ] || [ "${rcs[1]}" -ne 0 ]; then
        cat "$TESTDIR/$name.1.err" "$TESTDIR/$name.json" "$TESTDIR/$name.2.err" >&2
        fail "$name: '$3' exited ${rcs[0]}, '$5' ${rcs[1]}"
    fi
    jq -e '.result == "ok"' "$TESTDIR/$name.json" >/dev/null ||
        fail "$name: $(cat "$TESTDIR/$name.json")"
}

# start_serve_sshd: start_sshd with ExposeAuthInfo (SSH_USER_AUTH names the
# key) and AcceptEnv OVAGENT_* (what a careless sshd passes on), an audit
# receiver on $TESTDIR/audit.sock (the syslog socket serve's configuration
# names; audit_next reads its lines), SERVE_SSH_CONFIG (the aliases serve_key
# adds) and ROOT ($TESTDIR/backups), the target keys' repository root.
start_serve_sshd () {
    S=$TESTDIR/sshd
    mkdir -p "$S" "$TESTDIR/keys"
    printf 'ExposeAuthInfo yes\nAcceptEnv OVAGENT_*\n' >"$S/sshd_config.extra"
    start_sshd
    SERVE_SSH_CONFIG=$TESTDIR/ssh_config
    : >"$SERVE_SSH_CONFIG"
    ROOT=$TESTDIR/backups
    mkdir -p "$ROOT"
    AUDIT_SOCK=$TESTDIR/audit.sock
    # Each datagram as one line on the coprocess's output.
    coproc AUDIT {
        exec python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    print(s.recv(65536).decode("utf-8", "replace").replace("\n", "\\n"), flush=True)
' "$AUDIT_SOCK"
    }
    cleanup_add kill "$AUDIT_PID"
    audit_next
    [ "$AUDIT_LINE" = ready ] || fail "the audit receiver did not start: $AUDIT_LINE"
}

# audit_next: the next audit line in AUDIT_LINE; none within a minute fails.
audit_next () {
    IFS= read -r -t 60 AUDIT_LINE <&"${AUDIT[0]}" || fail "no audit line came"
}

# audit_expect WHAT PATTERN...: the next audit line matches every grep -E
# PATTERN.
audit_expect () {
    local what=$1 p
    shift
    audit_next
    for p in "$@"; do
        grep -qE -- "$p" <<<"$AUDIT_LINE" || fail "$what: audit line '$AUDIT_LINE' does not match '$p'"
    done
}

# audit_end: no audit line is left unread (each call left exactly one).
audit_end () {
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"end of test", sys.argv[1])' "$AUDIT_SOCK"
    audit_next
    [ "$AUDIT_LINE" = "end of test" ] || fail "an extra audit line: $AUDIT_LINE"
}

# serve_conf NAME [KEY=VALUE]...: $TESTDIR/NAME.conf, serve's configuration
# file: the keys given, no syslog, audit lines to AUDIT_SOCK unless an
# audit_socket is given.
serve_conf () {
    local f=$TESTDIR/$1.conf kv
    shift
    {
        echo '[ovagent]'
        echo 'syslog = false'
        [[ " $* " == *" audit_socket="* ]] || echo "audit_socket = $AUDIT_SOCK"
        for kv in "$@"; do
            echo "${kv%%=*} = ${kv#*=}"
        done
    } >"$f"
}

# serve_key ALIAS CONF SERVE_ARGS...: a new key that may only run
# `ovagent --config $TESTDIR/CONF.conf serve SERVE_ARGS`; ssh -F
# "$SERVE_SSH_CONFIG" ALIAS logs in with it. Its fingerprint goes to
# $TESTDIR/keys/ALIAS.fp ("SHA256:...").
serve_key () {
    local alias=$1 conf=$2 key=$TESTDIR/keys/$1
    shift 2
    ssh-keygen -q -t ed25519 -N '' -C "serve-$alias" -f "$key"
    printf 'restrict,command="%s --config %s serve %s" %s\n' \
        "$top_builddir/agent/ovagent" "$TESTDIR/$conf.conf" "$*" \
        "$(cut -d' ' -f1,2 "$key.pub")" >>"$S/authorized_keys"
    sed -e "s/^Host tbhost/Host $alias/" -e "s|IdentityFile .*|IdentityFile $key|" \
        "$S/ssh_config" >>"$SERVE_SSH_CONFIG"
    ssh-keygen -lf "$key.pub" | cut -d' ' -f2 >"$key.fp"
}

# agent_env [LIBVIRT_URI]: the agent's directories inside TESTDIR (run_dir,
# state_dir, scratch_dir), no block devices scanned and libvirt at
# LIBVIRT_URI, unless the environment says otherwise; exported. The default,
# test:///default, is libvirt's test driver: one running VM that uses none
# of the test-bed volumes.
agent_env () {
    export OVAGENT_RUN_DIR=$TESTDIR/run
    export OVAGENT_STATE_DIR=$TESTDIR/state
    export OVAGENT_SCRATCH_DIR=$TESTDIR/scratch
    export OVAGENT_LIBVIRT_URI=${OVAGENT_LIBVIRT_URI:-${1:-test:///default}}
    export OVAGENT_LVM_DEVICES=${OVAGENT_LVM_DEVICES:-}
    mkdir -p "$OVAGENT_RUN_DIR" "$OVAGENT_STATE_DIR"
}

# requires_vm_components [CMD...]: what a test running a VM needs (libvirtd,
# QEMU, qemu-img, jq, root), and the further core components CMD.
requires_vm_components () {
    local c
    for c in libvirtd virtlogd virsh qemu-system-x86_64 qemu-img "$@" jq; do
        requires_core "$c"
    done
    requires_root
}

# start_libvirt: a libvirtd for this test, its files in LV ($TESTDIR/libvirt),
# stopped at exit.
start_libvirt () {
    LV=$TESTDIR/libvirt
    cleanup_add libvirt.sh down "$LV"
    libvirt.sh up "$LV"
}

# new_vm_name TAG: VM, a domain name of its own (ovagent-TAG-XXXXXXXX),
# destroyed at exit whatever vm.sh create did with it.
new_vm_name () {
    VM=ovagent-$1-$(head -c 8 /proc/sys/kernel/random/uuid)
    cleanup_add vm.sh destroy "$LV" "$VM"
}

# vm_no_job URI VM [WHAT]: libvirt at URI runs no job on VM (WHAT: when,
# for the failure message).
vm_no_job () {
    local info
    info=$(virsh -q -c "$1" domjobinfo "$2") || fail "${3:+$3: }domjobinfo $2 failed"
    grep -Eq '^Job type: +None' <<<"$info" || {
        echo "$info" >&2
        fail "${3:+$3: }$2 still has a job"
    }
}

# ---- changed-block backups (backup-*.sh) --------------------------------

bk_uuid () {
    cat /proc/sys/kernel/random/uuid
}

# bk_show FILE...: the files, for a failure message.
bk_show () {
    local f
    for f in "$@"; do
        echo "--- $f" >&2
        cat "$f" >&2 2>/dev/null || echo "(missing)" >&2
    done
}

# bk_check WHAT FILE JQ-ARGS...: jq -e JQ-ARGS on FILE or fail with WHAT.
bk_check () {
    local what=$1 file=$2
    shift 2
    jq -e "$@" "$file" >/dev/null 2>&1 || {
        bk_show "$file"
        fail "$what"
    }
}

# bk_env: agent_env with libvirt at qemu:///system.
bk_env () {
    agent_env qemu:///system
}

# bk_backup NAME REPO VM ARGS...: `backup VM ARGS --output - --json` piped
# into `receive --repo REPO --json`. Leaves BK_RC_SEND and BK_RC_RECV, the
# sender's stderr in $TESTDIR/NAME.err and its JSON result (the last line
# of that stderr) in $TESTDIR/NAME.json, the receiver's result and stderr
# in $TESTDIR/NAME.recv.json and .recv.err. Never fails by itself.
bk_backup () {
    local name=$1 repo=$2 vm=$3 rcs
    shift 3
    set +e
    ovagent backup "$vm" "$@" --output - --json 2>"$TESTDIR/$name.err" |
        ovagent receive --repo "$repo" --json >"$TESTDIR/$name.recv.json" 2>"$TESTDIR/$name.recv.err"
    rcs=("${PIPESTATUS[@]}")
    set -e
    BK_RC_SEND=${rcs[0]} BK_RC_RECV=${rcs[1]}
    tail -n 1 "$TESTDIR/$name.err" >"$TESTDIR/$name.json"
}

# bk_backup_ok NAME REPO VM ARGS...: the same; both sides must succeed and
# agree on the backup id. BK_ID is the repository backup id.
bk_backup_ok () {
    local name=$1
    bk_backup "$@"
    if [ "$BK_RC_SEND" -ne 0 ] || [ "$BK_RC_RECV" -ne 0 ]; then
        bk_show "$TESTDIR/$name.err" "$TESTDIR/$name.recv.json" "$TESTDIR/$name.recv.err"
        fail "$name: backup exited $BK_RC_SEND, receive $BK_RC_RECV"
    fi
    bk_check "$name: the sender's result (last stderr line) is not ok" "$TESTDIR/$name.json" \
        '.result == "ok"'
    bk_check "$name: the receiver's result is not ok" "$TESTDIR/$name.recv.json" \
        '.result == "ok" and (.backup_id | type == "string")'
    BK_ID=$(jq -r .backup_id "$TESTDIR/$name.recv.json")
}

# bk_no_job VM: libvirt runs no job on VM.
bk_no_job () {
    vm_no_job "$OVAGENT_LIBVIRT_URI" "$1"
}

# bk_no_leftovers WHAT: no scratch file, no socket in run_dir, no qemu-nbd
# serving from run_dir.
bk_no_leftovers () {
    local what=$1 left
    if [ -d "$OVAGENT_SCRATCH_DIR" ]; then
        left=$(find "$OVAGENT_SCRATCH_DIR" -mindepth 1 | head -5)
        [ -z "$left" ] || fail "$what: left in the scratch directory: $left"
    fi
    left=$(find "$OVAGENT_RUN_DIR" -type s | head -5)
    [ -z "$left" ] || fail "$what: sockets left in run_dir: $left"
    left=$(pgrep -a qemu-nbd | grep -F -- "$OVAGENT_RUN_DIR" || true)
    [ -z "$left" ] || fail "$what: qemu-nbd still running: $left"
}

# bk_checkpoints VM: libvirt's checkpoints of VM, parents first, one line.
bk_checkpoints () {
    virsh -q -c "$OVAGENT_LIBVIRT_URI" checkpoint-list "$1" --name --topological |
        sed '/^$/d' | tr '\n' ' ' | sed 's/ $//'
}

# bk_query_bitmaps VM: the dirty bitmaps QEMU holds, "TARGET:NAME" sorted.
bk_query_bitmaps () {
    virsh -c "$OVAGENT_LIBVIRT_URI" qemu-monitor-command "$1" '{"execute":"query-named-block-nodes","arguments":{"flat":true}}' |
        jq -r '.return[] | select(.drv == "qcow2") | .node_name as $n
               | (.["dirty-bitmaps"] // [])[] | .name' | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# bk_image_bitmaps IMAGE: the bitmaps of IMAGE alone, "NAME[flag,flag]" by name.
bk_image_bitmaps () {
    qemu-img info -U --output=json -f qcow2 "$1" |
        jq -r '[(."format-specific".data.bitmaps // [])[]
                | "\(.name)[\(.flags | sort | join(","))]"] | sort | join(" ")'
}

# bk_restore_compare WHAT REPO IMG ID EXPECTED: restore backup ID of IMG to
# a raw file and compare it with the raw file EXPECTED.
bk_restore_compare () {
    local what=$1 repo=$2 img=$3 id=$4 want=$5 dst=$TESTDIR/restored.raw
    rm -f "$dst"
    expect_exit 0 ovagent restore --repo "$repo" "$img" --backup "$id" --to "$dst" --json
    bk_check "$what: restore did not report backup $id" "$TESTDIR/out" \
        --arg id "$id" '.result == "ok" and .backup_id == $id'
    qemu-img compare -f raw -F raw "$dst" "$want" >"$TESTDIR/compare.out" 2>&1 || {
        bk_show "$TESTDIR/compare.out"
        fail "$what: the restored disk $img (backup $id) differs from its content at that point"
    }
    rm -f "$dst"
}

# bk_fresh: a stream file name nothing exists at (--output never overwrites).
bk_fresh () {
    rm -f "$TESTDIR/x.strm"
    echo "$TESTDIR/x.strm"
}

# ---- the documentation's recipes ---------------------------------------------

# load_backup_spec_recipe: define backup_spec, the shell function of
# docs/repository.md §6, exactly as the document gives it.
load_backup_spec_recipe () {
    awk '/<!-- backup-spec:/ { on = 1; next } on && /^```sh/ { body = 1; next }
         body && /^```/ { exit } body' "$top_srcdir/docs/repository.md" >"$TESTDIR/recipe.sh"
    grep -q '^backup_spec ()' "$TESTDIR/recipe.sh" ||
        fail "no backup_spec recipe in docs/repository.md"
    # shellcheck disable=SC1091
    . "$TESTDIR/recipe.sh"
}
