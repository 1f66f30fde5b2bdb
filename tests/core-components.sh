#!/bin/bash
# The real components the integration tests run. Under CI=true every one
# must be installed (scripts/setup does it), so no test can skip silently.

source "${srcdir:-$(dirname "$0")}/functions.sh"

# name, then where to look: a command name on $PATH or an absolute path
# (daemons live in /usr/sbin, which is not on every user's $PATH).
components=(
    "qemu-img qemu-img"
    "qemu-nbd qemu-nbd"
    "qemu-io qemu-io"
    "lvm lvm"
    "sanlock /usr/sbin/sanlock"
    "losetup losetup"
    "sshd /usr/sbin/sshd"
    "libvirtd /usr/sbin/libvirtd"
    "virtlogd /usr/sbin/virtlogd"
    "virsh virsh"
    "nbdinfo nbdinfo"
    "glusterd /usr/sbin/glusterd"
    "jq jq"
    "rpmbuild rpmbuild"
)

# lvm and losetup are in /usr/sbin too.
PATH=$PATH:/usr/sbin:/sbin

missing=()
for entry in "${components[@]}"; do
    read -r name where <<<"$entry"
    if [[ $where == /* ]]; then
        found=$where
        [ -x "$found" ] || found=
    else
        found=$(command -v "$where" 2>/dev/null || true)
    fi
    if [ -n "$found" ]; then
        printf '%-10s %s\n' "$name" "$found"
    else
        printf '%-10s MISSING\n' "$name"
        missing+=("$name")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "all ${#components[@]} core components present"
    exit 0
fi

if [ "${CI:-}" = true ]; then
    fail "core components missing under CI=true (run scripts/setup): ${missing[*]}"
fi
skip "core components missing: ${missing[*]}"
