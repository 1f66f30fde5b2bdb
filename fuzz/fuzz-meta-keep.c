/* ovagent: libFuzzer target for what a manifest keeps of a stream's META (JSON from
 * a hypervisor): refused cleanly, or a bounded, shallow copy of known members. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "util.h"
#include "repo/manifest.h"
#include "stream/stream.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* The stream-level members either mode may keep, seen without the code
 * under test (docs/repository.md §2.2). */
static const char *const known[] = {
  "format", "version", "tool", "host", "created", "mode", "domain", "disk", "capacity",
  "since", "volumes", "vm", "job", "checkpoint", "checkpoint_xml", NULL,
};

static void
check_kept (JsonNode *kept, const char *disk)
{
  g_autofree char *text = json_to_string (kept, FALSE);
  g_autoptr(JsonNode) again = NULL;
  g_autofree char *again_text = NULL;
  g_autoptr(GError) error = NULL;
  JsonObjectIter iter;
  const char *name;
  JsonNode *vols;
  gsize where;

  /* Bounded, and at most four levels deep: META, volumes, a volume, its
   * VDSM record. */
  if (strlen (text) > REPO_META_MAX ||
      strm_json_text_problem (text, strlen (text), 4, &where) != NULL)
    abort ();
  json_object_iter_init (&iter, json_node_get_object (kept));
  while (json_object_iter_next (&iter, &name, NULL))
    if (!g_strv_contains (known, name))
      abort ();
  vols = json_object_get_member (json_node_get_object (kept), "volumes");
  if (disk != NULL && vols != NULL && !JSON_NODE_HOLDS_NULL (vols) &&
      json_array_get_length (json_node_get_array (vols)) != 1)
    abort ();
  /* What is kept is kept again unchanged. */
  again = repo_meta_keep (kept, disk, &error);
  if (again == NULL)
    abort ();
  again_text = json_to_string (again, FALSE);
  if (strcmp (text, again_text) != 0)
    abort ();
}

static void
keep (JsonNode *meta, const char *disk)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) kept = repo_meta_keep (meta, disk, &error);

  if (kept == NULL) {
    if (error == NULL || error->domain != OVA_ERROR ||
        error->code != OVA_ERROR_INTEGRITY ||
        !g_utf8_validate (error->message, -1, NULL))
      abort ();
    return;
  }
  if (error != NULL)
    abort ();
  check_kept (kept, disk);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  const char *text = (const char *) data;
  JsonNode *root, *vols;
  gsize where;

  /* What the stream decoder lets through to receive. */
  if (size > STRM_MAX_JSON_PAYLOAD || memchr (text, '\0', size) != NULL ||
      !g_utf8_validate (text, size, NULL) ||
      strm_json_text_problem (text, size, STRM_MAX_JSON_DEPTH, &where) != NULL ||
      !json_parser_load_from_data (parser, text, size, NULL))
    return 0;
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return 0;

  keep (root, NULL);
  /* As a changed-block backup, for the disk of each entry named by a UUID. */
  vols = json_object_get_member (json_node_get_object (root), "volumes");
  if (vols == NULL || !JSON_NODE_HOLDS_ARRAY (vols))
    return 0;
  for (guint i = 0; i < json_array_get_length (json_node_get_array (vols)) && i < 4; i++) {
    JsonNode *v = json_array_get_element (json_node_get_array (vols), i);
    JsonNode *uuid;

    if (!JSON_NODE_HOLDS_OBJECT (v))
      continue;
    uuid = json_object_get_member (json_node_get_object (v), "uuid");
    if (uuid != NULL && JSON_NODE_HOLDS_VALUE (uuid) &&
        json_node_get_value_type (uuid) == G_TYPE_STRING &&
        ova_uuid_is_valid (json_node_get_string (uuid)))
      keep (root, json_node_get_string (uuid));
  }
  return 0;
}
