/* ovagent: the SSH sink: a stream pushed into a remote `ovagent receive`
 * through a libssh channel; host key and key checks, the remote result. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include "error.h"
#include "log.h"
#include "ssh.h"
#include "util.h"

/* Fast AEAD ciphers first (TESTBED §5: AES-128-GCM through libssh moved
 * 740-850 MiB/s here, ChaCha20 half that); CTR for older servers. */
#define PREFERRED_CIPHERS \
  "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr," \
  "aes256-gcm@openssh.com,aes256-ctr"

/* Connecting, key exchange and authentication. Writes of the stream wait
 * at most the sink's io_timeout for the peer; waiting for the result has
 * no limit (the receiver may take long to commit a big backup). */
#define CONNECT_TIMEOUT_SECONDS 30L

/* After a write failed: how long to wait for the remote command's exit
 * status and its last words. */
#define FAILURE_TIMEOUT_SECONDS 10L

/* Dead peers on an idle connection (waiting for the result). */
#define KEEPALIVE_IDLE 60
#define KEEPALIVE_INTERVAL 15
#define KEEPALIVE_COUNT 4

/* Small frames (headers, holes, zero runs) are gathered into one packet,
 * for at most STRM_GATHER_MAX_AGE; large ones go straight into the
 * channel. */
#define GATHER_MAX (256 * 1024)
#define GATHER_SMALL (64 * 1024)

/* ssh_channel_write takes a 32-bit count. */
#define WRITE_MAX (16u * 1024 * 1024)

#define COLLECT_POLL_MS 500

#define REMOTE_COMMAND_MAX 1024
#define REMOTE_MESSAGE_MAX 1024


typedef struct ssh_sink {
  strm_sink parent;
  char *target;          /* "ssh://user@host:port", for messages */
  char *host;
  char *what;            /* "remote receive" or "remote command" */
  gboolean expect_json;  /* stdout must be a receive result object */
  ssh_session session;
  ssh_channel channel;
  struct ssh_channel_callbacks_struct callbacks;
  guint8 *gather;
  gsize gather_len;
  gint64 gather_since;   /* when its first byte came (monotonic µs) */
  GString *out;          /* remote stdout, at most STRM_SSH_RESULT_MAX */
  gboolean out_overflow;
  GString *err;          /* the tail of the remote stderr */
  gboolean failed;       /* no more I/O once something failed */
  gboolean closed;
  char *result;
  JsonParser *parser;    /* owns result_object */
  JsonObject *result_object;
} ssh_sink;

static const struct strm_sink_ops ssh_sink_ops;

/* Words of safe characters: the remote shell needs no quoting for them. */
static gboolean
remote_command_is_valid (const char *cmd)
{
  const char *p;

  if (cmd[0] == '\0' || cmd[0] == ' ' || strlen (cmd) > REMOTE_COMMAND_MAX)
    return FALSE;
  for (p = cmd; *p; p++) {
    if (*p == ' ') {
      if (p[1] == ' ' || p[1] == '\0')
        return FALSE;
    }
    else if (!(g_ascii_isalnum (*p) || strchr ("._+,=:/@-", *p) != NULL))
      return FALSE;
  }
  return TRUE;
}

/* ---- remote output ---- */

/* Text from the remote side for one of our messages: valid UTF-8, no
 * control characters, at most max bytes. */
static char *
clean_remote_text (const char *text, gssize len, gsize max)
{
  g_autofree char *valid = g_utf8_make_valid (text, len);
  GString *s = g_string_new (NULL);
  const char *p;

  for (p = valid; *p; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);

    if (s->len >= max) {
      g_string_append (s, "...");
      break;
    }
    g_string_append_unichar (s, g_unichar_iscntrl (c) ? ' ' : c);
  }
  return g_strstrip (g_string_free (s, FALSE));
}

static void
keep_output (ssh_sink *k, gboolean is_stderr, const guint8 *buf, gsize len)
{
  if (is_stderr) {
    g_string_append_len (k->err, (const char *) buf, len);
    if (k->err->len > STRM_SSH_STDERR_KEEP)
      g_string_erase (k->err, 0, k->err->len - STRM_SSH_STDERR_KEEP);
  }
  else if (k->out->len + len > STRM_SSH_RESULT_MAX)
    k->out_overflow = TRUE;
  else
    g_string_append_len (k->out, (const char *) buf, len);
}

