#!/bin/bash
# Benchmark of NBD reads through the copy engine: `ovagent restore --output -`
# (qemu-nbd over the repository chain, read into a stream) against `nbdcopy
# URI null:` reading the same image through a qemu-nbd started with the same
# options.
# Measures only; asserts nothing.
#
#   bench/nbd-read.sh [--warm] [--runs N]
#
# Disks: 4 GiB virtual with 1 GiB of random data in 4 MiB extents spread over
# the disk, and 2 GiB fully written. Each goes `export-chain | receive` into
# a local repository first; the repository's qcow2 is what both tools read.
# Page caches are dropped before every timed run unless --warm; the best of
# N runs (default 3) is reported.
# Needs root, a built tree, GNU time (/usr/bin/time), qemu-img, qemu-io,
# qemu-nbd, nbdcopy, jq.
set -euo pipefail

warm=
runs=3
while [ $# -gt 0 ]; do
    case $1 in
        --warm) warm=1; shift ;;
        --runs)
            [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]?$ ]] || { echo "--runs needs 1..99" >&2; exit 2; }
            runs=$2; shift 2 ;;
        *) echo "usage: ${0##*/} [--warm] [--runs N]" >&2; exit 2 ;;
    esac
done

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_requires_ovagent
bench_requires "test-bed domain, drop_caches" jq qemu-img qemu-io qemu-nbd nbdcopy

work=$(mktemp -d "${TMPDIR:-/tmp}/ovagent-bench-nbd.XXXXXX")
fd_root=$work/fd
nbd_pid=

stop_nbd () {
    if [ -n "$nbd_pid" ]; then
        kill "$nbd_pid" 2>/dev/null || true
        wait "$nbd_pid" 2>/dev/null || true
        nbd_pid=
    fi
}

cleanup () {
    stop_nbd
    [ ! -d "$fd_root" ] || bash "$tbdir/filedomain.sh" down "$fd_root" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ratio () { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
min_of () { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }

# The options nbd/server.c gives qemu-nbd, so that both tools read the same
# kind of export.
start_nbd () {
    local image=$1 sock=$2 cache=writeback
    if dd if="$image" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null; then
        cache=none
    fi
    qemu-nbd --format=qcow2 --socket="$sock" --persistent --shared=8 \
        --cache="$cache" --aio=threads --read-only -- "$image" 2>"$work/qemu-nbd.log" &
    nbd_pid=$!
    for _ in $(seq 500); do
        [ -S "$sock" ] && return 0
        sleep 0.01
    done
    echo "qemu-nbd did not start:" >&2
    cat "$work/qemu-nbd.log" >&2
    exit 1
}

# write_extents DOMAIN IMG FIRST_MIB STRIDE_MIB COUNT: 4 MiB random extents.
write_extents () {
    local dom=$1 img=$2 first=$3 stride=$4 count=$5 i args=()
    for (( i = 0; i < count; i++ )); do
        args+=("$(( (first + i * stride) * MiB ))" 4M)
    done
    bash "$tbdir/snapshot.sh" write "$dom" "$img" "file:$work/extent" "${args[@]}"
}

ROWS=()
RATIOS=()
FMT='%-16s %-34s %9s %8s %8s %9s'
row () {
    # shellcheck disable=SC2059
    ROWS+=("$(printf "$FMT" "$@")")
}

# bench_disk NAME DOMAIN IMG: export into a repository, then both readers.
bench_disk () {
    local name=$1 dom=$2 img=$3 repo=$work/repo-$1 qcow2 data best_ova= best_cp= rss=0 i w
    "$ovagent" export-chain "$img" --progress=none --output - 2>"$work/sender.err" |
        "$ovagent" receive --repo "$repo" --json >"$work/recv.json" 2>"$work/receiver.err" || {
        echo "$name: export-chain | receive failed" >&2
        cat "$work/sender.err" "$work/recv.json" "$work/receiver.err" >&2
        exit 1
    }
    qcow2=$(find "$repo" -name '*.qcow2' -type f | head -n 1)
    [ -n "$qcow2" ] || { echo "$name: no qcow2 in $repo" >&2; exit 1; }
    data=$(qemu-img map --output=json -f qcow2 "$qcow2" |
        jq '[.[] | select(.data == true) | .length] | add // 0')

    for (( i = 0; i < runs; i++ )); do
        drop_caches
        timed "$work/time.ova" "$ovagent" restore --repo "$repo" "$img" --progress=none \
            --output - 2>"$work/restore.err" >/dev/null || {
            echo "$name: restore --output - failed" >&2
            cat "$work/restore.err" >&2
            exit 1
        }
        w=$(wall_of "$work/time.ova")
        best_ova=$(min_of "$best_ova" "$w")
        [ "$(rss_of "$work/time.ova")" -le "$rss" ] || rss=$(rss_of "$work/time.ova")

        start_nbd "$qcow2" "$work/nbd.sock"
        drop_caches
        timed "$work/time.cp" nbdcopy "nbd+unix:///?socket=$work/nbd.sock" null: \
            2>"$work/nbdcopy.err"
        stop_nbd
        best_cp=$(min_of "$best_cp" "$(wall_of "$work/time.cp")")
    done
    row "$name" "ovagent restore --output - >/dev/null" "$(( data / MiB ))" "$best_ova" \
        "$(mibs "$data" "$best_ova")" "$(( rss / 1024 ))"
    row "$name" "nbdcopy URI null:" "$(( data / MiB ))" "$best_cp" \
        "$(mibs "$data" "$best_cp")" -
    RATIOS+=("$name: ovagent time / nbdcopy time: $(ratio "$best_ova" "$best_cp") (goal <= 1.10)")
    rm -rf "$repo"
}

head -c $((4 * MiB)) /dev/urandom >"$work/extent"
echo "building the test-bed file domain and the two disks..."
bench_filedomain_up
export OVAGENT_STATE_DIR=$work/state OVAGENT_RUN_DIR=$work/run
export OVAGENT_LIBVIRT_URI=test:///default
mkdir -p "$OVAGENT_STATE_DIR" "$OVAGENT_RUN_DIR"

read -r sparse _ < <(bash "$tbdir/snapshot.sh" disk "$NFS_DIR" 4G)
write_extents "$NFS_DIR" "$sparse" 0 16 256          # 1 GiB over 4 GiB
read -r full _ < <(bash "$tbdir/snapshot.sh" disk "$NFS_DIR" 2G)
write_extents "$NFS_DIR" "$full" 0 4 512             # all of 2 GiB

echo "reading (best of $runs, caches $([ -n "$warm" ] && echo warm || echo dropped))..."
bench_disk "4G, 1G scattered" "$NFS_DIR" "$sparse"
bench_disk "2G, full" "$NFS_DIR" "$full"

echo
# shellcheck disable=SC2059
printf "$FMT\n" "disk" "reader" "data MiB" "wall s" "MiB/s" "RSS MiB"
printf '%s\n' "${ROWS[@]}"
echo
printf '%s\n' "${RATIOS[@]}"
