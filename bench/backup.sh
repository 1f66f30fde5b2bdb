#!/bin/bash
# Benchmark of changed-block-tracking backups of a running VM: `ovagent
# backup` (to /dev/null, into a local repository, pulled through sshd on
# 127.0.0.1 into a local repository, pushed through the same sshd) against
# virtnbdbackup and nbdcopy. Measures only; asserts nothing.
#
#   bench/backup.sh [--quick] [--warm] [--methods ovagent,virtnbdbackup,nbdcopy]
#
# One transient libvirt domain (real libvirtd, KVM when /dev/kvm works) with
# two qcow2 disks in a test-bed file storage domain: vda 4 GiB virtual with
# 1 GiB of random data in 4 MiB extents spread over it, vdb 2 GiB fully
# written. Each method takes a full backup, then the guest writes 64 MiB
# (64 writes of 1 MiB through HMP qemu-io, half on each disk, inside the
# allocated data so the next full moves the same bytes), then an incremental.
#
# Fairness:
# - virtnbdbackup refuses a domain with checkpoints it did not create, and
#   ovagent's incrementals must not see its checkpoints either: it runs on a
#   second domain, started only for its turn, whose disks are sparse copies
#   of the first one's made before any VM ran (same data, same file system,
#   same QEMU configuration), and gets the same guest writes. Its output is
#   its default stream format into a local directory, disks in parallel
#   (its default), no compression.
# - nbdcopy reads the pull-mode export of the first domain started by the
#   same code the agent uses (tests/virt-checkpoint-driver begin-full), both
#   disks one after the other as the agent does, into null:. Its checkpoint is
#   deleted before the agent runs. It has no dirty-bitmap reader, so it is
#   measured for the full only; its row is the read alone, the job's begin
#   and end are timed apart.
# - Page caches are dropped before every timed run (unless --warm).
# - MiB/s is the guest data moved (data_bytes of ovagent's JSON result) over
#   the wall time; the other tools move the same bytes of the same disks.
#
# --quick: 1 GiB disk with 256 MiB of data, 512 MiB full disk, 16 MiB of
# writes: a sanity run of every method in about a minute.
# Needs root, a built tree, libvirtd, qemu-system-x86_64, GNU time, sshd,
# nbdcopy, virtnbdbackup, jq (scripts/setup installs them).
set -euo pipefail

quick=
warm=
methods=ovagent,virtnbdbackup,nbdcopy
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1; shift ;;
        --warm) warm=1; shift ;;
        --methods)
            [ $# -ge 2 ] || { echo "--methods needs a value" >&2; exit 2; }
            methods=$2; shift 2 ;;
        *) echo "usage: ${0##*/} [--quick] [--warm] [--methods ovagent,virtnbdbackup,nbdcopy]" >&2
           exit 2 ;;
    esac
done
want () { [[ ,$methods, == *,$1,* ]]; }

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
driver=$top/tests/virt-checkpoint-driver
bench_requires "libvirtd, sshd, drop_caches" jq qemu-img qemu-io qemu-system-x86_64 virsh \
    libvirtd ssh /usr/sbin/sshd
if want ovagent; then
    bench_requires_ovagent
    "$ovagent" backup --help >/dev/null 2>&1 ||
        { echo "$ovagent has no working backup command" >&2; exit 1; }
fi
if want nbdcopy; then
    command -v nbdcopy >/dev/null 2>&1 || { echo "nbdcopy not found (libnbd-bin)" >&2; exit 1; }
    if [ ! -x "$driver" ]; then
        make -C "$top/tests" virt-checkpoint-driver >/dev/null ||
            { echo "cannot build $driver" >&2; exit 1; }
    fi
fi
if want virtnbdbackup; then
    command -v virtnbdbackup >/dev/null 2>&1 ||
        { echo "virtnbdbackup not found (Debian package virtnbdbackup)" >&2; exit 1; }
fi

if [ -n "$quick" ]; then
    sparse_mib=1024 sparse_data_mib=256 full_mib=512
else
    sparse_mib=4096 sparse_data_mib=1024 full_mib=2048