/* Remote output is taken as it arrives, from inside libssh's packet
 * handling, even while a write waits for window space: a receiver that
 * talks on stderr before it reads, or prints its error and exits, must
 * never find its own window full (both sides would wait forever). */
static int
on_channel_data (ssh_session session G_GNUC_UNUSED, ssh_channel channel G_GNUC_UNUSED,
                 void *data, uint32_t len, int is_stderr, void *opaque)
{
  keep_output (opaque, is_stderr, data, len);
  return len;
}

/* Handle what has arrived without waiting (a close is seen early). */
static void
pump (ssh_sink *k)
{
  (void) ssh_channel_poll (k->channel, 0);
}

/* Wait until the remote output ends, then take the exit status: -1 when
 * there is none (killed by a signal, connection lost) or when deadline
 * (monotonic µs, 0: none) passes first. */
static int
collect_exit_status (ssh_sink *k, gint64 deadline)
{
  for (;;) {
    int r = ssh_channel_poll_timeout (k->channel, COLLECT_POLL_MS, 0);

    if (r == SSH_ERROR || r == SSH_EOF)
      break;
    if (ssh_channel_is_eof (k->channel) || ssh_channel_is_closed (k->channel))
      break;
    if (deadline != 0 && g_get_monotonic_time () >= deadline)
      return -1;
  }
  if (deadline != 0 && g_get_monotonic_time () >= deadline)
    return -1;
  return ssh_channel_get_exit_status (k->channel);
}

/* The last non-empty line of the remote stderr, cleaned; NULL if none. */
static char *
stderr_last_line (ssh_sink *k)
{
  g_auto (GStrv) lines = NULL;
  int i;

  if (k->err->len == 0)
    return NULL;
  lines = g_strsplit (k->err->str, "\n", -1);
  for (i = g_strv_length (lines) - 1; i >= 0; i--) {
    g_autofree char *line = clean_remote_text (lines[i], -1, REMOTE_MESSAGE_MAX);
    if (*line != '\0')
      return g_steal_pointer (&line);
  }
  return NULL;
}

/* The "message" of a JSON error object on the remote stdout (the whole
 * text, or its last line when something else came first). */
static char *
json_error_message (ssh_sink *k)
{
  g_autofree char *text = g_strstrip (g_strdup (k->out->str));
  const char *candidates[2];
  const char *nl;
  int i;

  if (*text == '\0')
    return NULL;
  candidates[0] = text;
  nl = strrchr (text, '\n');
  candidates[1] = nl ? nl + 1 : NULL;

  for (i = 0; i < 2 && candidates[i] != NULL; i++) {
    g_autoptr (JsonParser) parser = json_parser_new ();
    JsonNode *root;
    JsonObject *o;
    JsonNode *m;

    if (!json_parser_load_from_data (parser, candidates[i], -1, NULL))
      continue;
    root = json_parser_get_root (parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
      continue;
    o = json_node_get_object (root);
    m = json_object_get_member (o, "message");
    if (m != NULL && JSON_NODE_HOLDS_VALUE (m) &&
        json_node_get_value_type (m) == G_TYPE_STRING)
      return clean_remote_text (json_node_get_string (m), -1, REMOTE_MESSAGE_MAX);
  }
  return NULL;
}

/* The error for a remote command that exited with status (-1: none). */
static void
set_remote_error (ssh_sink *k, int status, GError **error)
{
  g_autofree char *msg = json_error_message (k);

  if (msg == NULL)
    msg = stderr_last_line (k);

  if (status < 0)
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "%s on %s ended without an exit status (killed, or the "
                 "connection to %s was lost)%s%s",
                 k->what, k->host, k->target, msg ? ": " : "", msg ? msg : "");
  else if (status >= OVA_ERROR_INTERNAL && status <= OVA_ERROR_NO_SPACE)
    g_set_error (error, OVA_ERROR, status, "%s on %s failed: %s",
                 k->what, k->host, msg ? msg : "it gave no reason");
  else if (status == 127)
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "%s on %s failed: command not found (check remote_command): %s",
                 k->what, k->host, msg ? msg : "no message");
  else
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "%s on %s failed with exit status %d: %s",
                 k->what, k->host, status, msg ? msg : "it gave no reason");
}

