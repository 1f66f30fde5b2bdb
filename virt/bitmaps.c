/* ovagent: qcow2 bitmaps: the features.md §5 chain rules on `qemu-img info`
 * output (each layer read alone), and qemu-img bitmap on a stopped domain's images. */
#include <config.h>

#include <string.h>

#include <json-glib/json-glib.h>

#include "bitmaps.h"
#include "error.h"
#include "json.h"
#include "qemu-img.h"
#include "virt-priv.h"

/* `qemu-img info --backing-chain` of a long chain with many bitmaps. */
#define CHAIN_JSON_MAX (16 * 1024 * 1024)

/* The bitmaps of one `qemu-img info` object, or NULL. */
static JsonArray *
image_bitmaps (JsonObject *image)
{
  JsonObject *fs = ova_json_get_object (image, "format-specific");

  return ova_json_get_array (ova_json_get_object (fs, "data"), "bitmaps");
}

/* The bitmap object named name in one node of the chain, or NULL. */
static JsonObject *
find_bitmap (JsonObject *image, const char *name)
{
  JsonArray *arr = image_bitmaps (image);

  for (guint i = 0; arr && i < json_array_get_length (arr); i++) {
    JsonNode *b = json_array_get_element (arr, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT (b) ? json_node_get_object (b) : NULL;

    if (o && g_strcmp0 (ova_json_get_string (o, "name"), name) == 0)
      return o;
  }
  return NULL;
}

static gboolean
has_flag (JsonObject *bitmap, const char *flag)
{
  JsonArray *arr = ova_json_get_array (bitmap, "flags");

  for (guint i = 0; arr && i < json_array_get_length (arr); i++) {
    JsonNode *n = json_array_get_element (arr, i);

    if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING &&
        strcmp (json_node_get_string (n), flag) == 0)
      return TRUE;
  }
  return FALSE;
}

/* The features.md §5 rules on a chain of `qemu-img info` objects, top first. */
static char *
chain_problem (JsonArray *chain, const char *bitmap, gboolean running)
{
  g_autofree char *last_with = NULL;
  guint n = json_array_get_length (chain);
  gboolean ended = FALSE;

  /* Top first; bitmaps stop at the first node that is not qcow2. */
  for (guint i = 0; i < n; i++) {
    JsonNode *node = json_array_get_element (chain, i);
    JsonObject *img = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
    const char *file = img ? ova_json_get_string (img, "filename") : NULL;
    JsonObject *bm;

    if (file == NULL)
      file = "(unnamed)";
    if (img == NULL || g_strcmp0 (ova_json_get_string (img, "format"), "qcow2") != 0) {
      if (i == 0)
        return g_strdup_printf ("bitmap %s cannot be in the top volume %s: it is not qcow2",
                                bitmap, file);
      break;
    }
    bm = find_bitmap (img, bitmap);
    if (bm == NULL) {
      if (i == 0)
        return g_strdup_printf ("bitmap %s is not in the top volume %s", bitmap, file);
      ended = TRUE;
      continue;
    }
    if (ended)
      return g_strdup_printf ("bitmap %s is in %s but missing in a volume above it "
                              "(below %s): the chain has a gap", bitmap, file, last_with);
    if (!has_flag (bm, "auto"))
      return g_strdup_printf ("bitmap %s in %s is disabled (not auto): it did not "
                              "record every write", bitmap, file);
    if (!running && has_flag (bm, "in-use"))
      return g_strdup_printf ("bitmap %s in %s is in-use: it was not saved when the "
                              "image was last closed", bitmap, file);
    g_free (last_with);
    last_with = g_strdup (file);
  }
  return NULL;
}

char *
virt_bitmap_chain_problem_json (const char *json, const char *bitmap,
                                gboolean running, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) perr = NULL;
  JsonNode *root;

  if (strlen (json) > CHAIN_JSON_MAX || !json_parser_load_from_data (parser, json, -1, &perr)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot parse qemu-img info output: %s",
                 perr ? perr->message : "too large");
    return NULL;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_ARRAY (root) ||
      json_array_get_length (json_node_get_array (root)) == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "qemu-img info did not give a list of images");
    return NULL;
  }
  return chain_problem (json_node_get_array (root), bitmap, running);
}

/* One layer's `qemu-img info`, named by its path rather than by its spec. */
static JsonNode *
layer_info (const stor_layer *l, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autofree char *out = NULL;
  g_autoptr (GError) perr = NULL;
  JsonNode *root;

  if (!stor_qemu_img_info (l->path, l->format, &out, error))
    return NULL;
  if (!json_parser_load_from_data (parser, out, -1, &perr) ||
      (root = json_parser_get_root (parser)) == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: cannot parse qemu-img info output: %s", l->path,
                 perr ? perr->message : "not a JSON object");
    return NULL;
  }
  json_object_set_string_member (json_node_get_object (root), "filename", l->path);
  return json_node_copy (root);
}