fi
# Guest writes: 1 MiB at 1 MiB into every 128 MiB of vda (extent starts, so
# allocated) and every 64 MiB of vdb.
writes_a=$(( sparse_mib / 128 ))
writes_b=$(( full_mib / 64 ))
writes_mib=$(( writes_a + writes_b ))

work=$(mktemp -d "${TMPDIR:-/tmp}/ovagent-bench-backup.XXXXXX")
if want ovagent; then
    # The binary measured is a copy: a rebuild during the run cannot change it.
    mkdir -p "$work/bin"
    cp "$ovagent" "$work/bin/ovagent"
    ovagent=$work/bin/ovagent
fi
fd_root=$work/fd
lv_root=$work/libvirt
sshd_dir=$work/sshd
vm_a=ovagent-bench-$$-a
vm_b=ovagent-bench-$$-b
libvirt_up=false
drv_backup=

drv () {
    "$driver" --uri qemu:///system --run-dir "$work/run" --scratch-dir "$work/scratch" \
        --state-dir "$work/drv-state" "$@"
}

cleanup () {
    if [ -n "$drv_backup" ]; then
        drv end "$vm_a" "$drv_backup" >/dev/null 2>&1 || true
    fi
    if $libvirt_up; then
        bash "$tbdir/vm.sh" destroy "$lv_root" "$vm_a" >/dev/null 2>&1 || true
        bash "$tbdir/vm.sh" destroy "$lv_root" "$vm_b" >/dev/null 2>&1 || true
        bash "$tbdir/libvirt.sh" down "$lv_root" >/dev/null 2>&1 || true
    fi
    bash "$tbdir/sshd.sh" down "$sshd_dir" >/dev/null 2>&1 || true
    [ ! -d "$fd_root" ] || bash "$tbdir/filedomain.sh" down "$fd_root" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# own_peak OUTFILE CMD...: CMD's own peak RSS (KiB) into OUTFILE, without its
# children (GNU time counts the largest of them: qemu-nbd, qemu-img), from
# VmHWM sampled every 20 ms (a high-water mark: only the last 20 ms can be
# missed). Returns CMD's exit status.
own_peak () {
    local out=$1 pid rc=0 v peak=0
    shift
    # Explicit: a background command's stdin is otherwise /dev/null.
    "$@" 0<&0 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || true
        [ -z "$v" ] || peak=$v
        sleep 0.02
    done
    wait "$pid" || rc=$?
    echo "$peak" >"$out"
    return $rc
}

ratio () { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }'; }
max_of () { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 > a + 0) ? b : a }'; }
kib_mib () { [ "$1" = - ] && echo - || echo $(( $1 / 1024 )); }
new_uuid () { cat /proc/sys/kernel/random/uuid; }