/* A write or EOF failed: the remote command most likely exited (refused
 * the stream, disk full); its status and message say more than libssh. */
static gboolean
fail_from_remote (ssh_sink *k, GError **error)
{
  g_autofree char *why = g_strdup (ssh_get_error (k->session));
  long timeout = FAILURE_TIMEOUT_SECONDS;
  int status;

  k->failed = TRUE;
  ssh_options_set (k->session, SSH_OPTIONS_TIMEOUT, &timeout);
  status = collect_exit_status (k, g_get_monotonic_time () +
                                FAILURE_TIMEOUT_SECONDS * G_USEC_PER_SEC);
  if (status > 0 || (status < 0 && ssh_channel_is_closed (k->channel)))
    set_remote_error (k, status, error);
  else if (status == 0)
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "%s on %s exited before the end of the stream", k->what, k->host);
  else
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot write the stream to %s: %s", k->target,
                 why && *why ? why : "the channel was closed");
  return FALSE;
}

/* ---- sink ops ---- */

/* Nothing could be queued (the channel window is used up, or a key
 * exchange runs): wait for the peer, up to deadline, then let libssh read
 * what came (window adjustments) and send what it holds. */
static gboolean
wait_for_peer (ssh_sink *k, gint64 deadline, GError **error)
{
  short events = POLLIN;

  if (ssh_get_poll_flags (k->session) & SSH_WRITE_PENDING)
    events |= POLLOUT;
  switch (ova_wait_fd (ssh_get_fd (k->session), events, deadline, k->parent.cancel)) {
  case 0:
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "the SSH channel to %s accepted nothing for %u s (io_timeout)",
                 k->target, k->parent.io_timeout);
    return FALSE;
  case -1:
    if (errno == EINTR)
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED,
                   "interrupted by a signal while writing the stream to %s", k->target);
    else
      g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                   "cannot wait for the SSH connection to %s: %s",
                   k->target, g_strerror (errno));
    return FALSE;
  default:
    pump (k);
    return TRUE;
  }
}

/* The session is non-blocking while data goes in: libssh queues what the
 * peer's window allows and returns, so that a peer that takes nothing is
 * seen after io_timeout instead of blocking for ever. */
static gboolean
channel_write_all (ssh_sink *k, const guint8 *buf, gsize len, GError **error)
{
  gint64 deadline = ova_deadline_in (k->parent.io_timeout);
  gboolean ok = TRUE;
  gboolean lost = FALSE;

  ssh_set_blocking (k->session, 0);
  while (len > 0) {
    int r = ssh_channel_write (k->channel, buf, MIN (len, WRITE_MAX));

    /* Nothing written and not open: the channel closed while waiting. */
    if (r < 0 || (r == 0 && !ssh_channel_is_open (k->channel))) {
      lost = TRUE;
      break;
    }
    if (r == 0) {
      if (!wait_for_peer (k, deadline, error)) {
        ok = FALSE;
        break;
      }
      continue;
    }
    buf += r;
    len -= r;
    deadline = ova_deadline_in (k->parent.io_timeout);
    pump (k);
  }
  if (!ok) {
    /* Left non-blocking: closing the channel and the session then never
     * waits for a peer that takes nothing. */
    k->failed = TRUE;
    return FALSE;
  }
  ssh_set_blocking (k->session, 1);
  if (lost)
    return fail_from_remote (k, error);
  return TRUE;
}

static gboolean
flush_gather (ssh_sink *k, GError **error)
{
  gsize len = k->gather_len;

  k->gather_len = 0;
  return len == 0 || channel_write_all (k, k->gather, len, error);
}

static gboolean
check_usable (ssh_sink *k, GError **error)
{
  if (k->failed || k->closed) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "the stream to %s is already %s", k->target,
                 k->failed ? "aborted" : "closed");
    return FALSE;
  }
  return TRUE;
}

static gboolean
ssh_sink_write (strm_sink *s, const void *buf, size_t len, GError **error)
{
  ssh_sink *k = (ssh_sink *) s;

  if (!check_usable (k, error))
    return FALSE;
  if (len < GATHER_SMALL) {
    gint64 now;

    if (k->gather_len + len > GATHER_MAX && !flush_gather (k, error))
      return FALSE;
    now = g_get_monotonic_time ();
    if (k->gather_len == 0)
      k->gather_since = now;
    memcpy (k->gather + k->gather_len, buf, len);
    k->gather_len += len;
    return now - k->gather_since < STRM_GATHER_MAX_AGE || flush_gather (k, error);
  }
  if (!flush_gather (k, error))
    return FALSE;
  return channel_write_all (k, buf, len, error);
}

