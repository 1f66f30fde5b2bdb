#!/bin/bash
# File storage domains laid out exactly as VDSM lays them out (NFS, POSIX V4,
# Gluster layout, LocalFS), real qcow2/raw volumes, and the expected listing.
#
#   filedomain.sh up ROOT [--images N]   build ROOT/data-center, ROOT/expected.json,
#                                        ROOT/env (OVAGENT_DATA_CENTER) and ROOT/ids
#                                        (shell variables naming the fixtures)
#   filedomain.sh down ROOT              remove it all
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

GiB=$((1024 * 1024 * 1024))
MiB=$((1024 * 1024))
MARKER=.ovagent-filedomain-testbed

usage () {
    echo "usage: ${0##*/} up ROOT [--images N] | down ROOT" >&2
    exit 2
}

# ids_add NAME VALUE: recorded in ROOT/ids for the tests.
ids_add () {
    printf '%s=%q\n' "$1" "$2" >>"$ROOT/ids"
}

# make_domain DIR SD TYPE VERSION REMOTE_PATH ROLE [nolease]
make_domain () {
    local dir=$1 sd=$2 type=$3 version=$4 remote=$5 role=$6 flavor=${7:-}
    local md=(
        "CLASS=Data" "DESCRIPTION=${type,,}-data" "IOOPTIMEOUTSEC=10"
        "LEASERETRIES=3" "LEASETIMESEC=60" "LOCKPOLICY=" "LOCKRENEWALINTERVALSEC=5"
        "POOL_UUID=$POOL" "REMOTE_PATH=$remote" "ROLE=$role" "SDUUID=$sd"
        "TYPE=$type" "VERSION=$version"
    )
    if [ "$version" -ge 5 ]; then
        md+=("ALIGNMENT=1048576" "BLOCK_SIZE=512")
    fi
    mkdir -p "$dir/dom_md" "$dir/images"
    tb_dom_metadata "${md[@]}" | tb_write_file "$dir/dom_md/metadata"
    : >"$dir/dom_md/ids"
    # LocalLock keeps no lockspace; sanlock's domains have one in ids.
    if [ "$flavor" != nolease ]; then
        tb_lockspace_init "$sd" "$dir/dom_md/ids"
    fi
    : >"$dir/dom_md/leases"
    truncate -s 16M "$dir/dom_md/inbox" "$dir/dom_md/outbox"
    if [ "$version" -ge 4 ] && [ "$flavor" != nolease ]; then
        : >"$dir/dom_md/xleases"
    fi
    chmod 0660 "$dir/dom_md/"*
    if [ "$role" = Master ]; then
        mkdir -p "$dir/master/vms" "$dir/master/tasks"
    fi
}

# file_vol DOMDIR VERSION IMG VOL FORMAT VOLTYPE CAP PARENT PARENT_FORMAT COMPAT LEASE [KEY=VAL|-KEY]...
# Creates the volume the way fileVolume does: qemu-img in the image
# directory with a bare-UUID backing string (BACKING=... overrides the
# string), chmod 0660, then .meta and .lease.
file_vol () {
    local domdir=$1 version=$2 img=$3 vol=$4 fmt=$5 voltype=$6 cap=$7
    local parent=$8 pfmt=$9 compat=${10} lease=${11}
    shift 11
    local sd=${domdir##*/} imgdir=$domdir/images/$img backing=$parent o
    local md=()
    for o in "$@"; do
        case $o in
            BACKING=*) backing=${o#BACKING=} ;;
            *) md+=("$o") ;;
        esac
    done
    mkdir -p "$imgdir"
    if [ "$fmt" = RAW ]; then
        qemu-img create -q -f raw "$imgdir/$vol" "$cap"
    elif [ -z "$parent" ]; then
        qemu-img create -q -f qcow2 -o "compat=$compat" "$imgdir/$vol" "$cap"
    else
        (cd "$imgdir" && qemu-img create -q -f qcow2 -o "compat=$compat" \
            -b "$backing" -F "$pfmt" -u "$vol" "$cap")
    fi
    chmod 0660 "$imgdir/$vol"
    tb_vol_record "$version" "$sd" "$img" "$parent" "$fmt" "$voltype" "$cap" "${md[@]}" |
        tb_write_file "$imgdir/$vol.meta"
    if [ "$lease" = 1 ]; then
        : >"$imgdir/$vol.lease"
        tb_volume_lease "$sd" "$vol" "$imgdir/$vol.lease"
    fi
}

