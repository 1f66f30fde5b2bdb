#!/bin/bash
# Test-bed VMs: tiny transient libvirt domains without a guest OS whose disks
# are volumes of a test storage domain, and guest-like writes into those disks.
#
#   vm.sh create [--uuid UUID] ROOT NAME DISK [DISK...]
#                                           start domain NAME; disks become vda, vdb, ...;
#                                           prints its UUID (UUID: the same one again
#                                           on a restart, as VDSM keeps a VM's UUID);
#                                           DISK may be raw:PATH or qcow2:PATH, its
#                                           format as VDSM's metadata gives it (a raw
#                                           guest disk may look like anything)
#   vm.sh destroy ROOT NAME                 stop it (no error when it is not running)
#   vm.sh kill ROOT NAME                    SIGKILL its QEMU (a host crash as the disks
#                                           see it) and wait until libvirt forgot it
#   vm.sh write NAME DISKINDEX 'CMD'        run qemu-io CMD (e.g. "write -P 0x55 0 64k")
#                                           on disk DISKINDEX (0 = vda) inside QEMU
#
# libvirtd must be running (libvirt.sh up). ROOT keeps vm-NAME.xml, vm-NAME.pid
# (QEMU's pid), vm-NAME.modes (directory modes changed so QEMU can reach the
# disks) and vm-NAME.owners (image owners to restore after libvirt's chown).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

URI=${OVAGENT_TB_LIBVIRT_URI:-qemu:///system}
DISK_LETTERS=abcdefghijklmnopqrst

die () {
    echo "vm.sh: $*" >&2
    exit 1
}

usage () {
    echo "usage: vm.sh create [--uuid UUID] ROOT NAME DISK [DISK...] | destroy ROOT NAME |" \
         "kill ROOT NAME | write NAME DISKINDEX 'qemu-io command'" >&2
    exit 2
}

virsh_ () {
    virsh -q -c "$URI" "$@"
}

check_name () {
    [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]] || die "invalid VM name: $1"
}