/* Exit status 0: the stdout is the result; for receive, it must be its
 * JSON "ok" object. */
static gboolean
take_result (ssh_sink *k, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr (JsonParser) parser = NULL;
  g_autoptr (GError) err = NULL;
  JsonNode *root;
  JsonObject *o;
  const char *result;

  if (k->out_overflow) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "%s on %s printed more than %d bytes", k->what, k->host,
                 STRM_SSH_RESULT_MAX);
    return FALSE;
  }
  text = g_strstrip (g_strdup (k->out->str));
  if (!k->expect_json) {
    k->result = g_steal_pointer (&text);
    return TRUE;
  }

  parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, text, -1, &err)) {
    g_autofree char *shown = clean_remote_text (text, -1, 200);
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "%s on %s succeeded but its result is not JSON (%s): \"%s\"",
                 k->what, k->host, err->message, shown);
    return FALSE;
  }
  root = json_parser_get_root (parser);
  o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  result = o ? json_object_get_string_member_with_default (o, "result", NULL) : NULL;
  if (result == NULL || strcmp (result, "ok") != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "%s on %s exited 0 without an {\"result\": \"ok\"} object",
                 k->what, k->host);
    return FALSE;
  }
  k->result = g_steal_pointer (&text);
  k->parser = g_steal_pointer (&parser);
  k->result_object = o;
  return TRUE;
}

static gboolean
ssh_sink_close (strm_sink *s, GError **error)
{
  ssh_sink *k = (ssh_sink *) s;
  int status;

  if (!check_usable (k, error))
    return FALSE;
  if (!flush_gather (k, error))
    return FALSE;
  if (ssh_channel_send_eof (k->channel) != SSH_OK)
    return fail_from_remote (k, error);

  status = collect_exit_status (k, 0);
  if (status != 0) {
    k->failed = TRUE;
    set_remote_error (k, status, error);
    return FALSE;
  }
  if (!take_result (k, error)) {
    k->failed = TRUE;
    return FALSE;
  }
  k->closed = TRUE;
  ova_debug ("%s on %s finished: %s", k->what, k->host, k->result);
  return TRUE;
}

static void
ssh_sink_free (strm_sink *s)
{
  ssh_sink *k = (ssh_sink *) s;

  if (k->channel) {
    if (ssh_channel_is_open (k->channel))
      ssh_channel_close (k->channel);
    ssh_channel_free (k->channel);
  }
  if (k->session) {
    if (ssh_is_connected (k->session))
      ssh_disconnect (k->session);
    ssh_free (k->session);
  }
  g_free (k->target);
  g_free (k->host);
  g_free (k->what);
  g_free (k->gather);
  g_string_free (k->out, TRUE);
  g_string_free (k->err, TRUE);
  g_free (k->result);
  if (k->parser)
    g_object_unref (k->parser);
  g_free (k);
}

static const struct strm_sink_ops ssh_sink_ops = {
  .name = "ssh",
  .write = ssh_sink_write,
  .close = ssh_sink_close,
  .free = ssh_sink_free,
};

static ssh_sink *
as_ssh_sink (strm_sink *s)
{
  return s != NULL && s->ops == &ssh_sink_ops ? (ssh_sink *) s : NULL;
}

const char *
strm_sink_ssh_result (strm_sink *s)
{
  ssh_sink *k = as_ssh_sink (s);

  return k && k->closed ? k->result : NULL;
}

JsonObject *
strm_sink_ssh_result_object (strm_sink *s)
{
  ssh_sink *k = as_ssh_sink (s);

  return k && k->closed ? k->result_object : NULL;
}

const char *
strm_sink_ssh_target (strm_sink *s)
{
  ssh_sink *k = as_ssh_sink (s);

  return k ? k->target : NULL;
}

/* ---- connection ---- */

static gboolean
set_option (ssh_sink *k, enum ssh_options_e opt, const void *value,
            const char *name, GError **error)
{
  if (ssh_options_set (k->session, opt, value) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot set the SSH option %s for %s: %s",
                 name, k->target, ssh_get_error (k->session));
    return FALSE;
  }
  return TRUE;
}

