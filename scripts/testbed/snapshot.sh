#!/bin/bash
# What the engine and VDSM do to a disk of a test-bed domain: create a disk,
# take a snapshot (new qcow2 leaf, old leaf INTERNAL), and guest writes.
#
#   snapshot.sh disk DOMAIN CAPACITY [--raw] [--lv-size MIB] [--block-env ENV]
#                                    a new image with one LEAF volume: prints "IMG VOL"
#   snapshot.sh create DOMAIN IMG [--lv-size MIB] [--block-env ENV]
#                                    a snapshot: prints the new leaf's UUID
#   snapshot.sh write DOMAIN IMG PATTERN OFFSET LENGTH [OFFSET LENGTH]... [--block-env ENV]
#                                    guest data into the leaf (qemu-io over the chain);
#                                    PATTERN: a byte (0x5a), "zero", or file:PATH
#                                    (the bytes of PATH, at least LENGTH long)
#   snapshot.sh leaf DOMAIN IMG [--block-env ENV]
#                                    prints the leaf's UUID
#   snapshot.sh convert DOMAIN IMG OUT [--block-env ENV]
#                                    the guest-visible disk at the leaf as a sparse raw OUT
#
# DOMAIN is a file domain's directory (.../mnt/<remote>/<SD>), or the SD UUID
# of a block domain (its VG) together with --block-env: the env file written
# by blockdomain.sh (OVAGENT_LVM_COMMAND, OVAGENT_LVM_DEVICES). LVs are
# activated through that lvm command and deactivated again unless they were
# active before. Volume metadata follows the domain's format version (V4:
# SIZE/MTIME, V5: CAP/SEQ); a snapshot's parent gets only VOLTYPE=INTERNAL,
# the way VDSM's setInternal leaves GEN and the rest untouched.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

MiB=$((1024 * 1024))
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
export LVM_SUPPRESS_FD_WARNINGS=1

usage () {
    sed -n '5,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

is_uuid () {
    [[ $1 =~ $UUID_RE ]]
}

# ---- the domain --------------------------------------------------------

KIND=        # file | block
SD=          # domain UUID
DOMDIR=      # file: the domain directory
VERSION=     # domain format version
BLOCK_ENV=
ALIGNMENT_TAG=  # block: MDT_ALIGNMENT, if the VG has it
LV_MIB=128
RAW=

# read_record VAR < RECORD: KEY=VALUE lines up to EOF into associative array VAR.
read_record () {
    local -n _rec=$1
    local line
    _rec=()
    while IFS= read -r line; do
        line=${line%%$'\r'}
        [[ $line == EOF* ]] && break
        [[ $line == *=* ]] || continue
        _rec[${line%%=*}]=${line#*=}
    done
}

# record_capacity VAR: CAP wins over SIZE (512-byte units).
record_capacity () {
    local -n _r=$1
    if [ -n "${_r[CAP]:-}" ]; then
        echo "${_r[CAP]}"
    elif [ -n "${_r[SIZE]:-}" ]; then
        echo $(( _r[SIZE] * 512 ))
    else
        tb_die "volume record without CAP or SIZE"
    fi
}

# The record text with VOLTYPE replaced, key order and everything else kept.
set_voltype () {
    local voltype=$1 line
    while IFS= read -r line; do
        case $line in
            VOLTYPE=*) printf 'VOLTYPE=%s\n' "$voltype" ;;
            *) printf '%s\n' "$line" ;;
        esac
        [[ $line == EOF* ]] && break
    done
}

lvm () {
    local sub=$1
    shift
    "$OVAGENT_LVM_COMMAND" "$sub" --devices "$OVAGENT_LVM_DEVICES" "$@" \
        2> >(grep -v 'not zeroed' >&2)
}