ROWS_full=()
ROWS_incremental=()
ROWS_restore=()
RATIOS=()
CPU=()
# row KIND METHOD DATA_BYTES WALL RSS_KIB "RECEIVER_OWN_KIB RECEIVER_WITH_CHILDREN_KIB"|-
row () {
    local -n rows=ROWS_$1
    local recv=-
    [ "$6" = - ] || recv="$(kib_mib "${6% *}") / $(kib_mib "${6#* }")"
    rows+=("| $1 | $2 | $(( $3 / MiB )) | $4 | $(mibs "$3" "$4") | $(kib_mib "$5") | $recv |")
}
declare -A WALL DATA RSS

# write_extents IMG FIRST_MIB STRIDE_MIB COUNT: 4 MiB random extents.
write_extents () {
    local img=$1 first=$2 stride=$3 count=$4 i args=()
    for (( i = 0; i < count; i++ )); do
        args+=("$(( (first + i * stride) * MiB ))" 4M)
    done
    bash "$tbdir/snapshot.sh" write "$NFS_DIR" "$img" "file:$work/extent" "${args[@]}"
}

# guest_writes VM ROUND: the guest's 1 MiB writes between full and incremental.
guest_writes () {
    local vm=$1 pat k
    pat=$(printf '0x%02x' $(( (0x30 + $2) % 256 )))
    for (( k = 0; k < writes_a; k++ )); do
        bash "$tbdir/vm.sh" write "$vm" 0 "write -P $pat $(( (k * 128 + 1) * MiB )) $MiB"
    done
    for (( k = 0; k < writes_b; k++ )); do
        bash "$tbdir/vm.sh" write "$vm" 1 "write -P $pat $(( (k * 64 + 1) * MiB )) $MiB"
    done
}

# ---- ovagent --------------------------------------------------------------

# into_receive REPO WHAT CMD...: CMD (a backup to standard output, its
# result the last line of its stderr) piped into receive --repo REPO; sets
# ova_run's t0, t1, json and rrss.
into_receive () {
    local repo=$1 what=$2 rcs
    shift 2
    t0=$(now)
    set +e
    "$@" 2>"$work/sender.err" |
        timed "$work/time.r" bash -c "$(declare -f own_peak); own_peak \"\$@\"" - \
        "$work/own.r" "$ovagent" receive --repo "$repo" --json \
        >"$work/recv.json" 2>"$work/receiver.err"
    rcs=("${PIPESTATUS[@]}")
    set -e
    t1=$(now)
    if [ "${rcs[0]}" -ne 0 ] || [ "${rcs[1]}" -ne 0 ]; then
        fail_run "$what (exit ${rcs[*]})" "$work/sender.err" \
            "$work/recv.json" "$work/receiver.err"
    fi
    tail -n 1 "$work/sender.err" >"$work/result.json"
    json=$work/result.json
    rrss="$(cat "$work/own.r") $(rss_of "$work/time.r")"
}

# ova_run METHOD LEVEL: one timed backup; sets WALL/DATA and appends a row.
ova_run () {
    local method=$1 level=$2 t0 t1 wall json rss rrss=- rcpu
    local label="ovagent backup → $method"
    drop_caches
    case $method in
        /dev/null)
            t0=$(now)
            timed "$work/time.s" "$ovagent" backup "$vm_a" "--$level" --output /dev/null \
                --json >"$work/result.json" 2>"$work/sender.err" ||
                fail_run "$label --$level" "$work/result.json" "$work/sender.err"
            t1=$(now)
            json=$work/result.json
            ;;
        repository)
            into_receive "$work/repo-local" "$label --$level" \
                timed "$work/time.s" "$ovagent" backup "$vm_a" "--$level" --output - --json
            label="ovagent backup --output - \\| receive --repo"
            ;;
        pull)
            into_receive "$work/repo-pull" "$label --$level" \
                ssh -F "$sshd_dir/ssh_config" tbhost "$(remote_backup "$level")"
            label="ssh host ovagent backup --output - \\| receive --repo (pull)"
            ;;
        ssh)
            rm -f "$work/time.remote" "$work/own.remote"
            t0=$(now)
            OVAGENT_SSH_KEY=$SSH_IDENTITY OVAGENT_SSH_KNOWN_HOSTS=$SSH_KNOWN_HOSTS \
                OVAGENT_REMOTE_COMMAND=$work/remote-ovagent \
                timed "$work/time.s" "$ovagent" backup "$vm_a" "--$level" \
                --target "ssh://root@127.0.0.1:$SSHD_PORT$work/repo-ssh" --json \
                >"$work/result.json" 2>"$work/sender.err" ||
                fail_run "$label --$level" "$work/result.json" "$work/sender.err"
            t1=$(now)
            json=$work/result.json
            if [ -s "$work/time.remote" ] && [ -s "$work/own.remote" ]; then
                rrss="$(cat "$work/own.remote") $(rss_of "$work/time.remote")"
            fi
            label="ovagent backup --target ssh://127.0.0.1"
            ;;
    esac
    jq -e '.result == "ok"' "$json" >/dev/null 2>&1 ||
        fail_run "$label --$level: no ok result" "$json" "$work/sender.err"
    wall=$(elapsed "$t0" "$t1")
    rss=$(rss_of "$work/time.s")
    WALL[$method.$level]=$wall
    DATA[$method.$level]=$(jq .data_bytes "$json")
    DATA[$level]=${DATA[$method.$level]}
    OVA_RSS=$(max_of "${OVA_RSS:-}" "$rss")
    [ "$rrss" = - ] || RECV_RSS=$(max_of "${RECV_RSS:-}" "${rrss% *}")
    row "$level" "$label" "${DATA[$method.$level]}" "$wall" "$rss" "$rrss"
    case $method in
        repository|pull) rcpu=$(cpu_of "$work/time.r") ;;
        ssh) rcpu=$( [ -s "$work/time.remote" ] && cpu_of "$work/time.remote" || echo -) ;;
        *) rcpu=- ;;
    esac
    CPU+=("- $level, $label: wall $wall s, CPU s (user + system): sender $(cpu_of "$work/time.s"), receiver $rcpu")
}

