#!/bin/bash
# qemu tools are launched from two places only, storage/qemu-img.c and
# nbd/server.c, which name every layer's format (json: specs): any other
# C file that names qemu-img, qemu-nbd or qemu-io as a program fails here.

# shellcheck source=functions.sh
. "${srcdir:-$(dirname "$0")}/functions.sh"

cd "$top_srcdir"
allowed='^(storage/qemu-img\.c|nbd/server\.c)$'
found=0
while IFS= read -r file; do
    if grep -nE '"qemu-(img|nbd|io)"' "$file" >"$TESTDIR/hits"; then
        if ! grep -qE "$allowed" <<<"$file"; then
            sed "s|^|$file:|" "$TESTDIR/hits" >&2
            found=1
        fi
    fi
done < <(git ls-files '*.c' 2>/dev/null | grep -v '^tests/' ||
         find agent common nbd repo storage stream virt fuzz -name '*.c' | sort)
[ "$found" -eq 0 ] ||
    fail "qemu tools launched outside storage/qemu-img.c and nbd/server.c (above)"

# And the two places build their image arguments from stor_image_spec.
for f in storage/qemu-img.c nbd/server.c; do
    grep -q 'stor_image_spec' "$f" || fail "$f no longer builds json: specs"
done
echo "qemu tools are launched only from storage/qemu-img.c and nbd/server.c"
