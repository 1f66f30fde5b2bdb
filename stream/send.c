/* ovagent: copying one source into a stream: extents asked per work range,
 * data read in large chunks, zero blocks and holes merged into runs. */
#include <config.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

#include "send.h"

/* Extents are asked for this much at a time: bounded work per call, and
 * big enough that a sparse file costs few lseeks. */
#define WORK_RANGE (64u * 1024 * 1024)
/* One read, at most one DATA frame. */
#define CHUNK_SIZE STRM_DEFAULT_FRAME_SIZE
#define BUF_ALIGN 4096

G_STATIC_ASSERT (CHUNK_SIZE <= STRM_MAX_DATA_PAYLOAD);
G_STATIC_ASSERT (CHUNK_SIZE % STRM_ZERO_BLOCK == 0);

/* The framer: a run of zeros or holes is kept back until something else
 * comes, so adjacent ones become one frame whatever the extents and chunks
 * they came from. */
void
strm_framer_init (strm_framer *f, strm_encoder *e)
{
  *f = (strm_framer) { .e = e };
}

gboolean
strm_framer_flush (strm_framer *f, GError **error)
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

gboolean
strm_framer_run (strm_framer *f, ova_extent_kind kind, guint64 offset,
                 guint64 length, GError **error)
{
  if (f->length > 0 && f->kind == kind && f->offset + f->length == offset) {
    f->length += length;
    return TRUE;
  }
  if (!strm_framer_flush (f, error))
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

gboolean
strm_framer_data (strm_framer *f, const char *buf, size_t len, guint64 offset,
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
      if (!strm_framer_run (f, OVA_EXTENT_ZERO, offset + start, pos - start,
                            error))
        return FALSE;
    }
    else if (!strm_framer_flush (f, error) ||
             !strm_encoder_data (f->e, offset + start, buf + start,
                                 pos - start, error))
      return FALSE;
  }
  return TRUE;
}

/* Reading and sending overlap: a reader thread walks the extents and fills
 * a few buffers while this thread frames and writes the previous ones, as
 * nbdcopy chains reads to writes. Items come out in source order, so frames
 * stay in order. The hand-off is a pthread mutex and condition rather than
 * GAsyncQueue so that thread checkers (helgrind, TSan) can see it. */
#define NR_BUFFERS 3
#define NR_ITEMS 64

typedef enum {
  ITEM_EXTENT,    /* kind/offset/length; buf set for DATA */
  ITEM_DONE,      /* the reader reached the end */
  ITEM_FAILED,    /* the reader failed: err */
} item_type;

typedef struct {
  item_type type;
  ova_extent ext;
  char *buf;
  GError *err;
} item;

typedef struct {
  ova_source *src;
  volatile sig_atomic_t *cancel;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  gboolean stop;                 /* the writer gave up */
  item items[NR_ITEMS];          /* ring: reader -> writer */
  unsigned head, count;
  char *free_bufs[NR_BUFFERS];   /* writer -> reader */
  unsigned nfree;
} pipeline;

static void
push_item (pipeline *p, item_type type, const ova_extent *ext, char *buf,
           GError *err)
{
  item it = { .type = type, .buf = buf, .err = err };

  if (ext)
    it.ext = *ext;
  pthread_mutex_lock (&p->lock);
  while (p->count == NR_ITEMS)
    pthread_cond_wait (&p->cond, &p->lock);
  p->items[(p->head + p->count) % NR_ITEMS] = it;
  p->count++;
  pthread_cond_broadcast (&p->cond);
  pthread_mutex_unlock (&p->lock);
}

static item
pop_item (pipeline *p)
{
  item it;

  pthread_mutex_lock (&p->lock);
  while (p->count == 0)
    pthread_cond_wait (&p->cond, &p->lock);
  it = p->items[p->head];
  p->head = (p->head + 1) % NR_ITEMS;
  p->count--;
  pthread_cond_broadcast (&p->cond);
  pthread_mutex_unlock (&p->lock);
  return it;
}

/* A free buffer for the reader, or NULL once the writer has stopped. */
static char *
take_buffer (pipeline *p)
{
  char *buf = NULL;

  pthread_mutex_lock (&p->lock);
  while (p->nfree == 0 && !p->stop)
    pthread_cond_wait (&p->cond, &p->lock);
  if (!p->stop)
    buf = p->free_bufs[--p->nfree];
  pthread_mutex_unlock (&p->lock);
  return buf;
}

static void
give_buffer (pipeline *p, char *buf)
{
  pthread_mutex_lock (&p->lock);
  p->free_bufs[p->nfree++] = buf;
  pthread_cond_broadcast (&p->cond);
  pthread_mutex_unlock (&p->lock);
}

static gboolean
stopped (pipeline *p)
{
  gboolean stop;

  pthread_mutex_lock (&p->lock);
  stop = p->stop;
  pthread_mutex_unlock (&p->lock);
  return stop;
}

static gboolean
check_cancel (volatile sig_atomic_t *cancel, const ova_source *src, guint64 offset,
              GError **error)
{
  if (cancel == NULL || !*cancel)
    return TRUE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED,
               "interrupted by a signal while sending %s at offset %"
               G_GUINT64_FORMAT,
               src->name, offset);
  return FALSE;
}