/* libssh opens the socket without close-on-exec; commands run while the
 * stream flows must not inherit it. */
static void
tune_socket (ssh_sink *k)
{
  int fd = ssh_get_fd (k->session);
  int on = 1, idle = KEEPALIVE_IDLE, intvl = KEEPALIVE_INTERVAL, cnt = KEEPALIVE_COUNT;
  int flags;

  if (fd < 0)
    return;
  flags = fcntl (fd, F_GETFD);
  if (flags < 0 || fcntl (fd, F_SETFD, flags | FD_CLOEXEC) < 0)
    ova_debug ("cannot set close-on-exec on the socket to %s: %s",
               k->target, g_strerror (errno));
  if (setsockopt (fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0 ||
      setsockopt (fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0 ||
      setsockopt (fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) < 0 ||
      setsockopt (fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0)
    ova_debug ("cannot enable TCP keepalive to %s: %s", k->target, g_strerror (errno));
}

/* "ssh-ed25519 SHA256:…" of the server's key, or NULL. */
static char *
server_key_fingerprint (ssh_sink *k)
{
  ssh_key key = NULL;
  unsigned char *hash = NULL;
  size_t hlen = 0;
  char *fp;
  char *ret = NULL;

  if (ssh_get_server_publickey (k->session, &key) != SSH_OK)
    return NULL;
  if (ssh_get_publickey_hash (key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) == 0) {
    fp = ssh_get_fingerprint_hash (SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    if (fp) {
      ret = g_strdup_printf ("%s %s", ssh_key_type_to_char (ssh_key_type (key)), fp);
      ssh_string_free_char (fp);
    }
    ssh_clean_pubkey_hash (&hash);
  }
  ssh_key_free (key);
  return ret;
}

/* Only a key listed in known_hosts is accepted; nothing is ever added. */
static gboolean
check_host_key (ssh_sink *k, const strm_ssh_url *url, const char *known_hosts,
                GError **error)
{
  g_autofree char *fp = server_key_fingerprint (k);
  g_autofree char *file = known_hosts ? g_strdup (known_hosts)
    : g_build_filename (g_get_home_dir (), ".ssh", "known_hosts", NULL);
  g_autofree char *keyscan = NULL;
  const char *offered = fp ? fp : "fingerprint unavailable";
  enum ssh_known_hosts_e state;

  if (url->port == 22)
    keyscan = g_strdup_printf ("ssh-keyscan %s >> %s", url->host, file);
  else
    keyscan = g_strdup_printf ("ssh-keyscan -p %u %s >> %s", url->port, url->host, file);

  state = ssh_session_is_known_server (k->session);
  switch (state) {
  case SSH_KNOWN_HOSTS_OK:
    ova_debug ("host key of %s: %s, listed in %s", k->target, offered, file);
    return TRUE;
  case SSH_KNOWN_HOSTS_CHANGED:
  case SSH_KNOWN_HOSTS_OTHER:
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "host key of %s has changed: %s lists another key%s for it, "
                 "the server offers %s; someone may be intercepting the "
                 "connection. If the target was reinstalled, check the new "
                 "fingerprint with its administrator, delete the old line "
                 "from %s and add the new key: %s",
                 k->target, file,
                 state == SSH_KNOWN_HOSTS_OTHER ? " of another type" : "",
                 offered, file, keyscan);
    return FALSE;
  case SSH_KNOWN_HOSTS_NOT_FOUND:
  case SSH_KNOWN_HOSTS_UNKNOWN:
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "host key of %s is unknown: %s %s; the server offers %s. "
                 "Check that fingerprint with the target's administrator, "
                 "then add the key: %s", k->target, file,
                 g_file_test (file, G_FILE_TEST_EXISTS) ? "has no key for it"
                 : "does not exist", offered, keyscan);
    return FALSE;
  case SSH_KNOWN_HOSTS_ERROR:
  default:
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot check the host key of %s against %s: %s",
                 k->target, file, ssh_get_error (k->session));
    return FALSE;
  }
}

/* Never prompt for a passphrase: the agent runs without a terminal. */
static int
refuse_passphrase (const char *prompt G_GNUC_UNUSED, char *buf G_GNUC_UNUSED,
                   size_t len G_GNUC_UNUSED, int echo G_GNUC_UNUSED,
                   int verify G_GNUC_UNUSED, void *userdata G_GNUC_UNUSED)
{
  return -1;
}

/* 1: logged in, 0: the server refused this key, -1: error set. */
static int
try_key (ssh_sink *k, const char *path, GError **error)
{
  ssh_key key = NULL;
  int rc;

  rc = ssh_pki_import_privkey_file (path, NULL, refuse_passphrase, NULL, &key);
  if (rc == SSH_EOF) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "cannot read the SSH key %s for %s", path, k->target);
    return -1;
  }
  if (rc != SSH_OK) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "cannot load the SSH key %s for %s: not a private key, or "
                 "protected by a passphrase (not supported)", path, k->target);
    return -1;
  }
  rc = ssh_userauth_publickey (k->session, NULL, key);
  ssh_key_free (key);
  switch (rc) {
  case SSH_AUTH_SUCCESS:
    ova_debug ("logged in to %s with %s", k->target, path);
    return 1;
  case SSH_AUTH_DENIED:
  case SSH_AUTH_PARTIAL:
    return 0;
  default:
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot log in to %s with the key %s: %s",
                 k->target, path, ssh_get_error (k->session));
    return -1;
  }
}

