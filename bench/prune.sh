#!/bin/bash
# Benchmark of retention: `ovagent prune --keep-last 7` on a repository of a
# full chain export and 30 incrementals, then on 5 "days" of one incremental
# each, against the naive way to the same kept points (the oldest kept point
# restored as a new qcow2 full). Measures; prints PASS or MISS for each goal
# but exits 0 whatever they say.
#
#   bench/prune.sh [--workloads hot,spread] [--quick]
#
# The disk: a qcow2 volume of a test-bed file domain, 4 GiB virtual, 1 GiB of
# random data in 4 MiB extents every 16 MiB, exported in full
# (`export-chain DISK | receive --repo R`). Each incremental is a snapshot
# (a new leaf) with 64 MiB of new random data written into it, exported with
# --since the previous leaf. Workloads: "hot" rewrites the same 64 MiB region
# every time, "spread" a different region each time (a quarter of each region
# holds base data). Backup times are set one day apart in the manifest.
#
# For the first prune and each daily one: wall time, bytes read and written
# by the prune with its children (qemu-img), as GNU time counts them (%I/%O,
# 512-byte blocks: reads that reach the device, writes when pages are
# dirtied), its JSON's merged_bytes and freed_bytes, and the repository's
# size before and after. Beside it the naive way: `restore --backup OLDEST_KEPT
# --to FILE --format qcow2`, its wall time and bytes written. The repository's
# files are written back and evicted from the page cache (only they) before
# each timed run, so both read from the disk. Goals: the first prune writes
# at least 3x fewer bytes than the naive way; a daily prune writes at most
# twice one incremental's allocated data. At the end, the newest backup
# restored raw must have the digest of the live disk, and verify must pass.
#
# --quick: a 1 GiB disk with 256 MiB of data and 16 MiB incrementals.
# Scratch space: $BENCH_DIR, else /var/tmp (a disk file system, not tmpfs).
# Needs root, a built tree, GNU time (/usr/bin/time), qemu-img, qemu-io, jq,
# xxh128sum.
set -euo pipefail

workloads=hot,spread
quick=
while [ $# -gt 0 ]; do
    case $1 in
        --workloads)
            [ $# -ge 2 ] || { echo "--workloads needs a value" >&2; exit 2; }
            workloads=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        *) echo "usage: ${0##*/} [--workloads hot,spread] [--quick]" >&2; exit 2 ;;
    esac
done
for w in ${workloads//,/ }; do
    case $w in
        hot|spread) ;;
        *) echo "unknown workload '$w': hot or spread" >&2; exit 2 ;;
    esac
done

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_requires_ovagent
bench_requires "test-bed domains" jq qemu-img qemu-io xxh128sum
"$ovagent" prune --help >/dev/null 2>&1 ||
    { echo "$ovagent has no prune command" >&2; exit 1; }

incrementals=30
days=5
keep=7
if [ -n "$quick" ]; then
    disk_mib=1024 data_mib=256 inc_mib=16
else
    disk_mib=4096 data_mib=1024 inc_mib=64
fi
regions=$(( disk_mib / inc_mib ))
[ $(( incrementals + days )) -lt "$regions" ] ||
    { echo "more incrementals than ${inc_mib} MiB regions of the disk" >&2; exit 1; }

scratch=${BENCH_DIR:-/var/tmp}
if [ "$(stat -f -c %T "$scratch")" = tmpfs ]; then
    echo "$scratch is a tmpfs: set BENCH_DIR to a directory on a disk file system" >&2
    exit 1
