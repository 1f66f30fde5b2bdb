/* ovagent: an NBD export into a stream, fast: extents per work range, reads
 * in flight on several connections from one poll loop, frames in offset order. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libnbd.h>

#include "error.h"
#include "log.h"
#include "nbd/nbd.h"
#include "nbd/nbd-priv.h"
#include "stream/send.h"
#include "stream/stream.h"

#define BASE_ALLOCATION "base:allocation"
#define DIRTY_BITMAP_PREFIX "qemu:dirty-bitmap:"
/* Extents are asked this much at a time, one range ahead of the reads:
 * bounded memory for any disk, and below the 32-bit block status lengths
 * of libnbd 1.14. */
#define WORK_RANGE ((guint64) 1024 * 1024 * 1024)
/* A reply with more extents than this is not from a sane server. */
#define MAX_EXTENTS_PER_REPLY (1u << 20)
/* Zeros are found per block of this size (a default qcow2 cluster). */
#define MIN_REQUEST_SIZE (4u * 1024)
#define BUF_ALIGN 4096
/* Runs between reads are items too: room for a few per read. */
#define ITEMS_PER_REQUEST 4
#define MIN_ITEMS 64
/* How often the I/O thread looks at *cancel when nothing happens. */
#define POLL_TIMEOUT_MS 200
/* After a failure, how long requests in flight may take to come back
 * before the connections are dropped under them. */
#define DRAIN_TIMEOUT_US (30 * G_USEC_PER_SEC)

G_STATIC_ASSERT (NBDR_DEFAULT_REQUEST_SIZE <= STRM_MAX_DATA_PAYLOAD);

struct nbdr_reader {
  char *uri;
  char *context;
  gboolean bitmap;        /* context is a dirty bitmap */
  gboolean have_status;   /* the server serves the context */
  gboolean used;
  guint64 size;
  guint64 bytes_read;     /* data read from the export by send */
  guint requests;
  guint request_size;
  guint nconns;
  struct nbd_handle **h;  /* [nconns]; h[0] also asks block status */
};

typedef struct run run;

/* One frame-to-be, in offset order in the ring. */
typedef struct {
  run *owner;
  ova_extent_kind kind;
  guint64 offset;
  guint64 length;
  int buf;                /* DATA: index of its buffer, else -1 */
  guint conn;
  gboolean ready;         /* DATA: the read came back */
} item;

struct run {
  nbdr_reader *r;
  volatile sig_atomic_t *cancel;

  /* Shared by the I/O thread and the sending thread, under lock. */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  item *items;
  guint nitems;           /* ring capacity */
  guint head, count;
  guint *free_bufs;
  guint nfree;
  gboolean produced_all;  /* the last item is in the ring */
  gboolean stop;          /* the sending thread gave up */
  GError *err;            /* the first failure */

  /* The I/O thread's own (libnbd callbacks run in it). */
  char **bufs;            /* [requests] */
  int wake_fd;            /* eventfd: a buffer or a ring slot came free */
  guint64 next;           /* where the next item starts */
  GArray *ext;            /* ova_extent from next on */
  guint ext_pos;
  GArray *ahead;          /* the reply for the next work range */
  gboolean ahead_ready;
  gboolean status_busy;   /* a block status request is in flight */
  gboolean status_replied; /* and its reply is in, not looked at yet */
  gboolean status_bad;
  int status_errno;
  guint64 status_next;    /* where the next block status request starts */
  guint64 status_asked;
  guint64 status_end;
  guint in_flight;
  guint *conn_in_flight;  /* [nconns] */
};

/* ---- the shared state ---- */

/* Keep the first failure; wake the sending thread. Lock held. */
static void
fail_locked (run *p, GError *err)
{
  if (p->err == NULL)
    p->err = err;
  else
    g_error_free (err);
  pthread_cond_broadcast (&p->cond);
}

