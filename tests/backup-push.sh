#!/bin/bash
# ovagent backup --target ssh://root@127.0.0.1:PORT/REPO through a real sshd:
# full and incremental (one compressed) of a running VM pushed into a
# repository, the remote backup id in the result, a raw disk skipped; a
# remote refusal (a repository without the checkpoint the incremental
# continues from) fails the backup and its new checkpoint is deleted, so the
# next incremental still continues from the last committed one.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

requires_vm_components sshd ssh-keygen
command -v ovagent >/dev/null || fail "ovagent not built"

S=$TESTDIR/sshd
cleanup_add sshd.sh down "$S"
sshd.sh up "$S" >/dev/null
. "$S/sshd.env"
export OVAGENT_REMOTE_COMMAND=$top_builddir/agent/ovagent
export OVAGENT_SSH_KEY=$S/clientkey
export OVAGENT_SSH_KNOWN_HOSTS=$S/known_hosts

start_filedomain
bk_env
D=$NFS_DIR

read -r IMG_A VOL_A < <(snapshot.sh disk "$D" 128M)
snapshot.sh write "$D" "$IMG_A" 0x11 0 6M
read -r IMG_B VOL_B < <(snapshot.sh disk "$D" 64M)
snapshot.sh write "$D" "$IMG_B" 0x21 1M 2M
read -r IMG_C VOL_C < <(snapshot.sh disk "$D" 16M --raw)
TOPS=("$D/images/$IMG_A/$VOL_A" "$D/images/$IMG_B/$VOL_B")
IMGS=("$IMG_A" "$IMG_B")

start_libvirt
new_vm_name bp
VM_UUID=$(bk_uuid)
vm.sh create --uuid "$VM_UUID" "$LV" "$VM" "${TOPS[@]}" "$D/images/$IMG_C/$VOL_C" >/dev/null

R=$TESTDIR/repo
target=ssh://root@127.0.0.1:$SSHD_PORT$R
STATE=$OVAGENT_STATE_DIR/checkpoints/$VM_UUID/state.json

capture () {
    local i
    for i in 0 1; do
        vm.sh write "$VM" "$i" flush
        qemu-img convert -U -f qcow2 -O raw "${TOPS[i]}" "$TESTDIR/$1-$i.raw"
    done
}

# push NAME KIND FROM ARGS...: a backup pushed to $target; its result checked.
push () {
    local name=$1 kind=$2 from=$3 fromj=null
    shift 3
    [ "$from" = - ] || fromj="\"$from\""
    expect_exit 0 ovagent backup "$VM" "$@" --target "$target" --json
    cp "$TESTDIR/out" "$TESTDIR/$name.json"
    bk_check "$name: not an ok $kind of vda, vdb from $fromj with the remote backup id" \
        "$TESTDIR/$name.json" --arg kind "$kind" --argjson from "$fromj" \
        --arg a "$IMG_A" --arg b "$IMG_B" --arg c "$IMG_C" '
        .result == "ok" and .running == true
        and (.backup_id | type == "string" and test("^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4,}$"))
        and .remote.result == "ok" and .remote.backup_id == .backup_id
        and ([.disks[] | {target, disk, kind, from_checkpoint}] ==
             [{target: "vda", disk: $a, kind: $kind, from_checkpoint: $from},
              {target: "vdb", disk: $b, kind: $kind, from_checkpoint: $from}])
        and (.skipped | length) == 1 and .skipped[0].target == "vdc"
        and .skipped[0].disk == $c and (.skipped[0].reason | test("raw"))
        and .bytes_sent > 0'
    ID=$(jq -r .backup_id "$TESTDIR/$name.json")
    CP=$(jq -r .checkpoint "$TESTDIR/$name.json")
    for img in "$IMG_A" "$IMG_B"; do
        bk_check "$name: the repository's last backup of $img is not $ID ($kind, checkpoint $CP)" \
            "$R/disks/$img/manifest.json" --arg id "$ID" --arg kind "$kind" --arg cp "$CP" \
            '.backups[-1] | .id == $id and .kind == $kind and .checkpoint == $cp'
    done
    [ ! -e "$R/disks/$IMG_C" ] || fail "$name: the skipped raw disk reached the repository"
    bk_no_job "$VM"
    bk_no_leftovers "$name"
    capture "$name"
}

