/* ovagent: the one place that names an image to qemu and runs qemu-img (see
 * qemu-img.h): json: specs with every layer's driver, and the qemu-img calls. */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "qemu-img.h"
#include "util.h"

/* One image's `qemu-img info`: a few KiB, more only with many bitmaps. */
#define INFO_JSON_MAX (4 * 1024 * 1024)

/* qemu's own limit on a bitmap name. */
#define BITMAP_NAME_MAX 1023

stor_layer *
stor_layer_new (const char *path, const char *format)
{
  stor_layer *l = g_new0 (stor_layer, 1);

  l->path = g_strdup (path);
  l->format = g_strdup (format);
  return l;
}

void
stor_layer_free (stor_layer *l)
{
  if (l == NULL)
    return;
  g_free (l->path);
  g_free (l->format);
  g_free (l);
}

GPtrArray *
stor_layers_new (void)
{
  return g_ptr_array_new_with_free_func ((GDestroyNotify) stor_layer_free);
}

void
stor_layers_add (GPtrArray *layers, const char *path, const char *format)
{
  g_ptr_array_add (layers, stor_layer_new (path, format));
}

/* The protocol node: what holds the bytes of a layer. */
static void
add_protocol (JsonBuilder *b, const char *path)
{
  struct stat st;
  gboolean is_block = stat (path, &st) == 0 && S_ISBLK (st.st_mode);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "driver");
  json_builder_add_string_value (b, is_block ? "host_device" : "file");
  json_builder_set_member_name (b, "filename");
  json_builder_add_string_value (b, path);
  json_builder_end_object (b);
}

/* layers[i] and, for a qcow2, the chain under it. A format other than
 * qcow2 and raw never gets this far (g_return: a programming error). */
static void
add_layer (JsonBuilder *b, GPtrArray *layers, guint i, guint header_backing)
{
  const stor_layer *l = g_ptr_array_index (layers, i);
  gboolean qcow2 = strcmp (l->format, "qcow2") == 0;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "driver");
  json_builder_add_string_value (b, qcow2 ? "qcow2" : "raw");
  json_builder_set_member_name (b, "file");
  add_protocol (b, l->path);
  if (qcow2 && i != header_backing) {
    json_builder_set_member_name (b, "backing");
    if (i + 1 < layers->len)
      add_layer (b, layers, i + 1, header_backing);
    else
      json_builder_add_null_value (b);
  }
  json_builder_end_object (b);
}

/* The spec of layers; layer header_backing (if any) gets no "backing"
 * member, so that qemu opens the chain its header names. */
static char *
image_spec (GPtrArray *layers, guint header_backing)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *json = NULL;

  g_return_val_if_fail (layers != NULL && layers->len > 0, NULL);
  for (guint i = 0; i < layers->len; i++) {
    const stor_layer *l = g_ptr_array_index (layers, i);

    g_return_val_if_fail (l->path != NULL && l->format != NULL, NULL);
    g_return_val_if_fail (strcmp (l->format, "qcow2") == 0 ||
                          (strcmp (l->format, "raw") == 0 && i + 1 == layers->len), NULL);
  }
  add_layer (b, layers, 0, header_backing);
  root = json_builder_get_root (b);
  json = json_to_string (root, FALSE);
  return g_strconcat ("json:", json, NULL);
}

char *
stor_image_spec (GPtrArray *layers)
{
  return image_spec (layers, G_MAXUINT);
}

char *
stor_image_spec_alone (const char *path, const char *format)
{
  g_autoptr (GPtrArray) layers = stor_layers_new ();

  stor_layers_add (layers, path, format);
  return stor_image_spec (layers);
}

char *
stor_fd_path (int fd)
{
  return g_strdup_printf ("/dev/fd/%d", fd);
}

/* qemu-img's own words after "Could not open '<spec>': ", which otherwise
 * repeat the whole spec. */
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

/* Run qemu-img; on failure one error naming what was done to which file. */
static gboolean
run (const char *const *argv, int keep_fd, const char *spec, char **out,
     const char *doing, const char *path, GError **error)
{
  g_autoptr (GError) err = NULL;

  if (ova_run_fd (argv, keep_fd, out, NULL, &err))
    return TRUE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot %s %s: %s", doing, path,
               spec ? qemu_img_reason (err->message, spec) : err->message);
  return FALSE;
}

gboolean
stor_qemu_img_info (const char *path, const char *format, char **json_out,
                    GError **error)
{
  g_autofree char *spec = stor_image_spec_alone (path, format);
  g_autofree char *out = NULL;
  const char *argv[] = { "qemu-img", "info", "-U", "--output=json", spec, NULL };

  if (!run (argv, -1, spec, &out, "read the header of", path, error))
    return FALSE;
  if (strlen (out) > INFO_JSON_MAX) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: qemu-img info printed more than %d bytes", path, INFO_JSON_MAX);
    return FALSE;
  }
  *json_out = g_steal_pointer (&out);
  return TRUE;
}

void
stor_bitmap_free (stor_bitmap *b)
{
  if (b == NULL)
    return;
  g_free (b->name);
  g_strfreev (b->flags);
  g_free (b);
}

