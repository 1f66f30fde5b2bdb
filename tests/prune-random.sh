#!/bin/bash
# prune and forget over a randomized repository: chain exports (fulls and
# incrementals, snapshots and guest writes between them) of a file-domain
# disk with a raw base and of a block-domain disk, their times spread over
# weeks; random keep rules and forgets, each first with --dry-run (nothing
# changes, the same plan), then for real: every kept backup restores to the
# same bytes, verify passes, the repository shrinks, the removed backups are
# gone; then one more incremental of each disk. Then changed-block backups
# (full, incrementals, differentials) of a running VM whose disk has chain
# backups too, pruned the same way. OVAGENT_TEST_SEED=N repeats a run.
# shellcheck disable=SC2016  # the jq programs are single-quoted on purpose

. "$top_srcdir/tests/functions.sh"

requires_vm_components qemu-io xxh128sum lvm losetup
command -v ovagent >/dev/null || fail "ovagent not built"

SEED=${OVAGENT_TEST_SEED:-$(( $(od -An -N2 -tu2 /dev/urandom) ))}
[[ $SEED =~ ^[0-9]+$ ]] || fail "OVAGENT_TEST_SEED must be a number, not '$SEED'"
echo "seed $SEED (OVAGENT_TEST_SEED=$SEED repeats this run)"
RANDOM=$SEED

# rand N: RV, a number from 0 to N-1 of the seeded sequence.
rand () {
    RV=$(( RANDOM % $1 ))
}

start_filedomain
agent_env
TB=$TESTDIR/tb
cleanup_add blockdomain.sh down "$TB"
blockdomain.sh up "$TB" >/dev/null
BENV=$TB/env
BSD=$(. "$TB/ids"; echo "$SD")
# The file domains' data center; the block domain is found through its PV.
OVAGENT_LVM_DEVICES=$(. "$BENV"; echo "$OVAGENT_LVM_DEVICES")
OVAGENT_LVM_COMMAND=$(. "$BENV"; echo "$OVAGENT_LVM_COMMAND")
export OVAGENT_LVM_DEVICES OVAGENT_LVM_COMMAND
R=$TESTDIR/repo

# Per disk (f: file domain, b: block domain, v: the VM's disk): its image,
# domain, leaf volume, the top volume of its latest chain backup, its
# backup ids oldest first; per backup id, the xxh128 of the disk it restores.
declare -A IMG=() DOM=() LEAF=() TOP=() IDS=() DIG=()
DISKS=()

# snap DISK CMD [ARGS...]: snapshot.sh CMD on the disk's image.
snap () {
    local k=$1 cmd=$2
    shift 2
    if [ "$k" = b ]; then
        snapshot.sh "$cmd" "${DOM[$k]}" "${IMG[$k]}" "$@" --block-env "$BENV"
    else
        snapshot.sh "$cmd" "${DOM[$k]}" "${IMG[$k]}" "$@"
    fi
}

# new_disk DISK DOMAIN [snapshot.sh disk options]: a 64 MiB disk with data.
new_disk () {
    local k=$1 vol
    DOM[$k]=$2
    shift 2
    read -r IMG[$k] vol < <(snapshot.sh disk "${DOM[$k]}" 64M "$@")
    LEAF[$k]=$vol
    DISKS+=("$k")
    snap "$k" write 0x11 0 4M 40M 2M >/dev/null
}

# guest_writes DISK: one to three random ranges of a random byte (or, now
# and then, of zeros) into the disk's leaf.
guest_writes () {
    local k=$1 n i off len pat ranges=()
    rand 255; pat=$((RV + 1))
    rand 5; [ "$RV" -ne 0 ] || pat=zero
    rand 3; n=$((RV + 1))
    for (( i = 0; i < n; i++ )); do
        rand 16; len=$(( (RV + 1) * 64 ))
        rand $(( 1024 - len / 64 + 1 )); off=$(( RV * 64 ))
        ranges+=("${off}k" "${len}k")
    done
    snap "$k" write "$pat" "${ranges[@]}" >/dev/null
}

# digest_of FILE: DG, its xxh128.
digest_of () {
    DG=$(xxh128sum <"$1")
    DG=${DG%% *}
}