bench_ovagent () {
    local method round=0
    export OVAGENT_LIBVIRT_URI=qemu:///system
    export OVAGENT_STATE_DIR=$work/state OVAGENT_RUN_DIR=$work/run
    export OVAGENT_SCRATCH_DIR=$work/scratch
    # The remote side of --target: the same binary, its RSS measured too.
    {
        echo '#!/bin/bash'
        declare -f own_peak
        printf 'exec /usr/bin/time -f "%%e %%M %%U %%S" -o %q bash -c %q - %q %q "$@"\n' \
            "$work/time.remote" "$(declare -f own_peak); own_peak \"\$@\"" \
            "$work/own.remote" "$ovagent"
    } >"$work/remote-ovagent"
    chmod 0755 "$work/remote-ovagent"
    for method in /dev/null repository pull ssh; do
        echo "ovagent backup → $method: full, $writes_mib MiB of guest writes, incremental..."
        ova_run "$method" full
        round=$(( round + 1 ))
        guest_writes "$vm_a" "$round"
        ova_run "$method" incremental
    done
    ova_restore
    rm -rf "$work/repo-local" "$work/repo-ssh" "$work/repo-pull"
}

# remote_backup LEVEL: the command line a pull runs on the host through
# sshd: this shell's OVAGENT_* settings, the sender timed into $work/time.s.
remote_backup () {
    local vars=() v
    for v in $(compgen -e | grep '^OVAGENT_' || true); do
        vars+=("$v=${!v}")
    done
    printf '%q ' /usr/bin/time -f '%e %M %U %S' -o "$work/time.s" env "${vars[@]}" \
        "$ovagent" backup "$vm_a" "--$1" --output - --json
}

# ova_restore: both disks at the latest backup of the local repository.
ova_restore () {
    local t0 img rss=0 n=0
    echo "ovagent restore of both disks at the incremental point (qcow2 files)..."
    mkdir -p "$work/restore-ova"
    drop_caches
    t0=$(now)
    for img in "$img_a" "$img_b"; do
        n=$(( n + 1 ))
        timed "$work/time.rs$n" "$ovagent" restore --repo "$work/repo-local" "$img" \
            --to "$work/restore-ova/$img.qcow2" --format qcow2 --json \
            >"$work/restore.json" 2>"$work/restore.err" ||
            fail_run "ovagent restore $img" "$work/restore.json" "$work/restore.err"
        rss=$(max_of "$rss" "$(rss_of "$work/time.rs$n")")
    done
    sync -f "$work/restore-ova"
    WALL[ova.restore]=$(elapsed "$t0" "$(now)")
    RSS[ova.restore]=$rss
    OVA_RSS=$(max_of "${OVA_RSS:-}" "$rss")
    RESTORE_BYTES=$(du -s -B1 "$work/restore-ova" | cut -f1)
    rm -rf "$work/restore-ova"
}

# ---- virtnbdbackup ----------------------------------------------------------

vnb_run () {
    local level=$1 t0 t1 wall
    drop_caches
    t0=$(now)
    timed "$work/time.v" virtnbdbackup -d "$vm_b" -l "$level" -o "$work/vnb-out" \
        -S "$work/vnb-scratch" -n >"$work/vnb.out" 2>&1 ||
        fail_run "virtnbdbackup -l $level" "$work/vnb.out"
    t1=$(now)
    wall=$(elapsed "$t0" "$t1")
    WALL[vnb.$level]=$wall
    RSS[vnb.$level]=$(rss_of "$work/time.v")
    # virtnbdbackup leaves its files in the page cache; receive fsyncs
    # every file before it commits. Also time it until its data is on disk.
    sync -f "$work/vnb-out"
    WALL[vnb.$level.sync]=$(elapsed "$t0" "$(now)")
}

