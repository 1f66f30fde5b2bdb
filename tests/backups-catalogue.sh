#!/bin/bash
# backups lists a real repository (chain exports and changed-block backups
# received from streams) as its manifests say: every member of every backup,
# oldest first, the allocated bytes of each backup's own files and their
# totals per disk and repository; DISK chooses one disk; entries a prune is
# removing are shown so; the table names every backup. A missing repository
# or unknown disk is exit 3, a bad DISK exit 2, an edited manifest exit 6
# naming it, a repository held exclusively (prune, forget) exit 4. After a
# prune the catalogue lists what is left, as the manifests say.

. "$top_srcdir/tests/functions.sh"

requires_root
requires_core qemu-img
requires_core qemu-nbd
requires_core jq
requires_core python3
requires ovagent
EDIT=$top_builddir/tests/stream-edit
[ -x "$EDIT" ] || fail "$EDIT is not built"

start_filedomain
agent_env

R=$TESTDIR/repo

# Nothing to list yet.
expect_exit 3 ovagent backups --repo "$TESTDIR/nothing"
grep -q "no repository at $TESTDIR/nothing" "$TESTDIR/err" || fail "missing repo: $(cat "$TESTDIR/err")"
expect_exit 2 ovagent backups "$CHAIN_IMG"
grep -q "missing --repo DIR" "$TESTDIR/err" || fail "no --repo: $(cat "$TESTDIR/err")"

# A full and an incremental chain export of one disk, a full of another.
ovagent export-chain "$CHAIN_IMG" --output "$TESTDIR/full.strm" 2>/dev/null
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/full.strm"
snapshot.sh create "$NFS_DIR" "$CHAIN_IMG" >/dev/null
snapshot.sh write "$NFS_DIR" "$CHAIN_IMG" 0x42 7M 3M >/dev/null
ovagent export-chain "$CHAIN_IMG" --since "$CHAIN_TOP" --output "$TESTDIR/inc.strm" 2>/dev/null
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/inc.strm"
ovagent export-chain "$SINGLE_IMG" --output "$TESTDIR/single.strm" 2>/dev/null
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/single.strm"

# A changed-block full and an incremental of a third disk, as a host's
# `backup` sends them (all zeros: written as qcow2 zero clusters).
CBT_IMG=$(python3 -c 'import uuid; print(uuid.uuid4())')
VM=$(python3 -c 'import uuid; print(uuid.uuid4())')
CP1=$(python3 -c 'import uuid; print(uuid.uuid4())')
CP2=$(python3 -c 'import uuid; print(uuid.uuid4())')
cbt_meta () {    # cbt_meta KIND FROM_CP CP OUT
    python3 - "$@" "$CBT_IMG" "$VM" <<'EOF'
import json, sys, uuid
kind, frm, cp, out, disk, vm = sys.argv[1:]
meta = {"format": "ovagent-stream", "version": 1, "tool": "ovagent 0.1.0",
        "host": "node1.example.com", "created": "2026-11-22T03:10:00Z", "mode": "backup",
        "vm": {"uuid": vm, "name": "vm1", "running": True},
        "job": str(uuid.uuid4()), "checkpoint": cp, "checkpoint_xml": None,
        "volumes": [{"uuid": disk, "disk": disk, "target": "vda", "domain": None,
                     "volume": None, "kind": kind, "from_checkpoint": frm or None,
                     "format": "guest", "size": 8388608, "capacity": 8388608}]}
open(out, "w").write(json.dumps(meta))
EOF
}
cbt_meta full "" "$CP1" "$TESTDIR/cbt1.meta"
"$EDIT" zeros "$TESTDIR/cbt1.meta" "$TESTDIR/cbt1.strm"
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/cbt1.strm"
cbt_meta incremental "$CP1" "$CP2" "$TESTDIR/cbt2.meta"
"$EDIT" zeros "$TESTDIR/cbt2.meta" "$TESTDIR/cbt2.strm"
expect_exit 0 ovagent receive --repo "$R" --json <"$TESTDIR/cbt2.strm"

# The files' allocated bytes (st_blocks * 512) per backup, as
# {"DISK/ID": N}, and every manifest as {"DISK": manifest}.
expected_stored () {
    local m disk
    for m in "$R"/disks/*/manifest.json; do
        disk=$(basename "$(dirname "$m")")
        jq -r '.backups[] | .id as $id | .volumes[] | "\($id) \(.file)"' "$m" |
            while read -r id file; do
                echo "$disk/$id $(stat -c '%b %B' "$R/disks/$disk/$file")"
            done
    done | jq -Rn '[inputs | split(" ") | {key: .[0], value: ((.[1] | tonumber) * (.[2] | tonumber))}]
                   | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)}) | from_entries'
}
manifests () {
    local m
    for m in "$R"/disks/*/manifest.json; do
        jq '{(.disk): .}' "$m"
    done | jq -s 'add'
}

