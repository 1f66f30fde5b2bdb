/* ovagent: an NBD export as a copy source (libnbd): extents from base:allocation
 * or a qemu dirty bitmap, reads on one or more connections, asynchronous too. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

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

typedef struct nbd_source nbd_source;

typedef struct {
  const nbd_source *src;
  guint64 offset;         /* where the request started */
  guint64 end;            /* the most we keep: request end, clipped to size */
  GArray *out;
  gboolean bad;           /* the reply did not start at offset */
} status_ctx;

struct nbd_source {
  ova_source base;
  struct nbd_handle **h;  /* [base.connections]; h[0] also answers block
                           * status; all NULL once aborted */
  char *context;
  gboolean bitmap;        /* context is a dirty bitmap */
  gboolean have_status;   /* the server serves the context */
  /* The extents of the last synchronous block status reply, contiguous
   * from its first offset; later calls inside that range are answered
   * from it. */
  GArray *cache;          /* ova_extent */
  /* The block status request in flight (one at a time). */
  status_ctx status;
  ova_aio_done status_done;
  void *status_opaque;
};

/* An asynchronous read, until libnbd frees it. */
typedef struct {
  const nbd_source *src;
  guint64 offset;
  size_t len;
  ova_aio_done done;
  void *opaque;
} read_req;

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

/* The request of [offset, offset + len) into out, for status_cb. */
static guint64
status_start (nbd_source *s, guint64 offset, guint64 len, GArray *out)
{
  s->status = (status_ctx) {
    .src = s,
    .offset = offset,
    .end = offset + MIN (len, s->base.size - offset),
    .out = out,
  };
  return MIN (s->status.end - offset, MAX_STATUS_REQUEST);
}

static GError *
status_unusable (const nbd_source *s)
{
  return g_error_new (OVA_ERROR, OVA_ERROR_INTERNAL,
                      "the NBD server of %s sent no usable %s extents for offset %"
                      G_GUINT64_FORMAT, s->base.name, s->context, s->status.offset);
}

