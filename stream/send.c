/* ovagent: copying one source into a stream: extents asked per work range,
 * data read in large chunks, zero blocks and holes merged into runs. */
#include <config.h>

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
/* Zeros are found per block of this size: a qcow2 cluster by default, so
 * zeroed clusters and unused parts of raw volumes go as ZERO frames. */
#define ZERO_BLOCK (64u * 1024)
#define BUF_ALIGN 4096

G_STATIC_ASSERT (CHUNK_SIZE <= STRM_MAX_DATA_PAYLOAD);
G_STATIC_ASSERT (CHUNK_SIZE % ZERO_BLOCK == 0);

/* A run of zeros or of holes not yet written: adjacent ones become one
 * frame whatever the extents and chunks they came from. */
typedef struct {
  ova_extent_kind kind;   /* OVA_EXTENT_ZERO or OVA_EXTENT_HOLE */
  guint64 offset;
  guint64 length;         /* 0: no run pending */
} pending_run;

typedef struct {
  strm_encoder *e;
  pending_run run;
} sender;

static gboolean
flush_run (sender *s, GError **error)
{
  pending_run *r = &s->run;
  gboolean ok;

  if (r->length == 0)
    return TRUE;
  if (r->kind == OVA_EXTENT_ZERO)
    ok = strm_encoder_zero (s->e, r->offset, r->length, error);
  else
    ok = strm_encoder_hole (s->e, r->offset, r->length, error);
  r->length = 0;
  return ok;
}

static gboolean
add_run (sender *s, ova_extent_kind kind, guint64 offset, guint64 length,
         GError **error)
{
  pending_run *r = &s->run;

  if (r->length > 0 && r->kind == kind && r->offset + r->length == offset) {
    r->length += length;
    return TRUE;
  }
  if (!flush_run (s, error))
    return FALSE;
  r->kind = kind;
  r->offset = offset;
  r->length = length;
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

/* A chunk read from the source: non-zero blocks go out as DATA frames
 * (neighbours together), zero blocks join the pending zero run. */
static gboolean
send_chunk (sender *s, const char *buf, size_t len, guint64 offset,
            GError **error)
{
  size_t pos = 0;

  while (pos < len) {
    size_t start = pos;
    gboolean zero = is_zero (buf + pos, MIN (ZERO_BLOCK, len - pos));

    pos += MIN (ZERO_BLOCK, len - pos);
    while (pos < len &&
           is_zero (buf + pos, MIN (ZERO_BLOCK, len - pos)) == zero)
      pos += MIN (ZERO_BLOCK, len - pos);

    if (zero) {
      if (!add_run (s, OVA_EXTENT_ZERO, offset + start, pos - start, error))
        return FALSE;
    }
    else {
      if (!flush_run (s, error) ||
          !strm_encoder_data (s->e, offset + start, buf + start, pos - start,
                              error))
        return FALSE;
    }
  }
  return TRUE;
}

static gboolean
check_cancel (volatile gboolean *cancel, const ova_source *src, guint64 offset,
              GError **error)
{
  if (cancel == NULL || !*cancel)
    return TRUE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
               "interrupted by a signal while sending %s at offset %"
               G_GUINT64_FORMAT,
               src->name, offset);
  return FALSE;
}

gboolean
strm_send_source (strm_encoder *e, ova_source *src, const char *uuid,
                  strm_progress_fn progress, void *opaque,
                  volatile gboolean *cancel, GError **error)
{
  sender s = { .e = e };
  char *buf = NULL;
  guint64 offset = 0;
  gboolean ok = FALSE;
  int r;

  r = posix_memalign ((void **) &buf, BUF_ALIGN, CHUNK_SIZE);
  if (r != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot allocate a %u byte read buffer: %s", CHUNK_SIZE,
                 g_strerror (r));
    return FALSE;
  }

  if (!strm_encoder_begin (e, uuid, src->size, error))
    goto out;

  while (offset < src->size) {
    ova_extent ext;
    guint64 end;

    if (!check_cancel (cancel, src, offset, error))
      goto out;
    if (!src->ops->extent (src, offset, WORK_RANGE, &ext, error))
      goto out;
    /* The extent must start where we are and make progress, or the loop
     * would send a gap or spin. */
    if (ext.offset != offset || ext.length == 0 ||
        ext.length > src->size - offset) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: bad extent [%" G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT
                   ") asked at offset %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT,
                   src->name, ext.offset, ext.length, offset, src->size);
      goto out;
    }
    end = offset + ext.length;

    switch (ext.kind) {
    case OVA_EXTENT_HOLE:
    case OVA_EXTENT_ZERO:
      if (!add_run (&s, ext.kind, offset, ext.length, error))
        goto out;
      offset = end;
      break;

    case OVA_EXTENT_DATA:
      while (offset < end) {
        size_t n = MIN (CHUNK_SIZE, end - offset);

        if (!check_cancel (cancel, src, offset, error))
          goto out;
        if (!src->ops->pread (src, buf, n, offset, error))
          goto out;
        if (!send_chunk (&s, buf, n, offset, error))
          goto out;
        offset += n;
        if (progress)
          progress (opaque, offset);
      }
      break;

    default:
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: unknown extent kind %d", src->name, ext.kind);
      goto out;
    }
    if (progress)
      progress (opaque, offset);
  }

  if (!flush_run (&s, error))
    goto out;
  if (!strm_encoder_end (e, error))
    goto out;
  ok = TRUE;

 out:
  free (buf);
  return ok;
}
