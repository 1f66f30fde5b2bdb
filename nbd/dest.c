/* ovagent: a writable NBD export as a copy destination (libnbd): writes split
 * at the server's limit and kept in flight, zeroing that may leave holes, a flush at close. */
#include <config.h>

#include <errno.h>
#include <string.h>

#include <libnbd.h>

#include "error.h"
#include "log.h"
#include "nbd/nbd.h"
#include "nbd/nbd-priv.h"

/* Write-zeroes lengths are 32-bit on the wire. */
#define MAX_ZERO_REQUEST ((guint64) 1024 * 1024 * 1024)
/* Zeros written as data when the server cannot zero. */
#define ZERO_BUFFER_SIZE (4u * 1024 * 1024)
/* Requests in flight: the caller's next frame is decoded while the server
 * writes the previous ones. Memory: SLOTS copies of one request. */
#define SLOTS 8

typedef struct dest_slot {
  struct nbdr_dest *d;
  guint8 *buf;            /* a copy of the caller's bytes; NULL for zeroing */
  size_t cap;
  gboolean busy;
  guint64 offset;
  guint64 len;
  gboolean zero;
} dest_slot;

struct nbdr_dest {
  struct nbd_handle *h;   /* NULL once closed */
  char *uri;
  guint64 size;
  guint32 max_request;
  gboolean can_zero;
  gboolean can_flush;
  guint8 *zeros;          /* ZERO_BUFFER_SIZE zero bytes, when needed */
  dest_slot slots[SLOTS];
  /* The first request the server failed, reported by the next call. */
  int failed_errno;
  guint64 failed_offset;
  guint64 failed_len;
  gboolean failed_zero;
};

nbdr_dest *
nbdr_dest_open (const char *uri, GError **error)
{
  g_autoptr(nbdr_dest) d = g_new0 (nbdr_dest, 1);
  int64_t size;
  int ro, can_zero, can_flush;

  d->uri = g_strdup (uri);
  d->h = nbdr_connect (uri, NULL, error);
  if (d->h == NULL)
    return NULL;
  ro = nbd_is_read_only (d->h);
  if (ro != 0) {
    if (ro < 0)
      nbdr_set_libnbd_error (error, "cannot ask %s whether it is writable", uri);
    else
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "the NBD export %s is read-only", uri);
    return NULL;
  }
  size = nbd_get_size (d->h);
  can_zero = nbd_can_zero (d->h);
  can_flush = nbd_can_flush (d->h);
  if (size < 0 || can_zero < 0 || can_flush < 0) {
    nbdr_set_libnbd_error (error, "cannot read the properties of %s", uri);
    return NULL;
  }
  d->size = size;
  d->can_zero = can_zero > 0;
  d->can_flush = can_flush > 0;
  d->max_request = nbdr_max_request (d->h);
  for (size_t i = 0; i < SLOTS; i++)
    d->slots[i].d = d;
  ova_debug ("opened %s for writing: %" G_GUINT64_FORMAT " bytes, requests up to %u"
             " bytes%s", uri, d->size, d->max_request,
             d->can_zero ? "" : ", zeros written as data");
  return g_steal_pointer (&d);
}

guint64
nbdr_dest_size (const nbdr_dest *d)
{
  return d->size;
}

static gboolean
check_range (const nbdr_dest *d, guint64 offset, guint64 len, GError **error)
{
  if (d->h == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "%s is closed", d->uri);
    return FALSE;
  }
  if (offset > d->size || len > d->size - offset) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NO_SPACE,
                 "cannot write %" G_GUINT64_FORMAT " bytes at %" G_GUINT64_FORMAT
                 " into %s: it holds only %" G_GUINT64_FORMAT " bytes",
                 len, offset, d->uri, d->size);
    return FALSE;
  }
  return TRUE;
}

static int
request_done (void *user_data, int *err)
{
  dest_slot *slot = user_data;
  nbdr_dest *d = slot->d;

  if (*err != 0 && d->failed_errno == 0) {
    d->failed_errno = *err;
    d->failed_offset = slot->offset;
    d->failed_len = slot->len;
    d->failed_zero = slot->zero;
  }
  slot->busy = FALSE;
  /* Retire the command: nothing else looks at it. */
  return 1;
}

static gboolean
check_failed (const nbdr_dest *d, GError **error)
{
  if (d->failed_errno == 0)
    return TRUE;
  g_set_error (error, OVA_ERROR,
               d->failed_errno == ENOSPC || d->failed_errno == EDQUOT ?
               OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
               "cannot %s %" G_GUINT64_FORMAT " bytes at %" G_GUINT64_FORMAT
               " of %s: %s", d->failed_zero ? "zero" : "write",
               d->failed_len, d->failed_offset, d->uri,
               g_strerror (d->failed_errno));
  return FALSE;
}

