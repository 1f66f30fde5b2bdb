/* ovagent: what a volume's own header says (format, qcow2 compat, sizes,
 * backing string, bitmaps) and how that compares with VDSM's metadata. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>
#include <libqcow.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "probe.h"
#include "qcow2.h"
#include "qemu-img.h"
#include "util.h"

/* Enough for the fixed header and the extensions qemu writes after it. */
#define HEADER_READ_MAX (64 * 1024)

/* A reason libqcow gives is a backtrace, innermost call first. */
#define LIBQCOW_REASON_MAX 2048

void
stor_probe_free (stor_probe *p)
{
  if (p == NULL)
    return;
  g_free (p->format);
  g_free (p->qcow2_compat);
  g_free (p->backing);
  g_free (p->backing_format);
  if (p->bitmaps)
    g_ptr_array_unref (p->bitmaps);
  g_free (p);
}

static stor_probe *
probe_new (void)
{
  stor_probe *p = g_new0 (stor_probe, 1);

  p->bitmaps = g_ptr_array_new_with_free_func ((GDestroyNotify) stor_bitmap_free);
  return p;
}

static const char *
compat_for_version (guint32 version)
{
  switch (version) {
  case 2: return "0.10";
  case 3: return "1.1";
  default: return NULL;
  }
}

/* The innermost line of libqcow's backtrace says what is wrong; the
 * outer lines only repeat "unable to open file". */
static char *
libqcow_reason (libqcow_error_t *lerr)
{
  g_autofree char *buf = g_malloc0 (LIBQCOW_REASON_MAX);
  char *nl;

  if (lerr == NULL)
    return g_strdup ("unknown libqcow error");
  if (libqcow_error_backtrace_sprint (lerr, buf, LIBQCOW_REASON_MAX) < 0 &&
      libqcow_error_sprint (lerr, buf, LIBQCOW_REASON_MAX) < 0) {
    libqcow_error_free (&lerr);
    return g_strdup ("unknown libqcow error");
  }
  libqcow_error_free (&lerr);
  buf[LIBQCOW_REASON_MAX - 1] = '\0';
  nl = strchr (buf, '\n');
  if (nl)
    *nl = '\0';
  g_strstrip (buf);
  if (g_str_has_suffix (buf, "."))
    buf[strlen (buf) - 1] = '\0';
  return g_steal_pointer (&buf);
}

/* Version, virtual size and backing string through libqcow, which parses
 * only the header here (no guest data is read, see TESTBED §8). FALSE
 * with *reason when libqcow cannot open the image. */
static gboolean
probe_libqcow (const char *path, stor_probe *p, char **reason)
{
  libqcow_file_t *file = NULL;
  libqcow_error_t *lerr = NULL;
  uint32_t version = 0;
  size64_t media_size = 0;
  size_t backing_size = 0;
  char *backing = NULL;
  gboolean ok = FALSE;

  if (libqcow_file_initialize (&file, &lerr) != 1) {
    *reason = libqcow_reason (lerr);
    return FALSE;
  }
  if (libqcow_file_open (file, path, LIBQCOW_OPEN_READ, &lerr) != 1) {
    *reason = libqcow_reason (lerr);
    libqcow_file_free (&file, NULL);
    return FALSE;
  }

  if (libqcow_file_get_format_version (file, &version, &lerr) != 1 ||
      libqcow_file_get_media_size (file, &media_size, &lerr) != 1) {
    *reason = libqcow_reason (lerr);
    goto out;
  }
  if (compat_for_version (version) == NULL) {
    *reason = g_strdup_printf ("unsupported qcow version %" G_GUINT32_FORMAT,
                               version);
    goto out;
  }

  /* Returns 0 (not an error) when the image has no backing file. */
  if (libqcow_file_get_utf8_backing_filename_size (file, &backing_size, &lerr) == -1) {
    *reason = libqcow_reason (lerr);
    goto out;
  }
  if (backing_size > STOR_QCOW2_BACKING_MAX + 1) {
    *reason = g_strdup_printf ("backing file name of %zu bytes is longer than %d",
                               backing_size, STOR_QCOW2_BACKING_MAX);
    goto out;
  }
  if (backing_size > 1) {
    backing = g_malloc0 (backing_size + 1);
    if (libqcow_file_get_utf8_backing_filename (file, (uint8_t *) backing,
                                                backing_size, &lerr) != 1) {
      *reason = libqcow_reason (lerr);
      goto out;
    }
    if (strlen (backing) == 0 || !g_utf8_validate (backing, -1, NULL)) {
      *reason = g_strdup ("backing file name is empty or not UTF-8");
      goto out;
    }
  }

  p->qcow2_compat = g_strdup (compat_for_version (version));
  p->virtual_size = media_size;
  p->backing = g_steal_pointer (&backing);
  ok = TRUE;

 out:
  g_free (backing);
  libqcow_file_close (file, NULL);
  libqcow_file_free (&file, NULL);
  return ok;
}