fi
work=$(mktemp -d "$scratch/ovagent-bench-prune.XXXXXX")
fd_root=$work/fd
cleanup () {
    [ ! -d "$fd_root" ] || bash "$tbdir/filedomain.sh" down "$fd_root" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binary measured is a copy: a rebuild during the run cannot change it.
mkdir -p "$work/bin"
cp "$ovagent" "$work/bin/ovagent"
ovagent=$work/bin/ovagent

mib () { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio () { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
du_bytes () { echo $(( $(du -sk "$1" | cut -f1) * 1024 )); }

# timed_io OUTFILE CMD...: CMD's "wall_s read_blocks written_blocks" (with
# its waited-for children) into OUTFILE.
timed_io () {
    local out=$1
    shift
    /usr/bin/time -f '%e %I %O' -o "$out" "$@"
}

# evict DIR: DIR's files written back and dropped from the page cache, and
# nothing else's.
evict () {
    local f
    find "$1" -type f -print0 | xargs -0 -r sync --
    while IFS= read -r -d '' f; do
        dd if="$f" iflag=nocache count=0 status=none
    done < <(find "$1" -type f -print0)
}

# ---- the disk and its backups ------------------------------------------------

# The first backup's time: one day apart each, the last ones near today.
time_base=$(( $(date -u +%s) / 86400 * 86400 - (incrementals + days + 1) * 86400 + 3 * 3600 ))
nreceived=0

# receive_export ARGS...: export-chain IMG ARGS | receive into $repo, the new
# backup's time set one day after the one before.
receive_export () {
    local rcs t
    set +e
    "$ovagent" export-chain "$IMG" "$@" --progress=none --output - 2>"$work/sender.err" |
        "$ovagent" receive --repo "$repo" --json >"$work/recv.json" 2>"$work/receiver.err"
    rcs=("${PIPESTATUS[@]}")
    set -e
    if [ "${rcs[0]}" -ne 0 ] || [ "${rcs[1]}" -ne 0 ]; then
        fail_run "export-chain $* | receive (exit ${rcs[*]})" "$work/sender.err" \
            "$work/recv.json" "$work/receiver.err"
    fi
    t=$(date -u -d "@$(( time_base + nreceived * 86400 ))" +%Y-%m-%dT%H:%M:%SZ)
    jq --arg t "$t" '.backups[-1].time = $t' "$manifest" >"$manifest.bench"
    chmod --reference="$manifest" "$manifest.bench"
    mv "$manifest.bench" "$manifest"
    nreceived=$(( nreceived + 1 ))
}

# region_of N: the MiB offset the Nth incremental writes.
region_of () {
    if [ "$workload" = hot ]; then
        echo $(( disk_mib / 2 ))
    else
        # 37 is prime to the number of regions: N = 1..regions-1 all differ.
        echo $(( $1 * 37 % regions * inc_mib ))
    fi
}

# add_incremental N: a snapshot, inc_mib MiB of new data, its export.
add_incremental () {
    local since off
    since=$(jq -r '.backups[-1].volumes[-1].uuid' "$manifest")
    bash "$tbdir/snapshot.sh" create "$NFS_DIR" "$IMG" >/dev/null
    head -c $(( inc_mib * MiB )) /dev/urandom >"$work/inc-data"
    off=$(region_of "$1")
    bash "$tbdir/snapshot.sh" write "$NFS_DIR" "$IMG" "file:$work/inc-data" \
        "$(( off * MiB ))" "$(( inc_mib * MiB ))"
    receive_export --since "$since"
}

make_disk () {
    local i args=() stride=16
    read -r IMG _ < <(bash "$tbdir/snapshot.sh" disk "$NFS_DIR" "${disk_mib}M")
    for (( i = 0; i < data_mib / 4; i++ )); do
        args+=("$(( i * stride * MiB ))" 4M)
    done
    bash "$tbdir/snapshot.sh" write "$NFS_DIR" "$IMG" "file:$work/extent" "${args[@]}"
}

# ---- one prune and the naive way beside it -------------------------------------

# data_above_full ID: the bytes of data the layers above the full hold in
# backup ID's chain (qemu-img map: data found above the bottom layer).
data_above_full () {
    local top bottom
    top=$repo/disks/$IMG/$(jq -r --arg id "$1" \
        '.backups[] | select(.id == $id) | .volumes[-1].file' "$manifest")
    bottom=$(( $(qemu-img info -U --backing-chain --output=json "$top" | jq length) - 1 ))
    qemu-img map -U --output=json "$top" |
        jq --argjson b "$bottom" '[.[] | select(.data and .depth < $b) | .length] | add // 0'
}

ROWS=()
GOALS=()
FIRST_NOTE=()

# measure LABEL: the naive restore of the oldest point the prune keeps,
# then the prune; one row.
measure () {
    local label=$1 oldest nbefore nafter inc_alloc repo_before repo_after
    local nwall nread nwritten naive_alloc pwall pread pwritten merged freed goal r r2 above
    "$ovagent" prune --repo "$repo" --keep-last "$keep" --dry-run --json \
        >"$work/plan.json" 2>"$work/prune.err" ||
        fail_run "prune --dry-run" "$work/plan.json" "$work/prune.err"
    oldest=$(jq -r '[.disks[0].backups[] | select(.action == "keep")][0].id' "$work/plan.json")
    nbefore=$(jq '.backups | length' "$manifest")
    # Allocated bytes of the newest backup's own files (its directory).
    inc_alloc=$(du_bytes "$repo/disks/$IMG/$(jq -r '.backups[-1].id' "$manifest")")
    repo_before=$(du_bytes "$repo")
    above=$(data_above_full "$oldest")

    # The naive way: the oldest kept point as one new qcow2 file.
    evict "$repo"
    rm -f "$work/naive.qcow2"
    timed_io "$work/time.naive" "$ovagent" restore --repo "$repo" "$IMG" --backup "$oldest" \
        --to "$work/naive.qcow2" --format qcow2 >"$work/restore.out" 2>&1 ||
        fail_run "restore --backup $oldest --format qcow2" "$work/restore.out"
    read -r nwall nread nwritten < <(tail -n 1 "$work/time.naive")
    naive_alloc=$(du_bytes "$work/naive.qcow2")
    rm -f "$work/naive.qcow2"

    evict "$repo"
    timed_io "$work/time.prune" "$ovagent" prune --repo "$repo" --keep-last "$keep" --json \
        >"$work/prune.json" 2>"$work/prune.err" ||
        fail_run "prune --keep-last $keep" "$work/prune.json" "$work/prune.err"
    jq -e '.result == "ok"' "$work/prune.json" >/dev/null ||
        fail_run "prune --keep-last $keep: no ok result" "$work/prune.json" "$work/prune.err"
    read -r pwall pread pwritten < <(tail -n 1 "$work/time.prune")
    merged=$(jq .merged_bytes "$work/prune.json")
    freed=$(jq .freed_bytes "$work/prune.json")
    repo_after=$(du_bytes "$repo")
    nafter=$(jq '.backups | length' "$manifest")

    nwritten=$(( nwritten * 512 )) nread=$(( nread * 512 ))
    pwritten=$(( pwritten * 512 )) pread=$(( pread * 512 ))
    r=$(ratio "$nwritten" "$pwritten")
    if [ "$label" = first ]; then
        if awk -v r="$r" 'BEGIN { exit !(r != "-" && r >= 3) }'; then goal=PASS; else goal=MISS; fi
        GOALS+=("- $workload, first prune: naive written / prune written = ${r}x (goal >= 3): $goal")
        FIRST_NOTE+=("- $workload, first prune: the oldest kept point holds $(mib "$above") MiB of data above the full (what any merge into the full must write) and its qcow2 full $(mib "$naive_alloc") MiB: the best ratio any merge can reach is $(ratio "$naive_alloc" "$above")x; merged_bytes $(mib "$merged") MiB (layers' allocation, overlaps counted each time)")
        goal="$goal (>=3x)"
    else
        r2=$(ratio "$pwritten" "$inc_alloc")
        if awk -v r="$r2" 'BEGIN { exit !(r != "-" && r <= 2) }'; then goal=PASS; else goal=MISS; fi
        GOALS+=("- $workload, $label: prune written / incremental allocated = ${r2}x (goal <= 2): $goal")
        goal="$goal (${r2}x inc)"
    fi
    ROWS+=("| $workload | $label | $nbefore→$nafter | $pwall | $(mib "$pread") | $(mib "$pwritten") |\
 $(mib "$merged") | $(mib "$freed") | $(mib "$repo_before")→$(mib "$repo_after") |\
 $(mib "$inc_alloc") | $nwall | $(mib "$nwritten") | $r | $goal |")
    echo "  $label: prune ${pwall} s, wrote $(mib "$pwritten") MiB; naive ${nwall} s, wrote $(mib "$nwritten") MiB"
}

# ---- one workload -------------------------------------------------------------

# digest_of FILE: its xxh128 (xxhsum's progress line on stderr kept out of the table).
digest_of () {
    xxh128sum "$1" 2>"$work/xxhsum.err" | cut -d' ' -f1 ||
        fail_run "xxh128sum $1" "$work/xxhsum.err"
}

CHECKS=()

bench_workload () {
    local i d repo=$work/repo-$workload manifest digest_r digest_l
    nreceived=0
    echo "$workload: the disk (${disk_mib} MiB, ${data_mib} MiB of data), its full export and" \
        "$incrementals incrementals of ${inc_mib} MiB..."
    make_disk
    manifest=$repo/disks/$IMG/manifest.json
    receive_export
    for (( i = 1; i <= incrementals; i++ )); do
        add_incremental "$i"
    done
    echo "$workload: prune --keep-last $keep, then $days days of one incremental and the same prune..."
    measure first
    for (( d = 1; d <= days; d++ )); do
        add_incremental $(( incrementals + d ))
        measure "day $d"
    done

    # The newest kept backup still reads as the live disk.
    "$ovagent" restore --repo "$repo" "$IMG" --to "$work/restored.raw" >"$work/restore.out" 2>&1 ||
        fail_run "restore of the latest backup" "$work/restore.out"
    bash "$tbdir/snapshot.sh" convert "$NFS_DIR" "$IMG" "$work/live.raw"
    digest_r=$(digest_of "$work/restored.raw")
    digest_l=$(digest_of "$work/live.raw")
    rm -f "$work/restored.raw" "$work/live.raw"
    if [ "$digest_r" = "$digest_l" ]; then
        CHECKS+=("- $workload: restore of the latest backup = live disk (xxh128 $digest_r): OK")
    else
        CHECKS+=("- $workload: restore of the latest backup $digest_r != live disk $digest_l: DIFFERENT")
    fi
    if "$ovagent" verify --repo "$repo" >"$work/verify.out" 2>&1; then
        CHECKS+=("- $workload: verify --repo: OK")
    else
        CHECKS+=("- $workload: verify --repo: FAILED ($(tail -n 1 "$work/verify.out"))")
    fi
    rm -rf "$repo"
}

head -c $((4 * MiB)) /dev/urandom >"$work/extent"
bench_filedomain_up
export OVAGENT_STATE_DIR=$work/state OVAGENT_RUN_DIR=$work/run
export OVAGENT_LIBVIRT_URI=test:///default
mkdir -p "$OVAGENT_STATE_DIR" "$OVAGENT_RUN_DIR"
for workload in ${workloads//,/ }; do
    bench_workload
done

echo
echo "| workload | prune | backups | prune s | prune read MiB | prune written MiB |\
 merged MiB | freed MiB | repo MiB before→after | incremental MiB | naive s |\
 naive written MiB | naive/prune written | goal |"
echo "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
echo
printf '%s\n' "${GOALS[@]}"
echo
printf '%s\n' "${FIRST_NOTE[@]}"
echo
printf '%s\n' "${CHECKS[@]}"
echo
echo "(${disk_mib} MiB disk with ${data_mib} MiB of data; $incrementals incrementals of" \
    "${inc_mib} MiB, then $days days; prune --keep-last $keep; naive: restore --backup" \
    "OLDEST_KEPT --to FILE --format qcow2; MiB read and written as GNU time counts them" \
    "(%I/%O x 512, with qemu-img), the repository's files evicted from the page cache" \
    "before each timed run; incremental: du of the newest backup directory; $(nproc) CPUs;" \
    "$(uname -r); $(qemu-img --version | head -n 1); scratch on $(findmnt -n -o FSTYPE -T "$work"); one run each)"