static gboolean
authenticate (ssh_sink *k, const char *key_path, GError **error)
{
  static const char *const defaults[] = { "id_ed25519", "id_ecdsa", "id_rsa" };
  g_autoptr (GString) tried = g_string_new (NULL);
  gsize i;
  int rc;

  if (key_path != NULL) {
    rc = try_key (k, key_path, error);
    if (rc < 0)
      return FALSE;
    if (rc == 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                   "%s refused the key %s", k->target, key_path);
      return FALSE;
    }
    return TRUE;
  }

  for (i = 0; i < G_N_ELEMENTS (defaults); i++) {
    g_autofree char *path = g_build_filename (g_get_home_dir (), ".ssh",
                                              defaults[i], NULL);
    g_autoptr (GError) err = NULL;

    if (!g_file_test (path, G_FILE_TEST_EXISTS))
      continue;
    g_string_append_printf (tried, "%s%s", tried->len ? ", " : "", path);
    rc = try_key (k, path, &err);
    if (rc > 0)
      return TRUE;
    if (rc < 0 && err->code != OVA_ERROR_USAGE) {
      g_propagate_error (error, g_steal_pointer (&err));
      return FALSE;
    }
    if (rc < 0)
      ova_warn ("%s", err->message);
  }
  if (tried->len == 0)
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "no SSH key to log in to %s with: set ssh_key (none of "
                 "~/.ssh/id_ed25519, id_ecdsa, id_rsa exists)", k->target);
  else
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "%s refused the keys %s; set ssh_key", k->target, tried->str);
  return FALSE;
}

static gboolean
configure_session (ssh_sink *k, const strm_ssh_url *url, const char *known_hosts,
                   GError **error)
{
  long timeout = CONNECT_TIMEOUT_SECONDS;
  unsigned int port = url->port;
  int verbosity = SSH_LOG_NOLOG;
  bool process_config = false;

  return set_option (k, SSH_OPTIONS_LOG_VERBOSITY, &verbosity, "LogLevel", error)
    && set_option (k, SSH_OPTIONS_PROCESS_CONFIG, &process_config, "ProcessConfig", error)
    && set_option (k, SSH_OPTIONS_HOST, url->host, "HostName", error)
    && set_option (k, SSH_OPTIONS_PORT, &port, "Port", error)
    && (url->user == NULL ||
        set_option (k, SSH_OPTIONS_USER, url->user, "User", error))
    && (known_hosts == NULL ||
        set_option (k, SSH_OPTIONS_KNOWNHOSTS, known_hosts, "UserKnownHostsFile", error))
    && set_option (k, SSH_OPTIONS_TIMEOUT, &timeout, "ConnectTimeout", error)
    && set_option (k, SSH_OPTIONS_CIPHERS_C_S, PREFERRED_CIPHERS, "Ciphers", error)
    && set_option (k, SSH_OPTIONS_CIPHERS_S_C, PREFERRED_CIPHERS, "Ciphers", error)
    && set_option (k, SSH_OPTIONS_COMPRESSION, "no", "Compression", error);
}

