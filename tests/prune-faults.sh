#!/bin/bash
# prune killed at every step, and stopped by a full file system: a
# repository of chain exports (a qcow2 disk with an old chain and three
# merges stacked in its newest chain, a disk with a raw full merged into
# the backup kept on it), the disk being pruned copied afresh for each kill
# point; the prune is killed with SIGKILL (its whole process group) once
# its journal holds K lines, for K = 1, 2, ... until it finishes first.
# After each kill verify passes, every backup the manifest lists as a point
# restores to its bytes of before, and the next prune finishes the work.
# Then a merge that does not fit: exit 8, nothing lost, and the prune after
# room is made finishes.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

requires_root
requires_core qemu-img
requires_core qemu-io
requires_core jq
requires_core xxh128sum
requires_core setsid
requires_core losetup
requires_core mkfs.ext4
command -v ovagent >/dev/null || fail "ovagent not built"

start_filedomain
agent_env
R=$TESTDIR/repo
declare -A DIG=()   # backup id -> xxh128 of the disk it restores

# digest REPO IMG ID: DG, the xxh128 of backup ID of IMG restored as raw.
digest () {
    local out=$TESTDIR/restored.raw
    expect_exit 0 ovagent restore --repo "$1" "$2" --backup "$3" --to "$out"
    DG=$(xxh128sum <"$out")
    DG=${DG%% *}
    rm "$out"
}

# backup REPO IMG [--since VOL]: export-chain | receive; the new backup's
# id in ID, its digest (the disk's now) in DIG.
backup () {
    local repo=$1 img=$2 rcs want
    shift 2
    set +e
    ovagent export-chain "$img" "$@" --output - 2>"$TESTDIR/export.err" |
        ovagent receive --repo "$repo" --json >"$TESTDIR/recv.json" 2>"$TESTDIR/recv.err"
    rcs=("${PIPESTATUS[@]}")
    set -e
    [ "${rcs[0]}" -eq 0 ] && [ "${rcs[1]}" -eq 0 ] || {
        cat "$TESTDIR/export.err" "$TESTDIR/recv.json" "$TESTDIR/recv.err" >&2
        fail "$img: export-chain $* exited ${rcs[0]}, receive ${rcs[1]}"
    }
    ID=$(jq -r .backup_id "$TESTDIR/recv.json")
    snapshot.sh convert "$NFS_DIR" "$img" "$TESTDIR/source.raw"
    want=$(xxh128sum <"$TESTDIR/source.raw")
    rm -f "$TESTDIR/source.raw"
    digest "$repo" "$img" "$ID"
    [ "$DG" = "${want%% *}" ] || fail "backup $ID of $img does not restore to the disk's content"
    DIG[$ID]=$DG
}

# chain REPO IMG VOL TIME...: a full backup of IMG (whose leaf is VOL),
# then after a snapshot and a guest write each, incrementals: one backup per
# TIME ("full" before a TIME: a new full there), each given that time.
chain () {
    local repo=$1 img=$2 leaf=$3 t n=0 kind=full since=
    local m=$repo/disks/$img/manifest.json
    shift 3
    for t in "$@"; do
        if [ "$t" = full ]; then
            kind=full
            continue
        fi
        if [ $n -gt 0 ]; then
            leaf=$(snapshot.sh create "$NFS_DIR" "$img")
            # A persistent bitmap, as a changed-block backup leaves on a
            # volume: qemu rewrites it in a file it opens read-write, so a
            # merge must only read the kept backups' copies of it.
            [ $n -ne 1 ] || qemu-img bitmap --add "$NFS_DIR/images/$img/$leaf" ovagent-test
            snapshot.sh write "$NFS_DIR" "$img" $(( 16 + n * 8 )) "$(( n * 2 ))M" 1M >/dev/null
        fi
        if [ $kind = full ]; then
            backup "$repo" "$img"
        else
            backup "$repo" "$img" --since "$since"
        fi
        since=$leaf kind=incremental n=$(( n + 1 ))
        jq --arg t "$t" '.backups[-1].time = $t' "$m" >"$m.new"
        cat "$m.new" >"$m"
        rm -f "$m.new"
    done
}

# Disk A: an old chain nothing will keep, then a chain where keep-last 1
# and keep-daily 3 keep the newest of three days and the latest: three
# merges, the second and third built on the first's kept backup, the last
# a run of two.
read -r A VA < <(snapshot.sh disk "$NFS_DIR" 24M)
snapshot.sh write "$NFS_DIR" "$A" 0x11 0 6M >/dev/null
chain "$R" "$A" "$VA" \
    2026-11-01T08:00:00Z 2026-11-01T09:00:00Z \
    full 2026-11-05T08:00:00Z 2026-11-05T09:00:00Z \
    2026-11-06T08:00:00Z 2026-11-06T09:00:00Z \
    2026-11-07T08:00:00Z 2026-11-07T09:00:00Z 2026-11-07T10:00:00Z \
    2026-11-08T09:00:00Z