char *
virt_bitmap_chain_problem (GPtrArray *layers, const char *bitmap, gboolean running,
                           GError **error)
{
  g_autoptr (JsonArray) chain = json_array_new ();

  /* Bitmaps live only in qcow2 layers, and stop at the first other one. */
  for (guint i = 0; i < layers->len; i++) {
    const stor_layer *l = g_ptr_array_index (layers, i);
    JsonNode *info;

    if (strcmp (l->format, "qcow2") != 0) {
      JsonObject *o = json_object_new ();

      json_object_set_string_member (o, "filename", l->path);
      json_object_set_string_member (o, "format", l->format);
      json_array_add_object_element (chain, o);
      break;
    }
    info = layer_info (l, error);
    if (info == NULL)
      return NULL;
    json_array_add_element (chain, info);
  }
  return chain_problem (chain, bitmap, running);
}

/* ------------------------------------------------------------------ */
/* Bitmaps of a stopped domain's images */

gboolean
virt_image_bitmap_add (const char *image, const char *bitmap, GError **error)
{
  return stor_qemu_img_bitmap (image, "--add", bitmap, NULL, error);
}

gboolean
virt_image_bitmap_disable (const char *image, const char *bitmap, GError **error)
{
  return stor_qemu_img_bitmap (image, "--disable", bitmap, NULL, error);
}

gboolean
virt_image_bitmap_enable (const char *image, const char *bitmap, GError **error)
{
  return stor_qemu_img_bitmap (image, "--enable", bitmap, NULL, error);
}

gboolean
virt_image_bitmap_merge (const char *image, const char *from, const char *into,
                         GError **error)
{
  return stor_qemu_img_bitmap (image, "--merge", into, from, error);
}

gboolean
virt_image_bitmap_remove (const char *image, const char *bitmap, GError **error)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GPtrArray) bitmaps = NULL;

  if (stor_qemu_img_bitmap (image, "--remove", bitmap, NULL, &err))
    return TRUE;
  /* Only when the removal failed: was there nothing to remove? */
  bitmaps = virt_image_bitmaps (image, NULL);
  for (guint i = 0; bitmaps != NULL && i < bitmaps->len; i++)
    if (strcmp (((const virt_image_bitmap *) bitmaps->pdata[i])->name, bitmap) == 0) {
      g_propagate_error (error, g_steal_pointer (&err));
      return FALSE;
    }
  if (bitmaps == NULL) {
    g_propagate_error (error, g_steal_pointer (&err));
    return FALSE;
  }
  return TRUE;
}

void
virt_image_bitmap_free (virt_image_bitmap *b)
{
  if (b == NULL)
    return;
  g_free (b->name);
  g_free (b);
}

/* qemu-img info of one image: {"format-specific":{"data":{"bitmaps":[...]}}}. */
GPtrArray *
virt_image_bitmaps (const char *image, GError **error)
{
  g_autofree char *out = NULL;
  g_autoptr (GError) err = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GPtrArray) result =
    g_ptr_array_new_with_free_func ((GDestroyNotify) virt_image_bitmap_free);
  JsonNode *root;
  JsonArray *arr;

  if (!stor_qemu_img_info (image, "qcow2", &out, &err)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot read the bitmaps: %s", err->message);
    return NULL;
  }
  if (strlen (out) > CHAIN_JSON_MAX ||
      !json_parser_load_from_data (parser, out, -1, &err) ||
      (root = json_parser_get_root (parser)) == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: cannot parse qemu-img info output: %s", image,
                 err ? err->message : "not a JSON object");
    return NULL;
  }
  arr = image_bitmaps (json_node_get_object (root));
  for (guint i = 0; arr && i < json_array_get_length (arr); i++) {
    JsonNode *n = json_array_get_element (arr, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
    const char *name = ova_json_get_string (o, "name");
    virt_image_bitmap *b;

    if (name == NULL || *name == '\0' || strlen (name) > VIRT_CHECKPOINT_NAME_MAX) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: qemu-img info lists a bitmap without a valid name", image);
      return NULL;
    }
    b = g_new0 (virt_image_bitmap, 1);
    b->name = g_strdup (name);
    b->enabled = has_flag (o, "auto");
    b->in_use = has_flag (o, "in-use");
    g_ptr_array_add (result, b);
  }
  return g_steal_pointer (&result);
}

