#!/bin/bash
# Configuration precedence as the binary applies it: defaults < config file
# < OVAGENT_<KEY> < --data-center; unknown keys and missing files refused.

# shellcheck source=functions.sh
. "${srcdir:-$(dirname "$0")}/functions.sh"

requires ovagent
requires jq

for v in $(env | sed -n 's/^\(OVAGENT_[A-Z_]*\)=.*/\1/p'); do
    unset "$v"
done
export OVAGENT_SYSLOG=false

# A minimal file domain (metadata only, no images) to tell data centers apart.
SD=3e1c6f0a-5b7d-4c2e-8f9a-0b1c2d3e4f5a
DC=$TESTDIR/dc
mkdir -p "$DC/mnt/server:_export/$SD/dom_md" "$DC/mnt/server:_export/$SD/images"
printf '%s\n' CLASS=Data DESCRIPTION=cli-config ROLE=Regular "SDUUID=$SD" \
    TYPE=NFS VERSION=5 >"$DC/mnt/server:_export/$SD/dom_md/metadata"
EMPTY_DC=$TESTDIR/empty-dc
mkdir -p "$EMPTY_DC/mnt"

# A stand-in for lvm that records its command lines and finds no VGs.
cat >"$TESTDIR/lvm" <<EOF
#!/bin/bash
printf '%s\n' "\$*" >>"$TESTDIR/lvm.log"
EOF
chmod +x "$TESTDIR/lvm"

CONF=$TESTDIR/ovagent.conf

# listed_sd ARGS...: run `ovagent ARGS list --json`, print the domain UUIDs.
listed_sd () {
    expect_exit 0 ovagent "$@" list --json
    jq -r '.domains[].uuid' "$TESTDIR/out"
}

# --- The file's keys take effect.
cat >"$CONF" <<EOF
# written by cli-config.sh
[ovagent]
data_center = $DC
lvm_devices = /dev/ovagent-test-pv0;/dev/ovagent-test-pv1
lvm_command = $TESTDIR/lvm
log_level = debug
syslog = false
EOF
[ "$(listed_sd --config "$CONF")" = "$SD" ] || fail "data_center from the file not used"
grep -q 'debug:' "$TESTDIR/err" || fail "log_level=debug from the file not used"
grep -q -- '/dev/ovagent-test-pv0' "$TESTDIR/lvm.log" ||
    fail "lvm_command/lvm_devices from the file not used: $(cat "$TESTDIR/lvm.log" 2>&1)"
grep -q -- '/dev/ovagent-test-pv1' "$TESTDIR/lvm.log" || fail "second of lvm_devices not used"

# The same file named by OVAGENT_CONFIG, and --config after the command.
[ "$(OVAGENT_CONFIG=$CONF listed_sd)" = "$SD" ] || fail "OVAGENT_CONFIG not read"
expect_exit 0 ovagent list --json --config "$CONF"
[ "$(jq -r '.domains[].uuid' "$TESTDIR/out")" = "$SD" ] || fail "--config after the command ignored"

# --- The environment overrides the file.
cat >"$CONF" <<EOF
[ovagent]
data_center = $EMPTY_DC
lvm_command = $TESTDIR/lvm
lvm_devices = /dev/ovagent-test-pv0
EOF
[ -z "$(listed_sd --config "$CONF")" ] || fail "file data_center not used"
[ "$(OVAGENT_DATA_CENTER=$DC listed_sd --config "$CONF")" = "$SD" ] ||
    fail "OVAGENT_DATA_CENTER does not override the file"
# An empty OVAGENT_LVM_DEVICES disables block scanning: LVM is not run.
rm -f "$TESTDIR/lvm.log"
OVAGENT_LVM_DEVICES='' listed_sd --config "$CONF" >/dev/null
[ ! -e "$TESTDIR/lvm.log" ] || fail "LVM ran with OVAGENT_LVM_DEVICES empty: $(cat "$TESTDIR/lvm.log")"
# Comma-separated in the environment.
OVAGENT_LVM_DEVICES=/dev/ovagent-test-a,/dev/ovagent-test-b listed_sd --config "$CONF" >/dev/null
grep -q -- '/dev/ovagent-test-b' "$TESTDIR/lvm.log" || fail "OVAGENT_LVM_DEVICES list not used"
grep -q -- '/dev/ovagent-test-pv0' "$TESTDIR/lvm.log" && fail "file lvm_devices used despite the environment"

# --- --data-center beats the environment and the file, on either side.
export OVAGENT_LVM_DEVICES=''
[ "$(OVAGENT_DATA_CENTER=$EMPTY_DC listed_sd --config "$CONF" --data-center "$DC")" = "$SD" ] ||
    fail "--data-center does not beat OVAGENT_DATA_CENTER"
expect_exit 0 env OVAGENT_DATA_CENTER="$EMPTY_DC" ovagent list --json --data-center "$DC" --config "$CONF"
[ "$(jq -r '.domains[].uuid' "$TESTDIR/out")" = "$SD" ] || fail "--data-center after the command ignored"

# A data center that does not exist is an error naming it, not an empty list.
expect_exit 1 ovagent --config "$CONF" --data-center "$TESTDIR/nosuch" list
grep -q "$TESTDIR/nosuch" "$TESTDIR/err" || fail "missing data center not named"

# --- Refused configurations: exit 2, one line naming file and key.
printf '[ovagent]\ndata_centre = %s\n' "$DC" >"$CONF"
expect_exit 2 ovagent --config "$CONF" list
[ "$(wc -l <"$TESTDIR/err")" -eq 1 ] || fail "unknown key: not one line"
grep -q "data_centre" "$TESTDIR/err" || fail "unknown key not named"
grep -q "$CONF" "$TESTDIR/err" || fail "file of the unknown key not named"
expect_exit 2 ovagent --config "$CONF" list --json
jq -e '.code == "usage" and (.message | contains("data_centre"))' "$TESTDIR/out" >/dev/null ||
    fail "unknown key: no JSON error"

printf '[ovagent]\nlog_level = loud\n' >"$CONF"
expect_exit 2 ovagent --config "$CONF" list
grep -q "log_level.*loud" "$TESTDIR/err" || fail "bad log_level not named"

printf '[ovagent]\nrun_dir = relative/run\n' >"$CONF"
expect_exit 2 ovagent --config "$CONF" list
grep -q "run_dir" "$TESTDIR/err" || fail "relative run_dir not refused"

printf '[ovagent]\nstate_dir = /var/lib/ovagent\n' >"$CONF"
expect_exit 2 env OVAGENT_STATE_DIR=state ovagent --config "$CONF" list
grep -q "OVAGENT_STATE_DIR" "$TESTDIR/err" || fail "bad environment variable not named"

# An explicitly named file must exist; so must one named by OVAGENT_CONFIG.
expect_exit 2 ovagent --config "$TESTDIR/nosuch.conf" list
grep -q "$TESTDIR/nosuch.conf" "$TESTDIR/err" || fail "missing --config file not named"
[ "$(wc -l <"$TESTDIR/err")" -eq 1 ] || fail "missing --config: not one line"
expect_exit 2 env OVAGENT_CONFIG="$TESTDIR/nosuch.conf" ovagent list
grep -q "$TESTDIR/nosuch.conf" "$TESTDIR/err" || fail "missing OVAGENT_CONFIG file not named"

echo "PASS: cli-config"