void
stor_img_info_free (stor_img_info *info)
{
  if (info == NULL)
    return;
  g_free (info->format);
  g_free (info->compat);
  g_free (info->backing);
  g_free (info->backing_format);
  g_clear_pointer (&info->bitmaps, g_ptr_array_unref);
  g_free (info);
}

static gboolean
parse_bitmaps (JsonArray *arr, stor_img_info *info, const char *path, GError **error)
{
  for (guint i = 0; i < json_array_get_length (arr); i++) {
    JsonNode *node = json_array_get_element (arr, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
    JsonArray *flags_arr = ova_json_get_array (o, "flags");
    const char *name = ova_json_get_string (o, "name");
    g_autoptr (GPtrArray) flags = g_ptr_array_new_with_free_func (g_free);
    stor_bitmap *bm;

    if (name == NULL || flags_arr == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: qemu-img info reports bitmap %u without a name or flags",
                   path, i);
      return FALSE;
    }
    for (guint j = 0; j < json_array_get_length (flags_arr); j++) {
      JsonNode *f = json_array_get_element (flags_arr, j);

      if (JSON_NODE_HOLDS_VALUE (f) && json_node_get_value_type (f) == G_TYPE_STRING)
        g_ptr_array_add (flags, g_strdup (json_node_get_string (f)));
    }
    g_ptr_array_add (flags, NULL);

    bm = g_new0 (stor_bitmap, 1);
    bm->name = g_strdup (name);
    bm->flags = (char **) g_ptr_array_free (g_steal_pointer (&flags), FALSE);
    if (!ova_json_get_uint (o, "granularity", &bm->granularity))
      bm->granularity = 0;
    g_ptr_array_add (info->bitmaps, bm);
  }
  return TRUE;
}

stor_img_info *
stor_img_info_parse (const char *path, const char *json, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) parse_err = NULL;
  g_autoptr (stor_img_info) info = g_new0 (stor_img_info, 1);
  JsonNode *root;
  JsonObject *o, *data;
  JsonArray *bitmaps;

  if (!json_parser_load_from_data (parser, json, -1, &parse_err)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: cannot parse qemu-img info output: %s", path, parse_err->message);
    return NULL;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: qemu-img info did not print a JSON object", path);
    return NULL;
  }
  o = json_node_get_object (root);
  data = ova_json_get_object (ova_json_get_object (o, "format-specific"), "data");
  info->format = g_strdup (ova_json_get_string (o, "format"));
  info->has_virtual_size = ova_json_get_uint (o, "virtual-size", &info->virtual_size);
  info->compat = g_strdup (ova_json_get_string (data, "compat"));
  info->backing = g_strdup (ova_json_get_string (o, "backing-filename"));
  info->backing_format = g_strdup (ova_json_get_string (o, "backing-filename-format"));
  info->data_file = data != NULL && json_object_has_member (data, "data-file");
  info->bitmaps = g_ptr_array_new_with_free_func ((GDestroyNotify) stor_bitmap_free);
  bitmaps = ova_json_get_array (data, "bitmaps");
  if (bitmaps && !parse_bitmaps (bitmaps, info, path, error))
    return NULL;
  return g_steal_pointer (&info);
}

gboolean
stor_qemu_img_check (const char *path, char **json_out, char **stderr_out,
                     int *exit_status, GError **error)
{
  g_autofree char *spec = stor_image_spec_alone (path, "qcow2");
  g_autofree char *out = NULL;
  const char *argv[] = { "qemu-img", "check", "-U", "--output=json", spec, NULL };

  if (!ova_run_status (argv, &out, stderr_out, exit_status, error)) {
    g_prefix_error (error, "cannot check %s: ", path);
    return FALSE;
  }
  if (strlen (out) > INFO_JSON_MAX) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: qemu-img check printed more than %d bytes", path, INFO_JSON_MAX);
    return FALSE;
  }
  *json_out = g_steal_pointer (&out);
  return TRUE;
}

gboolean
stor_qemu_img_create (const char *path, int file_fd, const char *format,
                      const char *options, guint64 size, const char *backing,
                      const char *backing_format, GError **error)
{
  g_autofree char *bytes = g_strdup_printf ("%" G_GUINT64_FORMAT, size);
  g_autofree char *file = file_fd >= 0 ? stor_fd_path (file_fd) : g_strdup (path);
  const char *argv[16];
  int n = 0;

  g_return_val_if_fail (backing == NULL || backing_format != NULL, FALSE);
  argv[n++] = "qemu-img";
  argv[n++] = "create";
  argv[n++] = "-q";
  argv[n++] = "-f";
  argv[n++] = format;
  if (options) {
    argv[n++] = "-o";
    argv[n++] = options;
  }
  if (backing) {
    argv[n++] = "-u";
    argv[n++] = "-b";
    argv[n++] = backing;
    argv[n++] = "-F";
    argv[n++] = backing_format;
  }
  argv[n++] = "--";
  argv[n++] = file;
  argv[n++] = bytes;
  argv[n] = NULL;
  return run (argv, file_fd, NULL, NULL, "create", path ? path : file, error);
}

