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
#include "log.h"
#include "probe.h"
#include "util.h"

#define QCOW2_MAGIC "QFI\xfb"

/* Enough for the fixed header and the extensions qemu writes after it. */
#define HEADER_READ_MAX (64 * 1024)

/* qemu refuses longer backing names (and so never writes them). */
#define BACKING_MAX 1023

/* The backing format extension holds a driver name: "raw", "qcow2". */
#define BACKING_FORMAT_MAX 31

/* One image's `qemu-img info`: a few KiB, more only with many bitmaps. */
#define QEMU_IMG_JSON_MAX (4 * 1024 * 1024)

#define QCOW2_EXT_END 0
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU
#define QCOW2_AUTOCLEAR_BITMAPS 1

/* A reason libqcow gives is a backtrace, innermost call first. */
#define LIBQCOW_REASON_MAX 2048

/* What libqcow does not expose, taken from the header bytes themselves. */
typedef struct qcow2_header {
  guint32 version;
  guint64 autoclear;
  char *backing_format;
} qcow2_header;

static void
stor_bitmap_free (stor_bitmap *b)
{
  if (b == NULL)
    return;
  g_free (b->name);
  g_strfreev (b->flags);
  g_free (b);
}

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

static const char *
compat_for_version (guint32 version)
{
  switch (version) {
  case 2: return "0.10";
  case 3: return "1.1";
  default: return NULL;
  }
}

/* The header extensions are walked only to find the backing format; any
 * inconsistency just leaves it unknown, since qemu-img or libqcow judge
 * whether the image opens at all. */
static void
parse_qcow2_header (const guint8 *buf, gsize len, qcow2_header *h)
{
  guint64 backing_offset;
  gsize off, end;

  memset (h, 0, sizeof *h);
  if (len < 72)
    return;
  h->version = be32_at (buf, 4);
  backing_offset = be64_at (buf, 8);
  if (h->version == 2)
    off = 72;
  else if (h->version == 3 && len >= 104) {
    h->autoclear = be64_at (buf, 88);
    off = be32_at (buf, 100);
    if (off < 104 || off % 8 != 0)
      return;
  }
  else
    return;

  end = len;
  if (backing_offset != 0 && backing_offset < end)
    end = backing_offset;

  while (off <= end && end - off >= 8) {
    guint32 type = be32_at (buf, off);
    guint32 ext_len = be32_at (buf, off + 4);

    if (type == QCOW2_EXT_END || ext_len > end - off - 8)
      return;
    if (type == QCOW2_EXT_BACKING_FORMAT && ext_len >= 1 &&
        ext_len <= BACKING_FORMAT_MAX) {
      const char *s = (const char *) buf + off + 8;
      gboolean printable = TRUE;

      for (guint32 i = 0; i < ext_len; i++)
        printable = printable && g_ascii_isgraph (s[i]);
      if (printable) {
        g_free (h->backing_format);
        h->backing_format = g_strndup (s, ext_len);
      }
    }
    off += 8 + (((gsize) ext_len + 7) & ~(gsize) 7);
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
  if (backing_size > BACKING_MAX + 1) {
    *reason = g_strdup_printf ("backing file name of %zu bytes is longer than %d",
                               backing_size, BACKING_MAX);
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

char *
stor_qemu_img_spec (const char *path, gboolean is_block)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *json = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "driver");
  json_builder_add_string_value (b, "qcow2");
  json_builder_set_member_name (b, "file");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "driver");
  json_builder_add_string_value (b, is_block ? "host_device" : "file");
  json_builder_set_member_name (b, "filename");
  json_builder_add_string_value (b, path);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "backing");
  json_builder_add_null_value (b);
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  json = json_to_string (root, FALSE);
  return g_strconcat ("json:", json, NULL);
}

static const char *
json_string_member (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) ||
      json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

static gboolean
json_size_member (JsonObject *o, const char *name, guint64 *out)
{
  JsonNode *n = json_object_get_member (o, name);
  gint64 v;

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) ||
      json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  v = json_node_get_int (n);
  if (v < 0)
    return FALSE;
  *out = v;
  return TRUE;
}