xml_escape () {
    local s=$1
    s=${s//&/&amp;}
    s=${s//</&lt;}
    s=${s//>/&gt;}
    s=${s//\'/&apos;}
    s=${s//\"/&quot;}
    printf '%s' "$s"
}

# QEMU runs as $QEMU_USER, so every directory above a disk must be searchable
# by others (mktemp makes 0700 directories). Record the old modes to restore.
open_path_for_qemu () {
    local root=$1 name=$2 path=$3 dir mode
    dir=$(dirname "$path")
    while [ "$dir" != / ]; do
        mode=$(stat -c %a "$dir")
        if (( (8#$mode & 8#001) == 0 )); then
            echo "$mode $dir" >> "$root/vm-$name.modes"
            chmod o+x "$dir"
        fi
        dir=$(dirname "$dir")
    done
}

restore_modes () {
    local root=$1 name=$2 mode dir
    [ -e "$root/vm-$name.modes" ] || return 0
    cat "$root/vm-$name.modes" >> "$root/vm-deferred.modes"
    rm -f "$root/vm-$name.modes"
    # Another VM of this ROOT may still need the same directories.
    if compgen -G "$root/vm-*.pid" >/dev/null; then
        return 0
    fi
    # Innermost first was recorded first: restore outermost last.
    while read -r mode dir; do
        if [ -d "$dir" ]; then
            chmod "$mode" "$dir"
        fi
    done < "$root/vm-deferred.modes"
    rm -f "$root/vm-deferred.modes"
}

# libvirt gives the images to QEMU's user and hands back only the top ones:
# put every file of the chains back to its owner.
restore_owners () {
    local root=$1 name=$2 owner file
    [ -e "$root/vm-$name.owners" ] || return 0
    while read -r owner file; do
        if [ -f "$file" ]; then
            chown "$owner" "$file"
        fi
    done < "$root/vm-$name.owners"
    rm -f "$root/vm-$name.owners"
}

disk_format () {
    local fmt
    fmt=$(qemu-img info -U --output=json -- "$1" | jq -r .format) ||
        die "cannot read image $1"
    case $fmt in
        raw|qcow2) echo "$fmt" ;;
        *) die "unsupported image format $fmt: $1" ;;
    esac
}

# KVM when libvirt can use it, TCG otherwise.
domain_type () {
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] &&
        virsh_ domcapabilities --virttype kvm >/dev/null 2>&1; then
        echo kvm
    else
        echo qemu
    fi
}

write_xml () {
    local root=$1 name=$2 uuid=$3; shift 3
    local type idx=0 disk fmt dev emulator
    type=$(domain_type)
    emulator=$(command -v qemu-system-x86_64 || true)
    {
        echo "<domain type='$type'>"
        echo "  <name>$name</name>"
        echo "  <uuid>$uuid</uuid>"
        echo "  <memory unit='MiB'>128</memory>"
        echo "  <vcpu>1</vcpu>"
        echo "  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
        echo "  <on_poweroff>destroy</on_poweroff>"
        echo "  <on_crash>destroy</on_crash>"
        echo "  <devices>"
        [ -z "$emulator" ] || echo "    <emulator>$(xml_escape "$emulator")</emulator>"
        for disk in "$@"; do
            case $disk in
                raw:/*|qcow2:/*) fmt=${disk%%:*}; disk=${disk#*:} ;;
                *) fmt=$(disk_format "$disk") ;;
            esac
            dev=vd${DISK_LETTERS:idx:1}
            echo "    <disk type='file' device='disk'>"
            echo "      <driver name='qemu' type='$fmt'/>"
            echo "      <source file='$(xml_escape "$disk")'/>"
            echo "      <target dev='$dev' bus='virtio'/>"
            echo "    </disk>"
            idx=$((idx + 1))
        done
        echo "    <memballoon model='none'/>"
        echo "  </devices>"
        echo "</domain>"
    } > "$root/vm-$name.xml"
}

cmd_create () {
    local uuid=$1 root=$2 name=$3; shift 3
    local disks=() disk file pid i fmt
    check_name "$name"
    [ $# -ge 1 ] || usage
    [ $# -le ${#DISK_LETTERS} ] || die "too many disks"
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    if virsh_ domid "$name" >/dev/null 2>&1; then
        die "a domain named $name already exists"
    fi
    for disk in "$@"; do
        fmt=
        case $disk in
            raw:*|qcow2:*) fmt=${disk%%:*}; disk=${disk#*:} ;;
        esac
        [ -f "$disk" ] || die "no such disk image: $disk"
        case $disk in
            /*) ;;
            *) disk=$PWD/$disk ;;
        esac
        disks+=("${fmt:+$fmt:}$disk")
    done

    # Undo a half-done start on any failure below.
    UP_ROOT=$root UP_NAME=$name
    trap 'cmd_destroy "$UP_ROOT" "$UP_NAME"' EXIT
    : > "$root/vm-$name.modes"
    : > "$root/vm-$name.owners"
    # Backing files are opened by QEMU too, wherever they are.
    for disk in "${disks[@]}"; do
        fmt=()
        case $disk in
            raw:*) fmt=(-f raw) ;;
            qcow2:*) fmt=(-f qcow2) ;;
        esac
        disk=${disk#raw:}
        disk=${disk#qcow2:}
        qemu-img info -U --backing-chain --output=json "${fmt[@]}" -- "$disk" |
            jq -r 'if type == "array" then .[] else . end | .filename' > "$root/vm-$name.chain" ||
            die "cannot read the backing chain of $disk"
        while read -r file; do
            case $file in
                /*)
                    open_path_for_qemu "$root" "$name" "$file"
                    echo "$(stat -c %u:%g "$file") $file" >> "$root/vm-$name.owners"
                    ;;
            esac
        done < "$root/vm-$name.chain"
    done
    rm -f "$root/vm-$name.chain"
    [ -n "$uuid" ] || uuid=$(cat /proc/sys/kernel/random/uuid)
    write_xml "$root" "$name" "$uuid" "${disks[@]}"
    virsh_ create "$root/vm-$name.xml" >/dev/null

    pid=
    for (( i = 0; i < 50; i++ )); do
        pid=$(head -c 32 "/run/libvirt/qemu/$name.pid" 2>/dev/null | tr -dc 0-9) || true
        [ -z "$pid" ] || break
        sleep 0.1
    done
    [ -n "$pid" ] || die "QEMU of $name wrote no pid file"
    echo "$pid" > "$root/vm-$name.pid"
    trap - EXIT
    echo "$uuid"
}

cmd_destroy () {
    local root=$1 name=$2 pid='' i
    check_name "$name"
    [ -d "$root" ] || return 0
    root=$(cd "$root" && pwd)
    if [ -e "$root/vm-$name.pid" ]; then
        pid=$(head -c 32 "$root/vm-$name.pid" | tr -dc 0-9)
    fi
    # Only a domain this script created from ROOT: never someone else's.
    if [ -e "$root/vm-$name.xml" ] && virsh_ domid "$name" >/dev/null 2>&1; then
        if ! virsh_ destroy "$name" >/dev/null 2>&1; then
            # It may have gone away on its own in the meantime.
            if virsh_ domid "$name" >/dev/null 2>&1; then
                die "cannot destroy domain $name"
            fi
        fi
    fi
    # virsh destroy returns once QEMU was killed; wait until it is really gone.
    if [ -n "$pid" ]; then
        for (( i = 0; i < 100; i++ )); do
            tb_pid_alive "$pid" || break
            sleep 0.1
        done
        ! tb_pid_alive "$pid" || die "QEMU of $name (pid $pid) did not exit"
    fi
    rm -f "$root/vm-$name.pid" "$root/vm-$name.xml"
    restore_owners "$root" "$name"
    restore_modes "$root" "$name"
}

# The domain dies the way a crashed host's would: no flush, no clean close,
# so qcow2 bitmaps stay flagged in-use. libvirt notices QEMU's end on its own.
cmd_kill () {
    local root=$1 name=$2 pid='' i
    check_name "$name"
    [ -d "$root" ] || die "no such directory: $root"
    root=$(cd "$root" && pwd)
    [ -e "$root/vm-$name.xml" ] || die "domain $name was not created from $root"
    [ -e "$root/vm-$name.pid" ] && pid=$(head -c 32 "$root/vm-$name.pid" | tr -dc 0-9)
    [ -n "$pid" ] || die "no QEMU pid recorded for $name"
    # The recorded pid must still be this domain's QEMU, never a reused one.
    if tb_pid_alive "$pid"; then
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "guest=$name," ||
            die "pid $pid is not the QEMU of $name"
        kill -KILL "$pid"
    fi
    tb_wait_gone 10 "$pid" || die "QEMU of $name (pid $pid) did not exit after SIGKILL"
    for (( i = 0; i < 100; i++ )); do
        virsh_ domid "$name" >/dev/null 2>&1 || break
        sleep 0.1
    done
    ! virsh_ domid "$name" >/dev/null 2>&1 || die "libvirt still lists $name after its QEMU died"
    rm -f "$root/vm-$name.pid" "$root/vm-$name.xml"
    restore_owners "$root" "$name"
    restore_modes "$root" "$name"
}

cmd_write () {
    local name=$1 index=$2 cmd=$3 reply log size=0 out='' i
    check_name "$name"
    [[ $index =~ ^[0-9]{1,2}$ ]] || die "invalid disk index: $index"
    # The command is passed inside double quotes of an HMP command line.
    [[ $cmd != *'"'* && $cmd != *\\* && $cmd != *$'\n'* ]] ||
        die "qemu-io command must not contain quotes, backslashes or newlines"
    # qemu-io prints its result ("wrote ...", "write failed: ...") on QEMU's
    # stdout, which virtlogd copies into the domain log, not into the reply.
    log=/var/log/libvirt/qemu/$name.log
    [ ! -f "$log" ] || size=$(stat -c %s "$log")
    # With -blockdev there are no drive names: only the device's QOM path works.
    reply=$(virsh_ qemu-monitor-command "$name" --hmp \
        "qemu-io -d /machine/peripheral/virtio-disk$index/virtio-backend \"$cmd\"") ||
        die "qemu-monitor-command failed on $name"
    # Success is an empty reply; anything else is qemu-io's error text.
    if [ -n "${reply//[[:space:]]/}" ]; then
        echo "$reply" >&2
        die "qemu-io \"$cmd\" failed on $name disk $index"
    fi
    if [ -f "$log" ]; then
        # Some commands (flush) print nothing: wait briefly, not forever.
        for (( i = 0; i < 20; i++ )); do
            out=$(tail -c "+$((size + 1))" "$log" | head -c 65536)
            [ -z "$out" ] || break
            sleep 0.05
        done
        if grep -qiE 'failed|error' <<<"$out"; then
            echo "$out" >&2
            die "qemu-io \"$cmd\" failed on $name disk $index"
        fi
    fi
}

[ $# -ge 1 ] || usage
case $1 in
    create)
        shift
        uuid=''
        if [ $# -ge 1 ] && [ "$1" = --uuid ]; then
            [ $# -ge 2 ] || usage
            [[ $2 =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] ||
                die "invalid UUID: $2"
            uuid=$2
            shift 2
        fi
        [ $# -ge 3 ] || usage
        cmd_create "$uuid" "$@"
        ;;
    destroy)
        [ $# -eq 3 ] || usage
        cmd_destroy "$2" "$3"
        ;;
    kill)
        [ $# -eq 3 ] || usage
        cmd_kill "$2" "$3"
        ;;
    write)
        [ $# -eq 4 ] || usage
        cmd_write "$2" "$3" "$4"
        ;;
    *)
        usage
        ;;
esac
