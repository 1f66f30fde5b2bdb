#!/bin/bash
# export-chain --target ssh://USER@HOST:PORT/PATH through a real sshd on
# 127.0.0.1: the pushed repository restores to the source chain's content;
# unknown and changed host keys are refused (exit 7, with the fingerprint);
# a failing remote receive comes back with its own exit code.

. "$top_srcdir/tests/functions.sh"

requires_core xxh128sum
requires_core sshd
requires_core ssh-keygen
requires_core qemu-img
requires_core jq
requires_root
requires ovagent

start_sshd

TB=$TESTDIR/tb
cleanup_add filedomain.sh down "$TB"
filedomain.sh up "$TB" >/dev/null
. "$TB/env"

# A healthy three-volume chain (raw base, two qcow2 layers).
img=$(jq -r '.domains[].images[] | select((.volumes | length) == 3 and (.problems | length) == 0)
             | .uuid' "$TB/expected.json" | head -1)
[ -n "$img" ] || fail "no three-volume image in $TB/expected.json"
image_json=$(jq -c --arg i "$img" '[.domains[].images[] | select(.uuid == $i)][0]' "$TB/expected.json")
top=$(jq -r '.volumes[] | select(.voltype == "leaf") | .uuid' <<<"$image_json")
top_path=$(jq -r '.volumes[] | select(.voltype == "leaf") | .path' <<<"$image_json")
base=$(jq -r '.volumes[] | select(.parent == null) | .uuid' <<<"$image_json")
all_vols=$(jq -c '[.volumes[].uuid] | sort' <<<"$image_json")
[ -f "$top_path" ] || fail "top volume $top_path missing"

# The remote side runs the binary under test as root through sshd.
export OVAGENT_REMOTE_COMMAND=$top_builddir/agent/ovagent
export OVAGENT_SSH_KEY=$S/clientkey
export OVAGENT_SSH_KNOWN_HOSTS=$S/known_hosts

repo=$TESTDIR/repo
target=ssh://root@127.0.0.1:$SSHD_PORT$repo

# repo_state: every file of the repository with its checksum, to prove that
# a refused push left it exactly as it was.
repo_state () {
    if [ -d "$repo" ]; then
        (cd "$repo" && find . -type f ! -name lock -print0 | sort -z | xargs -0r xxh128sum)
    fi
}

# --- a full push ----------------------------------------------------------
# --to: without libvirt the leaf is sent only when named.
expect_exit 0 ovagent export-chain "$img" --to "$top" --target "$target" --json
result=$TESTDIR/push.json
cp "$TESTDIR/out" "$result"
jq -e '.result == "ok"' "$result" >/dev/null || fail "push result not ok: $(cat "$result")"
backup_id=$(jq -r '.backup_id // empty' "$result")
[ -n "$backup_id" ] || fail "push result has no backup_id: $(cat "$result")"
jq -e --arg b "$backup_id" '.remote.result == "ok" and .remote.backup_id == $b' "$result" >/dev/null ||
    fail "push result does not carry the remote receive result: $(cat "$result")"
jq -e --argjson v "$all_vols" '(.volumes | sort) == $v' "$result" >/dev/null ||
    fail "pushed volumes $(jq -c .volumes "$result"), expected $all_vols"
jq -e --argjson v "$all_vols" '(.remote.volumes | sort) == $v' "$result" >/dev/null ||
    fail "remote received $(jq -c .remote.volumes "$result"), expected $all_vols"
jq -e '.bytes_sent > 0 and .remote.bytes_received == .bytes_sent' "$result" >/dev/null ||
    fail "bytes sent and received differ: $(cat "$result")"

[ -f "$repo/disks/$img/manifest.json" ] || fail "no manifest for $img in $repo"
[ -f "$repo/disks/$img/$backup_id/$top.qcow2" ] || fail "no top volume file in backup $backup_id"
qemu-img info --backing-chain "$repo/disks/$img/$backup_id/$top.qcow2" >/dev/null ||
    fail "the pushed backup does not open with qemu-img"

# The restored disk holds what the source chain holds.
expect_exit 0 ovagent restore --repo "$repo" "$img" --to "$TESTDIR/restored.raw" --json
jq -e --arg b "$backup_id" '.backup_id == $b' "$TESTDIR/out" >/dev/null ||
    fail "restore did not use backup $backup_id: $(cat "$TESTDIR/out")"
qemu-img convert -O raw "$top_path" "$TESTDIR/source.raw"
src_size=$(qemu-img info --output=json "$TESTDIR/source.raw" | jq '.["virtual-size"]')
dst_size=$(qemu-img info --output=json -f raw "$TESTDIR/restored.raw" | jq '.["virtual-size"]')
[ "$src_size" = "$dst_size" ] || fail "restored size $dst_size, source $src_size"
qemu-img compare -f raw -F raw "$TESTDIR/source.raw" "$TESTDIR/restored.raw" ||
    fail "restored disk differs from the source chain"
rm -f "$TESTDIR/source.raw" "$TESTDIR/restored.raw"

before=$(repo_state)

# --- host keys: never accepted unless listed --------------------------------
cp "$S/known_hosts" "$TESTDIR/known_hosts.good"

# Unknown: an empty known_hosts.
: > "$TESTDIR/known_hosts.empty"
expect_exit 7 env OVAGENT_SSH_KNOWN_HOSTS="$TESTDIR/known_hosts.empty" \
    ovagent export-chain "$img" --to "$top" --target "$target" --json
grep -q 'SHA256:' "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "unknown host key: no fingerprint in the message"; }
[ ! -s "$TESTDIR/known_hosts.empty" ] || fail "an unknown host key was added to known_hosts"
jq -e '.result == "error" and .code == "transport"' "$TESTDIR/out" >/dev/null ||
    fail "unknown host key: JSON error expected: $(cat "$TESTDIR/out")"

# Changed: known_hosts lists another key for [127.0.0.1]:PORT.
ssh-keygen -q -t ed25519 -N '' -C other -f "$TESTDIR/otherkey"
echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$TESTDIR/otherkey.pub")" > "$TESTDIR/known_hosts.changed"
expect_exit 7 env OVAGENT_SSH_KNOWN_HOSTS="$TESTDIR/known_hosts.changed" \
    ovagent export-chain "$img" --to "$top" --target "$target" --json
grep -q 'SHA256:' "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "changed host key: no fingerprint in the message"; }
grep -qi 'changed' "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "changed host key: not reported as changed"; }
cmp -s "$TESTDIR/known_hosts.good" "$S/known_hosts" || fail "known_hosts was modified"

# A key the server does not accept.
expect_exit 7 env OVAGENT_SSH_KEY="$TESTDIR/otherkey" \
    ovagent export-chain "$img" --to "$top" --target "$target" --json
grep -q 'refused' "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "wrong key: not reported as refused"; }

# A target URL with shell metacharacters never reaches the remote shell.
expect_exit 2 ovagent export-chain "$img" --to "$top" \
    --target "ssh://root@127.0.0.1:$SSHD_PORT$repo;touch$TESTDIR/pwned" --json
[ ! -e "$TESTDIR/pwned" ] || fail "the remote shell ran a command from the URL"

[ "$(repo_state)" = "$before" ] || fail "a refused push changed the repository"

# --- the remote receive fails: its exit code comes back --------------------
# What receive says about an unwritable repository when run locally...
bad_repo=/proc/ovagent-no-such-dir/repo
rc_local=0
ovagent export-chain "$img" --to "$top" --output - 2>/dev/null |
    ovagent receive --repo "$bad_repo" --json >"$TESTDIR/local.json" 2>"$TESTDIR/local.err" ||
    rc_local=$?
[ "$rc_local" -ne 0 ] || fail "receive into $bad_repo succeeded"
# ... comes back through the push, code and message.
expect_exit "$rc_local" ovagent export-chain "$img" --to "$top" \
    --target "ssh://root@127.0.0.1:$SSHD_PORT$bad_repo" --json
grep -q 'remote receive on 127.0.0.1 failed' "$TESTDIR/err" ||
    { cat "$TESTDIR/err" >&2; fail "remote failure not reported as such"; }
code_local=$(jq -r .code "$TESTDIR/local.json")
jq -e --arg c "$code_local" '.result == "error" and .code == $c' "$TESTDIR/out" >/dev/null ||
    fail "remote failure: JSON code $(jq -r .code "$TESTDIR/out"), receive said $code_local"

# An incremental that does not continue the repository's chain: receive
# refuses it as an integrity error (6), and so does the push.
expect_exit 6 ovagent export-chain "$img" --since "$base" --to "$top" --target "$target" --json
grep -q 'remote receive on 127.0.0.1 failed' "$TESTDIR/err" ||
    { cat "$TESTDIR/err" >&2; fail "remote refusal not reported as such"; }
jq -e '.result == "error" and .code == "integrity"' "$TESTDIR/out" >/dev/null ||
    fail "remote refusal: expected an integrity error: $(cat "$TESTDIR/out")"

# A remote command that does not exist.
expect_exit 7 env OVAGENT_REMOTE_COMMAND=/nonexistent/ovagent \
    ovagent export-chain "$img" --to "$top" --target "$target" --json
grep -q 'remote_command' "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "missing remote command not explained"; }

[ "$(repo_state)" = "$before" ] || fail "a failed push changed the repository"

echo "PASS: export-chain push over SSH"
