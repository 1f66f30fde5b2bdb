/* ovagent: the copy engine: extents per work range, reads in flight (a
 * source's asynchronous requests, or worker threads' preads), zero blocks and
 * holes merged into runs, frames written in offset order by the caller's thread. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

#include "copy.h"

/* Extents are asked this much at a time, one range ahead of the reads for
 * asynchronous sources: bounded memory for any disk, and below the 32-bit
 * block status lengths of NBD. */
#define WORK_RANGE ((guint64) 1024 * 1024 * 1024)
#define MIN_REQUEST_SIZE (4u * 1024)
#define BUF_ALIGN 4096
/* Asynchronous sources (NBD): many small requests over a few connections. */
#define AIO_DEFAULT_REQUESTS 16
#define AIO_DEFAULT_REQUEST_SIZE (1u * 1024 * 1024)
/* Files: a few large preads, each one DATA frame, on up to MAX_WORKERS
 * threads, so that reading runs ahead of the writing. */
#define SYNC_DEFAULT_REQUESTS 6
#define SYNC_DEFAULT_REQUEST_SIZE STRM_DEFAULT_FRAME_SIZE
#define MAX_WORKERS 4
/* Runs between reads are items too: room for a few per read. */
#define ITEMS_PER_REQUEST 4
#define MIN_ITEMS 64
/* How often the threads look at *cancel when nothing happens. */
#define POLL_TIMEOUT_MS 200
/* After a failure, how long requests in flight may take to come back
 * before the source's connections are dropped under them. */
#define DRAIN_TIMEOUT_US (30 * G_USEC_PER_SEC)

G_STATIC_ASSERT (AIO_DEFAULT_REQUEST_SIZE <= STRM_MAX_DATA_PAYLOAD);
G_STATIC_ASSERT (SYNC_DEFAULT_REQUEST_SIZE <= STRM_MAX_DATA_PAYLOAD);
G_STATIC_ASSERT (SYNC_DEFAULT_REQUEST_SIZE % STRM_ZERO_BLOCK == 0);

/* ---- the framer: a run of zeros or holes is kept back until something
 * else comes, so adjacent ones become one frame whatever the extents and
 * reads they came from ---- */

typedef struct {
  strm_encoder *e;
  ova_extent_kind kind;   /* of the pending run */
  guint64 offset;
  guint64 length;         /* 0: no run pending */
} framer;

static gboolean
framer_flush (framer *f, GError **error)
{
  gboolean ok;

  if (f->length == 0)
    return TRUE;
  if (f->kind == OVA_EXTENT_ZERO)
    ok = strm_encoder_zero (f->e, f->offset, f->length, error);
  else
    ok = strm_encoder_hole (f->e, f->offset, f->length, error);
  f->length = 0;
  return ok;
}

static gboolean
framer_run (framer *f, ova_extent_kind kind, guint64 offset, guint64 length,
            GError **error)
{
  if (f->length > 0 && f->kind == kind && f->offset + f->length == offset) {
    f->length += length;
    return TRUE;
  }
  if (!framer_flush (f, error))
    return FALSE;
  f->kind = kind;
  f->offset = offset;
  f->length = length;
  return TRUE;
}

/* The libnbd way: the first bytes by hand, then the buffer against itself
 * shifted by that much, which memcmp runs at memory speed. */
static gboolean
is_zero (const char *buf, size_t len)
{
  const size_t head = MIN (len, 16);

  for (size_t i = 0; i < head; i++)
    if (buf[i] != 0)
      return FALSE;
  return len == head || memcmp (buf, buf + head, len - head) == 0;
}

/* Data read at offset: blocks of STRM_ZERO_BLOCK that read as zeros join
 * the zero runs, the rest goes as DATA frames. */
