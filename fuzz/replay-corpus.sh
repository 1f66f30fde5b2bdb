#!/bin/bash
# ovagent: `make check` in fuzz/: replay the seed corpus through each target
# built with replay.c (no libFuzzer), so every seed is parsed once per build.
set -euo pipefail

# Automake runs this from the build directory of fuzz/, where the targets
# are; the corpus lives next to this script in the source tree.
here=$(cd "$(dirname "$0")" && pwd)

for target in volmeta dommeta stream manifest backup-meta qcow2-header meta-keep \
              serve-line prune-journal domain-xml ssh-url; do
  if [[ ! -x ./fuzz-$target ]]; then
    echo "$0: ./fuzz-$target not built" >&2
    exit 1
  fi
  ./fuzz-$target "$here/corpus/$target"
done