# fill PATH FORMAT PATTERN OFFSET LENGTH: guest data in one layer.
fill () {
    qemu-io -f "$2" -c "write -q -P $3 $4 $5" "$1" >/dev/null
}

# expect IMG VOL PARENT FORMAT VOLTYPE LEGALITY CAPACITY (in the current domain)
expect () {
    tb_expect_volume "$2" "$3" "$4" "$5" "$6" "$7" "$CUR_DIR/images/$1/$2"
}

# An image UUID sorting before (lt) or after (gt) the given one.
uuid_ordered () {
    local rel=$1 other=$2 u
    while :; do
        u=$(tb_uuid)
        if [ "$rel" = lt ] && [[ "$u" < "$other" ]]; then break; fi
        if [ "$rel" = gt ] && [[ "$u" > "$other" ]]; then break; fi
    done
    printf '%s' "$u"
}

nfs_domain () {
    local sd; sd=$(tb_uuid)
    CUR_DIR=$DC/mnt/nfs01.example.com:_exports_data1/$sd
    make_domain "$CUR_DIR" "$sd" NFS 5 nfs01.example.com:/exports/data1 Master
    tb_expect_domain "$sd" file nfs 5 "$CUR_DIR"
    ids_add NFS_SD "$sd"
    ids_add NFS_DIR "$CUR_DIR"
    local d=$CUR_DIR img base mid top v a b

    # Raw base and two qcow2 snapshots.
    img=$(tb_uuid); base=$(tb_uuid); mid=$(tb_uuid); top=$(tb_uuid)
    file_vol "$d" 5 "$img" "$base" RAW INTERNAL "$GiB" "" "" "" 1 TYPE=PREALLOCATED
    fill "$d/images/$img/$base" raw 0x11 0 4M
    file_vol "$d" 5 "$img" "$mid" COW INTERNAL "$GiB" "$base" raw 1.1 1 SEQ=1
    fill "$d/images/$img/$mid" qcow2 0x22 2M 4M
    file_vol "$d" 5 "$img" "$top" COW LEAF "$GiB" "$mid" qcow2 1.1 1 SEQ=2
    fill "$d/images/$img/$top" qcow2 0x33 5M 3M
    tb_expect_image "$sd" "$img"
    expect "$img" "$base" "" raw internal legal "$GiB"
    expect "$img" "$mid" "$base" cow internal legal "$GiB"
    expect "$img" "$top" "$mid" cow leaf legal "$GiB"
    ids_add CHAIN_IMG "$img"
    ids_add CHAIN_BASE "$base"
    ids_add CHAIN_MID "$mid"
    ids_add CHAIN_TOP "$top"

    # A single qcow2 volume.
    img=$(tb_uuid); v=$(tb_uuid)
    file_vol "$d" 5 "$img" "$v" COW LEAF "$GiB" "" "" 1.1 1
    fill "$d/images/$img/$v" qcow2 0x44 0 3M
    tb_expect_image "$sd" "$img"
    expect "$img" "$v" "" cow leaf legal "$GiB"
    ids_add SINGLE_IMG "$img"
    ids_add SINGLE_VOL "$v"

    # A template and a disk created from it: the template volume, .meta and
    # .lease hard-linked into the disk's directory. The derived image sorts
    # first, so the copy whose directory matches IMAGE is not met first.
    local timg dimg tv dv
    timg=$(tb_uuid); dimg=$(uuid_ordered lt "$timg"); tv=$(tb_uuid); dv=$(tb_uuid)
    file_vol "$d" 5 "$timg" "$tv" COW SHARED "$GiB" "" "" 1.1 1 \
        'DESCRIPTION={"DiskAlias":"tmpl_Disk1","DiskDescription":"template"}'
    fill "$d/images/$timg/$tv" qcow2 0x55 0 2M
    mkdir -p "$d/images/$dimg"
    ln "$d/images/$timg/$tv" "$d/images/$timg/$tv.meta" "$d/images/$timg/$tv.lease" \
        "$d/images/$dimg/"
    file_vol "$d" 5 "$dimg" "$dv" COW LEAF "$GiB" "$tv" qcow2 1.1 1 SEQ=1
    fill "$d/images/$dimg/$dv" qcow2 0x56 1M 2M
    tb_expect_image "$sd" "$timg"
    expect "$timg" "$tv" "" cow shared legal "$GiB"
    tb_expect_image "$sd" "$dimg"
    tb_expect_volume "$tv" "" cow shared legal "$GiB" "$d/images/$timg/$tv"
    expect "$dimg" "$dv" "$tv" cow leaf legal "$GiB"
    ids_add TEMPLATE_IMG "$timg"
    ids_add TEMPLATE_VOL "$tv"
    ids_add DERIVED_IMG "$dimg"
    ids_add DERIVED_VOL "$dv"

    # An OVF_STORE disk: RAW 128 MiB holding a tar.
    img=$(tb_uuid); v=$(tb_uuid)
    local desc
    desc=$(printf '{"Updated":true,"Size":%s,"Last Updated":"Tue Nov 14 22:13:20 UTC 2023","Storage Domains":[{"uuid":"%s"}],"Disk Description":"OVF_STORE"}' 10240 "$sd")
    file_vol "$d" 5 "$img" "$v" RAW LEAF $((128 * MiB)) "" "" "" 1 \
        DISKTYPE=OVFS "DESCRIPTION=$desc"
    mkdir -p "$ROOT/ovf"
    printf '{\n  "Last Updated" : "Tue Nov 14 22:13:20 UTC 2023",\n  "Storage Domains" : [ {\n    "uuid" : "%s"\n  } ]\n}' \
        "$sd" >"$ROOT/ovf/info.json"
    printf '{\n  "VM Status" : { }\n}' >"$ROOT/ovf/metadata.json"
    tar -C "$ROOT/ovf" -cf - info.json metadata.json |
        dd of="$d/images/$img/$v" conv=notrunc status=none
    rm -rf "$ROOT/ovf"
    tb_expect_image "$sd" "$img"
    expect "$img" "$v" "" raw leaf legal $((128 * MiB))
    ids_add OVF_IMG "$img"

    # A record from before GEN and SEQ existed.
    img=$(tb_uuid); v=$(tb_uuid)
    file_vol "$d" 5 "$img" "$v" COW LEAF "$GiB" "" "" 1.1 1 -GEN -SEQ
    tb_expect_image "$sd" "$img"
    expect "$img" "$v" "" cow leaf legal "$GiB"
    ids_add NOGEN_IMG "$img"

    # An image being deleted: never listed.
    img=$(tb_uuid); v=$(tb_uuid)
    file_vol "$d" 5 "$img" "$v" COW LEAF "$GiB" "" "" 1.1 1
    mv "$d/images/$img" "$d/images/_remove_me_$img"
    ids_add REMOVED_IMG "$img"
    ids_add REMOVED_VOL "$v"

    # An ILLEGAL leaf (a data operation that did not finish).
    img=$(tb_uuid); base=$(tb_uuid); top=$(tb_uuid)
    file_vol "$d" 5 "$img" "$base" COW INTERNAL "$GiB" "" "" 1.1 1
    file_vol "$d" 5 "$img" "$top" COW LEAF "$GiB" "$base" qcow2 1.1 1 SEQ=1 LEGALITY=ILLEGAL
    tb_expect_image "$sd" "$img" illegal-volume
    expect "$img" "$base" "" cow internal legal "$GiB"
    expect "$img" "$top" "$base" cow leaf illegal "$GiB"
    ids_add ILLEGAL_IMG "$img"

    # Two leaves on one parent. A broken chain lists volumes in UUID order.
    img=$(tb_uuid); base=$(tb_uuid); a=$(tb_uuid); b=$(tb_uuid)
    file_vol "$d" 5 "$img" "$base" COW INTERNAL "$GiB" "" "" 1.1 1
    file_vol "$d" 5 "$img" "$a" COW LEAF "$GiB" "$base" qcow2 1.1 1 SEQ=1
    file_vol "$d" 5 "$img" "$b" COW LEAF "$GiB" "$base" qcow2 1.1 1 SEQ=2
    tb_expect_image "$sd" "$img" duplicate-parent multiple-leaves
    while read -r v p; do
        if [ -z "$p" ]; then
            expect "$img" "$v" "" cow internal legal "$GiB"
        else
            expect "$img" "$v" "$p" cow leaf legal "$GiB"
        fi
    done < <(printf '%s\n' "$base " "$a $base" "$b $base" | LC_ALL=C sort)
    ids_add TWOLEAVES_IMG "$img"

    # A record cleared by a deletion before 4.2.5.
    img=$(tb_uuid); v=$(tb_uuid)
    file_vol "$d" 5 "$img" "$v" COW LEAF "$GiB" "" "" 1.1 1
    tb_cleared_record | tb_write_file "$d/images/$img/$v.meta"
    tb_expect_image "$sd" "$img" partly-deleted
    expect "$img" "$v" "" "" "" "" ""
    ids_add CLEARED_IMG "$img"
    ids_add CLEARED_VOL "$v"

    # Two volumes, each the other's parent.
    img=$(tb_uuid); a=$(tb_uuid); b=$(tb_uuid)
    file_vol "$d" 5 "$img" "$a" COW INTERNAL "$GiB" "$b" qcow2 1.1 1
    file_vol "$d" 5 "$img" "$b" COW LEAF "$GiB" "$a" qcow2 1.1 1 SEQ=1
    tb_expect_image "$sd" "$img" loop no-base
    while read -r v p t; do
        expect "$img" "$v" "$p" cow "$t" legal "$GiB"
    done < <(printf '%s\n' "$a $b internal" "$b $a leaf" | LC_ALL=C sort)
    ids_add LOOP_IMG "$img"

    # A volume whose parent exists nowhere.
    img=$(tb_uuid); v=$(tb_uuid); local ghost; ghost=$(tb_uuid)
    file_vol "$d" 5 "$img" "$v" COW LEAF "$GiB" "$ghost" qcow2 1.1 1 SEQ=1
    tb_expect_image "$sd" "$img" no-base unknown-parent
    expect "$img" "$v" "$ghost" cow leaf legal "$GiB"
    ids_add ORPHAN_IMG "$img"

    # Many small disks, for the list benchmark: one header, copied.
    if [ "$NIMAGES" -gt 0 ]; then
        local hdr=$ROOT/.bench.qcow2 dirs=() imgs=() vols=() i cap=$((64 * MiB))
        qemu-img create -q -f qcow2 -o compat=1.1 "$hdr" "$cap"
        for (( i=0; i<NIMAGES; i++ )); do
            tb_uuid_var img; tb_uuid_var v
            imgs[i]=$img; vols[i]=$v
            dirs+=("$d/images/$img")
        done
        mkdir "${dirs[@]}"
        # The record as tb_vol_record writes it, without a fork per image.
        local rec
        rec=$(tb_vol_record 5 "$sd" @IMG@ "" COW LEAF "$cap")
        for (( i=0; i<NIMAGES; i++ )); do
            img=${imgs[i]}; v=${vols[i]}
            cp --reflink=auto --sparse=always "$hdr" "$d/images/$img/$v"
            printf '%s\n' "${rec//@IMG@/$img}" >"$d/images/$img/$v.meta"
            # Never written: the lease file stays as VDSM truncates it.
            : >"$d/images/$img/$v.lease"
            tb_expect_image "$sd" "$img"
            expect "$img" "$v" "" cow leaf legal "$cap"
        done
        chmod 0660 "$d"/images/*/*
        rm -f "$hdr"
    fi
}

posix_v4_domain () {
    local sd; sd=$(tb_uuid)
    CUR_DIR=$DC/mnt/server:_posix_data/$sd
    make_domain "$CUR_DIR" "$sd" POSIXFS 4 server:/posix_data Regular
    tb_expect_domain "$sd" file posix 4 "$CUR_DIR"
    ids_add POSIX_SD "$sd"
    ids_add POSIX_DIR "$CUR_DIR"
    local d=$CUR_DIR img base top v

    # A snapshot written when VDSM still used "../<img>/<vol>" backing names.
    img=$(tb_uuid); base=$(tb_uuid); top=$(tb_uuid)
    file_vol "$d" 4 "$img" "$base" COW INTERNAL "$GiB" "" "" 1.1 1
    fill "$d/images/$img/$base" qcow2 0x61 0 2M
    file_vol "$d" 4 "$img" "$top" COW LEAF "$GiB" "$base" qcow2 1.1 1 \
        "BACKING=../$img/$base"
    fill "$d/images/$img/$top" qcow2 0x62 1M 2M
    tb_expect_image "$sd" "$img"
    expect "$img" "$base" "" cow internal legal "$GiB"
    expect "$img" "$top" "$base" cow leaf legal "$GiB"
    ids_add LEGACY_IMG "$img"
    ids_add LEGACY_BASE "$base"
    ids_add LEGACY_TOP "$top"

    # A record written during a V4 -> V5 conversion: V4 keys plus CAP.
    img=$(tb_uuid); v=$(tb_uuid)
    file_vol "$d" 4 "$img" "$v" COW LEAF $((2 * GiB)) "" "" 1.1 1 CAP=$((2 * GiB))
    tb_expect_image "$sd" "$img"
    expect "$img" "$v" "" cow leaf legal $((2 * GiB))
    ids_add CONVERTED_IMG "$img"
}

gluster_domain () {
    local sd; sd=$(tb_uuid)
    CUR_DIR=$DC/mnt/glusterSD/gl01.example.com:_vmstore/$sd
    make_domain "$CUR_DIR" "$sd" GLUSTERFS 5 gl01.example.com:/vmstore Regular
    tb_expect_domain "$sd" file glusterfs 5 "$CUR_DIR"
    ids_add GLUSTER_SD "$sd"
    local d=$CUR_DIR img base top
    img=$(tb_uuid); base=$(tb_uuid); top=$(tb_uuid)
    file_vol "$d" 5 "$img" "$base" COW INTERNAL "$GiB" "" "" 1.1 1
    fill "$d/images/$img/$base" qcow2 0x71 0 1M
    file_vol "$d" 5 "$img" "$top" COW LEAF "$GiB" "$base" qcow2 1.1 1 SEQ=1
    fill "$d/images/$img/$top" qcow2 0x72 1M 1M
    tb_expect_image "$sd" "$img"
    expect "$img" "$base" "" cow internal legal "$GiB"
    expect "$img" "$top" "$base" cow leaf legal "$GiB"
    ids_add GLUSTER_IMG "$img"
}

localfs_domain () {
    local sd; sd=$(tb_uuid)
    local real=$ROOT/localfs/data
    CUR_DIR=$DC/mnt/_localfs_data/$sd
    mkdir -p "$real"
    ln -s "$real" "$DC/mnt/_localfs_data"
    make_domain "$CUR_DIR" "$sd" LOCALFS 5 "$real" Regular nolease
    tb_expect_domain "$sd" file localfs 5 "$CUR_DIR"
    ids_add LOCALFS_SD "$sd"
    local d=$CUR_DIR img v
    img=$(tb_uuid); v=$(tb_uuid)
    file_vol "$d" 5 "$img" "$v" COW LEAF "$GiB" "" "" 0.10 0
    fill "$d/images/$img/$v" qcow2 0x81 0 1M
    tb_expect_image "$sd" "$img"
    expect "$img" "$v" "" cow leaf legal "$GiB"
    ids_add LOCALFS_IMG "$img"
    ids_add LOCALFS_VOL "$v"
}

up () {
    if [ -e "$ROOT" ] && [ -n "$(ls -A "$ROOT")" ]; then
        tb_die "$ROOT exists and is not empty"
    fi
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd -P)
    touch "$ROOT/$MARKER"
    trap 'rc=$?; [ $rc -eq 0 ] || down; exit $rc' EXIT
    DC=$ROOT/data-center
    TB_EXPECT=$ROOT/.expect
    POOL=$(tb_uuid)
    mkdir -p "$DC/mnt" "$TB_EXPECT"
    : >"$TB_EXPECT/domains"
    : >"$TB_EXPECT/images"
    : >"$ROOT/ids"
    ids_add POOL "$POOL"
    ids_add DATA_CENTER "$DC"

    nfs_domain
    posix_v4_domain
    gluster_domain
    localfs_domain

    # Pool links, as the SPM leaves them; file domains are found under mnt/.
    mkdir -p "$DC/$POOL"
    local dir
    for dir in "$DC"/mnt/*/*/dom_md "$DC"/mnt/glusterSD/*/*/dom_md; do
        dir=${dir%/dom_md}
        ln -s "$dir" "$DC/$POOL/${dir##*/}"
    done
    ln -s "$(. "$ROOT/ids"; echo "$NFS_DIR")" "$DC/$POOL/mastersd"

    tb_expect_write "$ROOT/expected.json" "$DC"
    rm -rf "$TB_EXPECT"
    printf 'export OVAGENT_DATA_CENTER=%q\n' "$DC" >"$ROOT/env"
    trap - EXIT
}

down () {
    [ -d "$ROOT" ] || return 0
    if [ ! -e "$ROOT/$MARKER" ]; then
        tb_die "$ROOT was not made by ${0##*/} up; not removing it"
    fi
    rm -rf "$ROOT"
}

[ $# -ge 2 ] || usage
CMD=$1 ROOT=$2
shift 2
NIMAGES=0
case $CMD in
    up)
        while [ $# -gt 0 ]; do
            case $1 in
                --images)
                    [ $# -ge 2 ] || usage
                    [[ $2 =~ ^[0-9]+$ ]] || tb_die "--images: not a number: $2"
                    NIMAGES=$2
                    shift 2 ;;
                *) usage ;;
            esac
        done
        up ;;
    down)
        [ $# -eq 0 ] || usage
        down ;;
    *) usage ;;
esac