# restore_digest DISK ID: DG, the xxh128 of backup ID restored as raw.
restore_digest () {
    local out=$TESTDIR/restored.raw
    rm -f "$out"
    expect_exit 0 ovagent restore --repo "$R" "${IMG[$1]}" --backup "$2" --to "$out"
    digest_of "$out"
    rm -f "$out"
}

# record DISK ID SOURCE_RAW: the digest of backup ID of the disk, which
# must hold SOURCE_RAW's bytes.
record () {
    local k=$1 id=$2 want
    digest_of "$3"
    want=$DG
    restore_digest "$k" "$id"
    [ "$DG" = "$want" ] || fail "backup $id of ${IMG[$k]} restores to $DG, the disk held $want"
    DIG[$id]=$DG
    IDS[$k]+="$id "
}

# snapshot DISK: a new leaf.
snapshot () {
    LEAF[$1]=$(snap "$1" create)
}

# chain_backup DISK full|incremental: export-chain piped into receive.
chain_backup () {
    local k=$1 kind=$2 rcs since=()
    [ "$kind" = full ] || since=(--since "${TOP[$k]}")
    set +e
    ovagent export-chain "${IMG[$k]}" "${since[@]}" --output - 2>"$TESTDIR/export.err" |
        ovagent receive --repo "$R" --json >"$TESTDIR/recv.json" 2>"$TESTDIR/recv.err"
    rcs=("${PIPESTATUS[@]}")
    set -e
    if [ "${rcs[0]}" -ne 0 ] || [ "${rcs[1]}" -ne 0 ]; then
        cat "$TESTDIR/export.err" "$TESTDIR/recv.json" "$TESTDIR/recv.err" >&2
        fail "${IMG[$k]}: export-chain ${since[*]} exited ${rcs[0]}, receive ${rcs[1]}"
    fi
    jq -e --arg kind "$kind" '.result == "ok" and .kind == $kind' "$TESTDIR/recv.json" >/dev/null ||
        fail "${IMG[$k]}: receive did not commit a $kind: $(cat "$TESTDIR/recv.json")"
    TOP[$k]=${LEAF[$k]}
    snap "$k" convert "$TESTDIR/source.raw"
    record "$k" "$(jq -r .backup_id "$TESTDIR/recv.json")" "$TESTDIR/source.raw"
    rm -f "$TESTDIR/source.raw"
}

# chain_backups DISK COUNT SNAPSHOTS: a full, then COUNT-1 backups, mostly
# incrementals after one snapshot (or two, while SNAPSHOTS lasts), now and
# then a full; guest writes before each.
chain_backups () {
    local k=$1 count=$2 snaps=$3 i s n
    chain_backup "$k" full
    for (( i = 1; i < count; i++ )); do
        rand 7
        if [ "$RV" -eq 0 ]; then
            guest_writes "$k"
            chain_backup "$k" full
            continue
        fi
        rand 3
        n=1
        [ "$RV" -ne 0 ] || [ "$snaps" -lt $(( count - i + 1 )) ] || n=2
        for (( s = 0; s < n; s++ )); do
            snapshot "$k"
            snaps=$(( snaps - 1 ))
            guest_writes "$k"
        done
        chain_backup "$k" incremental
    done
}

# spread_times DISK: the manifest's "time" members from 60 days ago on,
# 1 to 40 hours apart (several a day, days without any).
spread_times () {
    local k=$1 m=$R/disks/${IMG[$1]}/manifest.json t n i times=()
    n=$(jq '.backups | length' "$m")
    t=$(( $(date +%s) - 60 * 86400 ))
    for (( i = 0; i < n; i++ )); do
        rand 40; t=$(( t + (RV + 1) * 3600 ))
        rand 3600
        times+=("$(date -u -d "@$(( t + RV ))" +%Y-%m-%dT%H:%M:%SZ)")
    done
    jq --argjson t "$(printf '%s\n' "${times[@]}" | jq -R . | jq -sc .)" \
        '.backups |= [to_entries[] | .value + {time: $t[.key]}]' "$m" >"$m.new"
    cat "$m.new" >"$m"
    rm -f "$m.new"
}