/* Fills what qemu-img reports: bitmaps and backing format always; the
 * rest only where libqcow could not open the image (fill_header). */
static gboolean
probe_qemu_img (const char *path, gboolean fill_header, const char *libqcow_why,
                stor_probe *p, GError **error)
{
  g_autofree char *out = NULL;
  g_autoptr (GError) run_err = NULL;
  g_autoptr (stor_img_info) info = NULL;

  /* The header checked out, so a failure here is qemu refusing it. */
  if (!stor_qemu_img_info (path, "qcow2", &out, &run_err)) {
    if (libqcow_why)
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: corrupt qcow2 header: libqcow: %s; %s",
                   path, libqcow_why, run_err->message);
    else
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "qcow2 image that qemu cannot open: %s", run_err->message);
    return FALSE;
  }
  info = stor_img_info_parse (path, out, error);
  if (info == NULL)
    return FALSE;
  if (info->format == NULL || strcmp (info->format, "qcow2") != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: qemu-img info reports format %s, expected qcow2",
                 path, info->format ? info->format : "(none)");
    return FALSE;
  }

  if (fill_header) {
    if (info->compat == NULL ||
        (strcmp (info->compat, "0.10") != 0 && strcmp (info->compat, "1.1") != 0)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: unsupported qcow2 compat level %s",
                   path, info->compat ? info->compat : "(none)");
      return FALSE;
    }
    if (!info->has_virtual_size) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: qemu-img info reports no virtual size", path);
      return FALSE;
    }
    if (info->backing &&
        (*info->backing == '\0' || strlen (info->backing) > STOR_QCOW2_BACKING_MAX)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: invalid backing file name of %zu bytes",
                   path, strlen (info->backing));
      return FALSE;
    }
    p->virtual_size = info->virtual_size;
    g_free (p->qcow2_compat);
    p->qcow2_compat = g_steal_pointer (&info->compat);
    g_free (p->backing);
    p->backing = g_steal_pointer (&info->backing);
  }

  if (info->backing_format && p->backing_format == NULL &&
      strlen (info->backing_format) <= STOR_QCOW2_BACKING_FORMAT_MAX)
    p->backing_format = g_steal_pointer (&info->backing_format);
  g_ptr_array_extend_and_steal (p->bitmaps, g_steal_pointer (&info->bitmaps));
  return TRUE;
}

/* Size, allocation and (head not NULL) the first bytes of the file or device. */
static gboolean
read_head (const char *path, guint64 *size, guint64 *actual_size, guint8 *head,
           gsize *got, GError **error)
{
  struct stat st;
  gboolean ok = FALSE;
  gssize n;
  int fd;

  *got = 0;
  fd = ova_open_sized (path, &st, size, error);
  if (fd < 0)
    return FALSE;
  *actual_size = S_ISBLK (st.st_mode) ? *size : (guint64) st.st_blocks * 512;

  while (head != NULL && *got < HEADER_READ_MAX && *got < *size) {
    n = pread (fd, head + *got, HEADER_READ_MAX - *got, *got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot read %s: %s", path, g_strerror (errno));
      goto out;
    }
    if (n == 0)
      break;
    *got += n;
  }
  ok = TRUE;

 out:
  close (fd);
  return ok;
}

