/* ovagent: the SSH sink's data path: a stream pushed into a remote `ovagent
 * receive` by a writer thread through a libssh channel; the remote result. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "stream/ssh-priv.h"
#include "util.h"

/* After a write failed: how long to wait for the remote command's exit
 * status and its last words. */
#define FAILURE_TIMEOUT_SECONDS 10L

/* Small frames (headers, holes, zero runs) are gathered into one packet,
 * for at most STRM_GATHER_MAX_AGE; large ones go straight into the
 * channel. */
#define GATHER_MAX (256 * 1024)
#define GATHER_SMALL (64 * 1024)

#define COLLECT_POLL_MS 500

#define REMOTE_COMMAND_MAX 1024
#define REMOTE_MESSAGE_MAX 1024

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

/* Whether free asked the writer thread to end (also false without one). */
static gboolean
stopping (ssh_sink *k)
{
  gboolean r;

  pthread_mutex_lock (&k->lock);
  r = k->stop;
  pthread_mutex_unlock (&k->lock);
  return r;
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
    if ((deadline != 0 && g_get_monotonic_time () >= deadline) || stopping (k))
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
    const char *m;

    if (!json_parser_load_from_data (parser, candidates[i], -1, NULL))
      continue;
    root = json_parser_get_root (parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
      continue;
    m = ova_json_get_string (json_node_get_object (root), "message");
    if (m != NULL)
      return clean_remote_text (m, -1, REMOTE_MESSAGE_MAX);
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

/* ---- the writer thread: the channel writes ---- */

/* Wait for the SSH socket like ova_wait_fd, also ending (-1, ECANCELED)
 * once free asked the thread to stop. */
static int
wait_socket (ssh_sink *k, short events, gint64 deadline)
{
  for (;;) {
    gint64 slice = g_get_monotonic_time () + OVA_WAIT_SLICE_MS * 1000;
    int r;

    if (stopping (k)) {
      errno = ECANCELED;
      return -1;
    }
    r = ova_wait_fd (ssh_get_fd (k->session), events,
                     deadline != 0 && deadline < slice ? deadline : slice,
                     k->parent.cancel);
    if (r != 0 || (deadline != 0 && g_get_monotonic_time () >= deadline))
      return r;
  }
}

/* Nothing could be queued (the channel window is used up, or a key
 * exchange runs): wait for the peer, up to deadline, then let libssh read
 * what came (window adjustments) and send what it holds. */
static gboolean
wait_for_peer (ssh_sink *k, gint64 deadline, GError **error)
{
  short events = POLLIN;

  if (ssh_get_poll_flags (k->session) & SSH_WRITE_PENDING)
    events |= POLLOUT;
  switch (wait_socket (k, events, deadline)) {
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
 * seen after io_timeout instead of blocking for ever. len is at most
 * SSH_SLOT_MAX (ssh_channel_write takes a 32-bit count). */
static gboolean
channel_write_all (ssh_sink *k, const guint8 *buf, gsize len, GError **error)
{
  gint64 deadline = ova_deadline_in (k->parent.io_timeout);

  ssh_set_blocking (k->session, 0);
  while (len > 0) {
    int r = ssh_channel_write (k->channel, buf, len);

    /* Nothing written and not open: the channel closed while waiting. */
    if (r < 0 || (r == 0 && !ssh_channel_is_open (k->channel))) {
      ssh_set_blocking (k->session, 1);
      return fail_from_remote (k, error);
    }
    if (r == 0) {
      /* On failure the session stays non-blocking: closing the channel
       * and the session then never waits for a peer that takes nothing. */
      if (!wait_for_peer (k, deadline, error))
        return FALSE;
      continue;
    }
    buf += r;
    len -= r;
    deadline = ova_deadline_in (k->parent.io_timeout);
    pump (k);
  }
  ssh_set_blocking (k->session, 1);
  return TRUE;
}

/* Send the queued slots in order until close has nothing more for it or
 * a write fails (the error is kept for the caller's next write or close). */
static gpointer
writer_thread (gpointer opaque)
{
  ssh_sink *k = opaque;
  sigset_t all;

  /* Signals are for the other threads, whose blocking calls they must
   * interrupt; this one looks at *cancel between its waits. */
  sigfillset (&all);
  pthread_sigmask (SIG_BLOCK, &all, NULL);

  pthread_mutex_lock (&k->lock);
  for (;;) {
    ssh_slot *slot;
    GError *err = NULL;
    gboolean ok;

    while (k->queued == 0 && !k->finish && !k->stop)
      pthread_cond_wait (&k->cond, &k->lock);
    if (k->stop || k->queued == 0)
      break;
    slot = &k->slots[k->head];
    pthread_mutex_unlock (&k->lock);
    ok = channel_write_all (k, slot->data, slot->len, &err);
    pthread_mutex_lock (&k->lock);
    if (!ok) {
      k->thread_error = err;
      break;
    }
    k->head = (k->head + 1) % SSH_QUEUE_SLOTS;
    k->queued--;
    pthread_cond_broadcast (&k->cond);
  }
  k->ended = TRUE;
  pthread_cond_broadcast (&k->cond);
  pthread_mutex_unlock (&k->lock);
  return NULL;
}

/* ---- the caller's side: the queue ---- */

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

/* The thread's failure, reported once: by the next write, or by close. */
static gboolean
take_thread_error_locked (ssh_sink *k, GError **error)
{
  if (k->thread_error == NULL)
    return TRUE;
  g_propagate_error (error, g_steal_pointer (&k->thread_error));
  k->failed = TRUE;
  return FALSE;
}

static gboolean
start_thread (ssh_sink *k, GError **error)
{
  g_autoptr (GError) err = NULL;

  k->thread = g_thread_try_new ("ovagent-ssh", writer_thread, k, &err);
  if (k->thread == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot start a thread to write the stream to %s: %s",
                 k->target, err->message);
    k->failed = TRUE;
    return FALSE;
  }
  return TRUE;
}

/* The slot after the queued ones, the caller's to fill once the thread has
 * sent enough, grown to hold len bytes. */
static ssh_slot *
tail_slot (ssh_sink *k, gsize len, GError **error)
{
  ssh_slot *slot;
  gboolean ok;

  pthread_mutex_lock (&k->lock);
  while (k->queued == SSH_QUEUE_SLOTS && !k->ended)
    pthread_cond_wait (&k->cond, &k->lock);
  ok = take_thread_error_locked (k, error);
  slot = &k->slots[(k->head + k->queued) % SSH_QUEUE_SLOTS];
  pthread_mutex_unlock (&k->lock);
  if (!ok)
    return NULL;
  if (slot->cap < len) {
    g_free (slot->data);
    slot->cap = len;
    slot->data = g_malloc (len);
  }
  return slot;
}

/* Hand the tail slot, filled with len bytes, to the thread. */
static void
queue_tail (ssh_sink *k, gsize len)
{
  pthread_mutex_lock (&k->lock);
  k->slots[(k->head + k->queued) % SSH_QUEUE_SLOTS].len = len;
  k->queued++;
  pthread_cond_broadcast (&k->cond);
  pthread_mutex_unlock (&k->lock);
}

static void
queue_gather (ssh_sink *k)
{
  if (k->gather_len > 0)
    queue_tail (k, k->gather_len);
  k->gather_len = 0;
}

/* The bytes are copied into a slot: the caller goes on framing, hashing
 * and reading while the thread encrypts and sends the previous ones. */
static gboolean
ssh_sink_write (strm_sink *s, const void *buf, size_t len, GError **error)
{
  ssh_sink *k = (ssh_sink *) s;
  const guint8 *p = buf;
  ssh_slot *slot;

  if (!check_usable (k, error))
    return FALSE;
  if (k->thread == NULL && !start_thread (k, error))
    return FALSE;
  if (len < GATHER_SMALL) {
    gint64 now;

    if (k->gather_len + len > GATHER_MAX)
      queue_gather (k);
    slot = tail_slot (k, GATHER_MAX, error);
    if (slot == NULL)
      return FALSE;
    now = g_get_monotonic_time ();
    if (k->gather_len == 0)
      k->gather_since = now;
    memcpy (slot->data + k->gather_len, p, len);
    k->gather_len += len;
    if (now - k->gather_since >= STRM_GATHER_MAX_AGE)
      queue_gather (k);
    return TRUE;
  }
  queue_gather (k);
  while (len > 0) {
    gsize n = MIN (len, SSH_SLOT_MAX);

    slot = tail_slot (k, n, error);
    if (slot == NULL)
      return FALSE;
    memcpy (slot->data, p, n);
    queue_tail (k, n);
    p += n;
    len -= n;
  }
  return TRUE;
}

/* close: the thread sends what is queued and ends; then the session is the
 * caller's again. */
static gboolean
finish_thread (ssh_sink *k, GError **error)
{
  gboolean ok;

  if (k->thread == NULL)
    return TRUE;
  queue_gather (k);
  pthread_mutex_lock (&k->lock);
  k->finish = TRUE;
  pthread_cond_broadcast (&k->cond);
  pthread_mutex_unlock (&k->lock);
  g_thread_join (k->thread);
  k->thread = NULL;
  pthread_mutex_lock (&k->lock);
  ok = take_thread_error_locked (k, error);
  pthread_mutex_unlock (&k->lock);
  return ok;
}

/* free: the thread drops what is queued and ends at once. */
static void
stop_thread (ssh_sink *k)
{
  if (k->thread == NULL)
    return;
  pthread_mutex_lock (&k->lock);
  k->stop = TRUE;
  pthread_cond_broadcast (&k->cond);
  pthread_mutex_unlock (&k->lock);
  g_thread_join (k->thread);
  k->thread = NULL;
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
  result = ova_json_get_string (o, "result");
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

  if (!check_usable (k, error) || !finish_thread (k, error))
    return FALSE;
  if (ssh_channel_send_eof (k->channel) != SSH_OK) {
    k->failed = TRUE;
    return fail_from_remote (k, error);
  }
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
  guint i;

  stop_thread (k);
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
  for (i = 0; i < SSH_QUEUE_SLOTS; i++)
    g_free (k->slots[i].data);
  g_clear_error (&k->thread_error);
  pthread_mutex_destroy (&k->lock);
  pthread_cond_destroy (&k->cond);
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

static strm_sink *
sink_open (const strm_ssh_url *url, const char *key_path, const char *known_hosts,
           const char *command, const char *what, gboolean expect_json,
           GError **error)
{
  ssh_sink *k = g_new0 (ssh_sink, 1);

  k->parent.ops = &ssh_sink_ops;
  k->target = strm_ssh_url_target (url);
  k->host = g_strdup (url->host);
  k->what = g_strdup (what);
  k->expect_json = expect_json;
  k->out = g_string_new (NULL);
  k->err = g_string_new (NULL);
  pthread_mutex_init (&k->lock, NULL);
  pthread_cond_init (&k->cond, NULL);
  ssh_callbacks_init (&k->callbacks);
  k->callbacks.userdata = k;
  k->callbacks.channel_data_function = on_channel_data;

  if (!strm_ssh_connect (k, url, key_path, known_hosts, command, error)) {
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
