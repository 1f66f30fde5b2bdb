/* ovagent: an NBD export as a copy source (libnbd): extents from base:allocation
 * or a qemu dirty bitmap, asked per work range; reads split at the server's limit. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include <libnbd.h>

#include "error.h"
#include "log.h"
#include "nbd/nbd.h"
#include "nbd/nbd-priv.h"

#define BASE_ALLOCATION "base:allocation"
#define DIRTY_BITMAP_PREFIX "qemu:dirty-bitmap:"
/* Block status lengths are 32-bit on the wire; stay well below. */
#define MAX_STATUS_REQUEST ((guint64) 2 * 1024 * 1024 * 1024 - 64 * 1024)
/* What the NBD protocol lets a client assume when the server says nothing. */
#define DEFAULT_MAX_REQUEST (32u * 1024 * 1024)
/* A reply with more extents than this is not from a sane server. */
#define MAX_EXTENTS_PER_REPLY (1u << 20)

typedef struct nbd_source {
  ova_source base;
  struct nbd_handle *h;
  char *context;
  gboolean bitmap;        /* context is a dirty bitmap */
  gboolean have_status;   /* the server serves the context */
  guint32 max_request;
  /* The extents of the last block status reply, contiguous from its first
   * offset; later calls inside that range are answered from it. */
  GArray *cache;          /* ova_extent */
} nbd_source;

typedef struct {
  const nbd_source *src;
  guint64 offset;         /* where the request started */
  guint64 end;            /* the most we keep: request end, clipped to size */
  GArray *out;
  gboolean bad;           /* the reply did not start at offset */
} status_ctx;

void
nbdr_set_libnbd_error (GError **error, const char *fmt, ...)
{
  g_autofree char *what = NULL;
  const char *msg = nbd_get_error ();
  int err = nbd_get_errno ();
  va_list ap;

  va_start (ap, fmt);
  what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR,
               err == ENOSPC || err == EDQUOT ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
               "%s: %s", what, msg != NULL ? msg : g_strerror (err ? err : EIO));
}

guint32
nbdr_max_request (struct nbd_handle *h)
{
  int64_t max = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);

  if (max <= 0 || max > DEFAULT_MAX_REQUEST)
    return DEFAULT_MAX_REQUEST;
  return (guint32) max;
}

static ova_extent_kind
extent_kind (const nbd_source *s, guint32 flags)
{
  if (s->bitmap)
    return (flags & 1) ? OVA_EXTENT_DATA : OVA_EXTENT_HOLE;
  /* Unallocated reads as zeros in the guest view: the same as a zero run. */
  if (flags & LIBNBD_STATE_ZERO)
    return OVA_EXTENT_ZERO;
  return OVA_EXTENT_DATA;
}

/* Called by libnbd with its lock held: no nbd_* calls on the handle here. */
static int
status_cb (void *user_data, const char *metacontext, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  status_ctx *c = user_data;
  guint64 pos = offset;

  if (strcmp (metacontext, c->src->context) != 0)
    return 0;
  if (offset != c->offset || c->out->len > 0 || nr_entries / 2 > MAX_EXTENTS_PER_REPLY) {
    c->bad = TRUE;
    return 0;
  }
  for (size_t i = 0; i + 1 < nr_entries && pos < c->end; i += 2) {
    ova_extent e = {
      .offset = pos,
      .length = MIN ((guint64) entries[i], c->end - pos),
      .kind = extent_kind (c->src, entries[i + 1]),
    };

    if (e.length == 0)
      break;
    pos += e.length;
    if (c->out->len > 0) {
      ova_extent *last = &g_array_index (c->out, ova_extent, c->out->len - 1);

      if (last->kind == e.kind) {
        last->length += e.length;
        continue;
      }
    }
    g_array_append_val (c->out, e);
  }
  return 0;
}

/* Fill the cache with the extents from offset on, at most len bytes. */
static gboolean
fetch_extents (nbd_source *s, guint64 offset, guint64 len, GError **error)
{
  status_ctx c = {
    .src = s,
    .offset = offset,
    .end = offset + MIN (len, s->base.size - offset),
    .out = s->cache,
  };
  guint64 count = MIN (c.end - offset, MAX_STATUS_REQUEST);

  g_array_set_size (s->cache, 0);
  if (nbd_block_status (s->h, count, offset,
                        (nbd_extent_callback) { .callback = status_cb, .user_data = &c },
                        0) < 0) {
    nbdr_set_libnbd_error (error, "cannot read the block status of %s at %" G_GUINT64_FORMAT
                           " (%s)", s->base.name, offset, s->context);
    return FALSE;
  }
  if (c.bad || s->cache->len == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "the NBD server of %s sent no usable %s extents for offset %"
                 G_GUINT64_FORMAT, s->base.name, s->context, offset);
    return FALSE;
  }
  return TRUE;
}

static const ova_extent *
cache_lookup (const nbd_source *s, guint64 offset)
{
  for (guint i = 0; i < s->cache->len; i++) {
    const ova_extent *e = &g_array_index (s->cache, ova_extent, i);

    if (offset >= e->offset && offset < e->offset + e->length)
      return e;
  }
  return NULL;
}

