/* ovagent: the digest of a file receive has finished, read in a thread of its
 * own while the next file streams; the commit waits for it. */
#include <config.h>

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "error.h"
#include "repo/receive-priv.h"
#include "repo/repo.h"

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