# Disk B: a raw full merged into the incremental kept on it, and a merge
# above that.
read -r B VB < <(snapshot.sh disk "$NFS_DIR" 24M --raw)
snapshot.sh write "$NFS_DIR" "$B" 0x21 0 5M 20M 1M >/dev/null
chain "$R" "$B" "$VB" \
    2026-11-01T08:00:00Z 2026-11-01T09:00:00Z \
    2026-11-02T08:00:00Z 2026-11-02T09:00:00Z 2026-11-03T09:00:00Z
RULES=(--keep-last 1 --keep-daily 3)
expect_exit 0 ovagent verify --repo "$R"

# points REPO IMG: the backups the manifest lists as points, one line.
points () {
    jq -r '[.backups[] | select(.removing != true) | .id] | join(" ")' "$1/disks/$2/manifest.json"
}

# files REPO IMG: what a restore of the disk reads: the files and
# directories in the disk's directory with size, inode and time of change
# (the journal, and a manifest write left half-way, aside).
files () {
    (cd "$1/disks/$2" && find . -mindepth 1 ! -name prune.journal ! -name manifest.json.tmp \
        -printf '%p %y %s %i %C@\n' | LC_ALL=C sort)
}

# check_points WHAT REPO IMG: verify passes; every point restores to its
# digest (unless no file changed at all); a backup marked removing is
# refused as being removed.
check_points () {
    local what=$1 repo=$2 img=$3 id removing
    expect_exit 0 ovagent verify --repo "$repo"
    if [ "$(files "$repo" "$img")" = "${BEFORE[$img]:-}" ]; then
        [ "$(points "$repo" "$img")" = "${ALL[$img]}" ] || fail "$what: the manifest lost backups"
        return
    fi
    for id in $(points "$repo" "$img"); do
        [ -n "${DIG[$id]:-}" ] || fail "$what: the manifest lists an unknown backup $id"
        digest "$repo" "$img" "$id"
        [ "$DG" = "${DIG[$id]}" ] || fail "$what: backup $id restores to other bytes"
    done
    removing=$(jq -r '[.backups[] | select(.removing == true) | .id][0] // empty' \
        "$repo/disks/$img/manifest.json")
    if [ -n "$removing" ]; then
        expect_exit 3 ovagent restore --repo "$repo" "$img" --backup "$removing" \
            --to "$TESTDIR/removing.raw"
        grep -q "being removed" "$TESTDIR/err" ||
            fail "$what: restore of $removing, marked removing: $(cat "$TESTDIR/err")"
        [ ! -e "$TESTDIR/removing.raw" ] || fail "$what: restore of $removing wrote its file"
    fi
}

# check_done WHAT REPO IMG: the removal finished: no mark, no journal, the
# backups either all (killed before anything was marked) or those the plan
# keeps, every file in the disk's directory one the manifest lists.
check_done () {
    local what=$1 repo=$2 img=$3 got files
    local dir=$repo/disks/$img
    check_points "$what" "$repo" "$img"
    jq -e 'all(.backups[]; .removing != true)' "$dir/manifest.json" >/dev/null ||
        fail "$what: backups still marked removing"
    [ ! -e "$dir/prune.journal" ] || fail "$what: the journal is left"
    got=$(points "$repo" "$img")
    [ "$got" = "${KEPT[$img]}" ] || [ "$got" = "${ALL[$img]}" ] ||
        fail "$what: $img has backups [$got], expected the plan's [${KEPT[$img]}]"
    # (A manifest write killed midway leaves manifest.json.tmp, which the
    # next write replaces.)
    files=$(cd "$dir" && find . -type f ! -name manifest.json ! -name manifest.json.tmp \
        -printf '%P\n' | LC_ALL=C sort)
    [ "$files" = "$(jq -r '.backups[].volumes[].file' "$dir/manifest.json" | LC_ALL=C sort)" ] ||
        fail "$what: the files in $dir are not the manifest's: $files"
}

# The plan, for the disks one by one.
declare -A ALL=() KEPT=() BEFORE=()
for img in "$A" "$B"; do
    ALL[$img]=$(jq -r '[.backups[].id] | join(" ")' "$R/disks/$img/manifest.json")
    expect_exit 0 ovagent prune --repo "$R" "$img" "${RULES[@]}" --dry-run --json
    KEPT[$img]=$(jq -r '[.disks[0].backups[] | select(.action == "keep") | .id] | join(" ")' "$TESTDIR/out")
    jq -r '.disks[0].backups[] | "  \(.id) \(.time) \(.action) (\(.reason))\(if .merged_into then " into \(.merged_into)" else "" end)"' \
        "$TESTDIR/out"
    jq -e '.disks[0].removed >= 2' "$TESTDIR/out" >/dev/null ||
        fail "the plan for $img removes fewer than 2 backups: $(cat "$TESTDIR/out")"
done