static JsonObject *
json_object_member (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;

  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static gboolean
parse_bitmaps (JsonArray *arr, stor_probe *p, const char *path, GError **error)
{
  guint n = json_array_get_length (arr);

  for (guint i = 0; i < n; i++) {
    JsonNode *node = json_array_get_element (arr, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
    JsonNode *flags_node = o ? json_object_get_member (o, "flags") : NULL;
    const char *name = o ? json_string_member (o, "name") : NULL;
    g_autoptr (GPtrArray) flags = g_ptr_array_new_with_free_func (g_free);
    stor_bitmap *bm;

    if (name == NULL || flags_node == NULL || !JSON_NODE_HOLDS_ARRAY (flags_node)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: qemu-img info reports bitmap %u without a name or flags",
                   path, i);
      return FALSE;
    }
    for (guint j = 0; j < json_array_get_length (json_node_get_array (flags_node)); j++) {
      JsonNode *f = json_array_get_element (json_node_get_array (flags_node), j);

      if (JSON_NODE_HOLDS_VALUE (f) && json_node_get_value_type (f) == G_TYPE_STRING)
        g_ptr_array_add (flags, g_strdup (json_node_get_string (f)));
    }
    g_ptr_array_add (flags, NULL);

    bm = g_new0 (stor_bitmap, 1);
    bm->name = g_strdup (name);
    bm->flags = (char **) g_ptr_array_free (g_steal_pointer (&flags), FALSE);
    if (!json_size_member (o, "granularity", &bm->granularity))
      bm->granularity = 0;
    g_ptr_array_add (p->bitmaps, bm);
  }
  return TRUE;
}

/* qemu-img's own words after "Could not open '<spec>': ", which
 * otherwise repeats the whole command line. */
static const char *
qemu_img_reason (const char *message, const char *spec)
{
  const char *s = g_strrstr (message, spec);

  if (s == NULL)
    return message;
  s += strlen (spec);
  if (g_str_has_prefix (s, "': "))
    s += 3;
  return *s ? s : message;
}

/* Fills what qemu-img reports: bitmaps and backing format always; the
 * rest only where libqcow could not open the image (fill_header). */
static gboolean
probe_qemu_img (const char *path, gboolean is_block, gboolean fill_header,
                const char *libqcow_why, stor_probe *p, GError **error)
{
  g_autofree char *qemu_img = g_find_program_in_path ("qemu-img");
  g_autofree char *spec = NULL;
  g_autofree char *out = NULL;
  g_autoptr (GError) run_err = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) parse_err = NULL;
  JsonNode *root;
  JsonObject *info, *data;
  JsonNode *bitmaps;
  const char *format, *backing, *backing_format, *compat;

  if (qemu_img == NULL) {
    if (libqcow_why)
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: libqcow cannot open it (%s) and qemu-img is not in PATH",
                   path, libqcow_why);
    else
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: qemu-img is needed to list its bitmaps but is not in PATH",
                   path);
    return FALSE;
  }

  spec = stor_qemu_img_spec (path, is_block);
  {
    const char *argv[] = { qemu_img, "info", "-U", "--output=json", spec, NULL };

    /* The file opened and starts with the qcow2 magic, so a failure here
     * is qemu refusing the header. */
    if (!ova_run (argv, &out, NULL, &run_err)) {
      if (libqcow_why)
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                     "%s: corrupt qcow2 header: libqcow: %s; qemu-img: %s",
                     path, libqcow_why, qemu_img_reason (run_err->message, spec));
      else
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                     "%s: qcow2 image that qemu cannot open: %s",
                     path, qemu_img_reason (run_err->message, spec));
      return FALSE;
    }
  }

  if (strlen (out) > QEMU_IMG_JSON_MAX) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: qemu-img info printed more than %d bytes",
                 path, QEMU_IMG_JSON_MAX);
    return FALSE;
  }
  if (!json_parser_load_from_data (parser, out, -1, &parse_err)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: cannot parse qemu-img info output: %s",
                 path, parse_err->message);
    return FALSE;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: qemu-img info did not print a JSON object", path);
    return FALSE;
  }
  info = json_node_get_object (root);
  data = json_object_member (json_object_member (info, "format-specific"), "data");

  format = json_string_member (info, "format");
  if (format == NULL || strcmp (format, "qcow2") != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: qemu-img info reports format %s, expected qcow2",
                 path, format ? format : "(none)");
    return FALSE;
  }

  if (fill_header) {
    compat = data ? json_string_member (data, "compat") : NULL;
    if (compat == NULL ||
        (strcmp (compat, "0.10") != 0 && strcmp (compat, "1.1") != 0)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: unsupported qcow2 compat level %s",
                   path, compat ? compat : "(none)");
      return FALSE;
    }
    if (!json_size_member (info, "virtual-size", &p->virtual_size)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "%s: qemu-img info reports no virtual size", path);
      return FALSE;
    }
    backing = json_string_member (info, "backing-filename");
    if (backing && (*backing == '\0' || strlen (backing) > BACKING_MAX)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: invalid backing file name of %zu bytes",
                   path, strlen (backing));
      return FALSE;
    }
    g_free (p->qcow2_compat);
    p->qcow2_compat = g_strdup (compat);
    g_free (p->backing);
    p->backing = g_strdup (backing);
  }

  backing_format = json_string_member (info, "backing-filename-format");
  if (backing_format && p->backing_format == NULL &&
      strlen (backing_format) <= BACKING_FORMAT_MAX)
    p->backing_format = g_strdup (backing_format);

  bitmaps = data ? json_object_get_member (data, "bitmaps") : NULL;
  if (bitmaps && JSON_NODE_HOLDS_ARRAY (bitmaps) &&
      !parse_bitmaps (json_node_get_array (bitmaps), p, path, error))
    return FALSE;
  return TRUE;
}

