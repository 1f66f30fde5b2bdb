#!/bin/bash
# A block storage domain as VDSM lays it out (VG named by the SD, MDT_ tags,
# special LVs, tagged data LVs, metadata-LV slots) on a loop-device PV.
#
#   blockdomain.sh up ROOT [--version 4|5] [--spare]
#                                            build it; ROOT/expected.json, ROOT/env
#                                            (OVAGENT_* settings) and ROOT/ids;
#                                            --spare adds two empty leaf volumes in
#                                            images of their own, as the engine creates
#                                            them for a restore (raw preallocated and
#                                            qcow2)
#   blockdomain.sh activate-sanlock ROOT     activate the ids and leases LVs, as
#                                            VDSM keeps them active on a host where
#                                            the domain is active (sanlock uses them)
#   blockdomain.sh down ROOT                 deactivate, remove the VG, PV, loop
#                                            device(s) and ROOT
# Every volume has its sanlock lease in the leases LV, and the ids LV a
# lockspace (lib.sh tb_lockspace_init, tb_volume_lease).
# Every LVM command goes through lvm-shim, which emulates activation where the
# kernel has no device-mapper.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

SHIM=$HERE/lvm-shim
GiB=$((1024 * 1024 * 1024))
MiB=$((1024 * 1024))
MARKER=.ovagent-blockdomain-testbed
# The leases LV: slots up to 155 (VDSM makes it 2 GiB: slots up to 1947).
LEASES_MIB=256
export LVM_SUPPRESS_FD_WARNINGS=1

usage () {
    echo "usage: ${0##*/} up ROOT [--version 4|5] [--spare] | activate-sanlock ROOT | down ROOT" >&2
    exit 2
}

ids_add () {
    printf '%s=%q\n' "$1" "$2" >>"$ROOT/ids"
}

lvm () {
    local sub=$1
    shift
    "$SHIM" "$sub" --devices "$LOOP" "$@" 2> >(grep -v 'not zeroed' >&2)
}

