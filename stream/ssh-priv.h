/* ovagent: the SSH sink's state, shared by its data path (sink-ssh.c) and
 * its connection set-up (ssh-connect.c); not for other modules. */
#ifndef STRM_SSH_PRIV_H
#define STRM_SSH_PRIV_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <pthread.h>

#include "stream/ssh.h"

/* Buffers between the caller's writes and the writer thread: one being
 * sent, one waiting, one being filled. A write larger than a buffer is
 * split; small ones are gathered into one (see sink-ssh.c). */
#define SSH_QUEUE_SLOTS 3
#define SSH_SLOT_MAX STRM_DEFAULT_FRAME_SIZE

typedef struct ssh_slot {
  guint8 *data;
  gsize len;
  gsize cap;
} ssh_slot;

typedef struct ssh_sink {
  strm_sink parent;
  char *target;          /* "ssh://user@host:port", for messages */
  char *host;
  char *what;            /* "remote receive" or "remote command" */
  gboolean expect_json;  /* stdout must be a receive result object */
  ssh_session session;
  ssh_channel channel;
  struct ssh_channel_callbacks_struct callbacks;
  GString *out;          /* remote stdout, at most STRM_SSH_RESULT_MAX */
  gboolean out_overflow;
  GString *err;          /* the tail of the remote stderr */
  gboolean failed;       /* no more I/O once something failed */
  gboolean closed;
  char *result;
  JsonParser *parser;    /* owns result_object */
  JsonObject *result_object;

  /* The writer thread, from the first write until close or free: while it
   * runs, only it touches session and channel (libssh sessions are not
   * thread-safe), and the remote output buffers above are its own. */
  GThread *thread;
  pthread_mutex_t lock;  /* pthread's, which thread checkers understand */
  pthread_cond_t cond;   /* a slot was queued or freed, the thread ended */
  ssh_slot slots[SSH_QUEUE_SLOTS];
  guint head;            /* the first queued slot (lock) */
  guint queued;          /* slots queued for the thread, from head (lock) */
  gboolean finish;       /* close: send what is queued, then end (lock) */
  gboolean stop;         /* free: end now (lock) */
  gboolean ended;        /* the thread ended (lock) */
  GError *thread_error;  /* why it ended early (lock) */

  /* The caller's: small writes gathered in the slot after the queued ones. */
  gsize gather_len;
  gint64 gather_since;   /* when its first byte came (monotonic µs) */
} ssh_sink;

/* Connect to url, check the host key, log in, open a channel with
 * k->callbacks and run command there. Errors name k->target. */
gboolean strm_ssh_connect (ssh_sink *k, const strm_ssh_url *url, const char *key_path,
                           const char *known_hosts, const char *command,
                           GError **error);

/* "ssh://user@host:port" of url, for messages. */
char *strm_ssh_url_target (const strm_ssh_url *url);

#endif