static void
fail (run *p, GError *err)
{
  pthread_mutex_lock (&p->lock);
  fail_locked (p, err);
  pthread_mutex_unlock (&p->lock);
}

static gboolean
failed_or_stopped (run *p)
{
  gboolean r;

  pthread_mutex_lock (&p->lock);
  r = p->err != NULL || p->stop;
  pthread_mutex_unlock (&p->lock);
  return r;
}

static void
wake_io (run *p)
{
  guint64 one = 1;

  /* A full counter already wakes the poll; nothing else can fail here. */
  if (write (p->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
    ova_debug ("cannot wake the NBD I/O thread: %s", g_strerror (errno));
}

static GError *
interrupted_error (const run *p, guint64 offset)
{
  return g_error_new (OVA_ERROR, OVA_ERROR_INTERRUPTED,
                      "interrupted by a signal while reading %s at offset %"
                      G_GUINT64_FORMAT, p->r->uri, offset);
}

/* ---- libnbd callbacks: run by libnbd in the I/O thread with the handle
 * locked, so they never call libnbd themselves ---- */

static int
read_done (void *user_data, int *error)
{
  item *it = user_data;
  run *p = it->owner;

  p->in_flight--;
  p->conn_in_flight[it->conn]--;
  pthread_mutex_lock (&p->lock);
  if (*error != 0)
    fail_locked (p, g_error_new (OVA_ERROR, OVA_ERROR_TRANSPORT,
                                 "cannot read %" G_GUINT64_FORMAT " bytes at %"
                                 G_GUINT64_FORMAT " of %s: %s", it->length,
                                 it->offset, p->r->uri, g_strerror (*error)));
  else {
    it->ready = TRUE;
    pthread_cond_broadcast (&p->cond);
  }
  pthread_mutex_unlock (&p->lock);
  return 1;
}

static ova_extent_kind
extent_kind (const nbdr_reader *r, guint32 flags)
{
  if (r->bitmap)
    return (flags & 1) ? OVA_EXTENT_DATA : OVA_EXTENT_HOLE;
  /* Unallocated reads as zeros in the guest view: the same as a zero run. */
  if (flags & LIBNBD_STATE_ZERO)
    return OVA_EXTENT_ZERO;
  return OVA_EXTENT_DATA;
}

static int
status_extents (void *user_data, const char *metacontext, uint64_t offset,
                uint32_t *entries, size_t nr_entries, int *error G_GNUC_UNUSED)
{
  run *p = user_data;
  guint64 pos = offset;

  if (strcmp (metacontext, p->r->context) != 0)
    return 0;
  if (offset != p->status_asked || p->ahead->len > 0 ||
      nr_entries / 2 > MAX_EXTENTS_PER_REPLY) {
    p->status_bad = TRUE;
    return 0;
  }
  for (size_t i = 0; i + 1 < nr_entries && pos < p->status_end; i += 2) {
    ova_extent e = {
      .offset = pos,
      .length = MIN ((guint64) entries[i], p->status_end - pos),
      .kind = extent_kind (p->r, entries[i + 1]),
    };

    if (e.length == 0)
      break;
    pos += e.length;
    if (p->ahead->len > 0) {
      ova_extent *last = &g_array_index (p->ahead, ova_extent, p->ahead->len - 1);

      if (last->kind == e.kind) {
        last->length += e.length;
        continue;
      }
    }
    g_array_append_val (p->ahead, e);
  }
  return 0;
}

static int
status_done (void *user_data, int *error)
{
  run *p = user_data;

  p->status_busy = FALSE;
  p->status_replied = TRUE;
  if (*error != 0)
    p->status_errno = *error;
  else if (p->ahead->len == 0)
    p->status_bad = TRUE;
  return 1;
}

/* ---- the I/O thread: extents, reads, the poll loop ---- */

static gboolean
ask_status (run *p, GError **error)
{
  nbdr_reader *r = p->r;

  if (!r->have_status || p->status_busy || p->status_replied || p->ahead_ready ||
      p->status_next >= r->size)
    return TRUE;
  p->status_asked = p->status_next;
  p->status_end = p->status_asked + MIN (WORK_RANGE, r->size - p->status_asked);
  p->status_bad = FALSE;
  p->status_errno = 0;
  g_array_set_size (p->ahead, 0);
  if (nbd_aio_block_status (r->h[0], p->status_end - p->status_asked,
                            p->status_asked,
                            (nbd_extent_callback) { .callback = status_extents,
                                                    .user_data = p },
                            (nbd_completion_callback) { .callback = status_done,
                                                        .user_data = p },
                            0) < 0) {
    nbdr_set_libnbd_error (error, "cannot ask the block status of %s at %"
                           G_GUINT64_FORMAT " (%s)", r->uri, p->status_asked,
                           r->context);
    return FALSE;
  }
  p->status_busy = TRUE;
  return TRUE;
}

/* After a block status reply: its extents, or why there are none. */
static gboolean
take_status (run *p, GError **error)
{
  nbdr_reader *r = p->r;
  const ova_extent *last;

  if (!p->status_replied)
    return TRUE;
  p->status_replied = FALSE;
  if (p->status_errno != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot read the block status of %s at %" G_GUINT64_FORMAT
                 " (%s): %s", r->uri, p->status_asked, r->context,
                 g_strerror (p->status_errno));
    return FALSE;
  }
  if (p->status_bad) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "the NBD server of %s sent no usable %s extents for offset %"
                 G_GUINT64_FORMAT, r->uri, r->context, p->status_asked);
    return FALSE;
  }
  /* The reply may cover less than was asked: ask the rest next. */
  last = &g_array_index (p->ahead, ova_extent, p->ahead->len - 1);
  p->status_next = last->offset + last->length;
  p->ahead_ready = TRUE;
  return TRUE;
}

