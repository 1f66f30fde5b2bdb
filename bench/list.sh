#!/bin/bash
# Benchmark of `ovagent list --json` on a V5 file domain with many images:
# wall time and peak RSS per run. Measures only; asserts nothing.
#
#   bench/list.sh [IMAGES] [RUNS]      defaults: 1000 images, 3 runs
#
# Needs a built tree (scripts/setup) and GNU time (/usr/bin/time).
set -euo pipefail

images=${1:-1000}
runs=${2:-3}
[[ $images =~ ^[0-9]+$ ]] || { echo "IMAGES must be a number: $images" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive number: $runs" >&2; exit 2; }

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ovagent=$top/agent/ovagent
filedomain=$top/scripts/testbed/filedomain.sh
[ -x "$ovagent" ] || { echo "no $ovagent: build first (scripts/setup)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found (Debian package: time)" >&2; exit 1; }
command -v jq >/dev/null 2>&1 || { echo "jq not found" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ovagent-bench.XXXXXX")
root=$work/root
cleanup () {
    if [ -d "$root" ]; then
        bash "$filedomain" down "$root" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "creating the test-bed file domains, with $images more images in the V5 NFS domain..."
start=$SECONDS
bash "$filedomain" up "$root" --images "$images" >/dev/null
echo "  done in $(( SECONDS - start )) s"
# shellcheck disable=SC1091
source "$root/env"
export OVAGENT_DATA_CENTER

# What the listing covers, from one untimed run (which also warms the
# page cache, so the timed runs measure the agent rather than the disk).
"$ovagent" list --json 2>/dev/null >"$work/list.json" || true
read -r ndom nimg nvol < <(jq -r '[(.domains | length),
        ([.domains[].images[]] | length),
        ([.domains[].images[].volumes[]] | length)] | @tsv' "$work/list.json")
echo "listing: $ndom domains, $nimg images, $nvol volumes"
echo

printf '%-5s %10s %14s %6s\n' run 'wall (s)' 'peak RSS (MiB)' exit
for (( i = 1; i <= runs; i++ )); do
    rc=0
    /usr/bin/time -f '%e %M' -o "$work/time" \
        "$ovagent" list --json >/dev/null 2>"$work/stderr" || rc=$?
    # GNU time puts "Command exited with non-zero status N" first on failure.
    read -r wall rss_kib < <(tail -n 1 "$work/time")
    printf '%-5s %10s %14s %6s\n' "$i" "$wall" "$(( rss_kib / 1024 ))" "$rc"
done

# The floor any lister pays: read every volume's metadata file once, with no
# parsing. Ratio > 1 is what parsing, chain building and JSON cost on top.
/usr/bin/time -f '%e %M' -o "$work/time" \
    find "$OVAGENT_DATA_CENTER/mnt/" -name '*.meta' -exec cat {} + >/dev/null
read -r floor_wall floor_rss < <(tail -n 1 "$work/time")
printf '%-5s %10s %14s %6s\n' "floor" "$floor_wall" "$(( floor_rss / 1024 ))" "-"
echo "  (floor: find DC/mnt -name '*.meta' -exec cat {} +)"
echo "ratio, last run / floor: $(awk -v a="$wall" -v b="$floor_wall" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a (floor below timer resolution)" }')"
echo
echo "($(nproc) CPUs; $(uname -r); times vary from run to run on a shared VM)"
