# Shared helpers for the storage test bed: VDSM metadata records, domain
# metadata with its checksum, LVM tag escaping and the expected.json writer.
# shellcheck shell=bash

TB_BLANK_UUID=00000000-0000-0000-0000-000000000000
TB_CTIME=1700000000

tb_die () {
    echo "${0##*/}: $*" >&2
    exit 1
}

# Alive means: signal 0 succeeds and it is not a zombie. Without systemd as
# PID 1 a killed daemon may stay <defunct> until something reaps it.
tb_pid_alive () {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    # The state follows the parenthesised command name, which may hold spaces.
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [ "${state%% *}" != Z ]
}

# tb_wait_gone SECONDS PID...: 0 when all are gone in time.
tb_wait_gone () {
    local secs=$1 pid i; shift
    for (( i = 0; i < secs * 10; i++ )); do
        for pid in "$@"; do
            if tb_pid_alive "$pid"; then
                sleep 0.1
                continue 2
            fi
        done
        return 0
    done
    return 1
}

# tb_stop_pids PID...: SIGTERM, up to 15 s, then SIGKILL and 5 s more.
tb_stop_pids () {
    [ $# -gt 0 ] || return 0
    kill "$@" 2>/dev/null || true
    tb_wait_gone 15 "$@" && return 0
    kill -KILL "$@" 2>/dev/null || true
    tb_wait_gone 5 "$@" || tb_die "processes $* did not exit"
}

tb_uuid () {
    cat /proc/sys/kernel/random/uuid
}

# tb_uuid_var NAME: the same, into variable NAME, without a fork.
tb_uuid_var () {
    read -r "$1" </proc/sys/kernel/random/uuid
}

# tb_sorted_kv KEY=VALUE...: the lines sorted by key, as VDSM writes them
# (plain byte order of the key; the key ends at the first '=').
tb_sorted_kv () {
    local kv
    for kv in "$@"; do
        printf '%s\t%s\n' "${kv%%=*}" "$kv"
    done | LC_ALL=C sort -t "$(printf '\t')" -k1,1 | cut -f2-
}

# tb_checksum KEY=VALUE...: SHA-1 over the sorted "KEY=VALUE" strings joined
# without separators (vdsm-storage.md 2.3).
tb_checksum () {
    tb_sorted_kv "$@" | tr -d '\n' | sha1sum | cut -d' ' -f1
}

# tb_dom_metadata KEY=VALUE...: dom_md/metadata content, sealed.
tb_dom_metadata () {
    tb_sorted_kv "$@"
    printf '_SHA_CKSUM=%s\n' "$(tb_checksum "$@")"
}

# tb_lvm_tag_encode STRING: every character outside [a-zA-Z0-9_+.-/=!:#]
# becomes &<code point>&.
tb_lvm_tag_encode () {
    local s=$1 out="" c i
    for (( i=0; i<${#s}; i++ )); do
        c=${s:i:1}
        case $c in
            [a-zA-Z0-9_+./=!:#-]) out+=$c ;;
            *) out+="&$(printf '%d' "'$c")&" ;;
        esac
    done
    printf '%s' "$out"
}

# tb_vol_record VERSION DOMAIN IMAGE PARENT FORMAT VOLTYPE CAPACITY [KEY=VAL|-KEY]...
# One volume metadata record as storage_format(VERSION) writes it: the
# keys every record holds, CAP+SEQ on V5, MTIME+SIZE below; overrides
# replace (KEY=VAL) or drop (-KEY) keys. Ends with "EOF\n", no padding.
tb_vol_record () {
    local version=$1 domain=$2 image=$3 parent=$4 format=$5 voltype=$6 cap=$7
    shift 7
    local -A rec=(
        [CTIME]=$TB_CTIME
        [DESCRIPTION]='{"DiskAlias":"disk","DiskDescription":""}'
        [DISKTYPE]=DATA
        [DOMAIN]=$domain
        [FORMAT]=$format
        [GEN]=0
        [IMAGE]=$image
        [LEGALITY]=LEGAL
        [PUUID]=${parent:-$TB_BLANK_UUID}
        [TYPE]=SPARSE
        [VOLTYPE]=$voltype
    )
    if [ "$version" -ge 5 ]; then
        rec[CAP]=$cap
        rec[SEQ]=0
    else
        rec[MTIME]=0
        rec[SIZE]=$(( cap / 512 ))
    fi
    local o k
    for o in "$@"; do
        case $o in
            -*) unset "rec[${o#-}]" ;;
            *=*) rec[${o%%=*}]=${o#*=} ;;
            *) tb_die "bad override: $o" ;;
        esac
    done
    local kvs=()
    for k in "${!rec[@]}"; do
        kvs+=("$k=${rec[$k]}")
    done
    tb_sorted_kv "${kvs[@]}"
    printf 'EOF\n'
}

# The record a volume deleted before 4.2.5 was left with.
tb_cleared_record () {
    printf 'NONE='
    printf '#%.0s' $(seq 502)
    printf '\nEOF\n'
}

# tb_write_file PATH: stdin to PATH through PATH.new and a rename, the way
# VDSM replaces .meta and dom_md/metadata.
tb_write_file () {
    cat >"$1.new"
    mv -f "$1.new" "$1"
}

# ---- sanlock areas, as VDSM writes them ------------------------------

# tb_sanlock_path PATH: PATH as sanlock's LOCKSPACE and RESOURCE strings
# take it (":" escaped; mount directories of NFS and GlusterFS have one).
tb_sanlock_path () {
    printf '%s' "${1//:/\\:}"
}

# tb_sanlock_direct ARGS...: `sanlock direct ARGS` (storage written
# directly, no daemon), quiet unless it fails.
tb_sanlock_direct () {
    local sanlock out
    sanlock=$(command -v sanlock 2>/dev/null || echo /usr/sbin/sanlock)
    [ -x "$sanlock" ] || tb_die "sanlock is not installed (scripts/setup installs it)"
    out=$("$sanlock" direct "$@" 2>&1) || {
        echo "$out" >&2
        return 1
    }
}

# tb_lockspace_init SD PATH [OFFSET]: the host-id area of domain SD (its
# dom_md/ids, or the ids LV). The I/O timeout is 2 s, not VDSM's 10: a
# host joins in seconds instead of a minute.
tb_lockspace_init () {
    tb_sanlock_direct init -s "$1:0:$(tb_sanlock_path "$2"):${3:-0}" -o 2 ||
        tb_die "cannot initialise the lockspace of $1 at $2"
}

# tb_volume_lease SD VOL PATH [OFFSET]: the lease of volume VOL, as VDSM
# writes it when it creates the volume (sanlock write_resource: lockspace
# SD, resource VOL; 512-byte sectors, 1 MiB aligned): <vol>.lease at 0 on a
# file domain, the leases LV at (100 + slot) MiB on a block domain.
tb_volume_lease () {
    tb_sanlock_direct init -r "$1:$2:$(tb_sanlock_path "$3"):${4:-0}" ||
        tb_die "cannot write the lease of volume $2 at $3:${4:-0}"
}

# ---- expected.json ----------------------------------------------------
# Domains and images are kept as JSON lines in $TB_EXPECT/domains and
# $TB_EXPECT/images (each image carrying its "sd"); the image being
# described is held in memory until the next one starts. tb_expect_write
# assembles expected.json, domains and images sorted by UUID as the agent
# sorts them.

TB_CUR_IMAGE=

# tb_json_str VAR STRING: STRING as a JSON string literal, into VAR.
tb_json_str () {
    local s=${2//\\/\\\\}
    s=${s//\"/\\\"}
    printf -v "$1" '"%s"' "$s"
}

# tb_expect_domain UUID KIND STORAGE VERSION PATH
tb_expect_domain () {
    local jpath
    tb_json_str jpath "$5"
    printf '{"uuid":"%s","kind":"%s","storage":"%s","version":%s,"path":%s,"problems":[]}\n' \
        "$1" "$2" "$3" "$4" "$jpath" >>"$TB_EXPECT/domains"
}

tb_expect_flush () {
    if [ -n "$TB_CUR_IMAGE" ]; then
        printf '%s,"volumes":[%s]}\n' "$TB_CUR_IMAGE" "$TB_CUR_VOLUMES" >>"$TB_EXPECT/images"
    fi
    TB_CUR_IMAGE=
    TB_CUR_VOLUMES=
}

# tb_expect_image SD IMG [PROBLEM-CODE...]: starts an image.
tb_expect_image () {
    local sd=$1 img=$2 codes='' c
    shift 2
    for c in "$@"; do
        codes+="${codes:+,}\"$c\""
    done
    tb_expect_flush
    printf -v TB_CUR_IMAGE '{"sd":"%s","uuid":"%s","problems":[%s]' "$sd" "$img" "$codes"
}

# tb_expect_volume VOL PARENT FORMAT VOLTYPE LEGALITY CAPACITY PATH
# A volume of the current image, in chain order. PARENT "" is null (a
# base). A volume without a usable record has FORMAT, VOLTYPE and LEGALITY
# "" (listed as "unknown", keeping the fields strings) and CAPACITY "" (null).
tb_expect_volume () {
    local vol=$1 parent=$2 fmt=${3:-unknown} vt=${4:-unknown} leg=${5:-unknown} cap=$6 path=$7
    local jp=null jf jv jl jc=null jpath v
    tb_json_str jpath "$path"
    [ -n "$parent" ] && jp="\"$parent\""
    jf="\"$fmt\"" jv="\"$vt\"" jl="\"$leg\""
    [ -n "$cap" ] && jc=$cap
    printf -v v '{"uuid":"%s","parent":%s,"format":%s,"voltype":%s,"legality":%s,"capacity":%s,"path":%s}' \
        "$vol" "$jp" "$jf" "$jv" "$jl" "$jc" "$jpath"
    TB_CUR_VOLUMES+="${TB_CUR_VOLUMES:+,}$v"
}

# tb_expect_write OUT DATA_CENTER
tb_expect_write () {
    tb_expect_flush
    touch "$TB_EXPECT/domains" "$TB_EXPECT/images"
    jq -n --arg dc "$2" --slurpfile d "$TB_EXPECT/domains" --slurpfile i "$TB_EXPECT/images" '
        ($i | group_by(.sd) | map({key: .[0].sd, value: (map(del(.sd)) | sort_by(.uuid))})
            | from_entries) as $by_sd
        | {data_center: $dc,
           domains: ($d | map(. + {images: ($by_sd[.uuid] // [])}) | sort_by(.uuid))}' \
        >"$1.new"
    mv -f "$1.new" "$1"
}

# ---- comparing a listing with expected.json -----------------------------

# tb_compare_listing EXPECTED ACTUAL: print every difference between the
# agent's `list --json` output and expected.json, one per line; nothing
# when they agree. Domains and images are matched by UUID; per image the
# volumes (uuid, parent, format, voltype, legality, capacity, path) must be
# equal in order, and the sets of problem codes equal.
tb_compare_listing () {
    jq -r --slurpfile exp "$1" '
        def vfields: map({uuid, parent, format, voltype, legality, capacity, path});
        def codes: [(. // [])[] | if type == "object" then .code else . end] | unique;
        def by_uuid($u): map(select(.uuid == $u)) | .[0];
        $exp[0] as $e | . as $a
        | ([$e.domains[].uuid] | sort) as $eds
        | ([($a.domains // [])[].uuid] | sort) as $ads
        | (if $eds != $ads then
               "domains: missing \($eds - $ads), unexpected \($ads - $eds)"
           else empty end),
          ($e.domains[] as $ed
           | ($a.domains // [] | by_uuid($ed.uuid)) as $ad
           | select($ad != null)
           | (["kind", "storage", "version", "path"][] as $k
              | select($ed[$k] != $ad[$k])
              | "domain \($ed.uuid): \($k): expected \($ed[$k] | tojson), got \($ad[$k] | tojson)"),
             (select(($ed.problems | codes) != ($ad.problems | codes))
              | "domain \($ed.uuid): problems: expected \($ed.problems | codes), got \($ad.problems | codes)"),
             (([$ed.images[].uuid] | sort) as $eis
              | ([($ad.images // [])[].uuid] | sort) as $ais
              | select($eis != $ais)
              | "domain \($ed.uuid): images: missing \($eis - $ais), unexpected \($ais - $eis)"),
             ($ed.images[] as $ei
              | ($ad.images // [] | by_uuid($ei.uuid)) as $ai
              | select($ai != null)
              | (select(($ei.volumes | vfields) != ($ai.volumes // [] | vfields))
                 | "image \($ei.uuid): volumes:\n  expected \($ei.volumes | vfields | tojson)\n  got      \($ai.volumes // [] | vfields | tojson)"),
                (select(($ei.problems | codes) != ($ai.problems | codes))
                 | "image \($ei.uuid): problems: expected \($ei.problems | codes), got \($ai.problems | codes)")))
    ' "$2"
}