static gboolean
framer_data (framer *f, const char *buf, size_t len, guint64 offset,
             GError **error)
{
  size_t pos = 0;

  while (pos < len) {
    size_t start = pos;
    gboolean zero = is_zero (buf + pos, MIN (STRM_ZERO_BLOCK, len - pos));

    pos += MIN (STRM_ZERO_BLOCK, len - pos);
    while (pos < len &&
           is_zero (buf + pos, MIN (STRM_ZERO_BLOCK, len - pos)) == zero)
      pos += MIN (STRM_ZERO_BLOCK, len - pos);

    if (zero) {
      if (!framer_run (f, OVA_EXTENT_ZERO, offset + start, pos - start, error))
        return FALSE;
    }
    else if (!framer_flush (f, error) ||
             !strm_encoder_data (f->e, offset + start, buf + start,
                                 pos - start, error))
      return FALSE;
  }
  return TRUE;
}

/* ---- the state of one copy ---- */

typedef struct copy copy;

/* One frame-to-be, in offset order in the ring. */
typedef struct {
  copy *owner;
  ova_extent_kind kind;
  guint64 offset;
  guint64 length;
  int buf;                /* DATA: index of its buffer, else -1 */
  guint conn;
  gboolean ready;         /* DATA: the read came back */
} item;

struct copy {
  ova_source *src;
  volatile sig_atomic_t *cancel;   /* read by the sending thread only */
  gboolean aio;           /* the source has aio_* requests */
  const char *verb;       /* for the interruption message */
  guint requests;
  guint request_size;

  /* Shared by the threads, under lock. */
  pthread_mutex_t lock;
  pthread_cond_t cond;    /* an item ready, the end, a failure */
  pthread_cond_t work;    /* workers: a read queued, or the end */
  item *items;
  guint nitems;           /* ring capacity */
  guint head, count;
  guint *free_bufs;
  guint nfree;
  item **jobs;            /* reads for the workers, in offset order */
  guint jobs_head, jobs_count;
  guint in_flight;        /* reads started, not completed */
  gboolean produced_all;  /* the last item is in the ring */
  gboolean stop;          /* the sending thread gave up */
  gboolean workers_stop;
  GError *err;            /* the first failure */

  /* Set up before the threads start, then read only. */
  char **bufs;            /* [requests] */
  int wake_fd;            /* eventfd: a buffer or a ring slot came free */

  /* The I/O thread's own (aio completions run in it). */
  guint64 next;           /* where the next item starts */
  GArray *ext;            /* ova_extent from next on */
  guint ext_pos;
  GArray *ahead;          /* the extents of the next work range */
  gboolean ahead_ready;
  gboolean ext_busy;      /* an aio_extents request is in flight */
  gboolean ext_replied;   /* and its answer is in, not looked at yet */
  GError *ext_err;
  guint64 ext_next;       /* where the next aio_extents request starts */
  guint64 ext_asked;
  guint *conn_in_flight;  /* [src->connections] */
  guint64 bytes_read;
};

/* Keep the first failure; wake the sending thread. Lock held. */
static void
fail_locked (copy *p, GError *err)
{
  if (p->err == NULL)
    p->err = err;
  else
    g_error_free (err);
  pthread_cond_broadcast (&p->cond);
}

static void
fail (copy *p, GError *err)
{
  pthread_mutex_lock (&p->lock);
  fail_locked (p, err);
  pthread_mutex_unlock (&p->lock);
}

static gboolean
failed_or_stopped (copy *p)
{
  gboolean r;

  pthread_mutex_lock (&p->lock);
  r = p->err != NULL || p->stop;
  pthread_mutex_unlock (&p->lock);
  return r;
}

