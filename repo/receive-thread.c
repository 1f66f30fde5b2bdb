/* ovagent: what receive does beside reading the stream, each in a thread of
 * its own: writing a chain volume's data, and a finished file's digest. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "repo/receive-priv.h"
#include "repo/repo.h"

/* Frames queued to the writer, one of them being written: the decoder
 * reads the next ones meanwhile. */
#define WRITER_SLOTS 3
/* A frame up to this size is copied into a slot; a larger one (a sender
 * may send up to STRM_MAX_DATA_PAYLOAD) is written where it is once the
 * queue is empty, so that memory stays bounded. */
#define SLOT_SIZE (4 * 1024 * 1024)
/* How often a wait for a digest looks at the signal flag. */
#define CANCEL_POLL_US (100 * 1000)

/* A thread that takes no signal: the one reading the stream gets them, and
 * its blocking read ends at once. */
static GThread *
start_thread (const char *name, GThreadFunc fn, gpointer data, GError **error)
{
  sigset_t all, old;
  g_autoptr(GError) err = NULL;
  GThread *t;

  sigfillset (&all);
  pthread_sigmask (SIG_BLOCK, &all, &old);
  t = g_thread_try_new (name, fn, data, &err);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  if (t == NULL)
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot start a thread: %s", err->message);
  return t;
}

/* ---- the writer of chain volumes ---- */

typedef struct wr_job {
  guint8 *buf;           /* owned, SLOT_SIZE bytes once used */
  const guint8 *data;    /* what to write: buf, or a frame written in place */
  gsize len;
  guint64 off;
  gboolean zeros;        /* len zero bytes: hashed, not written */
} wr_job;

struct repo_rx_writer {
  GThread *thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  wr_job jobs[WRITER_SLOTS];   /* ring: jobs[head] is being done */
  guint head, count;
  gboolean stop;
  gboolean failed;             /* set with err, what, err_off; the thread then idles */
  int err;
  const char *what;
  guint64 err_off;
  repo_rx_write_error_fn say;
  void *opaque;

  /* The file being written: changed only while the queue is empty. */
  int fd;
  repo_digest *digest;
  const char *path;
  guint64 written;
  /* Writeback: [wb_start, wb_end) was written since the last step
   * (wb_pending bytes of it); wb_prev[0] and wb_prev[1] are the ranges of
   * the last two steps, wb_prev[1] the older. */
  guint64 wb_start;
  guint64 wb_end;
  guint64 wb_pending;
  struct { guint64 off, len; } wb_prev[2];
  gboolean wb_unsupported;
};

/* Once a step's worth is written: start writing its pages back, and wait
 * for those of the step two before (the pattern of streaming copy tools),
 * so that dirty memory stays bounded.
 * Where sync_file_range is refused (EINVAL, ESPIPE, ENOSYS) the final
 * fsync does it all. */
static gboolean
writeback (repo_rx_writer *w)
{
  static const unsigned int wait_flags =
    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
  guint64 off = w->wb_start, len = w->wb_end - w->wb_start;
  int r;

  if (w->wb_unsupported || w->wb_pending < REPO_RX_WRITEBACK_STEP)
    return TRUE;
  r = sync_file_range (w->fd, off, len, SYNC_FILE_RANGE_WRITE);
  if (r == 0 && w->wb_prev[1].len > 0)
    r = sync_file_range (w->fd, w->wb_prev[1].off, w->wb_prev[1].len, wait_flags);
  if (r < 0) {
    if (errno == EINVAL || errno == ESPIPE || errno == ENOSYS) {
      ova_debug ("%s: no sync_file_range (%s); writeback is left to the final fsync",
                 w->path, g_strerror (errno));
      w->wb_unsupported = TRUE;
      return TRUE;
    }
    w->err = errno;
    w->what = "write back";
    w->err_off = off;
    return FALSE;
  }
  w->wb_prev[1] = w->wb_prev[0];
  w->wb_prev[0].off = off;
  w->wb_prev[0].len = len;
  w->wb_start = w->wb_end;
  w->wb_pending = 0;
  return TRUE;
}

/* Write, hash and write back one job; on failure err, what and err_off
 * say why. */
