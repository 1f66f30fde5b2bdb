# The chain-export round trip the export-chain-*.sh tests share: snapshots
# and guest writes through snapshot.sh, pull through the test-bed sshd into
# `receive`, then restore, compare, backing-chain and verify checks.
# shellcheck shell=bash
#
# Sourced after tests/functions.sh. Call ce_init first; the domain's
# OVAGENT_* settings must be exported: every one of them is passed to the
# sender on the other side of ssh.
#
#   ce_init DOMAIN IMG [BLOCK_ENV]    DOMAIN as snapshot.sh takes it
#   ce_volume VOL raw|qcow2           a volume of the chain, base first
#   ce_snapshot                       new leaf (ce_volume'd); prints nothing
#   ce_write PATTERN OFF LEN...       guest writes into the leaf
#   ce_pull STEP [ARGS...]            export-chain IMG ARGS --output - through
#                                     ssh | receive --repo; checks the result
#   ce_pull_file STEP [ARGS...]       the same through a stream file, with the
#                                     sender's JSON result in export-STEP.json
#   ce_check_restore STEP             restore --to, compare with the source
#   ce_check_repo_chain STEP          qemu-img info --backing-chain on the repo
#   ce_check_backing_strings STEP     the rewritten backing strings of STEP's files
#   ce_final_checks                   verify, and every backup restored again

CE_OVAGENT=$top_builddir/agent/ovagent
CE_UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

CE_DOMAIN=
CE_IMG=
CE_SNAP_OPTS=()
CE_REPO=
CE_SSH=
CE_VOLS=()          # the chain, base first
declare -gA CE_FMT=()      # volume -> raw|qcow2
declare -gA CE_ID=()       # step -> backup id
declare -gA CE_NVOLS=()    # step -> chain length at that backup
declare -gA CE_TOP=()      # step -> top volume at that backup
CE_STEPS=()