/* Size, allocation and the first bytes of the file or device. */
static gboolean
read_head (const char *path, gboolean *is_block, guint64 *size,
           guint64 *actual_size, guint8 *head, gsize *got, GError **error)
{
  struct stat st;
  gboolean ok = FALSE;
  gssize n;
  int fd;

  *got = 0;
  fd = ova_open_sized (path, &st, size, error);
  if (fd < 0)
    return FALSE;
  *is_block = S_ISBLK (st.st_mode);
  *actual_size = *is_block ? *size : (guint64) st.st_blocks * 512;

  while (*got < HEADER_READ_MAX && *got < *size) {
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
stor_probe_volume (const char *path, GError **error)
{
  g_autoptr (stor_probe) p = probe_new ();
  g_autofree guint8 *head = g_malloc0 (HEADER_READ_MAX);
  g_autofree char *libqcow_why = NULL;
  qcow2_header h;
  gboolean is_block = FALSE;
  guint64 size = 0;
  gsize got = 0;

  if (!read_head (path, &is_block, &size, &p->actual_size, head, &got, error))
    return NULL;

  if (got < 4 || memcmp (head, QCOW2_MAGIC, 4) != 0) {
    p->format = g_strdup ("raw");
    p->virtual_size = size;
    return g_steal_pointer (&p);
  }

  p->format = g_strdup ("qcow2");
  parse_qcow2_header (head, got, &h);
  p->backing_format = h.backing_format;
  if (h.version == 1) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "%s is a qcow version 1 image", path);
    return NULL;
  }

  if (probe_libqcow (path, p, &libqcow_why)) {
    /* libqcow does not report bitmaps; ask qemu only when the header
     * says a bitmaps extension is present. */
    if (h.version == 3 && (h.autoclear & QCOW2_AUTOCLEAR_BITMAPS) &&
        !probe_qemu_img (path, is_block, FALSE, NULL, p, error))
      return NULL;
  }
  else {
    /* zstd compression, extended L2 entries and the like: qemu can open
     * what libqcow refuses, and judges whether the header is corrupt. */
    ova_debug ("%s: libqcow cannot open it (%s), asking qemu-img", path, libqcow_why);
    if (!probe_qemu_img (path, is_block, TRUE, libqcow_why, p, error))
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
  if (backing == NULL || *backing == '\0' || strlen (backing) > BACKING_MAX)
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

  if (md && ((md->format == STOR_FORMAT_COW && !qcow2) ||
             (md->format == STOR_FORMAT_RAW && qcow2)))
    add_problem (v, stor_problem_new ("format-mismatch",
                                      "volume %s: metadata says format %s but the volume is %s",
                                      v->uuid, stor_format_name (md->format), p->format));

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