/* Fill the cache with the extents from offset on, at most len bytes. */
static gboolean
fetch_extents (nbd_source *s, guint64 offset, guint64 len, GError **error)
{
  guint64 count;

  g_array_set_size (s->cache, 0);
  count = status_start (s, offset, len, s->cache);
  if (nbd_block_status (s->h[0], count, offset,
                        (nbd_extent_callback) { .callback = status_cb,
                                                .user_data = &s->status },
                        0) < 0) {
    nbdr_set_libnbd_error (error, "cannot read the block status of %s at %" G_GUINT64_FORMAT
                           " (%s)", s->base.name, offset, s->context);
    return FALSE;
  }
  if (s->status.bad || s->cache->len == 0) {
    g_propagate_error (error, status_unusable (s));
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
check_range (const ova_source *base, guint64 offset, guint64 len, GError **error)
{
  if (offset < base->size && len > 0 && len <= base->size - offset)
    return TRUE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
               "request at %" G_GUINT64_FORMAT " for %" G_GUINT64_FORMAT
               " bytes is outside %s (size %" G_GUINT64_FORMAT ")",
               offset, len, base->name, base->size);
  return FALSE;
}

static gboolean
nbd_source_extent (ova_source *base, guint64 offset, guint64 max_len,
                   ova_extent *out, GError **error)
{
  nbd_source *s = (nbd_source *) base;
  const ova_extent *e;

  if (!check_range (base, offset, MIN (max_len, base->size - offset), error))
    return FALSE;
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

  if (!check_range (base, offset, len, error))
    return FALSE;
  while (len > 0) {
    size_t n = MIN (len, (size_t) base->max_request);

    if (nbd_pread (s->h[0], p, n, offset, 0) < 0) {
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

/* ---- asynchronous requests: libnbd runs the completions in aio_poll with
 * the handle locked, so they never call libnbd themselves ---- */

static int
read_complete (void *user_data, int *error)
{
  read_req *r = user_data;
  GError *err = NULL;

  if (*error != 0)
    err = g_error_new (OVA_ERROR, OVA_ERROR_TRANSPORT,
                       "cannot read %zu bytes at %" G_GUINT64_FORMAT " of %s: %s",
                       r->len, r->offset, r->src->base.name, g_strerror (*error));
  r->done (r->opaque, err);
  return 1;
}

static gboolean
nbd_source_aio_pread (ova_source *base, guint conn, void *buf, size_t len,
                      guint64 offset, ova_aio_done done, void *opaque,
                      GError **error)
{
  nbd_source *s = (nbd_source *) base;
  read_req *r;

  if (!check_range (base, offset, len, error))
    return FALSE;
  if (conn >= base->connections || s->h[conn] == NULL || len > base->max_request) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "read of %zu bytes on connection %u of %s: no such request",
                 len, conn, base->name);
    return FALSE;
  }
  r = g_new (read_req, 1);
  *r = (read_req) { .src = s, .offset = offset, .len = len, .done = done,
                    .opaque = opaque };
  /* libnbd frees r once the command is retired or the handle closed. */
  if (nbd_aio_pread (s->h[conn], buf, len, offset,
                     (nbd_completion_callback) { .callback = read_complete,
                                                 .user_data = r, .free = g_free },
                     0) < 0) {
    nbdr_set_libnbd_error (error, "cannot read %zu bytes at %" G_GUINT64_FORMAT
                           " of %s", len, offset, base->name);
    return FALSE;
  }
  return TRUE;
}

static int
status_complete (void *user_data, int *error)
{
  nbd_source *s = user_data;
  GError *err = NULL;

  if (*error != 0)
    err = g_error_new (OVA_ERROR, OVA_ERROR_TRANSPORT,
                       "cannot read the block status of %s at %" G_GUINT64_FORMAT
                       " (%s): %s", s->base.name, s->status.offset, s->context,
                       g_strerror (*error));
  else if (s->status.bad || s->status.out->len == 0)
    err = status_unusable (s);
  s->status_done (s->status_opaque, err);
  return 1;
}

static gboolean
nbd_source_aio_extents (ova_source *base, guint64 offset, guint64 len,
                        GArray *out, ova_aio_done done, void *opaque,
                        GError **error)
{
  nbd_source *s = (nbd_source *) base;
  guint64 count;

  if (!check_range (base, offset, MIN (len, base->size - offset), error))
    return FALSE;
  if (!s->have_status) {
    ova_extent e = { offset, MIN (len, base->size - offset), OVA_EXTENT_DATA };

    g_array_append_val (out, e);
    done (opaque, NULL);
    return TRUE;
  }
  if (s->h[0] == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "block status of %s after its connections were dropped", base->name);
    return FALSE;
  }
  count = status_start (s, offset, len, out);
  s->status_done = done;
  s->status_opaque = opaque;
  if (nbd_aio_block_status (s->h[0], count, offset,
                            (nbd_extent_callback) { .callback = status_cb,
                                                    .user_data = &s->status },
                            (nbd_completion_callback) { .callback = status_complete,
                                                        .user_data = s },
                            0) < 0) {
    nbdr_set_libnbd_error (error, "cannot ask the block status of %s at %"
                           G_GUINT64_FORMAT " (%s)", base->name, offset, s->context);
    return FALSE;
  }
  return TRUE;
}

static gboolean
live (struct nbd_handle *h)
{
  return h != NULL && !nbd_aio_is_dead (h) && !nbd_aio_is_closed (h);
}

/* Wait for events on every live connection and the wake fd, then let
 * libnbd handle them (which runs the completion callbacks). */
static gboolean
nbd_source_aio_poll (ova_source *base, int wake_fd, int timeout_ms, GError **error)
{
  nbd_source *s = (nbd_source *) base;
  g_autofree struct pollfd *fds = g_new0 (struct pollfd, base->connections + 1);
  g_autofree guint *conn_of = g_new0 (guint, base->connections);
  guint n = 0;
  int ret;

  for (guint i = 0; i < base->connections; i++) {
    unsigned dir;
    int fd;

    if (!live (s->h[i]))
      continue;
    fd = nbd_aio_get_fd (s->h[i]);
    if (fd < 0) {
      nbdr_set_libnbd_error (error, "cannot poll the connection to %s", base->name);
      return FALSE;
    }
    dir = nbd_aio_get_direction (s->h[i]);
    fds[n].fd = fd;
    fds[n].events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                    ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0);
    conn_of[n++] = i;
  }
  fds[n].fd = wake_fd;
  fds[n].events = POLLIN;

  ret = poll (fds, n + 1, timeout_ms);
  if (ret < 0) {
    if (errno == EINTR)
      return TRUE;
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot poll the connections to %s: %s", base->name, g_strerror (errno));
    return FALSE;
  }
  if (fds[n].revents & POLLIN) {
    guint64 v;

    if (read (wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
      ova_debug ("cannot read the NBD wake counter: %s", g_strerror (errno));
  }
  for (guint k = 0; k < n; k++) {
    struct nbd_handle *h = s->h[conn_of[k]];
    int rc = 0;

    if (fds[k].revents & (POLLIN | POLLHUP | POLLERR))
      rc = nbd_aio_notify_read (h);
    else if (fds[k].revents & POLLOUT)
      rc = nbd_aio_notify_write (h);
    if (rc < 0) {
      nbdr_set_libnbd_error (error, "lost the connection to %s", base->name);
      return FALSE;
    }
  }
  return TRUE;
}

static guint
nbd_source_aio_in_flight (ova_source *base)
{
  nbd_source *s = (nbd_source *) base;
  guint n = 0;

  for (guint i = 0; i < base->connections; i++)
    if (live (s->h[i]))
      n += MAX (nbd_aio_in_flight (s->h[i]), 0);
  return n;
}

static void
nbd_source_aio_abort (ova_source *base)
{
  nbd_source *s = (nbd_source *) base;

  for (guint i = 0; i < base->connections; i++)
    g_clear_pointer (&s->h[i], nbd_close);
}

static void
nbd_source_free (ova_source *base)
{
  nbd_source *s = (nbd_source *) base;

  for (guint i = 0; s->h != NULL && i < base->connections; i++) {
    if (s->h[i] == NULL)
      continue;
    nbd_shutdown (s->h[i], 0);
    nbd_close (s->h[i]);
  }
  g_free (s->h);
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
  .aio_pread = nbd_source_aio_pread,
  .aio_extents = nbd_source_aio_extents,
  .aio_poll = nbd_source_aio_poll,
  .aio_in_flight = nbd_source_aio_in_flight,
  .aio_abort = nbd_source_aio_abort,
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

/* The connections beyond the first, when the export allows several. */
static gboolean
connect_more (nbd_source *s, guint connections, gboolean multi_conn, GError **error)
{
  ova_source *base = &s->base;

  if (connections == 0)
    connections = multi_conn ? NBDR_DEFAULT_CONNECTIONS : 1;
  if (connections > 1 && !multi_conn) {
    ova_debug ("%s does not allow multi-conn: one connection", base->name);
    connections = 1;
  }
  connections = MIN (connections, NBDR_MAX_CONNECTIONS);
  for (guint i = 1; i < connections; i++) {
    int64_t size;

    s->h[i] = nbdr_connect (base->name, NULL, error);
    if (s->h[i] == NULL)
      return FALSE;
    base->connections = i + 1;
    size = nbd_get_size (s->h[i]);
    if (size < 0 || (guint64) size != base->size) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s changed size between connections (%" G_GUINT64_FORMAT
                   " then %" G_GINT64_FORMAT " bytes)", base->name, base->size,
                   (gint64) size);
      return FALSE;
    }
  }
  return TRUE;
}

ova_source *
nbdr_source_open (const char *uri, const char *context, guint connections,
                  GError **error)
{
  g_autoptr(ova_source) base = NULL;
  nbd_source *s = g_new0 (nbd_source, 1);
  int64_t size;
  int can;
  int multi;

  base = &s->base;
  base->ops = &nbd_source_ops;
  base->name = g_strdup (uri);
  s->context = g_strdup (context != NULL ? context : BASE_ALLOCATION);
  s->bitmap = g_str_has_prefix (s->context, DIRTY_BITMAP_PREFIX);
  s->cache = g_array_new (FALSE, FALSE, sizeof (ova_extent));
  s->h = g_new0 (struct nbd_handle *, NBDR_MAX_CONNECTIONS);
  if (!s->bitmap && strcmp (s->context, BASE_ALLOCATION) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "unknown NBD meta context '%s' for %s", s->context, uri);
    return NULL;
  }

  s->h[0] = nbdr_connect (uri, s->context, error);
  if (s->h[0] == NULL)
    return NULL;
  base->connections = 1;
  size = nbd_get_size (s->h[0]);
  if (size < 0) {
    nbdr_set_libnbd_error (error, "cannot get the size of %s", uri);
    return NULL;
  }
  base->size = size;
  base->max_request = nbdr_max_request (s->h[0]);

  can = nbd_can_meta_context (s->h[0], s->context);
  multi = nbd_can_multi_conn (s->h[0]);
  if (can < 0 || multi < 0) {
    nbdr_set_libnbd_error (error, "cannot ask %s what it serves", uri);
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
  if (!connect_more (s, connections, multi > 0, error))
    return NULL;
  ova_debug ("opened %s: %" G_GUINT64_FORMAT " bytes, %u connections, requests "
             "up to %u bytes, extents from %s", uri, base->size, base->connections,
             base->max_request, s->have_status ? s->context : "nowhere (all data)");
  return g_steal_pointer (&base);
}