# check_catalogue FILE: FILE (backups --json) says what the manifests and
# the files say: every disk with a manifest, sorted; every backup in
# manifest order with each member; stored bytes and their sums.
check_catalogue () {
    expected_stored >"$TESTDIR/stored.json"
    manifests >"$TESTDIR/manifests.json"
    jq -e --arg repo "$(realpath "$R")" \
        --slurpfile st "$TESTDIR/stored.json" --slurpfile ms "$TESTDIR/manifests.json" '
        def want($m): [$m.backups[] | {
            id, time, kind,
            type: (if has("checkpoint") then "cbt" else "chain" end),
            parent, checkpoint, from_checkpoint, vm, host, domain,
            volumes: [.volumes[].uuid],
            stored_bytes: $st[0]["\($m.disk)/\(.id)"],
            virtual_size: .volumes[-1].virtual_size,
            removing: (.removing // false)}];
        .repo == $repo
        and ([.disks[].disk] == ([.disks[].disk] | sort))
        and all(.disks[]; .backups == want($ms[0][.disk]))
        and all(.disks[]; .stored_bytes == ([.backups[].stored_bytes] | add))
        and .stored_bytes == ([.disks[].stored_bytes] | add)
        and all(.disks[].backups[]; .stored_bytes > 0)' "$1" >/dev/null ||
        fail "the catalogue disagrees with the manifests: $(cat "$1")"
}

expect_exit 0 ovagent backups --repo "$R" --json
cp "$TESTDIR/out" "$TESTDIR/all.json"
check_catalogue "$TESTDIR/all.json"
jq -e --arg c "$CHAIN_IMG" --arg s "$SINGLE_IMG" --arg b "$CBT_IMG" '
    ([.disks[].disk] | sort) == ([$c, $s, $b] | sort)
    and ([.disks[] | {(.disk): [.backups[] | "\(.type) \(.kind)"]}] | add) == {
        ($c): ["chain full", "chain incremental"], ($s): ["chain full"],
        ($b): ["cbt full", "cbt incremental"]}' "$TESTDIR/all.json" >/dev/null ||
    fail "not the backups received: $(cat "$TESTDIR/all.json")"
jq -e --arg b "$CBT_IMG" --arg vm "$VM" --arg cp1 "$CP1" --arg cp2 "$CP2" '
    (.disks[] | select(.disk == $b) | .backups) as [$f, $i]
    | $f.checkpoint == $cp1 and $f.from_checkpoint == null and $f.parent == null
    and $i.checkpoint == $cp2 and $i.from_checkpoint == $cp1 and $i.parent == $f.id
    and $f.vm == $vm and $i.vm == $vm and $i.host == "node1.example.com"
    and $i.volumes == [$b] and $i.virtual_size == 8388608' "$TESTDIR/all.json" >/dev/null ||
    fail "the changed-block backups: $(cat "$TESTDIR/all.json")"
jq -e --arg c "$CHAIN_IMG" '(.disks[] | select(.disk == $c) | .backups) as [$f, $i]
    | $i.parent == $f.id and $f.checkpoint == null and $f.vm == null
    and ($f.volumes | length) == 3 and ($i.volumes | length) == 1' "$TESTDIR/all.json" >/dev/null ||
    fail "the chain exports: $(cat "$TESTDIR/all.json")"
echo "ok: $(jq '[.disks[].backups[]] | length' "$TESTDIR/all.json") backups of 3 disks," \
    "$(jq .stored_bytes "$TESTDIR/all.json") bytes stored, as the manifests and files say"

# One disk: its entry alone, the same as in the whole listing; DISK in
# upper case names the same disk.
expect_exit 0 ovagent backups --repo "$R" "${CHAIN_IMG^^}" --json
jq -e --arg c "$CHAIN_IMG" --slurpfile all "$TESTDIR/all.json" '
    .disks == [$all[0].disks[] | select(.disk == $c)]
    and .stored_bytes == .disks[0].stored_bytes' "$TESTDIR/out" >/dev/null ||
    fail "backups DISK: $(cat "$TESTDIR/out")"

# Usage and unknown disks.
expect_exit 3 ovagent backups --repo "$R" "$OVF_IMG" --json
jq -e '.result == "error" and .code == "not-found"' "$TESTDIR/out" >/dev/null ||
    fail "unknown disk: $(cat "$TESTDIR/out")"
grep -q "has no backup of disk $OVF_IMG" "$TESTDIR/err" || fail "unknown disk: $(cat "$TESTDIR/err")"
expect_exit 2 ovagent backups --repo "$R" not-a-uuid
grep -q "DISK must be an image UUID" "$TESTDIR/err" || fail "bad DISK: $(cat "$TESTDIR/err")"
expect_exit 2 ovagent backups --repo "$R" "$CHAIN_IMG" "$SINGLE_IMG"
expect_exit 2 ovagent backups --repo "$R" --backup 20261122T031000Z-3f2a9c

# What is not a committed disk is not listed: a disk directory without a
# manifest (a first receive that never committed), a name that is no disk.
EMPTY_IMG=$(python3 -c 'import uuid; print(uuid.uuid4())')
mkdir "$R/disks/$EMPTY_IMG" "$R/disks/notes"
expect_exit 0 ovagent backups --repo "$R" --json
jq -e --slurpfile all "$TESTDIR/all.json" '. == $all[0]' "$TESTDIR/out" >/dev/null ||
    fail "leftovers listed: $(cat "$TESTDIR/out")"
expect_exit 3 ovagent backups --repo "$R" "$EMPTY_IMG"
rmdir "$R/disks/$EMPTY_IMG" "$R/disks/notes"

# An entry a prune is removing (what an interrupted one leaves marked).
M=$R/disks/$CHAIN_IMG/manifest.json
cp "$M" "$TESTDIR/manifest.saved"
jq '.backups[0].removing = true' "$TESTDIR/manifest.saved" >"$M"
expect_exit 0 ovagent backups --repo "$R" "$CHAIN_IMG" --json
check_catalogue "$TESTDIR/out"
jq -e '[.disks[0].backups[].removing] == [true, false]' "$TESTDIR/out" >/dev/null ||
    fail "removing: $(cat "$TESTDIR/out")"

# The table: a header with the totals, a block per disk, a row per backup.
expect_exit 0 ovagent backups --repo "$R"
grep -q "^Repository $(realpath "$R"): 3 disks, 5 backups, .* stored$" "$TESTDIR/out" ||
    fail "table header: $(cat "$TESTDIR/out")"
for d in "$CHAIN_IMG" "$SINGLE_IMG" "$CBT_IMG"; do
    grep -q "^DISK $d  [12] backups\?, .* stored$" "$TESTDIR/out" || fail "table: no disk $d: $(cat "$TESTDIR/out")"
done
for id in $(jq -r '.disks[].backups[].id' "$TESTDIR/all.json"); do
    [ "$(grep -c "^  $id  " "$TESTDIR/out")" -eq 1 ] || fail "table: no row for $id: $(cat "$TESTDIR/out")"
done
first=$(jq -r '.backups[0].id' "$M")
grep -q "^  $first  .*(being removed)$" "$TESTDIR/out" || fail "table: $first not shown as removed: $(cat "$TESTDIR/out")"
[ "$(grep -c "(being removed)" "$TESTDIR/out")" -eq 1 ] || fail "table: more removed: $(cat "$TESTDIR/out")"
cat "$TESTDIR/out"
cp "$TESTDIR/manifest.saved" "$M"

# A manifest that fails its checks is exit 6, naming it.
jq --arg f "../../../../etc/passwd" '.backups[0].volumes[0].file = $f' \
    "$TESTDIR/manifest.saved" >"$M"
expect_exit 6 ovagent backups --repo "$R" --json
jq -e '.result == "error" and .code == "integrity"' "$TESTDIR/out" >/dev/null ||
    fail "edited manifest: $(cat "$TESTDIR/out")"
grep -q "$M: backup $first volume 0: file is" "$TESTDIR/err" ||
    fail "the error does not name the manifest: $(cat "$TESTDIR/err")"
expect_exit 0 ovagent backups --repo "$R" "$SINGLE_IMG"
cp "$TESTDIR/manifest.saved" "$M"

# R/lock: shared with receive, verify and restore; a prune or forget holds
# it exclusively, and backups is then refused at once.
exec {lockfd}<"$R/lock"
flock -s "$lockfd"
expect_exit 0 ovagent backups --repo "$R" --json
check_catalogue "$TESTDIR/out"
flock -u "$lockfd"
flock -x "$lockfd"
expect_exit 4 ovagent backups --repo "$R"
grep -q "locked exclusively by another ovagent run" "$TESTDIR/err" || fail "busy: $(cat "$TESTDIR/err")"
exec {lockfd}<&-

# After a prune: the chain disk's older backup merged into its latest,
# which keeps its id and becomes a full; the catalogue follows the manifest.
latest=$(jq -r --arg c "$CHAIN_IMG" '.disks[] | select(.disk == $c) | .backups[-1].id' "$TESTDIR/all.json")
expect_exit 0 ovagent prune --repo "$R" "$CHAIN_IMG" --keep-last 1 --dry-run
expect_exit 0 ovagent backups --repo "$R" --json
jq -e --slurpfile all "$TESTDIR/all.json" '. == $all[0]' "$TESTDIR/out" >/dev/null ||
    fail "a dry run changed the catalogue: $(cat "$TESTDIR/out")"
expect_exit 0 ovagent prune --repo "$R" "$CHAIN_IMG" --keep-last 1 --json
expect_exit 0 ovagent backups --repo "$R" --json
check_catalogue "$TESTDIR/out"
jq -e --arg c "$CHAIN_IMG" --arg id "$latest" --slurpfile all "$TESTDIR/all.json" '
    (.disks[] | select(.disk == $c) | .backups) as $b
    | ($b | length) == 1 and $b[0].id == $id and $b[0].kind == "full"
      and $b[0].parent == null and ($b[0].volumes | length) == 3
    and ([.disks[] | select(.disk != $c)] == [$all[0].disks[] | select(.disk != $c)])' \
    "$TESTDIR/out" >/dev/null || fail "after prune: $(cat "$TESTDIR/out")"

expect_exit 0 ovagent verify --repo "$R"
echo "backups ok"
