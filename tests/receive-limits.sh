#!/bin/bash
# What a sending host can make receive store is bounded: a META of 4 MiB
# (deep padding in members the manifest does not keep, or a kept string far
# over its limit), a "backup" stream of 4096 disks, streams naming another
# host's disk, a manifest at its size limit. Each is refused with exit 6
# and nothing written, or stored within the limits; every earlier backup of
# the disks still restores as before and the repository verifies.

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
MANIFEST_MAX=$((64 * 1024 * 1024))
META_MAX=$((512 * 1024))

# state: every path, type, size, mode and mtime under the repository.
state () {
    # R/locks/ holds no data: each receive makes and removes its disk's lock
    # file there, so the directory's time changes even on a refusal.
    (cd "$R" && find . -path ./locks -prune -o -printf '%p %y %s %m %T@\n' | LC_ALL=C sort)
}

# refused WHAT FILE PATTERN: receive of FILE exits 6 with PATTERN (grep -E)
# in its error and changes nothing.
refused () {
    local what=$1 file=$2 pattern=$3
    state >"$TESTDIR/before"
    expect_exit 6 ovagent receive --repo "$R" --json <"$file"
    grep -Eq -- "$pattern" "$TESTDIR/err" || fail "$what: $(cat "$TESTDIR/err")"
    state >"$TESTDIR/after"
    diff "$TESTDIR/before" "$TESTDIR/after" >&2 || fail "$what: the repository changed"
    echo "ok: $what: $(jq -r .message "$TESTDIR/out")"
}

# received WHAT FILE: receive of FILE succeeds; BACKUP_ID is its id.
received () {
    expect_exit 0 ovagent receive --repo "$R" --json <"$2"
    BACKUP_ID=$(jq -r .backup_id "$TESTDIR/out")
    echo "ok: $1: stored as $BACKUP_ID"
}

# ---- the earlier backups, and what they restore to ------------------------

# Two backups of the chain disk, one of another disk (another host's).
ovagent export-chain "$CHAIN_IMG" --output "$TESTDIR/full.strm" 2>/dev/null
received "full" "$TESTDIR/full.strm"
EARLIER=("$CHAIN_IMG $BACKUP_ID")
NEW=$(snapshot.sh create "$NFS_DIR" "$CHAIN_IMG")
snapshot.sh write "$NFS_DIR" "$CHAIN_IMG" 0x42 7M 1M >/dev/null
ovagent export-chain "$CHAIN_IMG" --since "$CHAIN_TOP" --output "$TESTDIR/inc.strm" 2>/dev/null
received "incremental" "$TESTDIR/inc.strm"
EARLIER+=("$CHAIN_IMG $BACKUP_ID")
ovagent export-chain "$SINGLE_IMG" --output "$TESTDIR/single.strm" 2>/dev/null
received "another disk" "$TESTDIR/single.strm"
EARLIER+=("$SINGLE_IMG $BACKUP_ID")

for e in "${EARLIER[@]}"; do
    read -r img id <<<"$e"
    expect_exit 0 ovagent restore --repo "$R" "$img" --backup "$id" --to "$TESTDIR/$id.raw"
done

