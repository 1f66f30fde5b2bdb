/* ovagent: volume files and LVs as copy sources: extents from SEEK_DATA/
 * SEEK_HOLE, large sequential preads, and how many bytes of a volume must move. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "util.h"

#include "probe.h"
#include "qemu-img.h"
#include "source-file.h"

/* qemu-img check prints a few hundred bytes; more is not its report. */
#define CHECK_JSON_MAX (64 * 1024)

/* qemu-img check exit statuses (qemu-img(1)). */
#define CHECK_OK 0
#define CHECK_CORRUPT 2
#define CHECK_LEAKS 3

typedef struct {
  ova_source base;
  int fd;
  gboolean is_block;
  gboolean seek_holes;   /* the file system answers SEEK_DATA/SEEK_HOLE */
} file_source;

static gboolean
file_extent (ova_source *s, guint64 offset, guint64 max_len, ova_extent *out,
             GError **error)
{
  file_source *f = (file_source *) s;
  guint64 end = offset + MIN (max_len, s->size - offset);
  off_t data, hole;

  out->offset = offset;
  out->kind = OVA_EXTENT_DATA;
  out->length = end - offset;
  if (f->is_block || !f->seek_holes)
    return TRUE;

  data = lseek (f->fd, offset, SEEK_DATA);
  if (data < 0) {
    if (errno == ENXIO) {
      /* No data at or after offset: a hole up to the end. */
      out->kind = OVA_EXTENT_HOLE;
      return TRUE;
    }
    if (errno == EINVAL || errno == EOPNOTSUPP) {
      ova_debug ("%s: no SEEK_DATA support, reading it all", s->name);
      f->seek_holes = FALSE;
      return TRUE;
    }
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot find data in %s at offset %" G_GUINT64_FORMAT ": %s",
                 s->name, offset, g_strerror (errno));
    return FALSE;
  }
  if ((guint64) data > offset) {
    out->kind = OVA_EXTENT_HOLE;
    out->length = MIN ((guint64) data, end) - offset;
    return TRUE;
  }

  hole = lseek (f->fd, offset, SEEK_HOLE);
  if (hole < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot find holes in %s at offset %" G_GUINT64_FORMAT ": %s",
                 s->name, offset, g_strerror (errno));
    return FALSE;
  }
  if ((guint64) hole > offset)
    out->length = MIN ((guint64) hole, end) - offset;
  return TRUE;
}

static gboolean
file_pread (ova_source *s, void *buf, size_t len, guint64 offset,
            GError **error)
{
  file_source *f = (file_source *) s;
  char *p = buf;

  while (len > 0) {
    ssize_t n = pread (f->fd, p, len, offset);

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot read %s at offset %" G_GUINT64_FORMAT ": %s",
                   s->name, offset, g_strerror (errno));
      return FALSE;
    }
    if (n == 0) {
      /* Sizes were taken when the source was opened: a volume that shrank
       * under us cannot be copied faithfully. */
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s ended at offset %" G_GUINT64_FORMAT ", before the %"
                   G_GUINT64_FORMAT " bytes it had when opened; was it "
                   "changed while being read?", s->name, offset, s->size);
      return FALSE;
    }
    p += n;
    len -= n;
    offset += n;
  }
  return TRUE;
}

static void
file_free (ova_source *s)
{
  file_source *f = (file_source *) s;

  if (f->fd >= 0)
    close (f->fd);
  g_free (s->name);
  g_free (f);
}

static const struct ova_source_ops file_ops = {
  .name = "file",
  .extent = file_extent,
  .pread = file_pread,
  .free = file_free,
};

