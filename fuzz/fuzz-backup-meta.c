/* ovagent: libFuzzer target for the META check of a changed-block ("backup" mode)
 * stream (JSON from a hypervisor). Any input must be accepted or refused cleanly. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "util.h"
#include "repo/repo.h"
#include "stream/stream.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* What an accepted META must hold, seen without the code under test: the
 * disks receive creates directories for are distinct UUIDs. */
static void
check_accepted (const uint8_t *data, size_t size)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  JsonArray *vols;
  guint n;

  if (!json_parser_load_from_data (parser, (const char *) data, size, NULL) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    abort ();
  vols = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                       "volumes");
  n = json_array_get_length (vols);
  if (n < 1 || n > STRM_MAX_VOLUMES)
    abort ();
  for (guint i = 0; i < n; i++) {
    JsonObject *v = json_array_get_object_element (vols, i);
    const char *uuid = json_object_get_string_member (v, "uuid");
    const char *disk = json_object_get_string_member (v, "disk");
    char *key;

    if (!ova_uuid_is_valid (uuid) || g_ascii_strcasecmp (uuid, disk) != 0)
      abort ();
    key = g_ascii_strdown (uuid, -1);
    if (!g_hash_table_add (seen, key))
      abort ();
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(GError) error = NULL;

  if (repo_backup_meta_check ((const char *) data, size, &error)) {
    if (error != NULL)
      abort ();
    check_accepted (data, size);
  }
  else if (error == NULL || error->domain != OVA_ERROR ||
           error->code != OVA_ERROR_INTEGRITY ||
           !g_utf8_validate (error->message, -1, NULL))
    abort ();
  return 0;
}