static void
wake_io (copy *p)
{
  guint64 one = 1;

  /* A full counter already wakes the poll; nothing else can fail here. */
  if (write (p->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
    ova_debug ("cannot wake the copy's I/O thread: %s", g_strerror (errno));
}

static void
drain_wake_fd (int fd)
{
  guint64 v;

  if (read (fd, &v, sizeof v) < 0 && errno != EAGAIN)
    ova_debug ("cannot read the copy's wake counter: %s", g_strerror (errno));
}

/* ---- reads: the source's completions (run in the I/O thread), or
 * worker threads doing preads in the order they were queued ---- */

static void
read_done (void *opaque, GError *err)
{
  item *it = opaque;
  copy *p = it->owner;

  p->conn_in_flight[it->conn]--;
  pthread_mutex_lock (&p->lock);
  p->in_flight--;
  if (err != NULL)
    fail_locked (p, err);
  else {
    it->ready = TRUE;
    pthread_cond_broadcast (&p->cond);
  }
  pthread_mutex_unlock (&p->lock);
}

static void *
worker (void *opaque)
{
  copy *p = opaque;

  pthread_mutex_lock (&p->lock);
  for (;;) {
    item *it;
    char *buf;
    guint64 offset, length;
    gboolean skip;
    GError *err = NULL;
    gboolean ok;

    while (p->jobs_count == 0 && !p->workers_stop)
      pthread_cond_wait (&p->work, &p->lock);
    if (p->jobs_count == 0)
      break;
    it = p->jobs[p->jobs_head];
    p->jobs_head = (p->jobs_head + 1) % p->requests;
    p->jobs_count--;
    buf = p->bufs[it->buf];
    offset = it->offset;
    length = it->length;
    /* After a failure the reads still queued are only accounted for. */
    skip = p->err != NULL || p->stop;
    pthread_mutex_unlock (&p->lock);

    ok = skip || p->src->ops->pread (p->src, buf, length, offset, &err);

    pthread_mutex_lock (&p->lock);
    p->in_flight--;
    if (!ok)
      fail_locked (p, err);
    else if (!skip) {
      it->ready = TRUE;
      pthread_cond_broadcast (&p->cond);
    }
    pthread_mutex_unlock (&p->lock);
    wake_io (p);
    pthread_mutex_lock (&p->lock);
  }
  pthread_mutex_unlock (&p->lock);
  return NULL;
}

/* ---- extents: asked asynchronously one work range ahead, or from the
 * source's extent call as they are needed ---- */

static void
extents_done (void *opaque, GError *err)
{
  copy *p = opaque;

  p->ext_busy = FALSE;
  p->ext_replied = TRUE;
  p->ext_err = err;
}

static gboolean
ask_extents (copy *p, GError **error)
{
  ova_source *src = p->src;

  if (!p->aio || p->ext_busy || p->ext_replied || p->ahead_ready ||
      p->ext_next >= src->size)
    return TRUE;
  p->ext_asked = p->ext_next;
  g_array_set_size (p->ahead, 0);
  p->ext_busy = TRUE;
  if (!src->ops->aio_extents (src, p->ext_asked,
                              MIN (WORK_RANGE, src->size - p->ext_asked),
                              p->ahead, extents_done, p, error)) {
    p->ext_busy = FALSE;
    return FALSE;
  }
  return TRUE;
}

/* After an aio_extents answer: its extents, or why there are none. */
static gboolean
take_extents (copy *p, GError **error)
{
  const ova_extent *last;

  if (!p->ext_replied)
    return TRUE;
  p->ext_replied = FALSE;
  if (p->ext_err != NULL) {
    g_propagate_error (error, g_steal_pointer (&p->ext_err));
    return FALSE;
  }
  if (p->ahead->len == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: no extents at offset %" G_GUINT64_FORMAT,
                 p->src->name, p->ext_asked);
    return FALSE;
  }
  /* The answer may cover less than was asked: ask the rest next. */
  last = &g_array_index (p->ahead, ova_extent, p->ahead->len - 1);
  p->ext_next = last->offset + last->length;
  p->ahead_ready = TRUE;
  return TRUE;
}

/* The next extents, from next on; none yet when an answer is awaited. */
static gboolean
refill_extents (copy *p, GError **error)
{
  ova_source *src = p->src;
  guint64 range_end;
  ova_extent e;

  g_array_set_size (p->ext, 0);
  p->ext_pos = 0;
  if (p->aio) {
    GArray *tmp;

    if (!p->ahead_ready)
      return TRUE;
    tmp = p->ext;
    p->ext = p->ahead;
    p->ahead = tmp;
    p->ahead_ready = FALSE;
    return TRUE;
  }
  range_end = MIN (src->size, (p->next / WORK_RANGE + 1) * WORK_RANGE);
  if (!src->ops->extent (src, p->next, range_end - p->next, &e, error))
    return FALSE;
  g_array_append_val (p->ext, e);
  return TRUE;
}

/* ---- the I/O thread: extents, reads, waiting ---- */

static guint
pick_conn (copy *p)
{
  guint best = 0;

  for (guint i = 1; i < p->src->connections; i++)
    if (p->conn_in_flight[i] < p->conn_in_flight[best])
      best = i;
  return best;
}

static gboolean
start_read (copy *p, item *it, GError **error)
{
  ova_source *src = p->src;

  it->conn = pick_conn (p);
  p->conn_in_flight[it->conn]++;
  if (!src->ops->aio_pread (src, it->conn, p->bufs[it->buf], it->length,
                            it->offset, read_done, it, error)) {
    p->conn_in_flight[it->conn]--;
    pthread_mutex_lock (&p->lock);
    p->in_flight--;
    pthread_mutex_unlock (&p->lock);
    return FALSE;
  }
  return TRUE;
}

/* Put the extent at next into the ring as one item (a DATA extent is cut
 * at request_size): FALSE in *room when the ring or the buffers are full. */
static item *
add_item (copy *p, const ova_extent *e, gboolean *room)
{
  gboolean data = e->kind == OVA_EXTENT_DATA;
  item *it;

  pthread_mutex_lock (&p->lock);
  *room = p->count < p->nitems && (!data || p->nfree > 0);
  if (!*room) {
    pthread_mutex_unlock (&p->lock);
    return NULL;
  }
  it = &p->items[(p->head + p->count) % p->nitems];
  *it = (item) {
    .owner = p,
    .kind = e->kind,
    .offset = p->next,
    .length = data ? MIN (e->length, (guint64) p->request_size) : e->length,
    .buf = data ? (int) p->free_bufs[--p->nfree] : -1,
    .ready = !data,
  };
  p->count++;
  if (data) {
    p->in_flight++;
    if (!p->aio) {
      p->jobs[(p->jobs_head + p->jobs_count) % p->requests] = it;
      p->jobs_count++;
      pthread_cond_signal (&p->work);
    }
  }
  else
    pthread_cond_broadcast (&p->cond);
  pthread_mutex_unlock (&p->lock);
  return it;
}

/* Put items in the ring and start reads until the ring, the buffers or
 * the known extents run out. */
static gboolean
produce (copy *p, GError **error)
{
  ova_source *src = p->src;

  for (;;) {
    ova_extent *e;
    item *it;
    gboolean room;

    if (!take_extents (p, error) || !ask_extents (p, error))
      return FALSE;
    if (p->ext_pos == p->ext->len) {
      if (p->next == src->size) {
        pthread_mutex_lock (&p->lock);
        p->produced_all = TRUE;
        pthread_cond_broadcast (&p->cond);
        pthread_mutex_unlock (&p->lock);
        return TRUE;
      }
      if (!refill_extents (p, error))
        return FALSE;
      if (p->ext->len == 0)
        return TRUE;
      continue;
    }

    /* Each extent must start where we are and make progress, or the copy
     * would send a gap or spin. */
    e = &g_array_index (p->ext, ova_extent, p->ext_pos);
    if (e->offset != p->next || e->length == 0 || e->length > src->size - p->next) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: bad extent [%" G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT
                   ") at offset %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT,
                   src->name, e->offset, e->length, p->next, src->size);
      return FALSE;
    }
    if (e->kind != OVA_EXTENT_DATA && e->kind != OVA_EXTENT_ZERO &&
        e->kind != OVA_EXTENT_HOLE) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: unknown extent kind %d", src->name, e->kind);
      return FALSE;
    }

    it = add_item (p, e, &room);
    if (!room)
      return TRUE;
    if (it->buf >= 0) {
      if (p->aio && !start_read (p, it, error))
        return FALSE;
      p->bytes_read += it->length;
    }
    p->next += it->length;
    e->offset += it->length;
    e->length -= it->length;
    if (e->length == 0)
      p->ext_pos++;
  }
}