static gboolean
do_job (repo_rx_writer *w, const wr_job *j)
{
  const guint8 *p = j->data;
  guint64 off = j->off;
  gsize left = j->len;

  if (j->zeros) {
    repo_digest_zeros (w->digest, j->len);
    return TRUE;
  }
  while (left > 0) {
    gssize n = pwrite (w->fd, p, MIN (left, (gsize) G_MAXSSIZE), off);

    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      w->err = n < 0 ? errno : ENOSPC;
      w->what = "write";
      w->err_off = off;
      return FALSE;
    }
    p += n;
    off += n;
    left -= n;
    w->written += n;
  }
  repo_digest_data (w->digest, j->data, j->len);
  w->wb_end = off;
  w->wb_pending += j->len;
  return writeback (w);
}

static gpointer
writer_thread (gpointer opaque)
{
  repo_rx_writer *w = opaque;

  pthread_mutex_lock (&w->lock);
  for (;;) {
    wr_job *j;
    gboolean ok;

    while (w->count == 0 && !w->stop)
      pthread_cond_wait (&w->cond, &w->lock);
    if (w->stop)
      break;
    j = &w->jobs[w->head];
    pthread_mutex_unlock (&w->lock);
    ok = do_job (w, j);
    pthread_mutex_lock (&w->lock);
    if (ok) {
      w->head = (w->head + 1) % WRITER_SLOTS;
      w->count--;
    }
    else {
      /* The rest is dropped: nothing of this run is kept. */
      w->failed = TRUE;
      w->count = 0;
    }
    pthread_cond_broadcast (&w->cond);
  }
  pthread_mutex_unlock (&w->lock);
  return NULL;
}

repo_rx_writer *
repo_rx_writer_new (repo_rx_write_error_fn say, void *opaque, GError **error)
{
  repo_rx_writer *w = g_new0 (repo_rx_writer, 1);

  pthread_mutex_init (&w->lock, NULL);
  pthread_cond_init (&w->cond, NULL);
  w->fd = -1;
  w->say = say;
  w->opaque = opaque;
  w->thread = start_thread ("ovagent-writer", writer_thread, w, error);
  if (w->thread == NULL) {
    repo_rx_writer_free (w);
    return NULL;
  }
  return w;
}

void
repo_rx_writer_free (repo_rx_writer *w)
{
  if (w == NULL)
    return;
  if (w->thread != NULL) {
    pthread_mutex_lock (&w->lock);
    w->stop = TRUE;
    pthread_cond_broadcast (&w->cond);
    pthread_mutex_unlock (&w->lock);
    g_thread_join (w->thread);
  }
  for (guint i = 0; i < WRITER_SLOTS; i++)
    g_free (w->jobs[i].buf);
  pthread_cond_destroy (&w->cond);
  pthread_mutex_destroy (&w->lock);
  g_free (w);
}

/* FALSE with error saying why if the writer failed (it is idle then, and
 * its err, what and err_off stay as they are): called without the lock,
 * which say may take. */
static gboolean
report (repo_rx_writer *w, gboolean failed, GError **error)
{
  if (failed)
    w->say (w->opaque, w->err, w->what, w->err_off, error);
  return !failed;
}

gboolean
repo_rx_writer_drain (repo_rx_writer *w, GError **error)
{
  gboolean failed;

  pthread_mutex_lock (&w->lock);
  while (w->count > 0 && !w->failed)
    pthread_cond_wait (&w->cond, &w->lock);
  failed = w->failed;
  pthread_mutex_unlock (&w->lock);
  return report (w, failed, error);
}

void
repo_rx_writer_set_file (repo_rx_writer *w, int fd, repo_digest *digest, const char *path)
{
  /* The queue is empty: the thread does not look at these now. */
  pthread_mutex_lock (&w->lock);
  g_assert (w->count == 0);
  w->fd = fd;
  w->digest = digest;
  w->path = path;
  w->wb_start = w->wb_end = w->wb_pending = 0;
  memset (w->wb_prev, 0, sizeof w->wb_prev);
  pthread_mutex_unlock (&w->lock);
}

guint64
repo_rx_writer_written (repo_rx_writer *w)
{
  guint64 n;

  pthread_mutex_lock (&w->lock);
  n = w->written;
  pthread_mutex_unlock (&w->lock);
  return n;
}

/* A free slot at the tail of the queue, or NULL if the writer failed
 * (error set). */
static wr_job *
free_slot (repo_rx_writer *w, GError **error)
{
  wr_job *j = NULL;
  gboolean failed;

  pthread_mutex_lock (&w->lock);
  while (w->count == WRITER_SLOTS && !w->failed)
    pthread_cond_wait (&w->cond, &w->lock);
  failed = w->failed;
  if (!failed)
    j = &w->jobs[(w->head + w->count) % WRITER_SLOTS];
  pthread_mutex_unlock (&w->lock);
  report (w, failed, error);
  return j;
}