open_domain () {
    local dom=$1
    if [ -n "$BLOCK_ENV" ]; then
        [ -r "$BLOCK_ENV" ] || tb_die "cannot read $BLOCK_ENV"
        # shellcheck disable=SC1090
        . "$BLOCK_ENV"
        [ -n "${OVAGENT_LVM_COMMAND:-}" ] && [ -n "${OVAGENT_LVM_DEVICES:-}" ] ||
            tb_die "$BLOCK_ENV does not set OVAGENT_LVM_COMMAND and OVAGENT_LVM_DEVICES"
        is_uuid "$dom" || tb_die "not a block domain UUID: $dom"
        KIND=block SD=$dom
        local tags
        tags=$(lvm vgs --noheadings -o vg_tags "$SD") || tb_die "no VG $SD"
        VERSION=$(tr ',' '\n' <<<"$tags" | sed -n 's/^ *MDT_VERSION=\([0-9]*\) *$/\1/p')
        [ -n "$VERSION" ] || tb_die "VG $SD has no MDT_VERSION tag"
        ALIGNMENT_TAG=$(tr ',' '\n' <<<"$tags" | sed -n 's/^ *MDT_ALIGNMENT=\([0-9]*\) *$/\1/p')
        block_layout
    else
        [ -d "$dom/dom_md" ] && [ -d "$dom/images" ] ||
            tb_die "$dom is not a file domain directory (and no --block-env given)"
        KIND=file DOMDIR=$(cd "$dom" && pwd) SD=${DOMDIR##*/}
        is_uuid "$SD" || tb_die "$DOMDIR: the directory is not named by a domain UUID"
        VERSION=$(sed -n 's/^VERSION=\([0-9]*\)$/\1/p' "$DOMDIR/dom_md/metadata")
        [ -n "$VERSION" ] || tb_die "$DOMDIR/dom_md/metadata has no VERSION"
    fi
}

qcow2_compat () {
    if [ "$VERSION" -ge 4 ]; then echo 1.1; else echo 0.10; fi
}

# ---- block domain: LVs, tags and metadata slots --------------------------

PV_DEV=      # the device holding the metadata LV
MD_OFFSET=   # byte offset of the metadata LV in PV_DEV
LEASES_OFFSET= # byte offset of the leases LV in PV_DEV (one segment)
ALIGNMENT=   # of the domain's leases: ALIGNMENT (V5), else 1 MiB

# lv_start LV: "DEVICE OFFSET" of the LV's first extent.
lv_start () {
    local ranges extent first pestart dev
    IFS='|' read -r ranges extent < <(lvm lvs --noheadings --units b --nosuffix \
        --separator '|' -o seg_pe_ranges,vg_extent_size "$SD/$1")
    ranges=${ranges//[[:space:]]/}
    extent=${extent//[[:space:]]/}
    dev=${ranges%:*}
    first=${ranges##*:}
    first=${first%-*}
    pestart=$(lvm pvs --noheadings --units b --nosuffix -o pe_start "$dev")
    pestart=${pestart//[[:space:]]/}
    echo "$dev $(( pestart + first * extent ))"
}

block_layout () {
    local dev
    read -r PV_DEV MD_OFFSET < <(lv_start metadata)
    read -r dev LEASES_OFFSET < <(lv_start leases)
    [ "$dev" = "$PV_DEV" ] || tb_die "the leases LV of $SD is not on $PV_DEV"
    ALIGNMENT=$MiB
    if [ "$VERSION" -ge 5 ] && [ -n "$ALIGNMENT_TAG" ]; then
        ALIGNMENT=$ALIGNMENT_TAG
    fi
}

slot_offset () {
    if [ "$VERSION" -ge 5 ]; then
        echo $(( MD_OFFSET + MiB + $1 * 8192 ))
    else
        echo $(( MD_OFFSET + $1 * 512 ))
    fi
}

# read_slot SLOT: the 512-byte record without its NUL padding.
read_slot () {
    dd if="$PV_DEV" bs=512 skip=$(( $(slot_offset "$1") / 512 )) count=1 \
        iflag=direct status=none | tr -d '\0'
}

# write_slot SLOT < RECORD: NUL-padded to 512 bytes, direct I/O, as VDSM writes.
write_slot () {
    local tmp
    tmp=$(mktemp "${TMPDIR:-/tmp}/ovagent-slot.XXXXXX")
    cat >"$tmp"
    if [ "$(stat -c %s "$tmp")" -gt 512 ]; then
        rm -f "$tmp"
        tb_die "metadata record over 512 bytes"
    fi
    truncate -s 512 "$tmp"
    dd if="$tmp" of="$PV_DEV" bs=512 seek=$(( $(slot_offset "$1") / 512 )) count=1 \
        oflag=direct conv=notrunc status=none
    rm -f "$tmp"
}

# LV name -> MD_ slot, for the LVs of image $1 (IU_ tag), skipping LVs
# still being created; SLOTS_USED: every slot of the VG.
declare -A LV_SLOT=()
SLOTS_USED=()
block_scan () {
    local img=$1 name tags t slot iu init
    LV_SLOT=()
    SLOTS_USED=()
    while IFS='|' read -r name tags; do
        name=${name//[[:space:]]/}
        tags=${tags//[[:space:]]/}
        slot='' iu='' init=''
        for t in ${tags//,/ }; do
            case $t in
                MD_*) slot=${t#MD_} ;;
                IU_*) iu=${t#IU_} ;;
                OVIRT_VOL_INITIALIZING) init=1 ;;
            esac
        done
        [[ $slot =~ ^[0-9]+$ ]] || continue
        SLOTS_USED+=("$slot")
        if [ "$iu" = "$img" ] && [ -z "$init" ]; then
            LV_SLOT[$name]=$slot
        fi
    done < <(lvm lvs --noheadings --separator '|' -o lv_name,lv_tags "$SD")
}

free_slot () {
    local s used
    if [ "$VERSION" -ge 5 ]; then s=1; else s=4; fi
    used=" ${SLOTS_USED[*]} "
    while [[ $used == *" $s "* ]]; do
        s=$(( s + 1 ))
    done
    echo "$s"
}

# LVs this run activated, deactivated again at exit.
ACTIVATED=()
activate () {
    local lv
    for lv in "$@"; do
        [ -e "/dev/$SD/$lv" ] && continue
        lvm lvchange --autobackup n --available y "$SD/$lv"
        ACTIVATED+=("$lv")
    done
}

deactivate_ours () {
    local i
    for (( i=${#ACTIVATED[@]}-1; i>=0; i-- )); do
        lvm lvchange --autobackup n --available n "$SD/${ACTIVATED[$i]}" || true
    done
    ACTIVATED=()
}

# ---- volumes of an image, either kind ---------------------------------

declare -A VOL_REC=()   # volume -> its record text
LEAF=

# load_image IMG: every volume's record, and the single LEAF.
load_image () {
    local img=$1 v f leaves=()
    local -A r
    VOL_REC=()
    if [ "$KIND" = file ]; then
        local imgdir=$DOMDIR/images/$img
        [ -d "$imgdir" ] || tb_die "no image $img in $DOMDIR"
        for f in "$imgdir"/*.meta; do
            [ -e "$f" ] || continue
            v=${f##*/}
            v=${v%.meta}
            is_uuid "$v" || continue
            VOL_REC[$v]=$(cat "$f")
        done
    else
        block_scan "$img"
        for v in "${!LV_SLOT[@]}"; do
            VOL_REC[$v]=$(read_slot "${LV_SLOT[$v]}")
        done
    fi
    [ ${#VOL_REC[@]} -gt 0 ] || tb_die "image $img has no volumes in domain $SD"
    for v in "${!VOL_REC[@]}"; do
        read_record r <<<"${VOL_REC[$v]}"
        if [ "${r[VOLTYPE]:-}" = LEAF ] && [ "${r[IMAGE]:-}" = "$img" ]; then
            leaves+=("$v")
        fi
    done
    [ ${#leaves[@]} -eq 1 ] ||
        tb_die "image $img: expected one LEAF volume, found ${#leaves[@]}: ${leaves[*]}"
    LEAF=${leaves[0]}
}

# chain_of VOL: VOL and its ancestors (metadata PUUID), leaf first.
chain_of () {
    local v=$1 n=0
    local -A r
    while [ "$v" != "$TB_BLANK_UUID" ]; do
        [ -n "${VOL_REC[$v]:-}" ] || tb_die "volume $v of the chain has no record"
        echo "$v"
        read_record r <<<"${VOL_REC[$v]}"
        v=${r[PUUID]:-$TB_BLANK_UUID}
        n=$(( n + 1 ))
        [ "$n" -le 1000 ] || tb_die "loop in the chain of $1"
    done
}

vol_path () {
    if [ "$KIND" = file ]; then
        echo "$DOMDIR/images/$IMG/$1"
    else
        echo "/dev/$SD/$1"
    fi
}

qemu_fmt () {
    local -A r
    read_record r <<<"${VOL_REC[$1]}"
    case ${r[FORMAT]:-} in
        COW) echo qcow2 ;;
        RAW) echo raw ;;
        *) tb_die "volume $1: unknown FORMAT ${r[FORMAT]:-}" ;;
    esac
}

# Make the chain of the leaf openable (LVs active) for the duration.
open_chain () {
    if [ "$KIND" = block ]; then
        local vols
        mapfile -t vols < <(chain_of "$LEAF")
        activate "${vols[@]}"
    fi
}

put_file_record () {
    tb_write_file "$DOMDIR/images/$IMG/$1.meta"
}

# ---- commands ----------------------------------------------------------

# new_volume VOL FORMAT PARENT CAP [KEY=VAL]...: storage, record, lease.
new_volume () {
    local vol=$1 fmt=$2 parent=$3 cap=$4 pfmt='' dir
    shift 4
    if [ -n "$parent" ]; then
        pfmt=$(qemu_fmt "$parent")
    fi
    if [ "$KIND" = file ]; then
        dir=$DOMDIR/images/$IMG
        mkdir -p "$dir"
        # O_EXCL as fileVolume creates it.
        (set -o noclobber; : >"$dir/$vol") || tb_die "$dir/$vol exists"
        if [ "$fmt" = RAW ]; then
            qemu-img create -q -f raw "$dir/$vol" "$cap"
        elif [ -z "$parent" ]; then
            qemu-img create -q -f qcow2 -o "compat=$(qcow2_compat)" "$dir/$vol" "$cap"
        else
            (cd "$dir" && qemu-img create -q -f qcow2 -o "compat=$(qcow2_compat)" \
                -b "$parent" -F "$pfmt" -u "$vol" "$cap")
        fi
        chmod 0660 "$dir/$vol"
        tb_vol_record "$VERSION" "$SD" "$IMG" "$parent" "$fmt" LEAF "$cap" "$@" |
            put_file_record "$vol"
        # Volume leases exist where the parent has one (or, for a new disk,
        # where the domain has an xleases volume).
        if { [ -n "$parent" ] && [ -e "$dir/$parent.lease" ]; } ||
           { [ -z "$parent" ] && [ -e "$DOMDIR/dom_md/xleases" ]; }; then
            : >"$dir/$vol.lease"
            tb_volume_lease "$SD" "$vol" "$dir/$vol.lease"
        fi
    else
        local slot
        slot=$(free_slot)
        lvm lvcreate --autobackup n -an -Zn --wipesignatures n --contiguous n \
            --size "${LV_MIB}m" --name "$vol" --addtag OVIRT_VOL_INITIALIZING "$SD" >/dev/null
        if [ "$fmt" = COW ]; then
            activate "$vol"
            if [ -z "$parent" ]; then
                (cd "/dev/$SD" && qemu-img create -q -f qcow2 -o "compat=$(qcow2_compat)" \
                    "$vol" "$cap")
            else
                (cd "/dev/$SD" && qemu-img create -q -f qcow2 -o "compat=$(qcow2_compat)" \
                    -b "$parent" -F "$pfmt" -u "$vol" "$cap")
            fi
            deactivate_ours
        fi
        lvm lvchange --autobackup n --deltag OVIRT_VOL_INITIALIZING --addtag "MD_$slot" \
            --addtag "PU_${parent:-$TB_BLANK_UUID}" --addtag "IU_$IMG" "$SD/$vol" >/dev/null
        tb_vol_record "$VERSION" "$SD" "$IMG" "$parent" "$fmt" LEAF "$cap" "$@" |
            write_slot "$slot"
        tb_volume_lease "$SD" "$vol" "$PV_DEV" \
            $(( LEASES_OFFSET + (100 + slot) * ALIGNMENT ))
        SLOTS_USED+=("$slot")
    fi
}

cmd_disk () {
    local cap=$1 vol fmt=COW type=SPARSE
    [[ $cap =~ ^[0-9]+$ ]] || cap=$(numfmt --from=iec "${cap%iB}") ||
        tb_die "bad capacity: $1"
    [ "$cap" -gt 0 ] || tb_die "capacity must be above 0"
    cap=$(( (cap + 4095) / 4096 * 4096 ))
    IMG=$(tb_uuid)
    vol=$(tb_uuid)
    if [ -n "$RAW" ]; then
        fmt=RAW
        [ "$KIND" = file ] || type=PREALLOCATED
        if [ "$KIND" = block ] && [ $(( LV_MIB * MiB )) -lt "$cap" ]; then
            LV_MIB=$(( (cap + MiB - 1) / MiB ))
        fi
    fi
    if [ "$KIND" = block ]; then
        block_scan "$IMG"
    fi
    new_volume "$vol" "$fmt" "" "$cap" "CTIME=$(date +%s)" "TYPE=$type"
    echo "$IMG $vol"
}

cmd_create () {
    local new parent_rec cap seq
    local -A p
    load_image "$IMG"
    parent_rec=${VOL_REC[$LEAF]}
    read_record p <<<"$parent_rec"
    cap=$(record_capacity p)
    seq=$(( ${p[SEQ]:-0} + 1 ))
    new=$(tb_uuid)
    local md=("CTIME=$(date +%s)" "DISKTYPE=${p[DISKTYPE]:-DATA}")
    if [ -n "${p[DESCRIPTION]+set}" ]; then
        md+=("DESCRIPTION=${p[DESCRIPTION]}")
    fi
    if [ "$VERSION" -ge 5 ]; then
        md+=("SEQ=$seq")
    fi
    new_volume "$new" COW "$LEAF" "$cap" "${md[@]}"
    # The parent becomes INTERNAL; nothing else of its record changes.
    if [ "$KIND" = file ]; then
        set_voltype INTERNAL <<<"$parent_rec" | put_file_record "$LEAF"
    else
        set_voltype INTERNAL <<<"$parent_rec" | write_slot "${LV_SLOT[$LEAF]}"
    fi
    echo "$new"
}

cmd_write () {
    local pattern=$1 cmds=() off len
    shift
    # "zero": qcow2 zero clusters (write -z), hiding what lower layers hold.
    local how="-P $pattern"
    if [ "$pattern" = zero ]; then
        how=-z
    elif [[ $pattern == file:* ]]; then
        # Bytes from a file (qemu-io write -s), e.g. random, incompressible data.
        [ -r "${pattern#file:}" ] || tb_die "cannot read ${pattern#file:}"
        [[ ${pattern#file:} != *[[:space:]]* ]] || tb_die "no spaces in: ${pattern#file:}"
        how="-s ${pattern#file:}"
    else
        [[ $pattern =~ ^(0x[0-9a-fA-F]{1,2}|[0-9]{1,3})$ ]] || tb_die "bad pattern byte: $pattern"
    fi
    [ $# -ge 2 ] && [ $(( $# % 2 )) -eq 0 ] || usage
    while [ $# -gt 0 ]; do
        off=$1 len=$2
        shift 2
        [[ $off =~ ^[0-9]+[kKMGT]?$ ]] && [[ $len =~ ^[0-9]+[kKMGT]?$ ]] ||
            tb_die "bad offset or length: $off $len"
        cmds+=(-c "write -q $how $off $len")
    done
    load_image "$IMG"
    open_chain
    qemu-io -f "$(qemu_fmt "$LEAF")" "${cmds[@]}" "$(vol_path "$LEAF")" >/dev/null
    deactivate_ours
}

cmd_leaf () {
    load_image "$IMG"
    echo "$LEAF"
}

cmd_convert () {
    local out=$1
    load_image "$IMG"
    open_chain
    qemu-img convert -U -f "$(qemu_fmt "$LEAF")" -O raw "$(vol_path "$LEAF")" "$out"
    deactivate_ours
}

# ---- command line ------------------------------------------------------

[ $# -ge 3 ] || usage
CMD=$1 DOMAIN=$2
shift 2
ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --block-env)
            [ $# -ge 2 ] || usage
            BLOCK_ENV=$2; shift 2 ;;
        --lv-size)
            [ $# -ge 2 ] || usage
            [[ $2 =~ ^[1-9][0-9]{0,6}$ ]] || tb_die "--lv-size: MiB, not $2"
            LV_MIB=$2; shift 2 ;;
        --raw) RAW=1; shift ;;
        *) ARGS+=("$1"); shift ;;
    esac
done

trap 'deactivate_ours' EXIT
open_domain "$DOMAIN"
case $CMD in
    disk)
        [ ${#ARGS[@]} -eq 1 ] || usage
        cmd_disk "${ARGS[0]}" ;;
    create|write|leaf|convert)
        [ ${#ARGS[@]} -ge 1 ] || usage
        IMG=${ARGS[0]}
        is_uuid "$IMG" || tb_die "not an image UUID: $IMG"
        case $CMD in
            create) [ ${#ARGS[@]} -eq 1 ] || usage; cmd_create ;;
            leaf) [ ${#ARGS[@]} -eq 1 ] || usage; cmd_leaf ;;
            convert) [ ${#ARGS[@]} -eq 2 ] || usage; cmd_convert "${ARGS[1]}" ;;
            write) [ ${#ARGS[@]} -ge 4 ] || usage; cmd_write "${ARGS[@]:1}" ;;
        esac ;;
    *) usage ;;
esac