static char *
url_target (const strm_ssh_url *url)
{
  gboolean v6 = strchr (url->host, ':') != NULL;

  return g_strdup_printf ("ssh://%s%s%s%s%s:%u", url->user ? url->user : "",
                          url->user ? "@" : "", v6 ? "[" : "", url->host,
                          v6 ? "]" : "", url->port);
}

/* Connect, check the host key, log in and start the command. */
static gboolean
sink_connect (ssh_sink *k, const strm_ssh_url *url, const char *key_path,
              const char *known_hosts, const char *command, GError **error)
{
  long no_timeout = 0;

  k->session = ssh_new ();
  if (k->session == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot create an SSH session for %s", k->target);
    return FALSE;
  }
  if (!configure_session (k, url, known_hosts, error))
    return FALSE;

  if (ssh_connect (k->session) != SSH_OK) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot connect to %s: %s", k->target, ssh_get_error (k->session));
    return FALSE;
  }
  tune_socket (k);
  if (!check_host_key (k, url, known_hosts, error))
    return FALSE;
  if (!authenticate (k, key_path, error))
    return FALSE;

  k->channel = ssh_channel_new (k->session);
  if (k->channel == NULL || ssh_channel_open_session (k->channel) != SSH_OK) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot open an SSH channel to %s: %s",
                 k->target, ssh_get_error (k->session));
    return FALSE;
  }
  ssh_callbacks_init (&k->callbacks);
  k->callbacks.userdata = k;
  k->callbacks.channel_data_function = on_channel_data;
  if (ssh_set_channel_callbacks (k->channel, &k->callbacks) != SSH_OK) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot set the SSH channel callbacks for %s: %s",
                 k->target, ssh_get_error (k->session));
    return FALSE;
  }
  if (ssh_channel_request_exec (k->channel, command) != SSH_OK) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot run %s on %s: %s", command, k->target,
                 ssh_get_error (k->session));
    return FALSE;
  }
  /* From here on, waiting is bounded by the peer, not by a clock. */
  if (!set_option (k, SSH_OPTIONS_TIMEOUT, &no_timeout, "Timeout", error))
    return FALSE;

  ova_debug ("running '%s' on %s (cipher %s)", command, k->target,
             ssh_get_cipher_out (k->session));
  return TRUE;
}

static strm_sink *
sink_open (const strm_ssh_url *url, const char *key_path, const char *known_hosts,
           const char *command, const char *what, gboolean expect_json,
           GError **error)
{
  ssh_sink *k = g_new0 (ssh_sink, 1);

  k->parent.ops = &ssh_sink_ops;
  k->target = url_target (url);
  k->host = g_strdup (url->host);
  k->what = g_strdup (what);
  k->expect_json = expect_json;
  k->gather = g_malloc (GATHER_MAX);
  k->out = g_string_new (NULL);
  k->err = g_string_new (NULL);

  if (!sink_connect (k, url, key_path, known_hosts, command, error)) {
    ssh_sink_free (&k->parent);
    return NULL;
  }
  return &k->parent;
}

strm_sink *
strm_sink_ssh_new_command (const strm_ssh_url *url, const char *key_path,
                           const char *known_hosts, const char *command,
                           GError **error)
{
  return sink_open (url, key_path, known_hosts, command, "remote command",
                    FALSE, error);
}

strm_sink *
strm_sink_ssh_new (const char *target_url, const char *key_path,
                   const char *known_hosts, const char *remote_command,
                   GError **error)
{
  g_autoptr (strm_ssh_url) url = NULL;
  g_autofree char *quoted = NULL;
  g_autofree char *command = NULL;

  if (remote_command == NULL)
    remote_command = "ovagent";
  if (!remote_command_is_valid (remote_command)) {
    g_autofree char *shown = ova_quote_untrusted (remote_command, 200);
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "invalid remote_command %s: expected a program and its "
                 "options, words of letters, digits and ._+,=:/@- separated "
                 "by single spaces, at most %d bytes",
                 shown, REMOTE_COMMAND_MAX);
    return NULL;
  }
  url = strm_ssh_url_parse (target_url, error);
  if (url == NULL)
    return NULL;

  quoted = g_shell_quote (url->path);
  command = g_strdup_printf ("%s receive --repo %s --json", remote_command, quoted);
  return sink_open (url, key_path, known_hosts, command, "remote receive",
                    TRUE, error);
}
