#!/bin/bash
# ovagent: build the fuzz targets with clang, libFuzzer, ASan and UBSan in
# build-fuzz/ of the source tree, then run each target for N seconds, as
# many at a time as there are CPUs.
#
# Usage: fuzz/run-fuzzers.sh [SECONDS]     (default 60 per target)
#
# build-fuzz/ is kept between runs (incremental builds); new corpus entries
# go to build-fuzz/corpus/<target>/ and crashes to build-fuzz/artifacts/,
# never into the seed corpus in fuzz/corpus/.
set -euo pipefail

seconds=${1:-60}
if [[ ! $seconds =~ ^[1-9][0-9]{0,5}$ ]]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=$srcdir/build-fuzz
targets=(volmeta dommeta stream manifest backup-meta qcow2-header meta-keep serve-line
         prune-journal domain-xml ssh-url)
jobs=$(nproc 2>/dev/null || echo 2)

tmpdir=$(mktemp -d)
pids=()
cleanup() {
  local pid
  # Fuzzers still running when the script is interrupted.
  for pid in "${pids[@]}"; do
    if [[ -n $pid ]]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$tmpdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v clang >/dev/null || { echo "$0: clang not found" >&2; exit 1; }
if [[ ! -x $srcdir/configure ]]; then
  echo "$0: $srcdir/configure missing; run autoreconf -i first" >&2
  exit 1
fi

mkdir -p "$builddir"

# configure refuses a VPATH build from a source tree that is configured in
# place. In that case build from a snapshot of the sources (tracked and
# untracked files plus the generated build system) in build-fuzz/src.
if [[ -e $srcdir/config.status ]]; then
  if ! git -C "$srcdir" rev-parse --git-dir >/dev/null 2>&1; then
    echo "$0: $srcdir is configured in place and is not a git tree;" \
         "run 'make distclean' there first" >&2
    exit 1
  fi
  top=$builddir/src
  (
    cd "$srcdir"
    {
      git ls-files -z --cached --others --exclude-standard
      printf '%s\0' configure config.h.in aclocal.m4
      find build-aux m4 -type f -print0
      find . -path ./build-fuzz -prune -o -path ./.git -prune -o \
        -name Makefile.in -type f -print0
    } > "$tmpdir/files"
    mkdir -p "$top"
    # --ignore-failed-read: files deleted but still in the index.
    tar --null -T "$tmpdir/files" --ignore-failed-read -cf - 2>/dev/null |
      tar -C "$top" -xpf -
  )
else
  top=$srcdir
fi

objdir=$builddir/obj
mkdir -p "$objdir"
# A build configured before FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION was
# added would keep objects built without it: start that one over.
if [[ -e $objdir/config.status ]] &&
   ! grep -q FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION "$objdir/config.status"; then
  rm -rf "$objdir"
  mkdir -p "$objdir"
fi
if [[ ! -e $objdir/config.status ]]; then
  # fuzzer-no-link instruments the parsers in libstorage.a and libstream.a
  # for coverage; only the targets link libFuzzer itself (fuzz/Makefile.am).
  # FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION: the stream decoder ignores
  # hash mismatches, so that mutations reach the checks behind the hashes.
  (
    cd "$objdir"
    "$top/configure" CC=clang \
      CFLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION" \
      --enable-fuzzing --enable-sanitizers > "$tmpdir/configure.log" 2>&1
  ) || { cat "$tmpdir/configure.log" >&2; exit 1; }
fi

make -C "$objdir/common" -j"$jobs" ARFLAGS=cr libcommon.a >/dev/null
make -C "$objdir/storage" -j"$jobs" ARFLAGS=cr libstorage.a >/dev/null
make -C "$objdir/stream" -j"$jobs" ARFLAGS=cr libstream.a >/dev/null
make -C "$objdir/nbd" -j"$jobs" ARFLAGS=cr libnbdr.a >/dev/null
make -C "$objdir/repo" -j"$jobs" ARFLAGS=cr librepo.a >/dev/null
make -C "$objdir/virt" -j"$jobs" ARFLAGS=cr libovvirt.a >/dev/null
make -C "$objdir/fuzz" -j"$jobs" "${targets[@]/#/fuzz-}" >/dev/null

run_target () {
  local t=$1
  mkdir -p "$builddir/corpus/$t"
  # exec: the pid the cleanup kills is the fuzzer's.
  exec "$objdir/fuzz/fuzz-$t" \
    -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$builddir/artifacts/$t-" \
    "$builddir/corpus/$t" "$srcdir/fuzz/corpus/$t" > "$tmpdir/$t.log" 2>&1
}

# Up to $jobs targets at a time, each on one CPU, so that a new target
# costs time only when there are more targets than CPUs.
mkdir -p "$builddir/artifacts"
status=0
for (( i = 0; i < ${#targets[@]}; i += jobs )); do
  batch=("${targets[@]:i:jobs}")
  pids=()
  for t in "${batch[@]}"; do
    echo "== fuzz-$t for ${seconds}s"
    run_target "$t" &
    pids+=("$!")
  done
  for j in "${!batch[@]}"; do
    t=${batch[$j]}
    rc=0
    wait "${pids[$j]}" || rc=$?
    pids[$j]=
    grep -E '^(stat::|Done|==[0-9]+==ERROR|SUMMARY)' "$tmpdir/$t.log" | sed "s/^/fuzz-$t: /" || true
    if [[ $rc -ne 0 ]]; then
      status=1
      echo "fuzz-$t FAILED; artifacts in $builddir/artifacts:" >&2
      tail -n 60 "$tmpdir/$t.log" >&2
    fi
  done
  if [[ $status -ne 0 ]]; then
    break
  fi
done
exit "$status"