/* The next extents, from next on: FALSE when they are not there yet. */
static gboolean
refill_extents (run *p)
{
  nbdr_reader *r = p->r;
  GArray *tmp;

  g_array_set_size (p->ext, 0);
  p->ext_pos = 0;
  if (!r->have_status) {
    ova_extent e = { p->next, MIN (WORK_RANGE, r->size - p->next), OVA_EXTENT_DATA };

    g_array_append_val (p->ext, e);
    return TRUE;
  }
  if (!p->ahead_ready)
    return FALSE;
  tmp = p->ext;
  p->ext = p->ahead;
  p->ahead = tmp;
  p->ahead_ready = FALSE;
  return TRUE;
}

static guint
pick_conn (run *p)
{
  guint best = 0;

  for (guint i = 1; i < p->r->nconns; i++)
    if (p->conn_in_flight[i] < p->conn_in_flight[best])
      best = i;
  return best;
}

/* Put items in the ring and start reads until the ring, the buffers or
 * the known extents run out. */
static gboolean
produce (run *p, GError **error)
{
  nbdr_reader *r = p->r;

  for (;;) {
    ova_extent *e;
    item *it;
    guint64 len;
    gboolean data;

    if (!take_status (p, error) || !ask_status (p, error))
      return FALSE;
    if (p->ext_pos == p->ext->len) {
      if (p->next == r->size) {
        pthread_mutex_lock (&p->lock);
        p->produced_all = TRUE;
        pthread_cond_broadcast (&p->cond);
        pthread_mutex_unlock (&p->lock);
        return TRUE;
      }
      if (!refill_extents (p))
        return TRUE;
      continue;
    }

    e = &g_array_index (p->ext, ova_extent, p->ext_pos);
    if (e->offset != p->next || e->length == 0 || e->length > r->size - p->next) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: bad extent [%" G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT
                   ") at offset %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT,
                   r->uri, e->offset, e->length, p->next, r->size);
      return FALSE;
    }
    data = e->kind == OVA_EXTENT_DATA;
    len = data ? MIN (e->length, (guint64) r->request_size) : e->length;

    pthread_mutex_lock (&p->lock);
    if (p->count == p->nitems || (data && p->nfree == 0)) {
      pthread_mutex_unlock (&p->lock);
      return TRUE;
    }
    it = &p->items[(p->head + p->count) % p->nitems];
    *it = (item) {
      .owner = p,
      .kind = e->kind,
      .offset = p->next,
      .length = len,
      .buf = data ? (int) p->free_bufs[--p->nfree] : -1,
      .ready = !data,
    };
    p->count++;
    if (!data)
      pthread_cond_broadcast (&p->cond);
    pthread_mutex_unlock (&p->lock);

    if (data) {
      it->conn = pick_conn (p);
      p->in_flight++;
      p->conn_in_flight[it->conn]++;
      if (nbd_aio_pread (r->h[it->conn], p->bufs[it->buf], len, p->next,
                         (nbd_completion_callback) { .callback = read_done,
                                                     .user_data = it },
                         0) < 0) {
        p->in_flight--;
        p->conn_in_flight[it->conn]--;
        nbdr_set_libnbd_error (error, "cannot read %" G_GUINT64_FORMAT
                               " bytes at %" G_GUINT64_FORMAT " of %s",
                               len, p->next, r->uri);
        return FALSE;
      }
      r->bytes_read += len;
    }
    p->next += len;
    e->offset += len;
    e->length -= len;
    if (e->length == 0)
      p->ext_pos++;
  }
}