/* The reader thread: the only user of the source. */
static gpointer
reader (gpointer opaque)
{
  pipeline *p = opaque;
  ova_source *src = p->src;
  guint64 offset = 0;
  GError *err = NULL;

  while (offset < src->size) {
    ova_extent ext;
    guint64 end;

    if (stopped (p))
      goto failed;
    if (!check_cancel (p->cancel, src, offset, &err))
      goto failed;
    if (!src->ops->extent (src, offset, WORK_RANGE, &ext, &err))
      goto failed;
    /* The extent must start where we are and make progress, or the loop
     * would send a gap or spin. */
    if (ext.offset != offset || ext.length == 0 ||
        ext.length > src->size - offset) {
      g_set_error (&err, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: bad extent [%" G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT
                   ") asked at offset %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT,
                   src->name, ext.offset, ext.length, offset, src->size);
      goto failed;
    }
    end = offset + ext.length;

    switch (ext.kind) {
    case OVA_EXTENT_HOLE:
    case OVA_EXTENT_ZERO:
      push_item (p, ITEM_EXTENT, &ext, NULL, NULL);
      offset = end;
      break;

    case OVA_EXTENT_DATA:
      while (offset < end) {
        ova_extent chunk = { offset, MIN (CHUNK_SIZE, end - offset),
                             OVA_EXTENT_DATA };
        char *buf = take_buffer (p);

        if (buf == NULL)
          goto failed;
        if (!check_cancel (p->cancel, src, offset, &err) ||
            !src->ops->pread (src, buf, chunk.length, offset, &err)) {
          give_buffer (p, buf);
          goto failed;
        }
        push_item (p, ITEM_EXTENT, &chunk, buf, NULL);
        offset += chunk.length;
      }
      break;

    default:
      g_set_error (&err, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: unknown extent kind %d", src->name, ext.kind);
      goto failed;
    }
  }
  push_item (p, ITEM_DONE, NULL, NULL, NULL);
  return NULL;

 failed:
  push_item (p, ITEM_FAILED, NULL, NULL, err);
  return NULL;
}

gboolean
strm_send_source (strm_encoder *e, ova_source *src, const char *uuid,
                  strm_progress_fn progress, void *opaque,
                  volatile sig_atomic_t *cancel, GError **error)
{
  strm_framer s;
  pipeline p = { .src = src, .cancel = cancel };
  char *bufs[NR_BUFFERS] = { NULL };
  GThread *thread = NULL;
  gboolean ok = FALSE;
  gboolean reader_done = FALSE;
  item it;

  pthread_mutex_init (&p.lock, NULL);
  pthread_cond_init (&p.cond, NULL);
  for (size_t i = 0; i < NR_BUFFERS; i++) {
    int r = posix_memalign ((void **) &bufs[i], BUF_ALIGN, CHUNK_SIZE);

    if (r != 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot allocate a %u byte read buffer: %s", CHUNK_SIZE,
                   g_strerror (r));
      goto out;
    }
    p.free_bufs[p.nfree++] = bufs[i];
  }

  strm_framer_init (&s, e);
  if (!strm_encoder_begin (e, uuid, src->size, error))
    goto out;

  thread = g_thread_try_new ("ovagent-reader", reader, &p, error);
  if (thread == NULL)
    goto out;

  while (!reader_done) {
    gboolean sent = TRUE;

    it = pop_item (&p);
    switch (it.type) {
    case ITEM_DONE:
      reader_done = TRUE;
      break;
    case ITEM_FAILED:
      reader_done = TRUE;
      g_propagate_error (error, it.err);
      sent = FALSE;
      break;
    case ITEM_EXTENT:
      if (it.buf) {
        sent = strm_framer_data (&s, it.buf, it.ext.length, it.ext.offset, error);
        give_buffer (&p, it.buf);
      }
      else
        sent = strm_framer_run (&s, it.ext.kind, it.ext.offset, it.ext.length, error);
      if (sent && progress)
        progress (opaque, it.ext.offset + it.ext.length);
      break;
    }
    if (!sent)
      goto out;
  }

  if (!strm_framer_flush (&s, error))
    goto out;
  if (!strm_encoder_end (e, error))
    goto out;
  ok = TRUE;

 out:
  if (thread) {
    /* Stop the reader and take what it still queues, so that it never
     * waits for a buffer nobody returns. */
    pthread_mutex_lock (&p.lock);
    p.stop = TRUE;
    pthread_cond_broadcast (&p.cond);
    pthread_mutex_unlock (&p.lock);
    while (!reader_done) {
      it = pop_item (&p);
      if (it.buf)
        give_buffer (&p, it.buf);
      if (it.type != ITEM_EXTENT) {
        reader_done = TRUE;
        g_clear_error (&it.err);
      }
    }
    g_thread_join (thread);
  }
  pthread_cond_destroy (&p.cond);
  pthread_mutex_destroy (&p.lock);
  for (size_t i = 0; i < NR_BUFFERS; i++)
    free (bufs[i]);
  return ok;
}