ova_source *
stor_source_open_path (const char *path, guint64 size, GError **error)
{
  g_autofree file_source *f = NULL;
  struct stat st;
  guint64 actual;
  int fd;

  fd = ova_open_sized (path, &st, &actual, error);
  if (fd < 0)
    return NULL;
  if (size > actual) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s holds %" G_GUINT64_FORMAT " bytes, fewer than the %"
                 G_GUINT64_FORMAT " to copy", path, actual, size);
    close (fd);
    return NULL;
  }

  /* Advice only: a failure changes nothing but speed. */
  (void) posix_fadvise (fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  f = g_new0 (file_source, 1);
  f->base.ops = &file_ops;
  f->base.size = size ? size : actual;
  f->base.name = g_strdup (path);
  f->fd = fd;
  f->is_block = S_ISBLK (st.st_mode);
  f->seek_holes = !f->is_block;
  return (ova_source *) g_steal_pointer (&f);
}

/* Where the qcow2 image on an LV ends: an LV is larger than its image
 * (extents are allocated ahead of the guest's writes), and what lies past
 * the end is stale data of earlier LVs. */
static gboolean
qcow2_image_end (const char *path, guint64 *end, GError **error)
{
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) parse_err = NULL;
  JsonNode *root;
  int status;

  if (!stor_qemu_img_check (path, &out, &err, &status, error))
    return FALSE;
  if (status != CHECK_OK && status != CHECK_LEAKS) {
    g_strstrip (err);
    g_set_error (error, OVA_ERROR,
                 status == CHECK_CORRUPT ? OVA_ERROR_INTEGRITY : OVA_ERROR_INTERNAL,
                 "qemu-img check of %s failed with exit status %d%s: %s",
                 path, status,
                 status == CHECK_CORRUPT ? " (the qcow2 image is corrupt)" : "",
                 *err ? err : "no message");
    return FALSE;
  }
  if (status == CHECK_LEAKS)
    ova_info ("%s: qcow2 image with leaked clusters (harmless; copied as is)", path);

  if (strlen (out) > CHECK_JSON_MAX ||
      !json_parser_load_from_data (parser, out, -1, &parse_err) ||
      (root = json_parser_get_root (parser)) == NULL ||
      !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot parse the report of qemu-img check on %s: %s", path,
                 parse_err ? parse_err->message : "not a JSON object");
    return FALSE;
  }
  if (!ova_json_get_uint (json_node_get_object (root), "image-end-offset", end) || *end == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "qemu-img check of %s reports no image-end-offset", path);
    return FALSE;
  }
  return TRUE;
}

ova_source *
stor_source_open_volume (const stor_domain *d, const stor_volume *v,
                         GError **error)
{
  g_autoptr (ova_source) dev = NULL;
  guint64 size;

  if (v->path == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "volume %s/%s has no file or LV", d->uuid, v->uuid);
    return NULL;
  }
  if (d->kind == STOR_KIND_FILE)
    return stor_source_open_path (v->path, 0, error);

  if (v->md == NULL || v->md->cleared) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "volume %s/%s has no usable metadata: its format is unknown",
                 d->uuid, v->uuid);
    return NULL;
  }

  /* Opened whole first: the LV's size bounds what its metadata claims. */
  dev = stor_source_open_path (v->path, 0, error);
  if (dev == NULL)
    return NULL;

  switch (v->md->format) {
  case STOR_FORMAT_COW:
    if (!qcow2_image_end (v->path, &size, error))
      return NULL;
    if (size > dev->size) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: the qcow2 image ends at %" G_GUINT64_FORMAT
                   ", past the end of the LV (%" G_GUINT64_FORMAT " bytes)",
                   v->path, size, dev->size);
      return NULL;
    }
    break;
  case STOR_FORMAT_RAW:
    size = v->md->capacity;
    if (size > dev->size) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: capacity %" G_GUINT64_FORMAT " in the metadata is more "
                   "than the LV holds (%" G_GUINT64_FORMAT " bytes)",
                   v->path, size, dev->size);
      return NULL;
    }
    break;
  default:
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "volume %s/%s: unknown format in its metadata",
                 d->uuid, v->uuid);
    return NULL;
  }

  ova_debug ("%s: copying %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes",
             v->path, size, dev->size);
  dev->size = size;
  return g_steal_pointer (&dev);
}
