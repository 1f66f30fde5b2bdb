#!/bin/bash
# Benchmark of chain export: `export-chain | receive` through sshd on
# 127.0.0.1, plain and through a key whose forced command is `ovagent serve
# --role host`, against `ssh cat` of each volume, the SSH channel's own limit
# and local reads, on a file and a block domain. Measures only; asserts
# nothing.
#
#   bench/export-chain.sh [--warm] [--domains file,block] [--disk random|realistic]
#
# The disk (--disk random, the default): 4 GiB virtual, three qcow2 volumes
# holding 1 GiB of guest data written in 4 MiB extents spread over the disk
# (base 512 MiB, each snapshot 256 MiB) of random bytes. --disk realistic
# (file domain only): a sparse raw base volume (as oVirt makes a thin disk
# on a file domain) holding an ext4 file system with about 700 MiB of this
# machine's /usr/share, then two engine-like snapshots whose qcow2 leaves
# hold what a guest changes: about 300 MiB of /usr/lib/x86_64-linux-gnu
# copied in and files deleted, then 200 MiB more from /usr/lib/python3 and
# /usr/include and some files rewritten (their lines in reverse order).
# Each leaf is made by qemu-img rebase from the file system's raw image, so
# it holds exactly the clusters that changed. Page caches are dropped before every
# timed run unless --warm. The local sender writes to `--output -` redirected to
# /dev/null: --output FILE never overwrites an existing file.
# Needs root, a built tree, GNU time (/usr/bin/time), sshd, qemu-img, jq.
set -euo pipefail

warm=
domains=file,block
disk=random
while [ $# -gt 0 ]; do
    case $1 in
        --warm) warm=1; shift ;;
        --domains)
            [ $# -ge 2 ] || { echo "--domains needs a value" >&2; exit 2; }
            domains=$2; shift 2 ;;
        --disk)
            [ $# -ge 2 ] && [[ $2 == random || $2 == realistic ]] ||
                { echo "--disk needs random or realistic" >&2; exit 2; }
            disk=$2; shift 2 ;;
        *) echo "usage: ${0##*/} [--warm] [--domains file,block] [--disk random|realistic]" >&2
           exit 2 ;;
    esac
done
if [ "$disk" = realistic ]; then
    domains=file
fi

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_requires_ovagent
bench_requires "test-bed domains, sshd, drop_caches" jq qemu-img qemu-io ssh /usr/sbin/sshd python3

work=$(mktemp -d "${TMPDIR:-/tmp}/ovagent-bench.XXXXXX")
fd_root=$work/fd
bd_root=$work/bd
sshd_dir=$work/sshd
# LVs this script activated (block domain), deactivated again at exit.
activated=()

deactivate_ours () {
    local lv
    for lv in "${activated[@]}"; do
        "$OVAGENT_LVM_COMMAND" lvchange --devices "$OVAGENT_LVM_DEVICES" \
            --available n "$lv" >/dev/null 2>&1 || true
    done
    activated=()
}

audit_pid=
# The realistic disk's file system while it is mounted ($work/mnt).
fs_mnt=

