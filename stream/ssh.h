/* ovagent: pushing a stream over SSH (libssh): target URL parsing, host key
 * and key checks, the remote receive command and its result. */
#ifndef STRM_SSH_H
#define STRM_SSH_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "stream.h"

/* Bounds on the parts of a target URL. */
#define STRM_SSH_USER_MAX 32       /* useradd's limit */
#define STRM_SSH_HOST_MAX 253      /* a DNS name */
#define STRM_SSH_PATH_MAX 4095
#define STRM_SSH_URL_MAX 4400

/* Bytes of the remote result (stdout) and of its stderr kept. */
#define STRM_SSH_RESULT_MAX (1024 * 1024)
#define STRM_SSH_STDERR_KEEP (64 * 1024)

/* ssh://[USER@]HOST[:PORT]/PATH, checked. */
typedef struct strm_ssh_url {
  char *user;   /* [a-z_][a-z0-9_.-]*, at most STRM_SSH_USER_MAX; NULL when
                 * the URL names none (the local user name is used) */
  char *host;   /* a DNS name, an IPv4 address, or an IPv6 address (given
                 * in brackets in the URL, stored without them) */
  guint port;   /* 1..65535; 22 when the URL names none */
  char *path;   /* absolute, of [A-Za-z0-9._+,=@:/-] only */
} strm_ssh_url;

/* Parse and check a target URL. Anything outside the grammar above (other
 * scheme, shell metacharacters, percent escapes, empty parts, too long) is
 * OVA_ERROR_USAGE naming the URL. Meant to be called while parsing the
 * command line, before any storage is touched. */
strm_ssh_url *strm_ssh_url_parse (const char *url, GError **error);
void strm_ssh_url_free (strm_ssh_url *u);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (strm_ssh_url, strm_ssh_url_free)

/* Open a sink that runs the remote receiver for url and writes the stream to
 * its stdin:
 *   REMOTE_COMMAND receive --repo 'PATH' --json
 * through the remote user's shell (PATH quoted for it).
 *
 * key_path: private key file (no passphrase); NULL tries ~/.ssh/id_ed25519,
 *   ~/.ssh/id_ecdsa and ~/.ssh/id_rsa in that order, those that exist.
 * known_hosts: the known_hosts file; NULL is ~/.ssh/known_hosts. The host
 *   key must be listed there (or, as with OpenSSH, in the system-wide
 *   /etc/ssh/ssh_known_hosts): an unknown host, a changed key or a key of
 *   another type is OVA_ERROR_TRANSPORT with the server's SHA256 fingerprint
 *   and how to add the key; it is never accepted on its own.
 * remote_command: the program to run there ("ovagent", "/usr/bin/ovagent",
 *   "sudo -n ovagent"): words of [A-Za-z0-9._+,=:/@-] separated by single
 *   spaces; NULL means "ovagent". Anything else is OVA_ERROR_USAGE.
 *
 * The ssh client configuration files (~/.ssh/config) are not read, so that
 * what is checked is only what is passed here. Ciphers: AES-128-GCM, then
 * ChaCha20-Poly1305, then AES-CTR; no compression.
 *
 * Errors: OVA_ERROR_USAGE for a bad URL, command or unreadable key file;
 * OVA_ERROR_TRANSPORT for connection, host key, authentication and channel
 * failures. Every message names the target. */
strm_sink *strm_sink_ssh_new (const char *target_url, const char *key_path,
                              const char *known_hosts, const char *remote_command,
                              GError **error);

/* The same, running the exact command line `command` on the target (it is
 * passed to the remote shell as it is: the caller quotes). For tests and
 * measurements; the close result rules below apply to it too, except that
 * its stdout need not be JSON (see strm_sink_ssh_result). */
strm_sink *strm_sink_ssh_new_command (const strm_ssh_url *url, const char *key_path,
                                      const char *known_hosts, const char *command,
                                      GError **error);

/* Behaviour of the sink's ops (see stream.h for the table):
 *
 * write: all of buf goes into the channel (small writes are gathered into
 *   larger packets). The bytes are copied into a bounded queue (at most 3
 *   buffers of 4 MiB) and sent by a thread of the sink, so that the caller
 *   frames and reads the next ones meanwhile; a failure of that thread is
 *   the error of the next write, or of close. The remote stderr is drained as the data goes, so a
 *   talkative receiver cannot stall the channel; its last
 *   STRM_SSH_STDERR_KEEP bytes are kept for messages. If the remote
 *   command has exited (e.g. receive refused the stream, or its disk is
 *   full) the error carries the remote exit status as its code
 *   (6 integrity, 8 no space, ...) and its message; if the connection
 *   broke, OVA_ERROR_TRANSPORT naming the target; if the channel took no
 *   byte for the sink's io_timeout (strm_sink_set_io_limits),
 *   OVA_ERROR_TRANSPORT "the SSH channel to TARGET accepted nothing for N s
 *   (io_timeout)".
 *
 * close: sends what is queued, then EOF, reads the remote stdout (at most STRM_SSH_RESULT_MAX)
 *   until the command exits and takes its exit status. Exit 0: success,
 *   the stdout is kept (strm_sink_ssh_result). Non-zero: an error whose
 *   code is the remote exit status when it is one of ours (1..8), else
 *   OVA_ERROR_TRANSPORT; message "remote receive on HOST failed: MESSAGE"
 *   with MESSAGE from the remote JSON error object, else from the last line
 *   of its stderr. Killed by a signal or the connection lost: TRANSPORT.
 *   For strm_sink_ssh_new, exit 0 without a JSON object whose "result" is
 *   "ok" on stdout is TRANSPORT too.
 *
 * free: without a successful close what is queued is dropped and the
 *   channel simply closed: the remote receiver sees a cut stream and
 *   discards it. */

/* After a successful close: the remote command's stdout (for
 * strm_sink_ssh_new, the remote receive result JSON object, whitespace
 * trimmed). NULL before that, on failure, or for a sink of another kind.
 * Owned by the sink. */
const char *strm_sink_ssh_result (strm_sink *s);

/* After a successful close of a strm_sink_ssh_new sink: the same result
 * parsed (e.g. json_object_get_string_member (o, "backup_id")). NULL
 * otherwise. Owned by the sink. */
JsonObject *strm_sink_ssh_result_object (strm_sink *s);

/* "ssh://USER@HOST:PORT" of an SSH sink, for messages; NULL for others. */
const char *strm_sink_ssh_target (strm_sink *s);

#endif