gboolean
stor_qemu_img_rebase_unsafe (const char *path, const char *format, const char *backing,
                             const char *backing_format, GError **error)
{
  const char *argv[12];
  int n = 0;

  g_return_val_if_fail (*backing == '\0' || backing_format != NULL, FALSE);
  argv[n++] = "qemu-img";
  argv[n++] = "rebase";
  argv[n++] = "-u";
  argv[n++] = "-f";
  argv[n++] = format;
  argv[n++] = "-b";
  argv[n++] = backing;
  if (*backing != '\0') {
    argv[n++] = "-F";
    argv[n++] = backing_format;
  }
  argv[n++] = "--";
  argv[n++] = path;
  argv[n] = NULL;
  return run (argv, -1, NULL, NULL, "rewrite the backing file name of", path, error);
}

gboolean
stor_bitmap_name_is_valid (const char *name)
{
  gsize len = name ? strlen (name) : 0;

  if (len == 0 || len > BITMAP_NAME_MAX || name[0] == '-')
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isgraph (name[i]) || name[i] == ',' || name[i] == '=')
      return FALSE;
  return TRUE;
}

gboolean
stor_qemu_img_bitmap (const char *path, const char *op, const char *bitmap,
                      const char *merge_from, GError **error)
{
  g_autofree char *spec = NULL;
  g_autofree char *doing = NULL;
  const char *argv[10];
  int n = 0;

  for (int i = 0; i < 2; i++) {
    const char *name = i == 0 ? bitmap : merge_from;

    if ((i == 0 || name != NULL) && !stor_bitmap_name_is_valid (name)) {
      g_autofree char *q = ova_quote_untrusted (name ? name : "", 64);

      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s: invalid bitmap name %s (1 to %d printable characters, not "
                   "starting with '-', without ',' or '=')", path, q, BITMAP_NAME_MAX);
      return FALSE;
    }
  }
  spec = stor_image_spec_alone (path, "qcow2");
  argv[n++] = "qemu-img";
  argv[n++] = "bitmap";
  argv[n++] = op;
  if (merge_from)
    argv[n++] = merge_from;
  argv[n++] = "--";
  argv[n++] = spec;
  argv[n++] = bitmap;
  argv[n] = NULL;
  doing = g_strdup_printf ("%s bitmap %s%s%s in", op + 2, bitmap,
                           merge_from ? " from " : "", merge_from ? merge_from : "");
  return run (argv, -1, spec, NULL, doing, path, error);
}

gboolean
stor_qemu_img_convert (GPtrArray *src, int target_fd, const char *target_format,
                       guint64 size, GError **error)
{
  g_autofree char *spec = stor_image_spec (src);
  g_autofree char *target = stor_fd_path (target_fd);
  const char *top = ((const stor_layer *) g_ptr_array_index (src, 0))->path;
  const char *argv[] = {
    "qemu-img", "convert", "-q", "-n", "--target-is-zero",
    /* Runs of zeros stay (or become) holes. */
    "-S", "4k",
    "-O", target_format, "--", spec, target, NULL,
  };

  if (strcmp (target_format, "qcow2") == 0) {
    if (!stor_qemu_img_create (NULL, target_fd, "qcow2", "compat=1.1", size, NULL,
                               NULL, error))
      return FALSE;
  }
  else if (ftruncate (target_fd, size) < 0) {
    int saved = errno;

    g_set_error (error, OVA_ERROR,
                 saved == ENOSPC || saved == EDQUOT || saved == EFBIG
                 ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
                 "cannot size the new file for %s: %s", top, g_strerror (saved));
    return FALSE;
  }
  return run (argv, target_fd, spec, NULL, "convert", top, error);
}

gboolean
stor_qemu_img_commit (GPtrArray *layers, guint base, GError **error)
{
  g_autofree char *spec = NULL;
  g_autoptr (GError) err = NULL;
  const char *top, *base_path;

  g_return_val_if_fail (layers != NULL && base > 0 && base < layers->len, FALSE);
  /* qemu-img finds the -b file in a chain by the name qemu gives its
   * node: the plain path only for a node whose backing it opened from
   * the header (or a raw one, which has none). So a qcow2 base's chain
   * is opened from its header. */
  spec = image_spec (layers, base);
  top = ((const stor_layer *) g_ptr_array_index (layers, 0))->path;
  base_path = ((const stor_layer *) g_ptr_array_index (layers, base))->path;
  const char *argv[] = {
    "qemu-img", "commit", "-q", "-d", "-b", base_path, "--", spec, NULL,
  };

  if (run (argv, -1, spec, NULL, "commit into", base_path, &err))
    return TRUE;
  if (strstr (err->message, g_strerror (ENOSPC)) != NULL ||
      strstr (err->message, g_strerror (EDQUOT)) != NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NO_SPACE, "%s (the data above %s)",
                 err->message, top);
    return FALSE;
  }
  g_propagate_error (error, g_steal_pointer (&err));
  return FALSE;
}