ce_init () {
    CE_DOMAIN=$1 CE_IMG=$2
    if [ $# -ge 3 ]; then
        CE_SNAP_OPTS=(--block-env "$3")
    fi
    CE_REPO=$TESTDIR/repo
    CE_SSH=$TESTDIR/sshd
    [ -x "$CE_OVAGENT" ] || fail "ovagent not built: $CE_OVAGENT"
    cleanup_add sshd.sh down "$CE_SSH"
    sshd.sh up "$CE_SSH" >/dev/null
}

ce_volume () {
    CE_VOLS+=("$1")
    CE_FMT[$1]=$2
}

ce_leaf () {
    echo "${CE_VOLS[${#CE_VOLS[@]}-1]}"
}

ce_snapshot () {
    local new
    new=$(snapshot.sh create "$CE_DOMAIN" "$CE_IMG" "${CE_SNAP_OPTS[@]}") ||
        fail "snapshot.sh create $CE_DOMAIN $CE_IMG failed"
    [[ $new =~ $CE_UUID_RE ]] || fail "snapshot.sh create printed no UUID: $new"
    ce_volume "$new" qcow2
}

ce_write () {
    snapshot.sh write "$CE_DOMAIN" "$CE_IMG" "$@" "${CE_SNAP_OPTS[@]}" ||
        fail "snapshot.sh write $* failed"
}

# The sender's command line as the remote shell runs it: the OVAGENT_*
# settings of this test, then ovagent with ARGS.
ce_remote_command () {
    local vars=() v
    for v in $(compgen -e | grep '^OVAGENT_' || true); do
        vars+=("$v=${!v}")
    done
    printf '%q ' env "${vars[@]}" "$CE_OVAGENT" "$@"
}

# ce_show FILE...: the files, for a failure message.
ce_show () {
    local f
    for f in "$@"; do
        echo "--- $f" >&2
        cat "$f" >&2 || true
    done
}

# ce_pull STEP [EXPORT-ARGS...]: pull the (sub-)chain into the repository.
# A first step is a full backup of CE_VOLS; later ones send the volumes
# after the previous step's top, and must be given --since.
ce_pull () {
    local step=$1 rcs
    shift
    local out=$TESTDIR/recv-$step.json err_e=$TESTDIR/export-$step.err err_r=$TESTDIR/recv-$step.err
    set +e
    ssh -F "$CE_SSH/ssh_config" tbhost \
        "$(ce_remote_command export-chain "$CE_IMG" "$@" --output -)" 2>"$err_e" |
        "$CE_OVAGENT" receive --repo "$CE_REPO" --json >"$out" 2>"$err_r"
    rcs=("${PIPESTATUS[@]}")
    set -e
    if [ "${rcs[0]}" -ne 0 ] || [ "${rcs[1]}" -ne 0 ]; then
        ce_show "$err_e" "$out" "$err_r"
        fail "step $step: export-chain exited ${rcs[0]}, receive ${rcs[1]}"
    fi
    ce_check_received "$step"
}

# ce_pull_file STEP [EXPORT-ARGS...]: the same in two halves: export-chain
# over ssh into a stream file with its JSON result (checked, kept in
# $TESTDIR/export-STEP.json; the stream in $TESTDIR/STEP.stream), then
# receive from that file.
ce_pull_file () {
    local step=$1 rc=0
    shift
    local stream=$TESTDIR/$step.stream res=$TESTDIR/export-$step.json
    local out=$TESTDIR/recv-$step.json
    ssh -F "$CE_SSH/ssh_config" tbhost \
        "$(ce_remote_command export-chain "$CE_IMG" "$@" --output "$stream" --json)" \
        >"$res" 2>"$TESTDIR/export-$step.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        ce_show "$res" "$TESTDIR/export-$step.err"
        fail "step $step: export-chain --output $stream exited $rc"
    fi
    local first=0 prev
    if [ ${#CE_STEPS[@]} -gt 0 ]; then
        prev=${CE_STEPS[${#CE_STEPS[@]}-1]}
        first=${CE_NVOLS[$prev]}
    fi
    jq -e --arg img "$CE_IMG" \
        --argjson vols "$(printf '%s\n' "${CE_VOLS[@]:first}" | jq -R . | jq -s .)" '
        .result == "ok" and .disk == $img and .volumes == $vols
        and all(.bytes_read, .bytes_sent, .data_bytes, .zero_bytes, .hole_bytes, .seconds;
                type == "number" and . >= 0)' "$res" >/dev/null 2>&1 || {
        ce_show "$res"
        fail "step $step: export-chain result is not {ok, disk $CE_IMG, volumes ${CE_VOLS[*]:first}, bytes_read, bytes_sent, data_bytes, zero_bytes, hole_bytes, seconds}"
    }
    [ "$(jq .bytes_sent "$res")" -eq "$(stat -c %s "$stream")" ] ||
        fail "step $step: bytes_sent $(jq .bytes_sent "$res") is not the stream's size $(stat -c %s "$stream")"
    rc=0
    "$CE_OVAGENT" receive --repo "$CE_REPO" --json <"$stream" >"$out" 2>"$TESTDIR/recv-$step.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        ce_show "$out" "$TESTDIR/recv-$step.err"
        fail "step $step: receive < $stream exited $rc"
    fi
    ce_check_received "$step"
    [ "$(jq .bytes_received "$out")" -eq "$(stat -c %s "$stream")" ] ||
        fail "step $step: bytes_received $(jq .bytes_received "$out") is not the stream's size $(stat -c %s "$stream")"
}

# The receive result of STEP against what was sent: the volumes after the
# previous step's top, up to the current leaf.
ce_check_received () {
    local step=$1 out=$TESTDIR/recv-$1.json kind=full first=0 prev id v fmt
    local -a sent
    if [ ${#CE_STEPS[@]} -gt 0 ]; then
        kind=incremental
        prev=${CE_STEPS[${#CE_STEPS[@]}-1]}
        first=${CE_NVOLS[$prev]}
    fi
    sent=("${CE_VOLS[@]:first}")
    jq -e . "$out" >/dev/null 2>&1 || { ce_show "$out"; fail "step $step: receive printed no JSON"; }
    jq -e --arg img "$CE_IMG" --arg kind "$kind" \
        --argjson vols "$(printf '%s\n' "${sent[@]}" | jq -R . | jq -s .)" '
        .result == "ok" and .disk == $img and .kind == $kind and .volumes == $vols
        and (.backup_id | type == "string")
        and (.bytes_received | type == "number" and . > 0)
        and (.data_bytes | type == "number" and . >= 0)
        and (.seconds | type == "number" and . >= 0)' "$out" >/dev/null || {
        ce_show "$out"
        fail "step $step: receive result is not {ok, disk $CE_IMG, $kind, volumes ${sent[*]}, ...}"
    }
    id=$(jq -r .backup_id "$out")
    [[ $id =~ ^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4,}$ ]] ||
        fail "step $step: backup id $id is not UTC time + random suffix (20261122T031000Z-3f2a9c)"
    for v in "${sent[@]}"; do
        fmt=${CE_FMT[$v]}
        [ -f "$CE_REPO/disks/$CE_IMG/$id/$v.$fmt" ] ||
            fail "step $step: no $CE_REPO/disks/$CE_IMG/$id/$v.$fmt; backup dir: $(ls -A "$CE_REPO/disks/$CE_IMG/$id" 2>&1)"
    done
    [ -z "$(find "$CE_REPO/disks/$CE_IMG" -maxdepth 1 -name '.incoming-*')" ] ||
        fail "step $step: an .incoming- directory was left after a committed receive"
    CE_ID[$step]=$id
    CE_NVOLS[$step]=${#CE_VOLS[@]}
    CE_TOP[$step]=$(ce_leaf)
    CE_STEPS+=("$step")
    # The source as it is now, to compare restores of this backup with later.
    snapshot.sh convert "$CE_DOMAIN" "$CE_IMG" "$TESTDIR/src-$step.raw" "${CE_SNAP_OPTS[@]}" ||
        fail "step $step: snapshot.sh convert failed"
}

# ce_restore_compare STEP [--backup ID]: restore to a raw file, compare.
ce_restore_compare () {
    local step=$1 what=$1
    shift
    local dst=$TESTDIR/restored.raw
    [ $# -eq 0 ] || what="$step ($*)"
    rm -f "$dst"
    expect_exit 0 "$CE_OVAGENT" restore --repo "$CE_REPO" "$CE_IMG" "$@" --to "$dst" --json
    jq -e --arg img "$CE_IMG" --arg id "${CE_ID[$step]}" --arg path "$dst" '
        .result == "ok" and .disk == $img and .backup_id == $id
        and .format == "raw" and (.bytes_written | type == "number")' "$TESTDIR/out" >/dev/null || {
        ce_show "$TESTDIR/out"
        fail "restore $what: result is not {ok, disk $CE_IMG, backup_id ${CE_ID[$step]}, format raw, ...}"
    }
    qemu-img compare -U -f raw -F raw "$dst" "$TESTDIR/src-$step.raw" >"$TESTDIR/compare.out" 2>&1 || {
        ce_show "$TESTDIR/compare.out"
        fail "restore $what: the restored disk differs from the source at that backup"
    }
}

# After STEP: the latest restore equals the source, also compared with the
# live chain top on file domains (nothing wrote to it since).
ce_check_restore () {
    local step=$1 leaf
    ce_restore_compare "$step"
    if [ "${CE_SNAP_OPTS[*]}" = "" ]; then
        leaf=$CE_DOMAIN/images/$CE_IMG/$(ce_leaf)
        qemu-img compare -U -f raw -F "${CE_FMT[$(ce_leaf)]}" "$TESTDIR/restored.raw" "$leaf" \
            >"$TESTDIR/compare.out" 2>&1 || {
            ce_show "$TESTDIR/compare.out"
            fail "step $step: the restored disk differs from the source chain top $leaf"
        }
    fi
}

# The repository's top file of STEP opens as it is with its whole chain,
# each file named by its volume, top first.
ce_check_repo_chain () {
    local step=$1 id=${CE_ID[$1]} top n i v want got
    top=$CE_REPO/disks/$CE_IMG/$id/${CE_TOP[$step]}.${CE_FMT[${CE_TOP[$step]}]}
    qemu-img info -U --backing-chain --output=json "$top" >"$TESTDIR/chain.json" 2>&1 || {
        ce_show "$TESTDIR/chain.json"
        fail "step $step: qemu-img info --backing-chain $top fails"
    }
    n=${CE_NVOLS[$step]}
    got=$(jq -r 'if type == "array" then .[].filename else .filename end | split("/") | last' \
        "$TESTDIR/chain.json" | tr '\n' ' ')
    want=''
    for (( i=n-1; i>=0; i-- )); do
        v=${CE_VOLS[i]}
        want+="$v.${CE_FMT[$v]} "
    done
    [ "$got" = "$want" ] || {
        ce_show "$TESTDIR/chain.json"
        fail "step $step: backing chain of $top is [$got], expected [$want]"
    }
}

# ce_backing_of FILE: the backing string recorded in FILE's header, or "null".
ce_backing_of () {
    qemu-img info -U --output=json "$1" | jq -r '."backing-filename" // "null"'
}

# The backing strings of STEP's files, as receive rewrites them: none for
# the base of a full, ../<previous backup>/<its top> for the first volume
# of an incremental, the previous file in the same directory otherwise;
# whatever the source's string was (bare UUID or ../<img>/<vol>).
ce_check_backing_strings () {
    local step=$1 id=${CE_ID[$1]} first=0 i v p want got prev
    local dir=$CE_REPO/disks/$CE_IMG/$id
    for (( i=0; i<${#CE_STEPS[@]}; i++ )); do
        [ "${CE_STEPS[i]}" = "$step" ] && break
        prev=${CE_STEPS[i]}
    done
    if [ "$i" -gt 0 ]; then
        first=${CE_NVOLS[$prev]}
    fi
    for (( i=first; i<CE_NVOLS[$step]; i++ )); do
        v=${CE_VOLS[i]}
        if [ "$i" -eq 0 ]; then
            want=null
        elif [ "$i" -eq "$first" ]; then
            p=${CE_VOLS[i-1]}
            want=../${CE_ID[$prev]}/$p.${CE_FMT[$p]}
        else
            p=${CE_VOLS[i-1]}
            want=$p.${CE_FMT[$p]}
        fi
        got=$(ce_backing_of "$dir/$v.${CE_FMT[$v]}")
        [ "$got" = "$want" ] ||
            fail "step $step: $dir/$v.${CE_FMT[$v]}: backing string \"$got\", expected \"$want\""
    done
}

ce_final_checks () {
    local step nb=${#CE_STEPS[@]}
    expect_exit 0 "$CE_OVAGENT" verify --repo "$CE_REPO" --json
    jq -e --argjson nb "$nb" --argjson nv "${#CE_VOLS[@]}" '
        .result == "ok" and .disks == 1 and .backups == $nb and .files == $nv
        and (.bytes | type == "number" and . > 0)' "$TESTDIR/out" >/dev/null || {
        ce_show "$TESTDIR/out"
        fail "verify: result is not {ok, disks 1, backups $nb, files ${#CE_VOLS[@]}, ...}"
    }
    expect_exit 0 "$CE_OVAGENT" verify --repo "$CE_REPO" "$CE_IMG"
    for step in "${CE_STEPS[@]}"; do
        ce_restore_compare "$step" --backup "${CE_ID[$step]}"
    done
}