cleanup () {
    # (mounted in a subshell: looked for, not remembered)
    ! mountpoint -q "$work/mnt" 2>/dev/null || umount "$work/mnt" || true
    deactivate_ours
    [ -z "$audit_pid" ] || kill "$audit_pid" 2>/dev/null || true
    bash "$tbdir/sshd.sh" down "$sshd_dir" >/dev/null 2>&1 || true
    [ ! -d "$fd_root" ] || bash "$tbdir/filedomain.sh" down "$fd_root" >/dev/null 2>&1 || true
    [ ! -d "$bd_root" ] || bash "$tbdir/blockdomain.sh" down "$bd_root" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ratio () { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# The remote ovagent command line with this shell's OVAGENT_* settings.
remote_ovagent () {
    local vars=() v
    for v in $(compgen -e | grep '^OVAGENT_' || true); do
        vars+=("$v=${!v}")
    done
    printf '%q ' /usr/bin/time -f '%e %M %U %S' -o "$work/time.sender" env "${vars[@]}" "$ovagent" "$@"
}

# serve_setup: a second client key, allowed only `ovagent serve --role host`
# with $work/serve.conf (the sender's GNU time around it), reached as
# tbserve; serve's audit lines go to a receiver on $work/audit.sock.
serve_setup () {
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    sys.stdout.write(s.recv(65536).decode("utf-8", "replace") + "\n")
    sys.stdout.flush()
' "$work/audit.sock" >"$work/audit.log" 2>&1 &
    audit_pid=$!
    ssh-keygen -q -t ed25519 -N '' -C ovagent-bench-serve -f "$work/servekey"
    printf 'restrict,command="/usr/bin/time -f %s -o %s %s --config %s serve --role host" %s\n' \
        "'%e %M'" "$work/time.sender" "$ovagent" "$work/serve.conf" \
        "$(cut -d' ' -f1,2 "$work/servekey.pub")" >>"$sshd_dir/authorized_keys"
    sed -e 's/^Host tbhost/Host tbserve/' -e "s|IdentityFile .*|IdentityFile $work/servekey|" \
        "$sshd_dir/ssh_config" >"$work/serve_ssh_config"
    local i
    for (( i = 0; i < 100; i++ )); do
        [ -S "$work/audit.sock" ] && return 0
        sleep 0.05
    done
    echo "the audit receiver did not start" >&2
    exit 1
}

# serve_conf_from_env: serve ignores the environment, so this shell's
# OVAGENT_* settings become its configuration file.
serve_conf_from_env () {
    local k v
    {
        echo '[ovagent]'
        echo 'syslog = false'
        echo "audit_socket = $work/audit.sock"
        for k in data_center lvm_devices lvm_command run_dir state_dir libvirt_uri scratch_dir; do
            v=OVAGENT_${k^^}
            [ -z "${!v+set}" ] || echo "$k = ${!v}"
        done
    } >"$work/serve.conf"
}

# pull NAME SSH_CONFIG HOST COMMAND: ssh HOST COMMAND (a stream on its
# standard output) into receive, caches dropped first; its row added (bench_domain's
# kind and repo); WALL, MOVED and the peak RSS (KiB) RSS_S and RSS_R set.
pull () {
    local name=$1 config=$2 host=$3 cmd=$4 rcs t0 t1
    rm -rf "$repo"
    drop_caches
    t0=$(now)
    set +e
    ssh -F "$config" "$host" "$cmd" 2>"$work/sender.err" |
        timed "$work/time.receiver" "$ovagent" receive --repo "$repo" --json \
        >"$work/recv.json" 2>"$work/receiver.err"
    rcs=("${PIPESTATUS[@]}")
    set -e
    t1=$(now)
    if [ "${rcs[0]}" -ne 0 ] || [ "${rcs[1]}" -ne 0 ]; then
        echo "$name: export-chain exited ${rcs[0]}, receive ${rcs[1]}" >&2
        cat "$work/sender.err" "$work/recv.json" "$work/receiver.err" >&2
        exit 1
    fi
    WALL=$(elapsed "$t0" "$t1")
    MOVED=$(jq .bytes_received "$work/recv.json")
    RSS_S=$(rss_of "$work/time.sender")
    RSS_R=$(rss_of "$work/time.receiver")
    row "$kind" "$name" "$(( MOVED / MiB ))" "$WALL" "$(mibs "$MOVED" "$WALL")" \
        "$(wall_of "$work/time.sender")" "$(( RSS_S / 1024 ))" \
        "$(wall_of "$work/time.receiver")" "$(( RSS_R / 1024 ))"
    rm -rf "$repo"
}

# push NAME: export-chain --target ssh:// through the same sshd into a
# receive it starts (the crypto in the sender's libssh and in sshd), caches
# dropped first; its row added; WALL and the CPU seconds CPU_S and CPU_R set.
push () {
    local name=$1 t0 t1 v vars=()
    rm -rf "$repo"
    for v in $(compgen -e | grep '^OVAGENT_' || true); do
        vars+=("$v=${!v}")
    done
    printf '#!/bin/bash\nexec %s "$@"\n' \
        "$(printf '%q ' /usr/bin/time -f '%e %M %U %S' -o "$work/time.receiver" env "${vars[@]}" "$ovagent")" \
        >"$work/remote-ovagent"
    chmod 0755 "$work/remote-ovagent"
    # shellcheck disable=SC1091
    . "$sshd_dir/sshd.env"
    drop_caches
    t0=$(now)
    OVAGENT_SSH_KEY=$SSH_IDENTITY OVAGENT_SSH_KNOWN_HOSTS=$SSH_KNOWN_HOSTS \
        OVAGENT_REMOTE_COMMAND=$work/remote-ovagent \
        timed "$work/time.sender" "$ovagent" export-chain "$IMG" --progress=none \
        --target "ssh://root@127.0.0.1:$SSHD_PORT$repo" --json \
        >"$work/push.json" 2>"$work/sender.err" || {
        echo "$name failed" >&2
        cat "$work/push.json" "$work/sender.err" >&2
        exit 1
    }
    t1=$(now)
    WALL=$(elapsed "$t0" "$t1")
    local moved
    moved=$(jq .bytes_sent "$work/push.json")
    CPU_S=$(cpu_of "$work/time.sender") CPU_R=$(cpu_of "$work/time.receiver")
    row "$kind" "$name" "$(( moved / MiB ))" "$WALL" "$(mibs "$moved" "$WALL")" \
        "$(wall_of "$work/time.sender")" "$(( $(rss_of "$work/time.sender") / 1024 ))" \
        "$(wall_of "$work/time.receiver")" "$(( $(rss_of "$work/time.receiver") / 1024 ))"
    rm -rf "$repo"
}

ROWS=()
# row DOMAIN METHOD MIB WALL MIB/S SENDER_S SENDER_RSS RECV_S RECV_RSS
FMT='%-6s %-40s %9s %7s %7s %8s %8s %8s %8s'
row () {
    # shellcheck disable=SC2059
    ROWS+=("$(printf "$FMT" "$@")")
}

# write_extents DOMAIN IMG PATTERN FIRST_MIB STRIDE_MIB COUNT [SNAP_OPTS...]
write_extents () {
    local dom=$1 img=$2 pat=$3 first=$4 stride=$5 count=$6 i args=()
    shift 6
    for (( i = 0; i < count; i++ )); do
        args+=("$(( (first + i * stride) * MiB ))" 4M)
    done
    bash "$tbdir/snapshot.sh" write "$dom" "$img" "$pat" "${args[@]}" "$@"
}

# make_disk DOMAIN SNAP_OPTS...: the 4 GiB, 3-volume, 1 GiB-of-data disk;
# sets IMG and VOLS (base first).
make_disk () {
    local dom=$1 base s1 s2
    shift
    read -r IMG base < <(bash "$tbdir/snapshot.sh" disk "$dom" 4G --lv-size 640 "$@")
    write_extents "$dom" "$IMG" "file:$work/extent1" 0 32 128 "$@"      # 512 MiB
    s1=$(bash "$tbdir/snapshot.sh" create "$dom" "$IMG" --lv-size 384 "$@")
    write_extents "$dom" "$IMG" "file:$work/extent2" 16 64 64 "$@"      # 256 MiB
    s2=$(bash "$tbdir/snapshot.sh" create "$dom" "$IMG" --lv-size 384 "$@")
    write_extents "$dom" "$IMG" "file:$work/extent3" 8 64 64 "$@"       # 256 MiB
    VOLS=("$base" "$s1" "$s2")
}

# copy_some BUDGET_MIB DIR...: copy top-level entries of each DIR (in name
# order) into the mounted file system until BUDGET_MIB is reached.
copy_some () {
    local budget=$1 total=0 e mib
    shift
    while read -r e; do
        mib=$(du -sm "$e" 2>/dev/null | cut -f1) || continue
        [ $(( total + mib )) -le "$budget" ] || continue
        mkdir -p "$fs_mnt/$(dirname "$e")"
        cp -a "$e" "$fs_mnt/$(dirname "$e")/" 2>/dev/null || true
        total=$(( total + mib ))
    done < <(find "$@" -mindepth 1 -maxdepth 1 | LC_ALL=C sort)
}

# leaf_from_fs DIR LEAF PARENT PARENT_FMT: LEAF (a qcow2 over PARENT) made
# to hold exactly the clusters in which the file system's raw image differs
# from what PARENT shows: an overlay of the image, rebased onto PARENT.
leaf_from_fs () {
    local dir=$1 leaf=$2 parent=$3 pfmt=$4
    (
        cd "$dir"
        qemu-img create -q -f qcow2 -o compat=1.1 -b "$work/fs.raw" -F raw "$leaf.new"
        qemu-img rebase -q -f qcow2 -b "$parent" -F "$pfmt" "$leaf.new"
        chown --reference="$leaf" "$leaf.new"
        chmod --reference="$leaf" "$leaf.new"
        mv "$leaf.new" "$leaf"
    )
}

# fs_mount / fs_umount: the realistic disk's file system image.
fs_mount () { mount -o loop "$work/fs.raw" "$work/mnt"; fs_mnt=$work/mnt; }
fs_umount () { umount "$fs_mnt"; fs_mnt=; }

# make_realistic_disk DOMAIN: a raw base with an ext4 file system holding
# real files, two snapshots of real changes (see the head of this file);
# sets IMG and VOLS (base first). File domains only.
make_realistic_disk () {
    local dom=$1 base s1 s2 dir
    read -r IMG base < <(bash "$tbdir/snapshot.sh" disk "$dom" 4G --raw)
    dir=$dom/images/$IMG
    truncate -s 4G "$work/fs.raw"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$work/fs.raw"
    mkdir -p "$work/mnt"
    fs_mount
    copy_some 700 /usr/share
    fs_umount
    dd if="$work/fs.raw" of="$dir/$base" bs=1M conv=sparse,notrunc status=none
    sync -f "$dir/$base"

    s1=$(bash "$tbdir/snapshot.sh" create "$dom" "$IMG")
    fs_mount
    copy_some 300 /usr/lib/x86_64-linux-gnu
    find "$fs_mnt/usr/share" -type f -size +64k | LC_ALL=C sort | awk 'NR % 3 == 0' |
        head -n 2000 | xargs -r rm -f
    fs_umount
    leaf_from_fs "$dir" "$s1" "$base" raw

    s2=$(bash "$tbdir/snapshot.sh" create "$dom" "$IMG")
    fs_mount
    copy_some 200 /usr/lib/python3 /usr/include
    find "$fs_mnt/usr/share" -type f -size +16k | LC_ALL=C sort | awk 'NR % 7 == 0' |
        head -n 1000 | while read -r f; do
            tac "$f" >"$f.new" && mv "$f.new" "$f"
        done
    fs_umount
    leaf_from_fs "$dir" "$s2" "$s1" qcow2
    rm -f "$work/fs.raw"
    VOLS=("$base" "$s1" "$s2")
}

# bench_domain KIND DOMAIN PATH_PREFIX: every measurement on one disk.
bench_domain () {
    local kind=$1 prefix=$3 v paths=() vol_bytes=0 t0 t1
    local repo=$work/repo-$kind
    for v in "${VOLS[@]}"; do
        paths+=("$prefix/$v")
    done
    if [ "$kind" = block ]; then
        for v in "${VOLS[@]}"; do
            if [ ! -e "/dev/$SD/$v" ]; then
                "$OVAGENT_LVM_COMMAND" lvchange --devices "$OVAGENT_LVM_DEVICES" \
                    --available y "$SD/$v" >/dev/null
                activated+=("$SD/$v")
            fi
        done
    fi
    for v in "${paths[@]}"; do
        if [ -b "$v" ] || [ -b "$(readlink -f "$v")" ]; then
            vol_bytes=$(( vol_bytes + $(blockdev --getsize64 "$(readlink -f "$v")") ))
        else
            vol_bytes=$(( vol_bytes + $(stat -c %s "$v") ))
        fi
    done
    # The sender activates LVs itself: give it the domain as it finds it.
    [ "$kind" != block ] || deactivate_ours

    # (a) pull through sshd into receive.
    local modes=("") names=("ovagent pull: ssh export-chain | receive")
    if "$ovagent" export-chain --help 2>/dev/null | grep -q -- '--compress'; then
        modes+=("--compress=3")
        names+=("ovagent pull, --compress=3")
    fi
    local i ova_wall='' ova_moved='' ova_rss='' zwall='' pull_cpu=''
    for i in "${!modes[@]}"; do
        # shellcheck disable=SC2086
        pull "${names[$i]}" "$sshd_dir/ssh_config" tbhost \
            "$(remote_ovagent export-chain "$IMG" ${modes[$i]} --progress=none --output -)"
        if [ -z "$ova_wall" ]; then
            ova_wall=$WALL ova_moved=$MOVED
            pull_cpu="sender $(cpu_of "$work/time.sender"), receiver $(cpu_of "$work/time.receiver")"
            ova_rss="sender $(( RSS_S / 1024 )) MiB, receiver $(( RSS_R / 1024 )) MiB"
        else
            zwall=$WALL
        fi
    done

    # (a'') the same chain pushed: export-chain --target, libssh in the sender.
    push "ovagent push: export-chain --target ssh://"
    local push_wall=$WALL push_cpu="sender $CPU_S, receiver $CPU_R"

    # (a') the first pull again, through the serve key (same sshd, same data).
    serve_conf_from_env
    pull "ovagent pull through a serve key" "$work/serve_ssh_config" tbserve \
        "ovagent export-chain $IMG --progress=none --output -"
    local serve_wall=$WALL

    # (b) ssh cat of every volume into a file, synced: what this mode replaces.
    if [ "$kind" = block ]; then
        # What the test bed's emulated activation costs, for reading the
        # sender's times: one activation and one deactivation per LV.
        t0=$(now)
        for v in "${VOLS[@]}"; do
            if [ ! -e "/dev/$SD/$v" ]; then
                "$OVAGENT_LVM_COMMAND" lvchange --devices "$OVAGENT_LVM_DEVICES" \
                    --available y "$SD/$v" >/dev/null
                activated+=("$SD/$v")
            fi
        done
        t1=$(now)
        RATIOS+=("$kind: activating the ${#VOLS[@]} LVs through $(basename "$OVAGENT_LVM_COMMAND") took $(elapsed "$t0" "$t1") s (deactivating them about as much): part of the sender's time")
    fi
    drop_caches
    t0=$(now)
    for v in "${paths[@]}"; do
        ssh -F "$sshd_dir/ssh_config" tbhost "cat $(printf '%q' "$v")" >"$work/copy"
        sync -f "$work/copy"
        rm -f "$work/copy"
    done
    t1=$(now)
    local cat_wall
    cat_wall=$(elapsed "$t0" "$t1")
    row "$kind" "ssh cat of each volume >file; sync" "$(( vol_bytes / MiB ))" "$cat_wall" \
        "$(mibs "$vol_bytes" "$cat_wall")" - - - -

    # (c) the SSH channel's limit on the bytes (a) moved.
    t0=$(now)
    ssh -F "$sshd_dir/ssh_config" tbhost "head -c $ova_moved /dev/zero" >/dev/null
    t1=$(now)
    local chan_wall
    chan_wall=$(elapsed "$t0" "$t1")
    row "$kind" "ssh channel: head -c N /dev/zero" "$(( ova_moved / MiB ))" "$chan_wall" \
        "$(mibs "$ova_moved" "$chan_wall")" - - - -

    # (d) local reads.
    drop_caches
    t0=$(now)
    cat "${paths[@]}" >/dev/null
    t1=$(now)
    local lcat_wall
    lcat_wall=$(elapsed "$t0" "$t1")
    [ "$kind" != block ] || deactivate_ours
    drop_caches
    timed "$work/time.local" "$ovagent" export-chain "$IMG" --progress=none --output - \
        2>"$work/sender.err" >/dev/null
    local lova_wall
    lova_wall=$(wall_of "$work/time.local")
    row "$kind" "local: export-chain --output - >/dev/null" "$(( ova_moved / MiB ))" "$lova_wall" \
        "$(mibs "$ova_moved" "$lova_wall")" "$lova_wall" "$(( $(rss_of "$work/time.local") / 1024 ))" - -
    row "$kind" "local: cat of the volumes >/dev/null" "$(( vol_bytes / MiB ))" "$lcat_wall" \
        "$(mibs "$vol_bytes" "$lcat_wall")" - - - -

    # The receiver alone: the stream from a file (on the page cache).
    "$ovagent" export-chain "$IMG" --progress=none --output "$work/local.stream" \
        2>"$work/sender.err" >/dev/null
    rm -rf "$repo"
    timed "$work/time.receiver" "$ovagent" receive --repo "$repo" --json \
        <"$work/local.stream" >/dev/null 2>"$work/receiver.err"
    local lrecv_wall
    lrecv_wall=$(wall_of "$work/time.receiver")
    row "$kind" "local: receive < stream file" "$(( ova_moved / MiB ))" "$lrecv_wall" \
        "$(mibs "$ova_moved" "$lrecv_wall")" - - "$lrecv_wall" "$(( $(rss_of "$work/time.receiver") / 1024 ))"
    rm -rf "$repo" "$work/local.stream"
    [ "$kind" != block ] || deactivate_ours

    RATIOS+=("$kind: pull throughput / channel limit on the bytes moved: $(ratio "$chan_wall" "$ova_wall") (goal >= 0.90)")
    RATIOS+=("$kind: pull throughput through a serve key / plain pull: $(ratio "$ova_wall" "$serve_wall") (same data, same sshd)")
    RATIOS+=("$kind: ssh cat time / pull time: $(ratio "$cat_wall" "$ova_wall")x (volumes hold $(( vol_bytes / MiB )) MiB, the stream $(( ova_moved / MiB )) MiB; goal >= 1.0 on random data)")
    [ -z "$zwall" ] ||
        RATIOS+=("$kind: ssh cat time / pull time with --compress=3: $(ratio "$cat_wall" "$zwall")x (goal >= 1.3 on a realistic disk)")
    RATIOS+=("$kind: local cat time / local export-chain time: $(ratio "$lcat_wall" "$lova_wall")x")
    RATIOS+=("$kind: peak RSS of the pull: $ova_rss (goal < 64 MiB)")
    RATIOS+=("$kind: push time / pull time: $(ratio "$push_wall" "$ova_wall") (goal <= 1.0); CPU s (user + system) of the pull: $pull_cpu; of the push: $push_cpu (ssh and sshd not counted)")
}

RATIOS=()
# Guest data: random, so that compression has nothing easy to gain.
for i in 1 2 3; do
    head -c $((4 * MiB)) /dev/urandom >"$work/extent$i"
done
echo "starting sshd on 127.0.0.1..."
bash "$tbdir/sshd.sh" up "$sshd_dir" >/dev/null
serve_setup

if [[ ,$domains, == *,file,* ]]; then
    echo "building the file domain disk (4 GiB, 3 volumes, $disk data)..."
    (
        bench_filedomain_up
        export OVAGENT_STATE_DIR=$work/state OVAGENT_RUN_DIR=$work/run
        export OVAGENT_LIBVIRT_URI=test:///default
        mkdir -p "$OVAGENT_STATE_DIR" "$OVAGENT_RUN_DIR"
        if [ "$disk" = realistic ]; then
            make_realistic_disk "$NFS_DIR"
        else
            make_disk "$NFS_DIR"
        fi
        bench_domain file "$NFS_DIR" "$NFS_DIR/images/$IMG"
        printf '%s\n' "${ROWS[@]}" >"$work/rows.file"
        printf '%s\n' "${RATIOS[@]}" >"$work/ratios.file"
    )
fi
if [[ ,$domains, == *,block,* ]]; then
    echo "building the block domain disk (4 GiB, 3 qcow2 LVs, 1 GiB of data)..."
    bash "$tbdir/blockdomain.sh" up "$bd_root" >/dev/null
    (
        # shellcheck disable=SC1091
        . "$bd_root/ids"
        # shellcheck disable=SC1091
        . "$bd_root/env"
        export OVAGENT_LIBVIRT_URI=test:///default
        trap deactivate_ours EXIT
        make_disk "$SD" --block-env "$bd_root/env"
        bench_domain block "$SD" "/dev/$SD"
        printf '%s\n' "${ROWS[@]}" >"$work/rows.block"
        printf '%s\n' "${RATIOS[@]}" >"$work/ratios.block"
    )
fi

echo
# shellcheck disable=SC2059
printf "$FMT\n" domain method 'MiB moved' 'wall s' 'MiB/s' 'sender' 'sender' 'receiver' 'receiver'
# shellcheck disable=SC2059
printf "$FMT\n" '' '' '' '' '' 'wall s' 'RSS MiB' 'wall s' 'RSS MiB'
cat "$work/rows.file" "$work/rows.block" 2>/dev/null || true
echo
cat "$work/ratios.file" "$work/ratios.block" 2>/dev/null || true
echo
if [ -n "$warm" ]; then
    echo "(warm page cache; $(nproc) CPUs; $(uname -r); one run each)"
else
    echo "(page cache dropped before each timed run; $(nproc) CPUs; $(uname -r); one run each; --disk $disk)"
fi