static gboolean
nbd_source_extent (ova_source *base, guint64 offset, guint64 max_len,
                   ova_extent *out, GError **error)
{
  nbd_source *s = (nbd_source *) base;
  const ova_extent *e;

  if (offset >= base->size || max_len == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "extent asked at %" G_GUINT64_FORMAT " for %" G_GUINT64_FORMAT
                 " bytes of %s (size %" G_GUINT64_FORMAT ")",
                 offset, max_len, base->name, base->size);
    return FALSE;
  }
  max_len = MIN (max_len, base->size - offset);
  if (!s->have_status) {
    *out = (ova_extent) { .offset = offset, .length = max_len,
                          .kind = OVA_EXTENT_DATA };
    return TRUE;
  }
  e = cache_lookup (s, offset);
  if (e == NULL) {
    if (!fetch_extents (s, offset, max_len, error))
      return FALSE;
    e = cache_lookup (s, offset);
    g_assert (e != NULL);
  }
  out->offset = offset;
  out->length = MIN (e->offset + e->length - offset, max_len);
  out->kind = e->kind;
  return TRUE;
}

static gboolean
nbd_source_pread (ova_source *base, void *buf, size_t len, guint64 offset,
                  GError **error)
{
  nbd_source *s = (nbd_source *) base;
  guint8 *p = buf;

  if (offset > base->size || len > base->size - offset) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "read of %zu bytes at %" G_GUINT64_FORMAT " is past the end of %s",
                 len, offset, base->name);
    return FALSE;
  }
  while (len > 0) {
    size_t n = MIN (len, (size_t) s->max_request);

    if (nbd_pread (s->h, p, n, offset, 0) < 0) {
      nbdr_set_libnbd_error (error, "cannot read %zu bytes at %" G_GUINT64_FORMAT
                             " of %s", n, offset, base->name);
      return FALSE;
    }
    p += n;
    offset += n;
    len -= n;
  }
  return TRUE;
}

static void
nbd_source_free (ova_source *base)
{
  nbd_source *s = (nbd_source *) base;

  if (s->h != NULL) {
    nbd_shutdown (s->h, 0);
    nbd_close (s->h);
  }
  if (s->cache != NULL)
    g_array_unref (s->cache);
  g_free (s->context);
  g_free (base->name);
  g_free (s);
}

static const struct ova_source_ops nbd_source_ops = {
  .name = "nbd",
  .extent = nbd_source_extent,
  .pread = nbd_source_pread,
  .free = nbd_source_free,
};

struct nbd_handle *
nbdr_connect (const char *uri, const char *context, GError **error)
{
  struct nbd_handle *h = nbd_create ();

  if (h == NULL) {
    nbdr_set_libnbd_error (error, "cannot create an NBD handle for %s", uri);
    return NULL;
  }
  /* qemu handles unaligned requests itself (read-modify-write). */
  nbd_set_strict_mode (h, nbd_get_strict_mode (h) & ~LIBNBD_STRICT_ALIGN);
  /* A read that succeeds fills its buffer and a failed one's buffer is
   * never used: no need for libnbd to clear every buffer first. */
  nbd_set_pread_initialize (h, false);
  if (context != NULL && nbd_add_meta_context (h, context) < 0) {
    nbdr_set_libnbd_error (error, "cannot ask %s for %s", uri, context);
    nbd_close (h);
    return NULL;
  }
  if (nbd_connect_uri (h, uri) < 0) {
    nbdr_set_libnbd_error (error, "cannot connect to %s", uri);
    nbd_close (h);
    return NULL;
  }
  return h;
}

ova_source *
nbdr_source_open (const char *uri, const char *context, GError **error)
{
  g_autoptr(ova_source) base = NULL;
  nbd_source *s = g_new0 (nbd_source, 1);
  int64_t size;
  int can;

  base = &s->base;
  base->ops = &nbd_source_ops;
  base->name = g_strdup (uri);
  s->context = g_strdup (context != NULL ? context : BASE_ALLOCATION);
  s->bitmap = g_str_has_prefix (s->context, DIRTY_BITMAP_PREFIX);
  s->cache = g_array_new (FALSE, FALSE, sizeof (ova_extent));
  if (!s->bitmap && strcmp (s->context, BASE_ALLOCATION) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "unknown NBD meta context '%s' for %s", s->context, uri);
    return NULL;
  }

  s->h = nbdr_connect (uri, s->context, error);
  if (s->h == NULL)
    return NULL;
  size = nbd_get_size (s->h);
  if (size < 0) {
    nbdr_set_libnbd_error (error, "cannot get the size of %s", uri);
    return NULL;
  }
  base->size = size;
  s->max_request = nbdr_max_request (s->h);

  can = nbd_can_meta_context (s->h, s->context);
  if (can < 0) {
    nbdr_set_libnbd_error (error, "cannot ask %s for %s", uri, s->context);
    return NULL;
  }
  s->have_status = can > 0;
  if (!s->have_status && s->bitmap) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "%s does not export the bitmap %s",
                 uri, s->context + strlen (DIRTY_BITMAP_PREFIX));
    return NULL;
  }
  if (!s->have_status)
    ova_debug ("%s has no %s: every byte is read", uri, s->context);
  ova_debug ("opened %s: %" G_GUINT64_FORMAT " bytes, requests up to %u bytes",
             uri, base->size, s->max_request);
  return g_steal_pointer (&base);
}