bench_virtnbdbackup () {
    echo "virtnbdbackup on the copy domain: full, $writes_mib MiB of guest writes, inc..."
    bash "$tbdir/vm.sh" create "$lv_root" "$vm_b" "$work/copy/vda.qcow2" \
        "$work/copy/vdb.qcow2" >/dev/null
    # libvirt creates the scratch files there as root; QEMU opens them.
    mkdir -p "$work/vnb-scratch"
    vnb_run full
    guest_writes "$vm_b" 99
    vnb_run inc
    VNB_OUT_MIB=$(( $(du -s -B1 "$work/vnb-out" | cut -f1) / MiB ))
    vnb_restore
    bash "$tbdir/vm.sh" destroy "$lv_root" "$vm_b" >/dev/null
    rm -rf "$work/vnb-out" "$work/vnb-scratch"
}

# vnb_restore: both disks from virtnbdbackup's full + inc, as qcow2 files.
vnb_restore () {
    local t0
    echo "virtnbdrestore of both disks at the incremental point (qcow2 files)..."
    drop_caches
    t0=$(now)
    timed "$work/time.vr" virtnbdrestore -i "$work/vnb-out" -o "$work/restore-vnb" -n \
        -L "$work/vnbr.log" >"$work/vnbr.out" 2>&1 ||
        fail_run "virtnbdrestore" "$work/vnbr.out" "$work/vnbr.log"
    sync -f "$work/restore-vnb"
    WALL[vnb.restore]=$(elapsed "$t0" "$(now)")
    RSS[vnb.restore]=$(rss_of "$work/time.vr")
    rm -rf "$work/restore-vnb"
}

# ---- the disk's own write speed ----------------------------------------------

# dd_floor BYTES: time to write BYTES to this file system and fsync them.
dd_floor () {
    local bytes=$1 t0 n i
    n=$(( (bytes + 4 * MiB - 1) / (4 * MiB) ))
    echo "dd of $(( n * 4 )) MiB with conv=fsync..."
    drop_caches
    cat "$work/extent" >/dev/null
    t0=$(now)
    for (( i = 0; i < n; i++ )); do cat "$work/extent"; done |
        dd of="$work/dd.out" bs=4M iflag=fullblock conv=fsync status=none
    WALL[dd.full]=$(elapsed "$t0" "$(now)")
    rm -f "$work/dd.out"
}

# ---- nbdcopy ----------------------------------------------------------------

bench_nbdcopy () {
    local cp t0 t1 t2 t3 uri rss=0 read_wall job_wall
    echo "nbdcopy from the pull-mode export (full)..."
    cp=$(new_uuid)
    drop_caches
    t0=$(now)
    drv begin-full "$vm_a" "$cp" >"$work/begin.json" 2>"$work/drv.err" ||
        fail_run "virt-checkpoint-driver begin-full" "$work/drv.err"
    drv_backup=$(jq -r .backup_id "$work/begin.json")
    t1=$(now)
    for uri in $(jq -r '.disks[].uri' "$work/begin.json"); do
        timed "$work/time.c" nbdcopy "$uri" null: 2>"$work/nbdcopy.err" ||
            fail_run "nbdcopy $uri null:" "$work/nbdcopy.err"
        [ "$(rss_of "$work/time.c")" -le "$rss" ] || rss=$(rss_of "$work/time.c")
    done
    t2=$(now)
    drv end "$vm_a" "$drv_backup" >/dev/null 2>"$work/drv.err" ||
        fail_run "virt-checkpoint-driver end" "$work/drv.err"
    drv_backup=
    t3=$(now)
    # The agent's checkpoints must start from a clean domain.
    drv delete "$vm_a" "$cp" >/dev/null 2>"$work/drv.err" ||
        fail_run "virt-checkpoint-driver delete" "$work/drv.err"
    read_wall=$(elapsed "$t1" "$t2")
    job_wall=$(awk -v a="$(elapsed "$t0" "$t1")" -v b="$(elapsed "$t2" "$t3")" \
        'BEGIN { printf "%.2f", a + b }')
    WALL[nbdcopy.full]=$read_wall
    NBDCOPY_RSS=$rss
    NBDCOPY_JOB=$job_wall
}

