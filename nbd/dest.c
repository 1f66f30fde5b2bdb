/* ovagent: a writable NBD export as a copy destination (libnbd): writes split
 * at the server's limit, zeroing that may leave holes, a flush at close. */
#include <config.h>

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

struct nbdr_dest {
  struct nbd_handle *h;   /* NULL once closed */
  char *uri;
  guint64 size;
  guint32 max_request;
  gboolean can_zero;
  gboolean can_flush;
  guint8 *zeros;          /* ZERO_BUFFER_SIZE zero bytes, when needed */
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

gboolean
nbdr_dest_pwrite (nbdr_dest *d, const void *buf, size_t len, guint64 offset,
                  GError **error)
{
  const guint8 *p = buf;

  if (!check_range (d, offset, len, error))
    return FALSE;
  while (len > 0) {
    size_t n = MIN (len, (size_t) d->max_request);

    if (nbd_pwrite (d->h, p, n, offset, 0) < 0) {
      nbdr_set_libnbd_error (error, "cannot write %zu bytes at %" G_GUINT64_FORMAT
                             " of %s", n, offset, d->uri);
      return FALSE;
    }
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
    guint64 n;
    int r;

    /* No NO_HOLE flag: the target stays sparse where the server can punch. */
    if (d->can_zero) {
      n = MIN (len, MAX_ZERO_REQUEST);
      r = nbd_zero (d->h, n, offset, 0);
    }
    else {
      n = MIN (len, (guint64) MIN (ZERO_BUFFER_SIZE, d->max_request));
      r = nbd_pwrite (d->h, d->zeros, n, offset, 0);
    }
    if (r < 0) {
      nbdr_set_libnbd_error (error, "cannot zero %" G_GUINT64_FORMAT " bytes at %"
                             G_GUINT64_FORMAT " of %s", n, offset, d->uri);
      return FALSE;
    }
    offset += n;
    len -= n;
  }
  return TRUE;
}

gboolean
nbdr_dest_close (nbdr_dest *d, GError **error)
{
  gboolean ok = TRUE;

  if (d->h == NULL)
    return TRUE;
  if (d->can_flush && nbd_flush (d->h, 0) < 0) {
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
  if (d->h != NULL)
    nbd_close (d->h);
  g_free (d->zeros);
  g_free (d->uri);
  g_free (d);
}