/* Requests still owed a reply by a connection that can give it. */
static guint
live_in_flight (const run *p)
{
  guint n = 0;

  for (guint i = 0; i < p->r->nconns; i++)
    if (!nbd_aio_is_dead (p->r->h[i]) && !nbd_aio_is_closed (p->r->h[i]))
      n += p->conn_in_flight[i] + (i == 0 && p->status_busy);
  return n;
}

/* Wait for events on every live connection and the wake fd, then let
 * libnbd handle them (which runs the completion callbacks). */
static gboolean
poll_once (run *p, GError **error)
{
  nbdr_reader *r = p->r;
  g_autofree struct pollfd *fds = g_new0 (struct pollfd, r->nconns + 1);
  g_autofree guint *conn_of = g_new0 (guint, r->nconns);
  guint n = 0;
  int ret;

  for (guint i = 0; i < r->nconns; i++) {
    unsigned dir;
    int fd;

    if (nbd_aio_is_dead (r->h[i]) || nbd_aio_is_closed (r->h[i]))
      continue;
    fd = nbd_aio_get_fd (r->h[i]);
    if (fd < 0) {
      nbdr_set_libnbd_error (error, "cannot poll the connection to %s", r->uri);
      return FALSE;
    }
    dir = nbd_aio_get_direction (r->h[i]);
    fds[n].fd = fd;
    fds[n].events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                    ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0);
    conn_of[n++] = i;
  }
  fds[n].fd = p->wake_fd;
  fds[n].events = POLLIN;

  ret = poll (fds, n + 1, POLL_TIMEOUT_MS);
  if (ret < 0) {
    if (errno == EINTR)
      return TRUE;
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot poll the connections to %s: %s", r->uri, g_strerror (errno));
    return FALSE;
  }
  if (fds[n].revents & POLLIN) {
    guint64 v;

    if (read (p->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
      ova_debug ("cannot read the NBD wake counter: %s", g_strerror (errno));
  }
  for (guint k = 0; k < n; k++) {
    struct nbd_handle *h = r->h[conn_of[k]];
    int rc = 0;

    if (fds[k].revents & (POLLIN | POLLHUP | POLLERR))
      rc = nbd_aio_notify_read (h);
    else if (fds[k].revents & POLLOUT)
      rc = nbd_aio_notify_write (h);
    if (rc < 0) {
      nbdr_set_libnbd_error (error, "lost the connection to %s", r->uri);
      return FALSE;
    }
  }
  return TRUE;
}

static gpointer
io_thread (gpointer opaque)
{
  run *p = opaque;
  gint64 deadline = 0;

  for (;;) {
    GError *err = NULL;
    gboolean done;

    if (!failed_or_stopped (p)) {
      if (p->cancel != NULL && *p->cancel)
        fail (p, interrupted_error (p, p->next));
      else if (!produce (p, &err))
        fail (p, err);
    }

    if (failed_or_stopped (p)) {
      guint pending = live_in_flight (p);

      done = pending == 0;
      if (deadline == 0)
        deadline = g_get_monotonic_time () + DRAIN_TIMEOUT_US;
      else if (!done && g_get_monotonic_time () > deadline) {
        ova_warn ("%s: %u NBD requests still in flight after %d s, dropping "
                  "the connections", p->r->uri, pending,
                  (int) (DRAIN_TIMEOUT_US / G_USEC_PER_SEC));
        done = TRUE;
      }
    }
    else {
      pthread_mutex_lock (&p->lock);
      done = p->produced_all;
      pthread_mutex_unlock (&p->lock);
      done = done && p->in_flight == 0 && !p->status_busy;
    }
    if (done)
      break;

    err = NULL;
    if (!poll_once (p, &err))
      fail (p, err);
  }
  return NULL;
}

/* ---- the sending thread: items in order into frames ---- */

/* The next item in offset order once it is ready; FALSE with *it_done set
 * after the last one, FALSE with error after a failure. */
static gboolean
next_item (run *p, item *out, gboolean *end, GError **error)
{
  gboolean ok = FALSE;

  *end = FALSE;
  pthread_mutex_lock (&p->lock);
  while (p->err == NULL &&
         !(p->count > 0 && p->items[p->head].ready) &&
         !(p->count == 0 && p->produced_all))
    pthread_cond_wait (&p->cond, &p->lock);
  if (p->err != NULL)
    g_propagate_error (error, g_error_copy (p->err));
  else if (p->count == 0)
    *end = TRUE;
  else {
    *out = p->items[p->head];
    p->head = (p->head + 1) % p->nitems;
    p->count--;
    ok = TRUE;
  }
  pthread_mutex_unlock (&p->lock);
  return ok;
}

static void
give_buffer (run *p, int buf)
{
  pthread_mutex_lock (&p->lock);
  p->free_bufs[p->nfree++] = (guint) buf;
  pthread_mutex_unlock (&p->lock);
}

static gboolean
send_items (run *p, strm_encoder *e, void (*progress) (void *, guint64),
            void *opaque, GError **error)
{
  strm_framer s;

  strm_framer_init (&s, e);

  for (;;) {
    item it;
    gboolean end;
    gboolean ok;

    if (!next_item (p, &it, &end, error)) {
      if (!end)
        return FALSE;
      break;
    }
    if (it.buf >= 0) {
      ok = strm_framer_data (&s, p->bufs[it.buf], it.length, it.offset, error);
      give_buffer (p, it.buf);
    }
    else
      ok = strm_framer_run (&s, it.kind, it.offset, it.length, error);
    wake_io (p);
    if (!ok)
      return FALSE;
    if (p->cancel != NULL && *p->cancel) {
      g_propagate_error (error, interrupted_error (p, it.offset + it.length));
      return FALSE;
    }
    if (progress != NULL)
      progress (opaque, it.offset + it.length);
  }
  return strm_framer_flush (&s, error);
}

gboolean
nbdr_reader_send (nbdr_reader *r, strm_encoder *e, const char *uuid,
                  void (*progress) (void *opaque, guint64 done), void *opaque,
                  volatile sig_atomic_t *cancel, GError **error)
{
  run p = { .r = r, .cancel = cancel, .wake_fd = -1 };
  GThread *thread = NULL;
  gboolean ok = FALSE;

  if (r->used) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "the NBD reader of %s was already used", r->uri);
    return FALSE;
  }
  r->used = TRUE;

  pthread_mutex_init (&p.lock, NULL);
  pthread_cond_init (&p.cond, NULL);
  p.nitems = MAX (MIN_ITEMS, r->requests * ITEMS_PER_REQUEST);
  p.items = g_new0 (item, p.nitems);
  p.free_bufs = g_new0 (guint, r->requests);
  p.bufs = g_new0 (char *, r->requests);
  p.conn_in_flight = g_new0 (guint, r->nconns);
  p.ext = g_array_new (FALSE, FALSE, sizeof (ova_extent));
  p.ahead = g_array_new (FALSE, FALSE, sizeof (ova_extent));
  for (guint i = 0; i < r->requests; i++) {
    int rc = posix_memalign ((void **) &p.bufs[i], BUF_ALIGN, r->request_size);

    if (rc != 0) {
      p.bufs[i] = NULL;
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot allocate a %u byte read buffer: %s", r->request_size,
                   g_strerror (rc));
      goto out;
    }
    p.free_bufs[p.nfree++] = i;
  }
  p.wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p.wake_fd < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot create an eventfd: %s", g_strerror (errno));
    goto out;
  }

  if (!strm_encoder_begin (e, uuid, r->size, error))
    goto out;
  thread = g_thread_try_new ("ovagent-nbd-io", io_thread, &p, error);
  if (thread == NULL)
    goto out;
  if (!send_items (&p, e, progress, opaque, error))
    goto out;
  if (!strm_encoder_end (e, error))
    goto out;
  ok = TRUE;

 out:
  if (thread != NULL) {
    pthread_mutex_lock (&p.lock);
    p.stop = TRUE;
    pthread_mutex_unlock (&p.lock);
    wake_io (&p);
    g_thread_join (thread);
  }
  /* Whatever is still in flight after a drain timeout must not land in
   * freed buffers: the connections go first. */
  if (!ok)
    for (guint i = 0; i < r->nconns; i++) {
      nbd_close (r->h[i]);
      r->h[i] = NULL;
    }
  ova_debug ("read %s: %u connections, %u requests of %u bytes in flight at most%s",
             r->uri, r->nconns, r->requests, r->request_size, ok ? "" : " (failed)");
  if (p.wake_fd >= 0)
    close (p.wake_fd);
  for (guint i = 0; i < r->requests; i++)
    free (p.bufs[i]);
  g_free (p.bufs);
  g_free (p.free_bufs);
  g_free (p.items);
  g_free (p.conn_in_flight);
  g_array_unref (p.ext);
  g_array_unref (p.ahead);
  if (p.err != NULL)
    g_error_free (p.err);
  pthread_cond_destroy (&p.cond);
  pthread_mutex_destroy (&p.lock);
  return ok;
}