# run_until K REPO IMG: prune IMG of REPO by RULES in a process group of its
# own, killed with SIGKILL as soon as its journal holds K lines. KILLED_AT:
# the lines seen then (0: it ended first, with exit code RC).
run_until () {
    local k=$1 repo=$2 img=$3 pid lines=()
    local j=$repo/disks/$img/prune.journal
    KILLED_AT=0 RC=0
    setsid ovagent prune --repo "$repo" "$img" "${RULES[@]}" \
        >"$TESTDIR/prune.out" 2>"$TESTDIR/prune.err" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        { mapfile -t lines <"$j"; } 2>/dev/null || lines=()
        if [ "${#lines[@]}" -ge "$k" ]; then
            kill -KILL -- "-$pid" 2>/dev/null || true
            KILLED_AT=${#lines[@]}
            break
        fi
        # A short pause without a process (nothing writes the FIFO).
        read -r -t 0.0002 -u "$PAUSE_FD" || true
    done
    wait "$pid" || RC=$?
    if [ "$KILLED_AT" -gt 0 ] && [ "$RC" -ne 137 ]; then
        # It ended between the last look and the kill.
        KILLED_AT=0
    fi
}

mkfifo "$TESTDIR/pause"
exec {PAUSE_FD}<>"$TESTDIR/pause"

# Every kill point of IMG's prune, each on a fresh copy of R holding IMG.
POINTS=0
C=$TESTDIR/copy
for img in "$A" "$B"; do
    k=1
    while :; do
        rm -rf "$C"
        mkdir -p "$C/disks"
        cp -a "$R/ovagent-repo.json" "$C/"
        cp -a "$R/disks/$img" "$C/disks/"
        BEFORE[$img]=$(files "$C" "$img")
        run_until "$k" "$C" "$img"
        if [ "$KILLED_AT" -eq 0 ]; then
            [ "$RC" -eq 0 ] || {
                cat "$TESTDIR/prune.err" >&2
                fail "$img: the prune not killed exited $RC"
            }
            check_done "$img: uninterrupted" "$C" "$img"
            [ "$(points "$C" "$img")" = "${KEPT[$img]}" ] ||
                fail "$img: the prune kept [$(points "$C" "$img")], its plan [${KEPT[$img]}]"
            echo "$img: the prune ends after journal line $(( k - 1 ))"
            break
        fi
        POINTS=$(( POINTS + 1 ))
        echo "$img: killed at journal line $KILLED_AT ($(sed -n "${KILLED_AT}p" "$C/disks/$img/prune.journal" | cut -c1-60)), wanted $k"
        check_points "$img: killed at line $KILLED_AT" "$C" "$img"
        expect_exit 0 ovagent prune --repo "$C" "$img" --keep-last 1000 --json
        check_done "$img: pruned again after the kill at line $KILLED_AT" "$C" "$img"
        k=$(( KILLED_AT + 1 ))
    done
done
echo "$POINTS kill points"
[ "$POINTS" -ge 20 ] || fail "only $POINTS kill points: the journal has fewer steps than expected"

# ---- a merge that does not fit ------------------------------------------

# A 96 MiB file system (no blocks reserved) for the repository.
small_fs 96M -m 0
S=$MNT/repo

# A full of 6 MiB, an incremental writing 24 MiB, one more: keep-last 2
# commits the 24 MiB into the full's top.
read -r E VE < <(snapshot.sh disk "$NFS_DIR" 64M)
snapshot.sh write "$NFS_DIR" "$E" 0x31 0 6M >/dev/null
backup "$S" "$E"
E0=$ID
V1=$(snapshot.sh create "$NFS_DIR" "$E")
snapshot.sh write "$NFS_DIR" "$E" 0x32 8M 24M >/dev/null
backup "$S" "$E" --since "$VE"
E1=$ID
snapshot.sh create "$NFS_DIR" "$E" >/dev/null
snapshot.sh write "$NFS_DIR" "$E" 0x33 40M 1M >/dev/null
backup "$S" "$E" --since "$V1"
E2=$ID

# All but 8 MiB taken.
sync
avail=$(df --output=avail -B1 "$MNT" | tail -n 1)
fallocate -l $(( avail - 8 * 1024 * 1024 )) "$MNT/filler"
expect_exit 8 ovagent prune --repo "$S" "$E" --keep-last 2 --json
jq -e '.result == "error" and .code == "no-space"' "$TESTDIR/out" >/dev/null ||
    fail "no JSON no-space error: $(cat "$TESTDIR/out")"
grep -qi "no space" "$TESTDIR/err" || fail "the error does not say no space: $(cat "$TESTDIR/err")"
echo "ok: $(jq -r .message "$TESTDIR/out")"
check_points "after ENOSPC" "$S" "$E"
for id in $E1 $E2; do
    jq -e --arg id "$id" 'any(.backups[]; .id == $id and .removing != true)' \
        "$S/disks/$E/manifest.json" >/dev/null || fail "after ENOSPC: kept backup $id is not a point"
done

# Room again: the next prune finishes.
BEFORE[$E]=
rm -f "$MNT/filler"
expect_exit 0 ovagent prune --repo "$S" "$E" --keep-last 2 --json
KEPT[$E]="$E1 $E2"
ALL[$E]="$E0 $E1 $E2"
check_done "after making room" "$S" "$E"
[ "$(points "$S" "$E")" = "$E1 $E2" ] || fail "after making room: $E has [$(points "$S" "$E")]"

echo "PASS: prune killed at $POINTS steps and stopped by ENOSPC; every kept backup restores as before"