/* A slot no request uses, waiting for one to complete if need be. */
static dest_slot *
free_slot (nbdr_dest *d, GError **error)
{
  for (;;) {
    if (!check_failed (d, error))
      return NULL;
    for (size_t i = 0; i < SLOTS; i++)
      if (!d->slots[i].busy)
        return &d->slots[i];
    if (nbd_poll (d->h, -1) < 0) {
      nbdr_set_libnbd_error (error, "lost the connection to %s while writing", d->uri);
      return NULL;
    }
  }
}

/* Wait until the server answered every request. */
static gboolean
drain (nbdr_dest *d, GError **error)
{
  while (nbd_aio_in_flight (d->h) > 0) {
    if (nbd_poll (d->h, -1) < 0) {
      nbdr_set_libnbd_error (error, "lost the connection to %s while writing", d->uri);
      return FALSE;
    }
  }
  return check_failed (d, error);
}

static gboolean
start_request (nbdr_dest *d, const void *buf, guint64 n, guint64 offset,
               gboolean zero, GError **error)
{
  dest_slot *slot = free_slot (d, error);
  nbd_completion_callback cb;
  int64_t cookie;

  if (slot == NULL)
    return FALSE;
  cb.callback = request_done;
  cb.user_data = slot;
  cb.free = NULL;
  slot->offset = offset;
  slot->len = n;
  slot->zero = zero;
  if (zero && d->can_zero) {
    /* No NO_HOLE flag: the target stays sparse where the server can punch. */
    cookie = nbd_aio_zero (d->h, n, offset, cb, 0);
  }
  else if (zero) {
    cookie = nbd_aio_pwrite (d->h, d->zeros, n, offset, cb, 0);
  }
  else {
    if (slot->cap < n) {
      g_free (slot->buf);
      slot->buf = g_malloc (n);
      slot->cap = n;
    }
    memcpy (slot->buf, buf, n);
    cookie = nbd_aio_pwrite (d->h, slot->buf, n, offset, cb, 0);
  }
  if (cookie < 0) {
    nbdr_set_libnbd_error (error, "cannot %s %" G_GUINT64_FORMAT " bytes at %"
                           G_GUINT64_FORMAT " of %s", zero ? "zero" : "write",
                           n, offset, d->uri);
    return FALSE;
  }
  slot->busy = TRUE;
  return TRUE;
}

gboolean
nbdr_dest_pwrite (nbdr_dest *d, const void *buf, size_t len, guint64 offset,
                  GError **error)
{
  const guint8 *p = buf;

  if (!check_range (d, offset, len, error))
    return FALSE;
  while (len > 0) {
    size_t n = MIN (len, (size_t) d->max_request);

    if (!start_request (d, p, n, offset, FALSE, error))
      return FALSE;
    p += n;
    offset += n;
    len -= n;
  }
  return TRUE;
}

gboolean
nbdr_dest_zero (nbdr_dest *d, guint64 offset, guint64 len, GError **error)
{
  if (!check_range (d, offset, len, error))
    return FALSE;
  if (!d->can_zero && d->zeros == NULL)
    d->zeros = g_malloc0 (ZERO_BUFFER_SIZE);
  while (len > 0) {
    guint64 n = d->can_zero ? MIN (len, MAX_ZERO_REQUEST)
      : MIN (len, (guint64) MIN (ZERO_BUFFER_SIZE, d->max_request));

    if (!start_request (d, NULL, n, offset, TRUE, error))
      return FALSE;
    offset += n;
    len -= n;
  }
  return TRUE;
}

gboolean
nbdr_dest_close (nbdr_dest *d, GError **error)
{
  gboolean ok;

  if (d->h == NULL)
    return TRUE;
  ok = drain (d, error);
  if (ok && d->can_flush && nbd_flush (d->h, 0) < 0) {
    nbdr_set_libnbd_error (error, "cannot flush %s", d->uri);
    ok = FALSE;
  }
  if (ok && nbd_shutdown (d->h, 0) < 0) {
    nbdr_set_libnbd_error (error, "cannot disconnect from %s", d->uri);
    ok = FALSE;
  }
  nbd_close (d->h);
  d->h = NULL;
  return ok;
}

void
nbdr_dest_free (nbdr_dest *d)
{
  if (d == NULL)
    return;
  /* Requests still in flight are abandoned with the handle; their
   * buffers are freed only after it. */
  if (d->h != NULL)
    nbd_close (d->h);
  for (size_t i = 0; i < SLOTS; i++)
    g_free (d->slots[i].buf);
  g_free (d->zeros);
  g_free (d->uri);
  g_free (d);
}