# Full, then an incremental after guest writes (zeroes included).
push p1 full - --full
CP1=$CP ID1=$ID
vm.sh write "$VM" 0 "write -P 0x31 1M 64k"
vm.sh write "$VM" 0 "write -z 4M 1M"
vm.sh write "$VM" 1 "write -P 0x41 10M 128k"
push p2 incremental "$CP1" --incremental
CP2=$CP ID2=$ID
bk_check "p2: the remote incremental is not backed by the full" "$TESTDIR/p2.json" \
    --arg p "$ID1" 'all(.remote.disks[]; .parent == $p and .kind == "incremental")'

# The remote side refuses: a fresh repository has nothing to continue from.
vm.sh write "$VM" 0 "write -P 0x51 20M 64k"
R2=$TESTDIR/repo-fresh
rc=0
ovagent backup "$VM" --incremental --target "ssh://root@127.0.0.1:$SSHD_PORT$R2" --json \
    >"$TESTDIR/refused.json" 2>"$TESTDIR/refused.err" || rc=$?
[ "$rc" -ne 0 ] || { bk_show "$TESTDIR/refused.json"; fail "an incremental into an empty repository succeeded"; }
[ "$rc" -eq 6 ] || { bk_show "$TESTDIR/refused.json" "$TESTDIR/refused.err"; fail "remote refusal: exit $rc, expected 6 (integrity)"; }
bk_check "remote refusal: not a JSON integrity error" "$TESTDIR/refused.json" \
    '.result == "error" and .code == "integrity"'
grep -q 'remote receive on 127.0.0.1 failed' "$TESTDIR/refused.err" ||
    { cat "$TESTDIR/refused.err" >&2; fail "remote refusal not reported as such"; }
[ -z "$(find "$R2" -name manifest.json 2>/dev/null)" ] || fail "the refused backup committed something in $R2"
bk_no_job "$VM"
bk_no_leftovers "remote refusal"
[ "$(bk_checkpoints "$VM")" = "$CP1 $CP2" ] ||
    fail "remote refusal: libvirt's checkpoints are [$(bk_checkpoints "$VM")], expected [$CP1 $CP2]"
[ "$(bk_query_bitmaps "$VM")" = "$(printf '%s\n' "$CP1" "$CP2" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
    fail "remote refusal: QEMU holds bitmaps [$(bk_query_bitmaps "$VM")]"
bk_check "remote refusal: state.json pending or moved on" "$STATE" \
    --arg a "$IMG_A" --arg b "$IMG_B" --arg cp "$CP2" \
    '.pending == null and .disks[$a].checkpoint == $cp and .disks[$b].checkpoint == $cp'

# The next incremental (compressed) continues from the last committed checkpoint.
push p3 incremental "$CP2" --incremental --compress
# shellcheck disable=SC2034  # ID1..ID3 are read through ${!id_var}
ID3=$ID
bk_check "p3: the remote incremental is not backed by the previous one" "$TESTDIR/p3.json" \
    --arg p "$ID2" 'all(.remote.disks[]; .parent == $p)'

for s in 1 2 3; do
    id_var=ID$s
    for i in 0 1; do
        bk_restore_compare "p$s" "$R" "${IMGS[i]}" "${!id_var}" "$TESTDIR/p$s-$i.raw"
    done
done
expect_exit 0 ovagent verify --repo "$R" --json
bk_check "verify: not ok over 2 disks and 6 backups" "$TESTDIR/out" \
    '.result == "ok" and .disks == 2 and .backups == 6'

echo "PASS: backup pushed over SSH: full, incremental, remote refusal"