/* Requests still owed an answer by whoever can give it. */
static guint
pending (copy *p)
{
  guint n;

  if (p->aio)
    return p->src->ops->aio_in_flight (p->src);
  pthread_mutex_lock (&p->lock);
  n = p->in_flight;
  pthread_mutex_unlock (&p->lock);
  return n;
}

/* Until something happens: a completion, a buffer back, a timeout. */
static gboolean
wait_events (copy *p, GError **error)
{
  struct pollfd pfd = { .fd = p->wake_fd, .events = POLLIN };

  if (p->aio)
    return p->src->ops->aio_poll (p->src, p->wake_fd, POLL_TIMEOUT_MS, error);
  if (poll (&pfd, 1, POLL_TIMEOUT_MS) < 0 && errno != EINTR) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot wait for the reads of %s: %s", p->src->name,
                 g_strerror (errno));
    return FALSE;
  }
  if (pfd.revents & POLLIN)
    drain_wake_fd (p->wake_fd);
  return TRUE;
}

/* Wake the sending thread now and then even when nothing happens, so that
 * it looks at *cancel while it waits. */
static void
tick (copy *p, gint64 *last)
{
  gint64 now = g_get_monotonic_time ();

  if (now - *last < POLL_TIMEOUT_MS * 1000)
    return;
  *last = now;
  pthread_mutex_lock (&p->lock);
  pthread_cond_broadcast (&p->cond);
  pthread_mutex_unlock (&p->lock);
}