static void
queue_slot (repo_rx_writer *w)
{
  pthread_mutex_lock (&w->lock);
  w->count++;
  pthread_cond_broadcast (&w->cond);
  pthread_mutex_unlock (&w->lock);
}

gboolean
repo_rx_writer_data (repo_rx_writer *w, const void *data, gsize len, guint64 off,
                     GError **error)
{
  wr_job *j;

  if (len > SLOT_SIZE) {
    wr_job big = { .data = data, .len = len, .off = off };
    gboolean ok;

    if (!repo_rx_writer_drain (w, error))
      return FALSE;
    /* The thread is idle with an empty queue: this thread may write. */
    pthread_mutex_lock (&w->lock);
    ok = do_job (w, &big);
    if (!ok)
      w->failed = TRUE;
    pthread_mutex_unlock (&w->lock);
    return report (w, !ok, error);
  }
  j = free_slot (w, error);
  if (j == NULL)
    return FALSE;
  /* The slot is not the thread's until it is queued. */
  if (j->buf == NULL)
    j->buf = g_malloc (SLOT_SIZE);
  memcpy (j->buf, data, len);
  j->data = j->buf;
  j->len = len;
  j->off = off;
  j->zeros = FALSE;
  queue_slot (w);
  return TRUE;
}

gboolean
repo_rx_writer_zeros (repo_rx_writer *w, guint64 len, GError **error)
{
  wr_job *j = free_slot (w, error);

  if (j == NULL)
    return FALSE;
  j->data = NULL;
  j->len = len;
  j->off = 0;
  j->zeros = TRUE;
  queue_slot (w);
  return TRUE;
}

/* ---- the digest of a finished file ---- */

struct repo_rx_digest_job {
  GThread *thread;
  char *path;
  volatile sig_atomic_t stop;   /* the thread's cancel flag */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  gboolean done;
  char *digest;
  guint64 size;
  GError *error;
};

static gpointer
digest_thread (gpointer opaque)
{
  repo_rx_digest_job *j = opaque;
  GError *err = NULL;
  guint64 size = 0;
  char *digest;

  digest = repo_file_digest (j->path, &size, &j->stop, &err);
  if (digest != NULL && !repo_rx_fsync_path (j->path, &err))
    g_clear_pointer (&digest, g_free);
  pthread_mutex_lock (&j->lock);
  j->digest = digest;
  j->size = size;
  j->error = err;
  j->done = TRUE;
  pthread_cond_broadcast (&j->cond);
  pthread_mutex_unlock (&j->lock);
  return NULL;
}

static void
digest_job_free (repo_rx_digest_job *j)
{
  g_free (j->path);
  g_free (j->digest);
  g_clear_error (&j->error);
  pthread_cond_destroy (&j->cond);
  pthread_mutex_destroy (&j->lock);
  g_free (j);
}

repo_rx_digest_job *
repo_rx_digest_start (const char *path, GError **error)
{
  repo_rx_digest_job *j = g_new0 (repo_rx_digest_job, 1);

  j->path = g_strdup (path);
  pthread_mutex_init (&j->lock, NULL);
  pthread_cond_init (&j->cond, NULL);
  j->thread = start_thread ("ovagent-digest", digest_thread, j, error);
  if (j->thread == NULL) {
    digest_job_free (j);
    return NULL;
  }
  return j;
}

char *
repo_rx_digest_finish (repo_rx_digest_job *j, volatile sig_atomic_t *cancel,
                       guint64 *size, GError **error)
{
  char *digest;

  /* A signal reaches this thread, not the digest's: pass it on. */
  pthread_mutex_lock (&j->lock);
  while (!j->done) {
    struct timespec ts;

    if (cancel != NULL && *cancel)
      j->stop = 1;
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_nsec += CANCEL_POLL_US * 1000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait (&j->cond, &j->lock, &ts);
  }
  pthread_mutex_unlock (&j->lock);
  g_thread_join (j->thread);
  digest = g_steal_pointer (&j->digest);
  if (digest == NULL)
    g_propagate_error (error, g_steal_pointer (&j->error));
  *size = j->size;
  digest_job_free (j);
  return digest;
}

void
repo_rx_digest_abandon (repo_rx_digest_job *j)
{
  if (j == NULL)
    return;
  j->stop = 1;
  g_thread_join (j->thread);
  digest_job_free (j);
}
