# ovagent benchmarks: what every bench script shares: the tree's paths, the
# checks of what it needs, failing with the output of a run, dropping caches
# and timing with GNU time.
# Sourced after the caller parsed its options (drop_caches reads $warm).
# shellcheck shell=bash
# shellcheck disable=SC2034  # the paths are for the scripts that source this

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ovagent=$top/agent/ovagent
tbdir=$top/scripts/testbed
MiB=$((1024 * 1024))

# bench_requires WHY CMD...: root (WHY says what for), GNU time and CMDs, or
# exit 1 saying what is missing.
bench_requires () {
    local why=$1 c
    shift
    [ "$(id -u)" -eq 0 ] || { echo "needs root ($why)" >&2; exit 1; }
    [ -x /usr/bin/time ] || { echo "/usr/bin/time not found (Debian package: time)" >&2; exit 1; }
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || { echo "$c not found (scripts/setup)" >&2; exit 1; }
    done
}

# bench_requires_ovagent: a built ovagent.
bench_requires_ovagent () {
    [ -x "$ovagent" ] || { echo "no $ovagent: build first (scripts/setup)" >&2; exit 1; }
}

# bench_filedomain_up: the test-bed file domains in $fd_root (the caller
# removes them at exit), their ids and the agent's settings sourced, no LVM.
bench_filedomain_up () {
    bash "$tbdir/filedomain.sh" up "$fd_root" >/dev/null
    . "$fd_root/ids"
    . "$fd_root/env"
    export OVAGENT_LVM_DEVICES=
}

# fail_run WHAT FILE...: WHAT failed; the tail of each non-empty FILE, exit 1.
fail_run () {
    echo "$1 failed; its output:" >&2
    shift
    local f
    for f in "$@"; do
        [ ! -s "$f" ] || { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}

drop_caches () {
    [ -n "$warm" ] && return 0
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# timed OUTFILE CMD...: CMD's wall seconds, peak RSS (KiB) and CPU seconds
# (user + system, its children included) into OUTFILE.
timed () {
    local out=$1
    shift
    /usr/bin/time -f '%e %M %U %S' -o "$out" "$@"
}

# The last line of a GNU time output ("Command exited ..." may come first).
wall_of () { tail -n 1 "$1" | cut -d' ' -f1; }
rss_of () { tail -n 1 "$1" | cut -d' ' -f2; }
cpu_of () { tail -n 1 "$1" | awk '{ if (NF >= 4) printf "%.2f", $3 + $4; else print "-" }'; }
now () { date +%s.%N; }
elapsed () { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mibs () { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / 1048576 / s; else print "-" }'; }