# listed DISK: the backup ids of the disk `backups --json` lists, oldest
# first, one line; none is being removed, the disk's stored_bytes their sum.
listed () {
    expect_exit 0 ovagent backups --repo "$R" "${IMG[$1]}" --json
    jq -e --arg d "${IMG[$1]}" '[.disks[] | select(.disk == $d)] | length == 1
        and all(.[0].backups[]; .removing == false and .stored_bytes > 0)
        and .[0].stored_bytes == ([.[0].backups[].stored_bytes] | add)' \
        "$TESTDIR/out" >/dev/null || fail "backups --json of ${IMG[$1]}: $(cat "$TESTDIR/out")"
    jq -r '[.disks[0].backups[].id] | join(" ")' "$TESTDIR/out"
}

# check_repo WHAT: every disk's manifest lists exactly its expected backups,
# none marked removing, no journal; each restores to its digest; verify.
check_repo () {
    local what=$1 k id m total=0 got
    for k in "${DISKS[@]}"; do
        m=$R/disks/${IMG[$k]}/manifest.json
        got=$(jq -r '[.backups[].id] | join(" ")' "$m")
        [ "$got " = "${IDS[$k]}" ] ||
            fail "$what: the manifest of ${IMG[$k]} lists [$got], expected [${IDS[$k]}]"
        got=$(listed "$k")
        [ "$got " = "${IDS[$k]}" ] ||
            fail "$what: backups lists [$got] for ${IMG[$k]}, expected [${IDS[$k]}]"
        jq -e 'all(.backups[]; .removing != true)' "$m" >/dev/null ||
            fail "$what: ${IMG[$k]} has backups marked removing"
        [ ! -e "$R/disks/${IMG[$k]}/prune.journal" ] || fail "$what: ${IMG[$k]}'s journal is left"
        for id in ${IDS[$k]}; do
            restore_digest "$k" "$id"
            [ "$DG" = "${DIG[$id]}" ] ||
                fail "$what: backup $id of ${IMG[$k]} restores to $DG, before to ${DIG[$id]}"
            total=$(( total + 1 ))
        done
    done
    expect_exit 0 ovagent verify --repo "$R" --json
    jq -e --argjson n "$total" '.result == "ok" and .backups == $n' "$TESTDIR/out" >/dev/null ||
        fail "$what: verify: $(cat "$TESTDIR/out")"
}

# The repository as a listing and file digests, the lock file aside.
repo_state () {
    (cd "$R" && find . -path ./lock -prune -o -printf '%p %y %s %i %m\n' | LC_ALL=C sort &&
        find . -type f ! -path ./lock -printf '%p %T@\n' -exec xxh128sum {} + | LC_ALL=C sort)
}

# random_rules: RULES, one to three different keep rules of random counts,
# and RULES_JSON, the same for the oracle.
random_rules () {
    local picked=' ' n i secs rule
    RULES=()
    RULES_JSON='{}'
    rand 3; n=$((RV + 1))
    for (( i = 0; i < n; i++ )); do
        rand 7
        [[ $picked != *" $RV "* ]] || continue
        picked+="$RV "
        case $RV in
            0) rand 4; RULES+=(--keep-last $((RV + 1)))
               RULES_JSON=$(jq -c --argjson n $((RV + 1)) '.last = $n' <<<"$RULES_JSON") ;;
            1) rand 3
               case $RV in
                   0) rand 48; RULES+=(--keep-within $((RV + 6))h); secs=$(( (RV + 6) * 3600 )) ;;
                   1) rand 6; RULES+=(--keep-within $((RV + 1))d); secs=$(( (RV + 1) * 86400 )) ;;
                   *) RULES+=(--keep-within 2w); secs=$(( 14 * 86400 )) ;;
               esac
               RULES_JSON=$(jq -c --argjson s "$secs" '.within = $s' <<<"$RULES_JSON") ;;
            *) rule=$(sed -n "$((RV - 1))p" <<<$'hourly\ndaily\nweekly\nmonthly\nyearly')
               rand 5
               RULES+=("--keep-$rule" $((RV + 1)))
               RULES_JSON=$(jq -c --arg r "$rule" --argjson n $((RV + 1)) '.[$r] = $n' <<<"$RULES_JSON") ;;
        esac
    done
}