# ---- the disks and the domain -----------------------------------------------

head -c $((4 * MiB)) /dev/urandom >"$work/extent"
echo "building the disks: vda $sparse_mib MiB with $sparse_data_mib MiB of data, vdb $full_mib MiB full..."
bench_filedomain_up
mkdir -p "$work/state" "$work/run" "$work/scratch" "$work/drv-state" "$work/copy"
read -r img_a vol_a < <(bash "$tbdir/snapshot.sh" disk "$NFS_DIR" "${sparse_mib}M")
write_extents "$img_a" 0 16 $(( sparse_data_mib / 4 ))
read -r img_b vol_b < <(bash "$tbdir/snapshot.sh" disk "$NFS_DIR" "${full_mib}M")
write_extents "$img_b" 0 4 $(( full_mib / 4 ))
disk_a=$NFS_DIR/images/$img_a/$vol_a
disk_b=$NFS_DIR/images/$img_b/$vol_b
if want virtnbdbackup; then
    cp --sparse=always "$disk_a" "$work/copy/vda.qcow2"
    cp --sparse=always "$disk_b" "$work/copy/vdb.qcow2"
fi

echo "starting libvirtd (unless running) and the domain..."
libvirt_up=true
bash "$tbdir/libvirt.sh" up "$lv_root"
bash "$tbdir/vm.sh" create "$lv_root" "$vm_a" "$disk_a" "$disk_b" >/dev/null
virt_type=$(sed -n "s/^<domain type='\([a-z]*\)'>.*/\1/p" "$lv_root/vm-$vm_a.xml")

if want nbdcopy; then
    bench_nbdcopy
fi
if want ovagent; then
    echo "starting sshd on 127.0.0.1..."
    bash "$tbdir/sshd.sh" up "$sshd_dir" >/dev/null
    # shellcheck disable=SC1091
    . "$sshd_dir/sshd.env"
    bench_ovagent
fi
if want virtnbdbackup; then
    bench_virtnbdbackup
fi

# ---- the report ---------------------------------------------------------------

full_bytes=${DATA[full]:-$(( (sparse_data_mib + full_mib) * MiB ))}
inc_bytes=${DATA[incremental]:-$(( writes_mib * MiB ))}
dd_floor "$full_bytes"
row full "dd conv=fsync of as many bytes (disk write floor)" "$full_bytes" "${WALL[dd.full]}" - -
if want nbdcopy; then
    row full "nbdcopy URI null: (read only, both disks)" "$full_bytes" "${WALL[nbdcopy.full]}" \
        "$NBDCOPY_RSS" -
fi
if want virtnbdbackup; then
    row full "virtnbdbackup -l full -o DIR" "$full_bytes" "${WALL[vnb.full]}" "${RSS[vnb.full]}" -
    row full "virtnbdbackup -l full -o DIR, then sync -f DIR" "$full_bytes" "${WALL[vnb.full.sync]}" "${RSS[vnb.full]}" -
    row incremental "virtnbdbackup -l inc -o DIR" "$inc_bytes" "${WALL[vnb.inc]}" "${RSS[vnb.inc]}" -
    row incremental "virtnbdbackup -l inc -o DIR, then sync -f DIR" "$inc_bytes" "${WALL[vnb.inc.sync]}" "${RSS[vnb.inc]}" -
    row restore "virtnbdrestore -i DIR -o DIR, then sync -f DIR (both disks)" "$full_bytes" "${WALL[vnb.restore]}" "${RSS[vnb.restore]}" -
fi
if want ovagent; then
    row restore "ovagent restore --to FILE --format qcow2, then sync -f (both disks)" "$full_bytes" "${WALL[ova.restore]}" "${RSS[ova.restore]}" -
fi