/* ---- opening ---- */

guint64
nbdr_reader_size (const nbdr_reader *r)
{
  return r->size;
}

guint64
nbdr_reader_bytes_read (const nbdr_reader *r)
{
  return r->bytes_read;
}

void
nbdr_reader_free (nbdr_reader *r)
{
  if (r == NULL)
    return;
  for (guint i = 0; r->h != NULL && i < r->nconns; i++) {
    if (r->h[i] == NULL)
      continue;
    nbd_shutdown (r->h[i], 0);
    nbd_close (r->h[i]);
  }
  g_free (r->h);
  g_free (r->context);
  g_free (r->uri);
  g_free (r);
}

/* The tunables within what the server and the stream take. */
static void
set_limits (nbdr_reader *r, const nbdr_read_opts *opts, gboolean multi_conn,
            guint32 server_max)
{
  guint conns = opts != NULL ? opts->connections : 0;
  guint requests = opts != NULL && opts->requests ? opts->requests : NBDR_DEFAULT_REQUESTS;
  guint size = opts != NULL && opts->request_size ? opts->request_size
                                                  : NBDR_DEFAULT_REQUEST_SIZE;

  if (conns == 0)
    conns = multi_conn ? NBDR_DEFAULT_CONNECTIONS : 1;
  if (conns > 1 && !multi_conn) {
    ova_debug ("%s does not allow multi-conn: one connection", r->uri);
    conns = 1;
  }
  r->nconns = MIN (conns, NBDR_MAX_CONNECTIONS);
  r->requests = CLAMP (requests, 1, NBDR_MAX_REQUESTS);
  size = MIN (size, server_max);
  size = MIN (size, STRM_MAX_DATA_PAYLOAD);
  size = MAX (size, MIN_REQUEST_SIZE);
  r->request_size = size - size % MIN_REQUEST_SIZE;
}