# must_keep DISK: the backups the rules keep as docs/repository.md §7.1
# has it (the N newest; those within the duration of the newest; per
# period rule, newest first, the newest backup of each period met until N
# were kept, a period whose newest another rule kept used up without
# counting; then the latest if none did), one line.
must_keep () {
    jq -r --argjson r "$RULES_JSON" '
        def ts: .time | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601;
        {hourly: "%Y-%m-%dT%H", daily: "%Y-%m-%d", weekly: "%G-W%V", monthly: "%Y-%m",
         yearly: "%Y"} as $fmt
        | .backups[-1].id as $latest
        | [.backups | to_entries[] | select(.value.removing != true)
           | {i: .key, id: .value.id, t: (.value | ts)}] | sort_by([-.t, -.i]) as $p
        | reduce $p[0:($r.last // 0)][] as $b ({}; .[$b.id] = true)
        | reduce ($p[] | select(($r.within // 0) > 0 and .t >= $p[0].t - $r.within)) as $b
            (.; .[$b.id] = true)
        | reduce ("hourly", "daily", "weekly", "monthly", "yearly") as $rule (.;
            if ($r[$rule] // 0) == 0 then . else
              (reduce $p[] as $b ({k: ., last: null, n: 0};
                 if .n >= $r[$rule] then . else
                   ($b.t | strftime($fmt[$rule])) as $per
                   | if $per == .last then . else
                       .last = $per
                       | if .k[$b.id] then . else .k[$b.id] = true | .n += 1 end
                     end
                 end)).k
            end)
        | .[$latest] = true
        | keys | join(" ")' "$R/disks/${IMG[$1]}/manifest.json"
}

# The plan a prune or forget printed (FILE) for DISK: "ID keep|remove", one a line.
plan_of () {
    jq -r --arg d "${IMG[$2]}" '.disks[] | select(.disk == $d) | .backups[] | "\(.id) \(.action)"' "$1"
}

# apply WHAT DISKS CMD ARGS...: ovagent CMD --repo R ARGS, first --dry-run
# (nothing changes), then for real (the same plan); the removed backups of
# each of DISKS leave IDS; then check_repo, and the repository shrank.
apply () {
    local what=$1 disks=$2 cmd=$3 k id before after removed
    shift 3
    echo "$what: ovagent $cmd $*"
    repo_state >"$TESTDIR/state.before"
    expect_exit 0 ovagent "$cmd" --repo "$R" "$@" --dry-run --json
    cp "$TESTDIR/out" "$TESTDIR/dry.json"
    repo_state >"$TESTDIR/state.after"
    diff "$TESTDIR/state.before" "$TESTDIR/state.after" >&2 || fail "$what: --dry-run changed the repository"
    jq -e '.result == "ok" and .dry_run == true' "$TESTDIR/dry.json" >/dev/null ||
        fail "$what: --dry-run --json: $(cat "$TESTDIR/dry.json")"
    before=$(du -s -B1 "$R" | cut -f1)
    expect_exit 0 ovagent "$cmd" --repo "$R" "$@" --json
    cp "$TESTDIR/out" "$TESTDIR/real.json"
    jq -e '.result == "ok" and .dry_run == false
        and all(.removed, .merges, .freed_bytes, .merged_bytes, .seconds; type == "number" and . >= 0)
        and .removed == ([.disks[].removed] | add)
        and all(.disks[]; .removed == ([.backups[] | select(.action == "remove")] | length)
                and all(.backups[]; (.reason | type == "string" and length > 0)
                        and (.action == "keep" or .action == "remove")
                        and (.merged_into == null or .action == "remove")))' \
        "$TESTDIR/real.json" >/dev/null || fail "$what: --json: $(cat "$TESTDIR/real.json")"
    jq -c '[.disks[] | {disk, removed, backups}]' "$TESTDIR/dry.json" >"$TESTDIR/dry.plan"
    jq -c '[.disks[] | {disk, removed, backups}]' "$TESTDIR/real.json" >"$TESTDIR/real.plan"
    cmp -s "$TESTDIR/dry.plan" "$TESTDIR/real.plan" || {
        echo "--dry-run:" >&2; cat "$TESTDIR/dry.plan" >&2
        echo "real:" >&2; cat "$TESTDIR/real.plan" >&2
        fail "$what: the real run's plan is not the --dry-run's"
    }
    removed=$(jq .removed "$TESTDIR/real.json")
    for k in $disks; do
        [ "$(plan_of "$TESTDIR/real.json" "$k" | cut -d' ' -f1 | tr '\n' ' ')" = "${IDS[$k]}" ] ||
            fail "$what: the plan for ${IMG[$k]} does not list its backups [${IDS[$k]}]: $(cat "$TESTDIR/real.json")"
        for id in $(plan_of "$TESTDIR/real.json" "$k" | sed -n 's/ remove$//p'); do
            IDS[$k]=${IDS[$k]/"$id "/}
            [ ! -e "$R/disks/${IMG[$k]}/$id" ] || fail "$what: the directory of removed backup $id is left"
        done
    done
    jq -r '.disks[] | .disk as $d | .backups[]
           | "  \($d[0:8]) \(.id) \(.time) \(.action) (\(.reason))\(if .merged_into then " into \(.merged_into)" else "" end)"' \
        "$TESTDIR/real.json"
    check_repo "$what"
    after=$(du -s -B1 "$R" | cut -f1)
    echo "  removed $removed, merges $(jq .merges "$TESTDIR/real.json"), freed $(jq .freed_bytes "$TESTDIR/real.json") bytes; du $before -> $after"
    if [ "$removed" -gt 0 ]; then
        [ "$after" -lt "$before" ] || fail "$what: removed $removed backups, the repository grew from $before to $after bytes"
        [ "$(jq .freed_bytes "$TESTDIR/real.json")" -gt 0 ] || fail "$what: freed_bytes is 0 after removing $removed"
    fi
}

# random_prune WHAT DISK...: a prune of random rules, of the DISKs named
# (none: all); all the contract keeps is kept.
random_prune () {
    local what=$1 k named=() disks=("${@:2}")
    declare -A want=()
    for k in "${disks[@]}"; do
        named+=("${IMG[$k]}")
    done
    [ ${#disks[@]} -gt 0 ] || disks=("${DISKS[@]}")
    random_rules
    for k in "${disks[@]}"; do
        want[$k]=$(must_keep "$k")
    done
    apply "$what" "${disks[*]}" prune "${named[@]}" "${RULES[@]}"
    # Kept: what the rules keep, and what kept backups need.
    for k in "${disks[@]}"; do
        jq -e --arg d "${IMG[$k]}" --arg want "${want[$k]}" '
            ($want | split(" ")) as $w
            | [.disks[] | select(.disk == $d) | .backups[]
               | select((.action == "keep") != ((.id | IN($w[]))
                        or (.reason | test("^(needed by|larger than) "))))] == []' \
            "$TESTDIR/real.json" >/dev/null ||
            fail "$what: ${RULES[*]} keep [${want[$k]}] of ${IMG[$k]} (and what those need); the plan: $(jq -c '.disks' "$TESTDIR/real.json")"
    done
}

# random_forget WHAT DISK: forget a random backup of DISK other than its latest.
random_forget () {
    local what=$1 k=$2 ids
    read -r -a ids <<<"${IDS[$k]}"
    [ "${#ids[@]}" -ge 2 ] || return 0
    rand $(( ${#ids[@]} - 1 ))
    # A backup two kept backups are built on (or larger than the one built
    # on it) cannot be forgotten: refused with the reason, nothing changed.
    repo_state >"$TESTDIR/state.before"
    if ! ovagent forget --repo "$R" "${IMG[$k]}" --backup "${ids[RV]}" --dry-run --json \
            >"$TESTDIR/out" 2>"$TESTDIR/err"; then
        jq -e '.code == "usage"' "$TESTDIR/out" >/dev/null &&
            grep -q "cannot be forgotten: it is \(needed by\|larger than\)" "$TESTDIR/err" ||
            fail "$what: forget of ${ids[RV]}: $(cat "$TESTDIR/err")"
        expect_exit 2 ovagent forget --repo "$R" "${IMG[$k]}" --backup "${ids[RV]}"
        repo_state >"$TESTDIR/state.after"
        diff "$TESTDIR/state.before" "$TESTDIR/state.after" >&2 ||
            fail "$what: a refused forget changed the repository"
        echo "$what: forget of ${ids[RV]} refused: $(cat "$TESTDIR/err")"
        return 0
    fi
    apply "$what" "$k" forget "${IMG[$k]}" --backup "${ids[RV]}"
}

# ---- part 1: chain exports of a file-domain and a block-domain disk --------

new_disk f "$NFS_DIR" --raw
new_disk b "$BSD" --block-env "$BENV"
rand 4; chain_backups f $((8 + RV)) 4
# Every snapshot of the block disk takes a 128 MiB extent of the domain's
# VG, and each step there is slow: a few.
chain_backups b 3 0
spread_times f
spread_times b
echo "backups: ${IMG[f]} (file): ${IDS[f]}"
echo "backups: ${IMG[b]} (block): ${IDS[b]}"
expect_exit 0 ovagent verify --repo "$R"

# What is refused changes nothing.
repo_state >"$TESTDIR/state.before"
read -r -a ids <<<"${IDS[f]}"
expect_exit 2 ovagent forget --repo "$R" "${IMG[f]}" --backup "${ids[-1]}"
expect_exit 3 ovagent forget --repo "$R" "${IMG[f]}" --backup 20200101T000000Z-000000
expect_exit 3 ovagent prune --repo "$R" "$(cat /proc/sys/kernel/random/uuid)" --keep-last 1
expect_exit 2 ovagent prune --repo "$R" "${IMG[f]}"
expect_exit 2 ovagent prune --repo "$R" "${IMG[f]}" --keep-within 7x
repo_state >"$TESTDIR/state.after"
diff "$TESTDIR/state.before" "$TESTDIR/state.after" >&2 || fail "a refused forget or prune changed the repository"

random_prune "prune 1"
random_forget "forget 1" f
random_prune "prune 2" b
random_forget "forget 2" b
random_prune "prune 3" f

# Receive continues each disk's chain from its latest backup.
for k in f b; do
    snapshot "$k"
    guest_writes "$k"
    chain_backup "$k" incremental
done
check_repo "after an incremental of each disk"
random_prune "prune 4"

# ---- part 2: a running VM's changed-block backups, after chain exports ------

new_disk v "$NFS_DIR"
chain_backup v full
snapshot v
guest_writes v
chain_backup v incremental
export OVAGENT_LIBVIRT_URI=qemu:///system
start_libvirt
new_vm_name prune
LIVE=$NFS_DIR/images/${IMG[v]}/${TOP[v]}
# The guest-visible disk, kept up to date with every guest write: what a
# backup taken next holds.
MODEL=$TESTDIR/model.raw
qemu-img convert -f qcow2 -O raw "$LIVE" "$MODEL"
vm.sh create "$LV" "$VM" "$LIVE" >/dev/null
CPS=()

# vm_write PATTERN|zero OFFSET LENGTH: a guest write, also into the model.
vm_write () {
    local how="-P $1"
    [ "$1" != zero ] || how=-z
    vm.sh write "$VM" 0 "write $how $2 $3"
    qemu-io -f raw -c "write -q $how $2 $3" "$MODEL" >/dev/null
}

# vm_writes: a random range of a random byte, now and then a zeroed one.
vm_writes () {
    local len off pat
    rand 255; pat=$((RV + 1))
    rand 16; len=$(( (RV + 1) * 64 ))
    rand $(( 1024 - len / 64 + 1 )); off=$(( RV * 64 ))
    vm_write "$pat" "${off}k" "${len}k"
    rand 4
    if [ "$RV" -eq 0 ]; then
        rand 1016
        vm_write zero "$(( RV * 64 ))k" 512k
    fi
}

# cbt_backup NAME ARGS...: ovagent backup VM ARGS into R; it holds the model.
cbt_backup () {
    local name=$1
    shift
    bk_backup_ok "$name" "$R" "$VM" "$@"
    CPS+=("$(jq -r .checkpoint "$TESTDIR/$name.json")")
    record v "$BK_ID" "$MODEL"
}

vm_writes
cbt_backup c1 --full
for step in 2 3 4 5 6 7; do
    vm_writes
    rand 3
    if [ "$RV" -eq 0 ]; then
        rand ${#CPS[@]}
        cbt_backup "c$step" --differential --from "${CPS[RV]}"
    else
        cbt_backup "c$step" --incremental
    fi
done
spread_times v
echo "backups: ${IMG[v]}: $(jq -r '[.backups[] | "\(.id) \(if .checkpoint then "cbt" else "chain" end) \(.kind)"] | join(", ")' "$R/disks/${IMG[v]}/manifest.json")"
check_repo "before pruning the VM's disk"

random_prune "prune 5" v
random_forget "forget 3" v
vm_writes
cbt_backup c8 --incremental
check_repo "after an incremental of the VM's disk"
random_prune "prune 6"

vm.sh destroy "$LV" "$VM"
echo "PASS: prune and forget over random repositories (seed $SEED)"