if want ovagent && want virtnbdbackup; then
    for m in /dev/null repository; do
        RATIOS+=("- full: virtnbdbackup time / ovagent → $m time: $(ratio "${WALL[vnb.full]}" "${WALL[$m.full]}")× (goal ≥ 2)")
        RATIOS+=("- incremental: virtnbdbackup time / ovagent → $m time: $(ratio "${WALL[vnb.inc]}" "${WALL[$m.incremental]}")× (goal ≥ 2)")
    done
    RATIOS+=("- full: virtnbdbackup + sync time / ovagent → repository time (both durable): $(ratio "${WALL[vnb.full.sync]}" "${WALL[repository.full]}")× (goal ≥ 1.5)")
    RATIOS+=("- incremental: virtnbdbackup + sync time / ovagent → repository time (both durable): $(ratio "${WALL[vnb.inc.sync]}" "${WALL[repository.incremental]}")× (goal ≥ 2)")
    RATIOS+=("- restore: virtnbdrestore time / ovagent restore time (both synced): $(ratio "${WALL[vnb.restore]}" "${WALL[ova.restore]}")× (goal ≥ 2)")
fi
if want ovagent; then
    RATIOS+=("- push vs pull through the same sshd: pull time / --target time: full $(ratio "${WALL[pull.full]}" "${WALL[ssh.full]}")×, incremental $(ratio "${WALL[pull.incremental]}" "${WALL[ssh.incremental]}")× (goal ≥ 1: the push at least as fast)")
fi
if want ovagent && want nbdcopy; then
    floor=$(awk -v a="${WALL[nbdcopy.full]}" -v b="${WALL[dd.full]}" 'BEGIN { print (a > b) ? a : b }')
    RATIOS+=("- full: ovagent → repository time / floor (the larger of nbdcopy's read, ${WALL[nbdcopy.full]} s, and dd conv=fsync, ${WALL[dd.full]} s): $(ratio "${WALL[repository.full]}" "$floor") (goal ≤ 1.3)")
fi
if want ovagent && want nbdcopy; then
    RATIOS+=("- full: ovagent → /dev/null time / nbdcopy read time: $(ratio "${WALL[/dev/null.full]}" "${WALL[nbdcopy.full]}") (goal ≤ 1.10)")
    RATIOS+=("- full: ovagent → /dev/null time / nbdcopy time with the job's begin and end ($NBDCOPY_JOB s): $(ratio "${WALL[/dev/null.full]}" "$(awk -v a="${WALL[nbdcopy.full]}" -v b="$NBDCOPY_JOB" 'BEGIN { print a + b }')") (goal ≤ 1.10)")
fi
if want ovagent; then
    RATIOS+=("- peak RSS of ovagent backup: $(kib_mib "$OVA_RSS") MiB, of receive itself: $(kib_mib "${RECV_RSS:--}") MiB (goal < 64 MiB)")
fi
if want virtnbdbackup; then
    RATIOS+=("- virtnbdbackup wrote $VNB_OUT_MIB MiB into its directory (full + inc)")
fi

echo
echo "| backup | method | data MiB | wall s | MiB/s | peak RSS MiB | receiver RSS MiB (own / with child) |"
echo "|---|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS_full[@]}" "${ROWS_incremental[@]}" "${ROWS_restore[@]}"
echo
printf '%s\n' "${RATIOS[@]}"
[ "${#CPU[@]}" -eq 0 ] || { echo; printf '%s\n' "${CPU[@]}"; }
echo
echo "(vda ${sparse_mib} MiB with ${sparse_data_mib} MiB of data, vdb ${full_mib} MiB full," \
    "${writes_mib} MiB of guest writes before each incremental; domain type $virt_type;" \
    "page cache $([ -n "$warm" ] && echo warm || echo "dropped before each timed run");" \
    "$(nproc) CPUs; $(uname -r); $(virtnbdbackup --version 2>/dev/null | sed 's/^/virtnbdbackup /' || true);" \
    "$(nbdcopy --version 2>/dev/null | head -n 1); one run each;" \
    "peak RSS as GNU time reports it (the process or its largest child);" \
    "receiver RSS: receive itself / with its largest child (qemu-nbd, qemu-img))"
