#!/bin/bash
# The RPM builds from the `make dist` tree alone, and installs exactly the
# files an operator expects: binary, man page, completion, config, state.

source "${srcdir:-$(dirname "$0")}/functions.sh"

requires_core rpmbuild
requires_core rpm
: "${top_builddir:?top_builddir is not set (run through make check)}"

version=$(sed -n 's/^PACKAGE_VERSION = //p' "$top_builddir/Makefile")
[ -n "$version" ] || fail "no PACKAGE_VERSION in $top_builddir/Makefile"
name=ovagent-$version

# The dist tree goes straight into the scratch directory, so the build tree
# gets no tarball and a concurrent `make dist` is not disturbed. Automake
# wants distdir relative to the top build directory. The outer make's
# flags (jobserver, TESTS=...) must not leak into this one.
reldist=$(realpath -m --relative-to="$top_builddir" "$TESTDIR/$name")
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
    make -s -C "$top_builddir" distdir \
        distdir="$reldist" top_distdir="$reldist" \
    > "$TESTDIR/dist.log" 2>&1 ||
    { cat "$TESTDIR/dist.log" >&2; fail "make distdir failed"; }

spec=$TESTDIR/$name/packaging/ovagent.spec
[ -f "$spec" ] || fail "the dist tree has no packaging/ovagent.spec"
grep -q "^Version: *$version\$" "$spec" || fail "$spec does not say Version: $version"

topdir=$TESTDIR/rpmbuild
mkdir -p "$topdir"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
tar -C "$TESTDIR" -czf "$topdir/SOURCES/$name.tar.gz" "$name"
cp "$spec" "$topdir/SPECS/ovagent.spec"
spec=$topdir/SPECS/ovagent.spec
rm -rf "${TESTDIR:?}/$name"

# --nodeps: BuildRequires are EL package names, which a Debian machine's
# rpm database does not know. _topdir and _tmppath keep every file rpmbuild
# writes (BUILDROOT, scriptlets) in the scratch directory.
mkdir -p "$TESTDIR/tmp"
rc=0
rpmbuild -bb --nodeps \
    --define "_topdir $topdir" \
    --define "_tmppath $TESTDIR/tmp" \
    "$spec" > "$TESTDIR/rpmbuild.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
    tail -n 60 "$TESTDIR/rpmbuild.log" >&2
    fail "rpmbuild failed with exit code $rc"
fi

mapfile -t rpms < <(find "$topdir/RPMS" -name "ovagent-$version-*.rpm" \
                         ! -name '*-debug*' | sort)
[ ${#rpms[@]} -eq 1 ] || fail "expected one ovagent RPM, found: ${rpms[*]:-none}"
rpm=${rpms[0]}
echo "built $(basename "$rpm")"

# /usr/lib/.build-id links come and go with the distribution's rpm macros.
# The man page may or may not be compressed by brp-compress.
rpm -qlp "$rpm" 2>/dev/null | grep -v '^/usr/lib/\.build-id' |
    sed 's|^\(/usr/share/man/man1/ovagent\.1\)\.[a-z0-9]*$|\1|' | sort \
    > "$TESTDIR/files"

sort > "$TESTDIR/expected" <<'EOF'
/etc/ovagent
/etc/ovagent/ovagent.conf
/usr/bin/ovagent
/usr/lib/tmpfiles.d/ovagent.conf
/usr/share/bash-completion/completions/ovagent
/usr/share/doc/ovagent
/usr/share/doc/ovagent/README.md
/usr/share/doc/ovagent/authorized_keys.example
/usr/share/licenses/ovagent
/usr/share/licenses/ovagent/COPYING
/usr/share/man/man1/ovagent.1
/var/lib/ovagent
EOF

if ! diff -u "$TESTDIR/expected" "$TESTDIR/files"; then
    fail "the RPM's file list differs from the expected one (- expected, + got)"
fi

# The modes and flags that matter to an operator.
rpm -qp --qf '[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" \
    2>/dev/null > "$TESTDIR/modes"
grep -q '^drwx--x--x .* /var/lib/ovagent$' "$TESTDIR/modes" ||
    fail "/var/lib/ovagent is not mode 0711 (QEMU reaches the scratch directory in it): $(grep /var/lib/ovagent "$TESTDIR/modes")"
grep -q '^-rwxr-xr-x .* /usr/bin/ovagent$' "$TESTDIR/modes" ||
    fail "/usr/bin/ovagent is not mode 0755"
grep -q '^-rw-r--r-- cn /etc/ovagent/ovagent.conf$' "$TESTDIR/modes" ||
    fail "/etc/ovagent/ovagent.conf is not %config(noreplace): $(grep ovagent.conf "$TESTDIR/modes")"

# The packaged files themselves: the tmpfiles entry, and a binary that
# runs and knows its version.
extract=$TESTDIR/extract
mkdir -p "$extract"
rpm2archive - < "$rpm" | tar -xzf - -C "$extract" ||
    fail "cannot unpack $rpm"
grep -qx 'd /run/ovagent 0711 root root -' "$extract/usr/lib/tmpfiles.d/ovagent.conf" ||
    fail "tmpfiles entry for /run/ovagent is wrong"
"$extract/usr/bin/ovagent" version > "$TESTDIR/version" 2>&1 ||
    fail "the packaged binary does not run: $(cat "$TESTDIR/version")"
grep -qF "$version" "$TESTDIR/version" ||
    fail "the packaged binary reports $(cat "$TESTDIR/version"), not $version"

echo "RPM file list and modes as expected"