stor_probe *
stor_probe_volume (const char *path, stor_format format, GError **error)
{
  g_autoptr (stor_probe) p = probe_new ();
  g_autofree guint8 *head = NULL;
  g_autofree char *libqcow_why = NULL;
  g_auto (stor_qcow2_header) h = { 0 };
  guint64 size = 0;
  gsize got = 0;

  if (format != STOR_FORMAT_RAW && format != STOR_FORMAT_COW) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: its metadata gives no format (RAW or COW), so it is not read",
                 path);
    return NULL;
  }
  /* Every byte of a raw volume is the guest's, header-like or not. */
  if (format == STOR_FORMAT_RAW) {
    if (!read_head (path, &size, &p->actual_size, NULL, &got, error))
      return NULL;
    if (size > STOR_VIRTUAL_SIZE_MAX) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: %" G_GUINT64_FORMAT " bytes, over the %" G_GUINT64_FORMAT
                   " a volume can have", path, size, STOR_VIRTUAL_SIZE_MAX);
      return NULL;
    }
    p->format = g_strdup ("raw");
    p->virtual_size = size;
    return g_steal_pointer (&p);
  }

  head = g_malloc0 (HEADER_READ_MAX);
  if (!read_head (path, &size, &p->actual_size, head, &got, error))
    return NULL;
  if (got < 4 || memcmp (head, STOR_QCOW2_MAGIC, 4) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: its metadata says COW (qcow2) but it does not start with a "
                 "qcow2 header", path);
    return NULL;
  }
  if (!stor_qcow2_header_parse (head, got, path, &h, error))
    return NULL;
  p->format = g_strdup ("qcow2");
  p->backing_format = g_steal_pointer (&h.backing_format);

  if (probe_libqcow (path, p, &libqcow_why)) {
    /* libqcow does not report bitmaps; ask qemu only when the header
     * says a bitmaps extension is present. */
    if (h.bitmaps && (h.autoclear & STOR_QCOW2_AUTOCLEAR_BITMAPS) &&
        !probe_qemu_img (path, FALSE, NULL, p, error))
      return NULL;
  }
  else {
    /* zstd compression, extended L2 entries and the like: qemu can open
     * what libqcow refuses, and judges whether the header is corrupt. */
    ova_debug ("%s: libqcow cannot open it (%s), asking qemu-img", path, libqcow_why);
    if (!probe_qemu_img (path, TRUE, libqcow_why, p, error))
      return NULL;
  }
  if (g_strcmp0 (p->backing, h.backing) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: its backing file name reads differently to libqcow and to "
                 "the header itself", path);
    return NULL;
  }

  /* A format extension left behind without a backing name means nothing. */
  if (p->backing == NULL)
    g_clear_pointer (&p->backing_format, g_free);
  return g_steal_pointer (&p);
}

char *
stor_backing_volume (const char *backing, char **img_out)
{
  g_auto (GStrv) parts = NULL;
  guint n;
  const char *vol, *img = NULL;

  if (img_out)
    *img_out = NULL;
  if (backing == NULL || *backing == '\0' || strlen (backing) > STOR_QCOW2_BACKING_MAX)
    return NULL;

  parts = g_strsplit (backing, "/", -1);
  n = g_strv_length (parts);
  vol = parts[n - 1];
  if (!ova_uuid_is_valid (vol))
    return NULL;

  if (n == 1)
    ;                                             /* "<vol>" */
  else if (n == 3 && strcmp (parts[0], "..") == 0) {  /* "../<img>/<vol>" */
    if (!ova_uuid_is_valid (parts[1]))
      return NULL;
    img = parts[1];
  }
  else if (backing[0] == '/') {
    /* "/dev/<sd>/<vol>" names a domain, not an image; elsewhere the
     * directory holding the volume is its image. */
    for (guint i = 1; i < n; i++)
      if (strcmp (parts[i], "..") == 0 || strcmp (parts[i], ".") == 0)
        return NULL;
    if (!(n == 4 && strcmp (parts[1], "dev") == 0) && ova_uuid_is_valid (parts[n - 2]))
      img = parts[n - 2];
  }
  else
    return NULL;

  if (img_out && img)
    *img_out = g_ascii_strdown (img, -1);
  return g_ascii_strdown (vol, -1);
}

static void
add_problem (stor_volume *v, stor_problem *pb)
{
  if (v->problems == NULL)
    v->problems = g_ptr_array_new_with_free_func ((GDestroyNotify) stor_problem_free);
  g_ptr_array_add (v->problems, pb);
}

static gboolean
uuid_equal (const char *a, const char *b)
{
  return a && b && g_ascii_strcasecmp (a, b) == 0;
}