static void *
io_thread (void *opaque)
{
  copy *p = opaque;
  gint64 deadline = 0;
  gint64 last_tick = g_get_monotonic_time ();

  for (;;) {
    GError *err = NULL;
    gboolean done;

    if (!failed_or_stopped (p) && !produce (p, &err))
      fail (p, err);

    if (failed_or_stopped (p)) {
      guint n = pending (p);

      done = n == 0;
      if (deadline == 0)
        deadline = g_get_monotonic_time () + DRAIN_TIMEOUT_US;
      else if (!done && p->aio && g_get_monotonic_time () > deadline) {
        ova_warn ("%s: %u requests still in flight after %d s, dropping "
                  "the connections", p->src->name, n,
                  (int) (DRAIN_TIMEOUT_US / G_USEC_PER_SEC));
        done = TRUE;
      }
    }
    else {
      pthread_mutex_lock (&p->lock);
      done = p->produced_all && p->in_flight == 0;
      pthread_mutex_unlock (&p->lock);
      done = done && !p->ext_busy;
    }
    if (done)
      break;

    err = NULL;
    if (!wait_events (p, &err))
      fail (p, err);
    tick (p, &last_tick);
  }
  return NULL;
}

/* ---- the sending thread: items in order into frames ---- */

static gboolean
cancelled (copy *p, guint64 offset, GError **error)
{
  if (p->cancel == NULL || !*p->cancel)
    return FALSE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED,
               "interrupted by a signal while %s %s at offset %" G_GUINT64_FORMAT,
               p->verb, p->src->name, offset);
  return TRUE;
}

/* The next item in offset order once it is ready; FALSE with *end set
 * after the last one, FALSE with error after a failure or a signal. */
