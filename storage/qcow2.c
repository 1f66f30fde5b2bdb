/* ovagent: a qcow2 header read as untrusted bytes (see qcow2.h): every field
 * used anywhere is bounded here first. Layout: qemu's docs/interop/qcow2.txt. */
#include <config.h>

#include <string.h>

#include "error.h"
#include "qcow2.h"
#include "util.h"

#define CLUSTER_BITS_MIN 9
#define CLUSTER_BITS_MAX 21

#define EXT_END 0
#define EXT_BACKING_FORMAT 0xe2792acaU
#define EXT_BITMAPS 0x23852875U
#define EXT_DATA_FILE 0x44415441U

void
stor_qcow2_header_clear (stor_qcow2_header *h)
{
  g_clear_pointer (&h->backing, g_free);
  g_clear_pointer (&h->backing_format, g_free);
}

static guint32
be32_at (const guint8 *buf, gsize off)
{
  guint32 v;

  memcpy (&v, buf + off, sizeof v);
  return GUINT32_FROM_BE (v);
}

static guint64
be64_at (const guint8 *buf, gsize off)
{
  guint64 v;

  memcpy (&v, buf + off, sizeof v);
  return GUINT64_FROM_BE (v);
}

G_GNUC_PRINTF (3, 4) static gboolean
bad (GError **error, const char *what, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY, "%s: invalid qcow2 header: %s",
               what, msg);
  return FALSE;
}

/* The header extensions, from off up to end (the backing name or the end
 * of the first cluster). */
static gboolean
parse_extensions (const guint8 *buf, gsize off, gsize end, const char *what,
                  stor_qcow2_header *h, GError **error)
{
  for (;;) {
    guint32 type, ext_len;

    if (off > end || end - off < 8)
      return bad (error, what, "the header extensions run past byte %zu", end);
    type = be32_at (buf, off);
    ext_len = be32_at (buf, off + 4);
    off += 8;
    if (type == EXT_END)
      return TRUE;
    if (ext_len > end - off)
      return bad (error, what, "header extension 0x%08x of %u bytes runs past byte %zu",
                  type, ext_len, end);
    switch (type) {
    case EXT_BACKING_FORMAT: {
      g_autofree char *fmt = g_strndup ((const char *) buf + off, ext_len);

      if (ext_len == 0 || ext_len > STOR_QCOW2_BACKING_FORMAT_MAX ||
          strlen (fmt) != ext_len)
        return bad (error, what, "a backing format name of %u bytes", ext_len);
      for (guint32 i = 0; i < ext_len; i++)
        if (!g_ascii_isalnum (fmt[i]) && fmt[i] != '_' && fmt[i] != '-')
          return bad (error, what, "a backing format name that is not a driver name");
      g_free (h->backing_format);
      h->backing_format = g_steal_pointer (&fmt);
      break;
    }
    case EXT_BITMAPS:
      h->bitmaps = TRUE;
      break;
    case EXT_DATA_FILE:
      g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                   "%s names an external data file, another file that qemu would "
                   "open with it; oVirt volumes never have one, so it is refused", what);
      return FALSE;
    default:
      break;
    }
    off += ((gsize) ext_len + 7) & ~(gsize) 7;
  }
}

/* The backing name: inside the first cluster and the bytes we have. */
static gboolean
parse_backing (const guint8 *buf, gsize len, guint64 cluster, const char *what,
               stor_qcow2_header *h, GError **error)
{
  guint64 offset = be64_at (buf, 8);
  guint32 size = be32_at (buf, 16);
  g_autofree char *name = NULL;

  if (offset == 0)
    return TRUE;
  if (size == 0 || size > STOR_QCOW2_BACKING_MAX)
    return bad (error, what, "a backing file name of %u bytes", size);
  if (offset > cluster - size || offset + size > len)
    return bad (error, what, "the backing file name lies outside the first %"
                G_GUINT64_FORMAT " bytes", MIN (cluster, (guint64) len));
  name = g_strndup ((const char *) buf + offset, size);
  if (strlen (name) != size || !g_utf8_validate (name, -1, NULL))
    return bad (error, what, "the backing file name is not UTF-8 text");
  h->backing = g_steal_pointer (&name);
  return TRUE;
}

gboolean
stor_qcow2_header_parse (const guint8 *buf, gsize len, const char *what,
                         stor_qcow2_header *h, GError **error)
{
  gsize ext_off = STOR_QCOW2_HEADER_V2_LEN;
  guint64 cluster, end;

  memset (h, 0, sizeof *h);
  if (len < 4 || memcmp (buf, STOR_QCOW2_MAGIC, 4) != 0)
    return bad (error, what, "no qcow2 magic");
  if (len < 8)
    return bad (error, what, "cut short after %zu bytes", len);
  h->version = be32_at (buf, 4);
  if (h->version == 1) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "%s is a qcow version 1 image", what);
    return FALSE;
  }
  if (h->version != 2 && h->version != 3)
    return bad (error, what, "version %u", h->version);
  if (len < (h->version == 2 ? STOR_QCOW2_HEADER_V2_LEN : STOR_QCOW2_HEADER_V3_LEN))
    return bad (error, what, "cut short after %zu bytes", len);

  h->cluster_bits = be32_at (buf, 20);
  if (h->cluster_bits < CLUSTER_BITS_MIN || h->cluster_bits > CLUSTER_BITS_MAX)
    return bad (error, what, "cluster bits %u (%d to %d)", h->cluster_bits,
                CLUSTER_BITS_MIN, CLUSTER_BITS_MAX);
  cluster = (guint64) 1 << h->cluster_bits;
  h->size = be64_at (buf, 24);
  if (h->size > STOR_VIRTUAL_SIZE_MAX)
    return bad (error, what, "a virtual size of %" G_GUINT64_FORMAT " bytes, over the "
                "%" G_GUINT64_FORMAT " a volume can have", h->size, STOR_VIRTUAL_SIZE_MAX);
  if (be32_at (buf, 32) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "%s is an encrypted qcow2 image", what);
    return FALSE;
  }

  if (h->version == 3) {
    guint32 header_len = be32_at (buf, 100);

    h->incompatible = be64_at (buf, 72);
    h->autoclear = be64_at (buf, 88);
    if (h->incompatible & STOR_QCOW2_INCOMPAT_DATA_FILE) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                   "%s uses an external data file (incompatible feature bit 2): "
                   "qemu would open another file that it names; oVirt volumes "
                   "never have one, so it is refused", what);
      return FALSE;
    }
    if (h->incompatible & ~STOR_QCOW2_INCOMPAT_KNOWN) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                   "%s has unknown incompatible features 0x%" G_GINT64_MODIFIER "x",
                   what, h->incompatible & ~STOR_QCOW2_INCOMPAT_KNOWN);
      return FALSE;
    }
    if (header_len < STOR_QCOW2_HEADER_V3_LEN || header_len % 8 != 0 ||
        header_len > cluster)
      return bad (error, what, "a header length of %u bytes", header_len);
    ext_off = header_len;
  }

  if (!parse_backing (buf, len, cluster, what, h, error))
    return FALSE;
  end = MIN (cluster, (guint64) len);
  if (h->backing != NULL)
    end = MIN (end, be64_at (buf, 8));
  return parse_extensions (buf, ext_off, end, what, h, error);
}