void
stor_probe_check (const stor_probe *p, stor_volume *v, const stor_volume *parent)
{
  const stor_volmeta *md = v->md && !v->md->cleared ? v->md : NULL;
  const stor_volmeta *pmd = parent && parent->md && !parent->md->cleared ? parent->md : NULL;
  gboolean qcow2 = p->format && strcmp (p->format, "qcow2") == 0;
  g_autofree char *bvol = NULL;
  g_autofree char *bimg = NULL;

  if (md && qcow2 && p->virtual_size != md->capacity)
    add_problem (v, stor_problem_new ("capacity-mismatch",
                                      "volume %s: qcow2 virtual size %" G_GUINT64_FORMAT
                                      " differs from metadata capacity %" G_GUINT64_FORMAT,
                                      v->uuid, p->virtual_size, md->capacity));

  if (parent == NULL) {
    if (p->backing)
      add_problem (v, stor_problem_new ("backing-mismatch",
                                        "volume %s is a base volume but has backing file '%s'",
                                        v->uuid, p->backing));
    return;
  }
  if (!qcow2)
    return;
  if (p->backing == NULL) {
    add_problem (v, stor_problem_new ("backing-mismatch",
                                      "volume %s has no backing file, but its parent is %s",
                                      v->uuid, parent->uuid));
    return;
  }

  bvol = stor_backing_volume (p->backing, &bimg);
  if (bvol == NULL)
    add_problem (v, stor_problem_new ("backing-mismatch",
                                      "volume %s: backing file '%s' names no volume, but its parent is %s",
                                      v->uuid, p->backing, parent->uuid));
  else if (!uuid_equal (bvol, parent->uuid))
    add_problem (v, stor_problem_new ("backing-mismatch",
                                      "volume %s: backing file '%s' names volume %s, but its parent is %s",
                                      v->uuid, p->backing, bvol, parent->uuid));

  if (bimg && !uuid_equal (bimg, v->image) && !uuid_equal (bimg, parent->image))
    add_problem (v, stor_problem_new ("backing-image-mismatch",
                                      "volume %s: backing file '%s' names image %s, which holds neither the volume (image %s) nor its parent %s (image %s)",
                                      v->uuid, p->backing, bimg,
                                      v->image ? v->image : "unknown", parent->uuid,
                                      parent->image ? parent->image : "unknown"));

  /* qemu reads the parent with the recorded driver, whatever it is. */
  if (p->backing_format && pmd &&
      ((pmd->format == STOR_FORMAT_COW && strcmp (p->backing_format, "qcow2") != 0) ||
       (pmd->format == STOR_FORMAT_RAW && strcmp (p->backing_format, "raw") != 0)))
    add_problem (v, stor_problem_new ("backing-mismatch",
                                      "volume %s: backing file '%s' is recorded as %s, but parent %s is %s",
                                      v->uuid, p->backing, p->backing_format, parent->uuid,
                                      stor_format_name (pmd->format)));
}

/* Problems of stor_probe_check that mean qemu would read another chain
 * than VDSM's metadata describes. */
static gboolean
chain_breaking (const stor_problem *pb)
{
  return strcmp (pb->code, "backing-mismatch") == 0 ||
         strcmp (pb->code, "backing-image-mismatch") == 0;
}

GPtrArray *
stor_image_layers (const stor_domain *dom, stor_image *img, GError **error)
{
  g_autoptr (GPtrArray) layers = stor_layers_new ();

  for (guint i = img->volumes->len; i-- > 0;) {
    stor_volume *v = g_ptr_array_index (img->volumes, i);
    stor_volume *parent = i > 0 ? g_ptr_array_index (img->volumes, i - 1) : NULL;
    g_autoptr (stor_probe) p = NULL;
    guint before;

    if (v->md == NULL || v->md->cleared || v->path == NULL ||
        (v->md->format != STOR_FORMAT_COW && v->md->format != STOR_FORMAT_RAW)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "volume %s/%s has no usable metadata: its format is not known, so "
                   "disk %s is not read", dom->uuid, v->uuid, img->uuid);
      return NULL;
    }
    if (v->md->format == STOR_FORMAT_RAW && parent != NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "volume %s/%s is RAW but has a parent volume %s in disk %s",
                   dom->uuid, v->uuid, parent->uuid, img->uuid);
      return NULL;
    }
    p = stor_probe_volume (v->path, v->md->format, error);
    if (p == NULL) {
      g_prefix_error (error, "volume %s/%s of disk %s: ", dom->uuid, v->uuid, img->uuid);
      return NULL;
    }
    before = v->problems ? v->problems->len : 0;
    stor_probe_check (p, v, parent);
    for (guint k = before; v->problems && k < v->problems->len; k++) {
      const stor_problem *pb = g_ptr_array_index (v->problems, k);

      if (chain_breaking (pb)) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                     "disk %s: the header of volume %s/%s contradicts VDSM's "
                     "metadata: %s", img->uuid, dom->uuid, v->uuid, pb->message);
        return NULL;
      }
      ova_warn ("%s", pb->message);
    }
    stor_layers_add (layers, v->path, v->md->format == STOR_FORMAT_COW ? "qcow2" : "raw");
  }
  return g_steal_pointer (&layers);
}