static gboolean
next_item (copy *p, guint64 done, item *out, gboolean *end, GError **error)
{
  gboolean ok = FALSE;

  *end = FALSE;
  pthread_mutex_lock (&p->lock);
  for (;;) {
    if (p->err != NULL) {
      g_propagate_error (error, g_error_copy (p->err));
      break;
    }
    if (p->count > 0 && p->items[p->head].ready) {
      *out = p->items[p->head];
      p->head = (p->head + 1) % p->nitems;
      p->count--;
      ok = TRUE;
      break;
    }
    if (p->count == 0 && p->produced_all) {
      *end = TRUE;
      break;
    }
    if (cancelled (p, done, error))
      break;
    pthread_cond_wait (&p->cond, &p->lock);
  }
  pthread_mutex_unlock (&p->lock);
  return ok;
}

static void
give_buffer (copy *p, int buf)
{
  pthread_mutex_lock (&p->lock);
  p->free_bufs[p->nfree++] = (guint) buf;
  pthread_mutex_unlock (&p->lock);
}

static gboolean
send_items (copy *p, strm_encoder *e, strm_progress_fn progress, void *opaque,
            GError **error)
{
  framer f = { .e = e };
  guint64 done = 0;

  for (;;) {
    item it;
    gboolean end;
    gboolean ok;

    if (!next_item (p, done, &it, &end, error)) {
      if (!end)
        return FALSE;
      break;
    }
    if (it.buf >= 0) {
      ok = framer_data (&f, p->bufs[it.buf], it.length, it.offset, error);
      give_buffer (p, it.buf);
    }
    else
      ok = framer_run (&f, it.kind, it.offset, it.length, error);
    wake_io (p);
    if (!ok)
      return FALSE;
    done = it.offset + it.length;
    if (cancelled (p, done, error))
      return FALSE;
    if (progress != NULL)
      progress (opaque, done);
  }
  return framer_flush (&f, error);
}

/* ---- setting up and tearing down ---- */

/* The tunables within what the source and the stream take. */
static void
set_limits (copy *p, const strm_copy_opts *opts)
{
  guint requests = opts != NULL ? opts->requests : 0;
  guint size = opts != NULL ? opts->request_size : 0;

  if (requests == 0)
    requests = p->aio ? AIO_DEFAULT_REQUESTS : SYNC_DEFAULT_REQUESTS;
  if (size == 0)
    size = p->aio ? AIO_DEFAULT_REQUEST_SIZE : SYNC_DEFAULT_REQUEST_SIZE;
  p->requests = CLAMP (requests, 1, STRM_COPY_MAX_REQUESTS);
  if (p->src->max_request > 0)
    size = MIN (size, p->src->max_request);
  size = MIN (size, STRM_MAX_DATA_PAYLOAD);
  size = MAX (size, MIN_REQUEST_SIZE);
  p->request_size = size - size % MIN_REQUEST_SIZE;
}

static gboolean
copy_init (copy *p, ova_source *src, const strm_copy_opts *opts,
           volatile sig_atomic_t *cancel, GError **error)
{
  *p = (copy) { .src = src, .cancel = cancel, .wake_fd = -1 };
  p->aio = src->ops->aio_pread != NULL;
  /* The words each kind of copy has always used. */
  p->verb = p->aio ? "reading" : "sending";
  set_limits (p, opts);

  pthread_mutex_init (&p->lock, NULL);
  pthread_cond_init (&p->cond, NULL);
  pthread_cond_init (&p->work, NULL);
  p->nitems = MAX (MIN_ITEMS, p->requests * ITEMS_PER_REQUEST);
  p->items = g_new0 (item, p->nitems);
  p->jobs = g_new0 (item *, p->requests);
  p->free_bufs = g_new0 (guint, p->requests);
  p->bufs = g_new0 (char *, p->requests);
  p->conn_in_flight = g_new0 (guint, MAX (src->connections, 1));
  p->ext = g_array_new (FALSE, FALSE, sizeof (ova_extent));
  p->ahead = g_array_new (FALSE, FALSE, sizeof (ova_extent));
  for (guint i = 0; i < p->requests; i++) {
    int rc = posix_memalign ((void **) &p->bufs[i], BUF_ALIGN, p->request_size);

    if (rc != 0) {
      p->bufs[i] = NULL;
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot allocate a %u byte read buffer: %s", p->request_size,
                   g_strerror (rc));
      return FALSE;
    }
    p->free_bufs[p->nfree++] = i;
  }
  p->wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->wake_fd < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot create an eventfd: %s", g_strerror (errno));
    return FALSE;
  }
  return TRUE;
}