# earlier_intact WHEN [old-meta]: every earlier backup restores as it did,
# the repository verifies, each manifest is within its limit and (unless
# old-meta: a manifest may hold a whole META of an older ovagent) each
# kept meta within its.
earlier_intact () {
    local img id m
    for e in "${EARLIER[@]}"; do
        read -r img id <<<"$e"
        rm -f "$TESTDIR/again.raw"
        expect_exit 0 ovagent restore --repo "$R" "$img" --backup "$id" --to "$TESTDIR/again.raw"
        qemu-img compare -q -f raw -F raw "$TESTDIR/$id.raw" "$TESTDIR/again.raw" ||
            fail "$1: backup $id of $img restores differently"
    done
    rm -f "$TESTDIR/again.raw"
    expect_exit 0 ovagent verify --repo "$R"
    for m in "$R"/disks/*/manifest.json; do
        [ "$(stat -c %s "$m")" -le "$MANIFEST_MAX" ] || fail "$1: $m is over its limit"
        [ "${2:-}" != old-meta ] || continue
        jq -e --argjson max "$META_MAX" 'all(.backups[]; (.meta | tojson | length) <= $max)' \
            "$m" >/dev/null || fail "$1: a meta of $m is over its limit"
    done
    echo "ok: $1: ${#EARLIER[@]} earlier backups restore as before, verify passes"
}
earlier_intact "before"

"$EDIT" meta "$TESTDIR/full.strm" >"$TESTDIR/full.meta"

# pad WHERE FILE OUT: OUT is META FILE with 4 MiB in all put at WHERE:
# "unknown" (nested arrays, 55 deep, in members no manifest keeps: at the
# top, in each volume and in each VDSM record) or a kept member's path
# (a string).
pad () {
    python3 - "$@" <<'EOF'
import json, sys
where, src, out = sys.argv[1:]
meta = json.load(open(src))
room = 4 * 1024 * 1024 - len(json.dumps(meta, separators=(",", ":"))) - 4096
if where == "unknown":
    deep = "[" * 55 + "0" + "]" * 55
    n = room // (len(deep) + 1) // (2 + 2 * len(meta["volumes"]))
    pad = json.loads("[" + ",".join([deep] * n) + "]")
    meta["padding"] = pad
    meta["padding2"] = {"x": pad}
    for v in meta["volumes"]:
        v["padding"] = pad
        if "metadata" in v:
            v["metadata"]["XPAD"] = pad
        else:
            v["x"] = pad
else:
    node = meta
    keys = where.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    node[keys[-1]] = "x" * room
text = json.dumps(meta, separators=(",", ":"))
assert len(text) <= 4 * 1024 * 1024, len(text)
open(out, "w").write(text)
EOF
}

# ---- a 4 MiB META: deep padding the manifest does not keep ------------------

pad unknown "$TESTDIR/full.meta" "$TESTDIR/pad.meta"
"$EDIT" remeta "$TESTDIR/full.strm" "$TESTDIR/pad.meta" "$TESTDIR/pad.strm"
received "a 4 MiB META of unknown members" "$TESTDIR/pad.strm"
M=$R/disks/$CHAIN_IMG/manifest.json
jq -e --arg id "$BACKUP_ID" '.backups[] | select(.id == $id) | .meta |
    (has("padding") or has("padding2") or any(.volumes[]; has("padding") or has("x") or
     (.metadata | has("XPAD")))) | not' "$M" >/dev/null ||
    fail "unknown members were kept: $(jq -c '.backups[-1].meta' "$M")"
kept=$(jq --arg id "$BACKUP_ID" '.backups[] | select(.id == $id) | .meta | tojson | length' "$M")
[ "$kept" -lt 16384 ] || fail "the kept META is $kept bytes"
[ "$(stat -c %s "$M")" -lt 65536 ] || fail "$M grew to $(stat -c %s "$M") bytes"
echo "ok: the manifest keeps $kept bytes of the 4 MiB META; $M is $(stat -c %s "$M") bytes"
earlier_intact "deep padding"

# ---- a 4 MiB string in members the manifest keeps ---------------------------

for member in volumes.0.metadata.DESCRIPTION host volumes.1.backing domain.storage; do
    pad "$member" "$TESTDIR/full.meta" "$TESTDIR/long.meta"
    rm -f "$TESTDIR/long.strm"
    "$EDIT" remeta "$TESTDIR/full.strm" "$TESTDIR/long.meta" "$TESTDIR/long.strm"
    path=$(sed -E 's/\.([0-9]+)/[\1]/g' <<<"$member")
    refused "a 4 MiB $member" "$TESTDIR/long.strm" \
        "${path//[/\\[} is [0-9]+ bytes long, over the limit of [0-9]+ bytes"
done

# Sizes past the 64 TiB of a disk (72 TiB for a volume's file), a count
# past 2^63-1, a number where a string belongs.
python3 - "$TESTDIR/full.meta" "$TESTDIR" <<'EOF'
import json, sys
src, out = sys.argv[1:]
def edit(name, f):
    meta = json.load(open(src))
    f(meta)
    open(f"{out}/{name}.meta", "w").write(json.dumps(meta, separators=(",", ":")))
edit("capacity", lambda m: m["volumes"][2].update(capacity=(64 << 40) + 512))
edit("generation", lambda m: m["volumes"][0].update(generation=2 ** 64))
text = open(src).read().replace('"tool":"ovagent', '"tool":1e400,"was":"ovagent', 1)
open(f"{out}/tool.meta", "w").write(text)
EOF
"$EDIT" remeta "$TESTDIR/full.strm" "$TESTDIR/capacity.meta" "$TESTDIR/capacity.strm"
refused "a capacity over 64 TiB" "$TESTDIR/capacity.strm" \
    "volumes\[2\]\.capacity is 70368744178176, over the limit of 70368744177664"
"$EDIT" remeta "$TESTDIR/full.strm" "$TESTDIR/generation.meta" "$TESTDIR/generation.strm"
refused "a generation of 2^64" "$TESTDIR/generation.strm" \
    "volumes\[0\]\.generation must be an integer from 0 to 9223372036854775807"
"$EDIT" remeta "$TESTDIR/full.strm" "$TESTDIR/tool.meta" "$TESTDIR/tool.strm"
refused "a tool that is a number beyond a double" "$TESTDIR/tool.strm" \
    "tool must be a string or null"

# ---- a changed-block backup of 4096 disks -----------------------------------

python3 - "$TESTDIR/bk4096.meta" "$CHAIN_IMG" <<'EOF'
import json, sys, uuid
out, chain = sys.argv[1:]
disks = [chain] + [str(uuid.uuid4()) for _ in range(4095)]
meta = {"format": "ovagent-stream", "version": 1, "tool": "ovagent 0.1.0",
        "host": "evil.example.com", "created": "2026-11-22T03:10:00Z", "mode": "backup",
        "vm": {"uuid": str(uuid.uuid4()), "name": "vm", "running": True},
        "job": str(uuid.uuid4()), "checkpoint": str(uuid.uuid4()), "checkpoint_xml": None,
        "volumes": [{"uuid": d, "disk": d, "target": None, "domain": None, "volume": None,
                     "kind": "full", "from_checkpoint": None, "format": "guest",
                     "size": 512, "capacity": 512} for d in disks]}
open(out, "w").write(json.dumps(meta, separators=(",", ":")))
EOF
"$EDIT" zeros "$TESTDIR/bk4096.meta" "$TESTDIR/bk4096.strm"
refused "a backup stream of 4096 disks" "$TESTDIR/bk4096.strm" \
    '"volumes" must be an array of 1 to 256 disks'

# ---- streams naming another host's disk ---------------------------------------

# The chain export of one disk, sent as the other disk's by another host,
# with 4 MiB of padding: a new full backup of that disk, kept bounded.
python3 - "$TESTDIR/pad.meta" "$TESTDIR/forged.meta" "$SINGLE_IMG" <<'EOF'
import json, sys
src, out, disk = sys.argv[1:]
meta = json.load(open(src))
meta["disk"] = disk
meta["host"] = "evil.example.com"
open(out, "w").write(json.dumps(meta, separators=(",", ":")))
EOF
"$EDIT" remeta "$TESTDIR/full.strm" "$TESTDIR/forged.meta" "$TESTDIR/forged.strm"
received "a chain export naming another host's disk" "$TESTDIR/forged.strm"
M=$R/disks/$SINGLE_IMG/manifest.json
jq -e --arg id "$BACKUP_ID" '.backups[-1] | .id == $id and .host == "evil.example.com"
    and (.meta | has("padding") | not)' "$M" >/dev/null || fail "forged: $(jq -c '.backups[-1]' "$M")"
[ "$(stat -c %s "$M")" -lt 65536 ] || fail "$M grew to $(stat -c %s "$M") bytes"

# A changed-block backup of three disks, one of them the other host's,
# each disk entry padded: each manifest keeps its own disk's entry only.
python3 - "$TESTDIR/bk3.meta" "$SINGLE_IMG" <<'EOF'
import json, sys, uuid
out, single = sys.argv[1:]
disks = [str(uuid.uuid4()), single, str(uuid.uuid4())]
deep = json.loads("[" * 55 + "0" + "]" * 55)
meta = {"format": "ovagent-stream", "version": 1, "tool": "ovagent 0.1.0",
        "host": "evil.example.com", "created": "2026-11-22T03:10:00Z", "mode": "backup",
        "vm": {"uuid": str(uuid.uuid4()), "name": "vm", "running": False},
        "job": str(uuid.uuid4()), "checkpoint": str(uuid.uuid4()),
        "checkpoint_xml": "<domaincheckpoint/>",
        "volumes": [{"uuid": d, "disk": d, "target": "vd" + "abc"[i], "domain": None,
                     "volume": None, "kind": "full", "from_checkpoint": None,
                     "format": "guest", "size": 1048576, "capacity": 1048576,
                     "padding": [deep] * 12000} for i, d in enumerate(disks)]}
text = json.dumps(meta, separators=(",", ":"))
assert 3 * 1024 * 1024 < len(text) <= 4 * 1024 * 1024, len(text)
open(out, "w").write(text)
EOF
"$EDIT" zeros "$TESTDIR/bk3.meta" "$TESTDIR/bk3.strm"
received "a backup stream of 3 disks, 4 MiB of META" "$TESTDIR/bk3.strm"
for d in $(jq -r '.volumes[].disk' "$TESTDIR/bk3.meta"); do
    jq -e --arg d "$d" '.backups[-1].meta | (.volumes | length) == 1 and .volumes[0].uuid == $d
        and (.volumes[0] | has("padding") | not)' "$R/disks/$d/manifest.json" >/dev/null ||
        fail "disk $d keeps: $(jq -c '.backups[-1].meta' "$R/disks/$d/manifest.json")"
done
echo "ok: each disk's manifest keeps its own entry of the 3"
earlier_intact "streams naming another host's disk"

# ---- a manifest at its size limit ---------------------------------------------

# An older manifest may hold a whole META: one inflated to 1000 bytes under
# the limit (written compact) still loads, and a backup that would take it
# over is refused before anything is written.
cp "$M" "$TESTDIR/manifest.saved"
python3 - "$M" "$MANIFEST_MAX" <<'EOF'
import json, sys
path, limit = sys.argv[1], int(sys.argv[2])
text = open(path).read()
m = json.loads(text)
m["backups"][0]["meta"]["padding"] = ""
base = len(json.dumps(m, separators=(",", ":")))
m["backups"][0]["meta"]["padding"] = "x" * (limit - base - 1000)
open(path, "w").write(json.dumps(m, separators=(",", ":")))
EOF
echo "manifest of $SINGLE_IMG inflated to $(stat -c %s "$M") bytes"
expect_exit 0 ovagent verify --repo "$R" "$SINGLE_IMG"
refused "a backup that would take the manifest over its limit" "$TESTDIR/single.strm" \
    "the manifest of disk $SINGLE_IMG would grow to [0-9]+ bytes, over the limit of $MANIFEST_MAX"
earlier_intact "a manifest at its limit" old-meta
cp "$TESTDIR/manifest.saved" "$M"
earlier_intact "the end"
echo "every stream refused or stored within the limits"