# lv_offset LV: byte offset of LV's first extent in the PV.
lv_offset () {
    local ranges first
    ranges=$(lvm lvs --noheadings -o seg_pe_ranges "$SD/$1")
    ranges=${ranges//[[:space:]]/}
    first=${ranges##*:}
    first=${first%-*}
    echo $(( PE_START + first * EXTENT ))
}

# write_slot SLOT < RECORD: NUL-padded to 512 bytes at the slot's offset
# in the metadata LV, with direct I/O as VDSM writes it.
write_slot () {
    local slot=$1 off tmp=$ROOT/.slot
    if [ "$VERSION" -ge 5 ]; then
        off=$(( MD_OFFSET + MiB + slot * 8192 ))
    else
        off=$(( MD_OFFSET + slot * 512 ))
    fi
    cat >"$tmp"
    [ "$(stat -c %s "$tmp")" -le 512 ] || tb_die "metadata record over 512 bytes"
    truncate -s 512 "$tmp"
    dd if="$tmp" of="$LOOP" bs=512 seek=$(( off / 512 )) count=1 \
        oflag=direct conv=notrunc status=none
    rm -f "$tmp"
}

NEXT_SLOT=

# data_lv IMG VOL LV_MIB PARENT: a data LV with VDSM's tags and its lease;
# PU_ is PARENT unless PU=... is given. Returns the slot in SLOT.
data_lv () {
    local img=$1 vol=$2 mib=$3 pu=${4:-$TB_BLANK_UUID}
    SLOT=$NEXT_SLOT
    NEXT_SLOT=$(( NEXT_SLOT + 1 ))
    lvm lvcreate --autobackup n -an -Zn --wipesignatures n --contiguous n \
        --size "${mib}m" --name "$vol" \
        --addtag "IU_$img" --addtag "PU_$pu" --addtag "MD_$SLOT" "$SD" >/dev/null
    (( (100 + SLOT + 1) * MiB <= LEASES_MIB * MiB )) || tb_die "slot $SLOT is beyond the leases LV"
    tb_volume_lease "$SD" "$vol" "$LOOP" $(( LEASES_OFFSET + (100 + SLOT) * MiB ))
}

activate () {
    lvm lvchange --autobackup n --available y "${@/#/$SD/}"
}

deactivate () {
    lvm lvchange --autobackup n --available n "${@/#/$SD/}"
}

# qcow2 VOL CAP [PARENT PARENT_FORMAT]: created the way VDSM does, from
# /dev/<sd> with a bare-UUID backing string.
qcow2 () {
    if [ $# -gt 2 ]; then
        (cd "/dev/$SD" && qemu-img create -q -f qcow2 -o compat=1.1 -b "$3" -F "$4" -u "$1" "$2")
    else
        (cd "/dev/$SD" && qemu-img create -q -f qcow2 -o compat=1.1 "$1" "$2")
    fi
}

fill () {
    qemu-io -f "$2" -c "write -q -P $3 $4 $5" "/dev/$SD/$1" >/dev/null
}

record () {
    tb_vol_record "$VERSION" "$SD" "$@"
}

# expect VOL PARENT FORMAT VOLTYPE LEGALITY CAPACITY
expect () {
    tb_expect_volume "$1" "$2" "$3" "$4" "$5" "$6" "/dev/$SD/$1"
}

up () {
    if [ -e "$ROOT" ] && [ -n "$(ls -A "$ROOT")" ]; then
        tb_die "$ROOT exists and is not empty"
    fi
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd -P)
    touch "$ROOT/$MARKER"
    trap 'rc=$?; [ $rc -eq 0 ] || down; exit $rc' EXIT
    TB_EXPECT=$ROOT/.expect
    mkdir -p "$TB_EXPECT" "$ROOT/data-center/mnt" "$ROOT/state" "$ROOT/run"
    : >"$ROOT/ids"

    SD=$(tb_uuid)
    local pool; pool=$(tb_uuid)
    ids_add SD "$SD"
    ids_add VERSION "$VERSION"

    truncate -s 5G "$ROOT/pv.img"
    LOOP=$(losetup -f --show "$ROOT/pv.img")
    ids_add LOOP "$LOOP"
    lvm pvcreate -y "$LOOP" >/dev/null
    lvm vgcreate --setautoactivation n --physicalextentsize 128m \
        --addtag RHAT_storage_domain "$SD" "$LOOP" >/dev/null

    local vguuid pvuuid pecount
    read -r PE_START EXTENT pvuuid pecount < <(lvm pvs --noheadings --units b --nosuffix \
        -o pe_start,vg_extent_size,pv_uuid,pv_pe_count "$LOOP")
    vguuid=$(lvm vgs --noheadings -o vg_uuid "$SD")
    vguuid=${vguuid//[[:space:]]/}

    # Domain metadata in VG tags, sealed over the unescaped lines.
    local md=(
        "CLASS=Data" "DESCRIPTION=iscsi-data1" "IOOPTIMEOUTSEC=10" "LEASERETRIES=3"
        "LEASETIMESEC=60" "LOCKPOLICY=" "LOCKRENEWALINTERVALSEC=5" "POOL_UUID=$pool"
        "PV0=pv:${LOOP##*/},uuid:$pvuuid,pestart:0,pecount:$pecount,mapoffset:0"
        "ROLE=Regular" "SDUUID=$SD" "TYPE=ISCSI" "VERSION=$VERSION" "VGUUID=$vguuid"
    )
    if [ "$VERSION" -ge 5 ]; then
        md+=("ALIGNMENT=1048576" "BLOCK_SIZE=512")
    else
        md+=("LOGBLKSIZE=512" "PHYBLKSIZE=512")
    fi
    local tags=() line
    while IFS= read -r line; do
        tags+=(--addtag "MDT_$(tb_lvm_tag_encode "$line")")
    done < <(tb_dom_metadata "${md[@]}")
    lvm vgchange "${tags[@]}" "$SD" >/dev/null

    # Special LVs, metadata first (extent 0); one extent each is enough
    # here, but for leases: volume leases start at 100 MiB (1 MiB alignment).
    local lv size
    for lv in metadata ids leases inbox outbox xleases master; do
        size=128
        [ "$lv" = leases ] && size=$LEASES_MIB
        lvm lvcreate --autobackup n -an -Zn --wipesignatures n --contiguous y \
            --size "${size}m" --name "$lv" "$SD" >/dev/null
    done
    MD_OFFSET=$(lv_offset metadata)
    LEASES_OFFSET=$(lv_offset leases)
    tb_lockspace_init "$SD" "$LOOP" "$(lv_offset ids)"
    if [ "$VERSION" -ge 5 ]; then NEXT_SLOT=1; else NEXT_SLOT=4; fi

    tb_expect_domain "$SD" block iscsi "$VERSION" "/dev/$SD"
    local img base mid top v ghost

    # A preallocated raw base and two qcow2 snapshots.
    img=$(tb_uuid); base=$(tb_uuid); mid=$(tb_uuid); top=$(tb_uuid)
    data_lv "$img" "$base" 1024
    record "$img" "" RAW INTERNAL "$GiB" TYPE=PREALLOCATED | write_slot "$SLOT"
    data_lv "$img" "$mid" 128 "$base"
    record "$img" "$base" COW INTERNAL "$GiB" SEQ=1 | write_slot "$SLOT"
    data_lv "$img" "$top" 128 "$mid"
    record "$img" "$mid" COW LEAF "$GiB" SEQ=2 | write_slot "$SLOT"
    activate "$base" "$mid" "$top"
    fill "$base" raw 0x11 0 4M
    qcow2 "$mid" "$GiB" "$base" raw
    fill "$mid" qcow2 0x22 2M 4M
    qcow2 "$top" "$GiB" "$mid" qcow2
    fill "$top" qcow2 0x33 5M 3M
    deactivate "$base" "$mid" "$top"
    tb_expect_image "$SD" "$img"
    expect "$base" "" raw internal legal "$GiB"
    expect "$mid" "$base" cow internal legal "$GiB"
    expect "$top" "$mid" cow leaf legal "$GiB"
    ids_add CHAIN_IMG "$img"
    ids_add CHAIN_BASE "$base"
    ids_add CHAIN_MID "$mid"
    ids_add CHAIN_TOP "$top"

    # A single qcow2 volume.
    img=$(tb_uuid); v=$(tb_uuid)
    data_lv "$img" "$v" 128
    record "$img" "" COW LEAF "$GiB" | write_slot "$SLOT"
    activate "$v"
    qcow2 "$v" "$GiB"
    fill "$v" qcow2 0x44 0 3M
    deactivate "$v"
    tb_expect_image "$SD" "$img"
    expect "$v" "" cow leaf legal "$GiB"
    ids_add SINGLE_IMG "$img"
    ids_add SINGLE_VOL "$v"

    # A volume still being created: only the OVIRT_VOL_INITIALIZING tag.
    v=$(tb_uuid)
    lvm lvcreate --autobackup n -an -Zn --wipesignatures n --contiguous n \
        --size 128m --name "$v" --addtag OVIRT_VOL_INITIALIZING "$SD" >/dev/null
    ids_add INIT_VOL "$v"

    # A stale PU_ tag (left by a merge; only the SPM rewrites tags): the
    # metadata PUUID is authoritative.
    img=$(tb_uuid); base=$(tb_uuid); top=$(tb_uuid); ghost=$(tb_uuid)
    data_lv "$img" "$base" 128
    record "$img" "" COW INTERNAL "$GiB" | write_slot "$SLOT"
    data_lv "$img" "$top" 128 "$ghost"
    record "$img" "$base" COW LEAF "$GiB" SEQ=2 | write_slot "$SLOT"
    activate "$base" "$top"
    qcow2 "$base" "$GiB"
    fill "$base" qcow2 0x55 0 1M
    qcow2 "$top" "$GiB" "$base" qcow2
    fill "$top" qcow2 0x56 1M 1M
    deactivate "$base" "$top"
    tb_expect_image "$SD" "$img"
    expect "$base" "" cow internal legal "$GiB"
    expect "$top" "$base" cow leaf legal "$GiB"
    ids_add PUMISMATCH_IMG "$img"
    ids_add PUMISMATCH_BASE "$base"
    ids_add PUMISMATCH_TOP "$top"
    ids_add PUMISMATCH_TAG "$ghost"

    # A volume whose slot was cleared (512 zero bytes): no usable record.
    img=$(tb_uuid); v=$(tb_uuid)
    data_lv "$img" "$v" 128
    head -c 512 /dev/zero | write_slot "$SLOT"
    tb_expect_image "$SD" "$img" invalid-metadata
    expect "$v" "" "" "" "" ""
    ids_add ZEROED_IMG "$img"
    ids_add ZEROED_VOL "$v"
    ids_add ZEROED_SLOT "$SLOT"

    if [ "$SPARE" = 1 ]; then
        # Restore targets: a preallocated raw LV still holding old bytes,
        # and a fresh qcow2 LV.
        img=$(tb_uuid); v=$(tb_uuid)
        data_lv "$img" "$v" 1024
        record "$img" "" RAW LEAF "$GiB" TYPE=PREALLOCATED | write_slot "$SLOT"
        activate "$v"
        fill "$v" raw 0x99 0 2M
        fill "$v" raw 0x98 512M 1M
        deactivate "$v"
        tb_expect_image "$SD" "$img"
        expect "$v" "" raw leaf legal "$GiB"
        ids_add SPARE_RAW_IMG "$img"
        ids_add SPARE_RAW_VOL "$v"

        img=$(tb_uuid); v=$(tb_uuid)
        data_lv "$img" "$v" 128
        record "$img" "" COW LEAF "$GiB" | write_slot "$SLOT"
        activate "$v"
        qcow2 "$v" "$GiB"
        deactivate "$v"
        tb_expect_image "$SD" "$img"
        expect "$v" "" cow leaf legal "$GiB"
        ids_add SPARE_COW_IMG "$img"
        ids_add SPARE_COW_VOL "$v"
    fi

    tb_expect_write "$ROOT/expected.json" "$ROOT/data-center"
    rm -rf "$TB_EXPECT"
    blockdev --flushbufs "$LOOP"
    {
        printf 'export OVAGENT_DATA_CENTER=%q\n' "$ROOT/data-center"
        printf 'export OVAGENT_LVM_DEVICES=%q\n' "$LOOP"
        printf 'export OVAGENT_LVM_COMMAND=%q\n' "$SHIM"
        printf 'export OVAGENT_STATE_DIR=%q\n' "$ROOT/state"
        printf 'export OVAGENT_RUN_DIR=%q\n' "$ROOT/run"
    } >"$ROOT/env"
    trap - EXIT
}

activate_sanlock () {
    [ -e "$ROOT/$MARKER" ] || tb_die "$ROOT was not made by ${0##*/} up"
    SD=$(. "$ROOT/ids"; echo "$SD")
    LOOP=$(. "$ROOT/ids"; echo "$LOOP")
    activate ids leases
}

down () {
    [ -d "$ROOT" ] || return 0
    if [ ! -e "$ROOT/$MARKER" ]; then
        tb_die "$ROOT was not made by ${0##*/} up; not removing it"
    fi
    local sd='' l loops=()
    if [ -s "$ROOT/ids" ]; then
        sd=$(. "$ROOT/ids"; echo "${SD:-}")
    fi
    if [ -e "$ROOT/pv.img" ]; then
        mapfile -t loops < <(losetup -j "$ROOT/pv.img" -O NAME -n)
    fi
    for l in "${loops[@]}"; do
        LOOP=$l
        if [ -n "$sd" ]; then
            lvm vgchange -an "$sd" >/dev/null 2>&1 || true
            lvm vgremove -f "$sd" >/dev/null 2>&1 || true
        fi
        lvm pvremove -y "$l" >/dev/null 2>&1 || true
    done
    if [ -n "$sd" ]; then
        # Whatever emulated activation is left (a run that died holding one).
        local st
        for st in "${OVAGENT_LVM_SHIM_DIR:-/run/ovagent-lvm-shim}/active/$sd"/*; do
            [ -e "$st" ] || continue
            losetup -d "$(cat "$st")" 2>/dev/null || true
            rm -f "$st" "/dev/$sd/${st##*/}"
        done
        rmdir "${OVAGENT_LVM_SHIM_DIR:-/run/ovagent-lvm-shim}/active/$sd" 2>/dev/null || true
        if [ -d "/dev/$sd" ]; then
            find "/dev/$sd" -mindepth 1 -maxdepth 1 -type l -delete
            rmdir "/dev/$sd" 2>/dev/null || true
        fi
    fi
    for l in "${loops[@]}"; do
        # Loop devices stacked on the PV (emulated LVs), then the PV's own.
        local over
        for over in $(losetup -j "$l" -O NAME -n 2>/dev/null); do
            losetup -d "$over" 2>/dev/null || true
        done
        losetup -d "$l" 2>/dev/null || true
    done
    rm -rf "$ROOT"
}

[ $# -ge 2 ] || usage
CMD=$1 ROOT=$2
shift 2
VERSION=5
SPARE=0
case $CMD in
    up)
        while [ $# -gt 0 ]; do
            case $1 in
                --version)
                    [ $# -ge 2 ] || usage
                    case $2 in 4|5) VERSION=$2 ;; *) tb_die "--version: 4 or 5, not $2" ;; esac
                    shift 2 ;;
                --spare)
                    SPARE=1
                    shift ;;
                *) usage ;;
            esac
        done
        up ;;
    activate-sanlock)
        [ $# -eq 0 ] || usage
        activate_sanlock ;;
    down)
        [ $# -eq 0 ] || usage
        down ;;
    *) usage ;;
esac