static void
copy_clear (copy *p)
{
  if (p->wake_fd >= 0)
    close (p->wake_fd);
  for (guint i = 0; i < p->requests; i++)
    free (p->bufs[i]);
  g_free (p->bufs);
  g_free (p->free_bufs);
  g_free (p->jobs);
  g_free (p->items);
  g_free (p->conn_in_flight);
  g_array_unref (p->ext);
  g_array_unref (p->ahead);
  g_clear_error (&p->err);
  g_clear_error (&p->ext_err);
  pthread_cond_destroy (&p->work);
  pthread_cond_destroy (&p->cond);
  pthread_mutex_destroy (&p->lock);
}

/* Plain pthreads rather than GThread, whose start helgrind cannot follow. */
static gboolean
start_thread (pthread_t *t, void *(*fn) (void *), copy *p, GError **error)
{
  int rc = pthread_create (t, NULL, fn, p);

  if (rc != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot start a thread to read %s: %s", p->src->name,
                 g_strerror (rc));
    return FALSE;
  }
  return TRUE;
}

/* Stop the I/O thread (it waits for the reads in flight), then the workers. */
static void
stop_threads (copy *p, const pthread_t *io, const pthread_t *workers,
              guint nworkers)
{
  if (io != NULL) {
    pthread_mutex_lock (&p->lock);
    p->stop = TRUE;
    pthread_mutex_unlock (&p->lock);
    wake_io (p);
    pthread_join (*io, NULL);
  }
  pthread_mutex_lock (&p->lock);
  p->workers_stop = TRUE;
  pthread_cond_broadcast (&p->work);
  pthread_mutex_unlock (&p->lock);
  for (guint i = 0; i < nworkers; i++)
    pthread_join (workers[i], NULL);
}

gboolean
strm_copy_source (strm_encoder *e, ova_source *src, const char *uuid,
                  const strm_copy_opts *opts, strm_progress_fn progress,
                  void *opaque, volatile sig_atomic_t *cancel,
                  guint64 *bytes_read, GError **error)
{
  copy p;
  pthread_t io;
  gboolean io_started = FALSE;
  pthread_t workers[MAX_WORKERS];
  guint nworkers = 0;
  gboolean ok = FALSE;

  if (!copy_init (&p, src, opts, cancel, error))
    goto out;
  if (!strm_encoder_begin (e, uuid, src->size, error))
    goto out;
  if (cancelled (&p, 0, error))
    goto out;
  if (!p.aio)
    for (; nworkers < MIN (p.requests, MAX_WORKERS); nworkers++)
      if (!start_thread (&workers[nworkers], worker, &p, error))
        goto out;
  if (!start_thread (&io, io_thread, &p, error))
    goto out;
  io_started = TRUE;
  if (!send_items (&p, e, progress, opaque, error))
    goto out;
  if (!strm_encoder_end (e, error))
    goto out;
  ok = TRUE;

 out:
  stop_threads (&p, io_started ? &io : NULL, workers, nworkers);
  /* Whatever is still in flight after a drain timeout must not land in
   * freed buffers: the connections go first. */
  if (!ok && p.aio)
    src->ops->aio_abort (src);
  ova_debug ("copied %s: %u connections, %u requests of %u bytes in flight "
             "at most%s", src->name, p.aio ? src->connections : nworkers,
             p.requests, p.request_size, ok ? "" : " (failed)");
  if (bytes_read != NULL)
    *bytes_read = p.bytes_read;
  copy_clear (&p);
  return ok;
}