nbdr_reader *
nbdr_reader_open (const char *uri, const char *context,
                  const nbdr_read_opts *opts, GError **error)
{
  g_autoptr(nbdr_reader) r = g_new0 (nbdr_reader, 1);
  struct nbd_handle *h0;
  int64_t size;
  int can;
  int multi;

  r->uri = g_strdup (uri);
  r->context = g_strdup (context != NULL ? context : BASE_ALLOCATION);
  r->bitmap = g_str_has_prefix (r->context, DIRTY_BITMAP_PREFIX);
  if (!r->bitmap && strcmp (r->context, BASE_ALLOCATION) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "unknown NBD meta context '%s' for %s", r->context, uri);
    return NULL;
  }

  h0 = nbdr_connect (uri, r->context, error);
  if (h0 == NULL)
    return NULL;
  r->h = g_new0 (struct nbd_handle *, NBDR_MAX_CONNECTIONS);
  r->h[0] = h0;
  r->nconns = 1;
  size = nbd_get_size (h0);
  if (size < 0) {
    nbdr_set_libnbd_error (error, "cannot get the size of %s", uri);
    return NULL;
  }
  r->size = size;
  can = nbd_can_meta_context (h0, r->context);
  multi = nbd_can_multi_conn (h0);
  if (can < 0 || multi < 0) {
    nbdr_set_libnbd_error (error, "cannot ask %s what it serves", uri);
    return NULL;
  }
  r->have_status = can > 0;
  if (!r->have_status && r->bitmap) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "%s does not export the bitmap %s",
                 uri, r->context + strlen (DIRTY_BITMAP_PREFIX));
    return NULL;
  }
  if (!r->have_status)
    ova_debug ("%s has no %s: every byte is read", uri, r->context);

  set_limits (r, opts, multi > 0, nbdr_max_request (h0));
  for (guint i = 1; i < r->nconns; i++) {
    int64_t s;

    r->h[i] = nbdr_connect (uri, NULL, error);
    if (r->h[i] == NULL) {
      r->nconns = i;
      return NULL;
    }
    s = nbd_get_size (r->h[i]);
    if (s != size) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s changed size between connections (%" G_GINT64_FORMAT
                   " then %" G_GINT64_FORMAT " bytes)", uri, (gint64) size, (gint64) s);
      r->nconns = i + 1;
      return NULL;
    }
  }
  ova_debug ("opened %s: %" G_GUINT64_FORMAT " bytes, %u connections, %u requests "
             "of %u bytes, extents from %s", uri, r->size, r->nconns, r->requests,
             r->request_size, r->have_status ? r->context : "nowhere (all data)");
  return g_steal_pointer (&r);
}

gboolean
nbdr_send_export (strm_encoder *e, const char *uri, const char *context,
                  const char *uuid, const nbdr_read_opts *opts,
                  void (*progress) (void *opaque, guint64 done), void *opaque,
                  volatile sig_atomic_t *cancel, GError **error)
{
  g_autoptr(nbdr_reader) r = nbdr_reader_open (uri, context, opts, error);

  if (r == NULL)
    return FALSE;
  return nbdr_reader_send (r, e, uuid, progress, opaque, cancel, error);
}
