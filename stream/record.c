/* ovagent: the JSON records of a stream (META, BEGIN, END, STREAM_END) read
 * as untrusted text: what json-glib must not see, parsing, META's volumes. */
#include <config.h>

#include <string.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "util.h"
#include "stream/record.h"
#include "stream/stream.h"

/* An untrusted string for a message: valid UTF-8, printable, and at most
 * max characters (json-glib's own messages quote the input). */
char *
strm_quote_untrusted (const char *s, int max)
{
  g_autofree char *valid = g_utf8_make_valid (s, -1);
  GString *out = g_string_new (NULL);
  const char *p = valid;

  for (int n = 0; *p != '\0' && n < max; n++, p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);

    if (g_unichar_isprint (c))
      g_string_append_unichar (out, c);
    else
      g_string_append_c (out, '?');
  }
  if (*p != '\0')
    g_string_append (out, "...");
  return g_string_free (out, FALSE);
}

/* ---- JSON records ---- */

const char *
strm_json_text_problem (const char *text, gsize len, guint max_depth, gsize *where)
{
  gboolean in_string = FALSE, escaped = FALSE;
  guint depth = 0;

  for (gsize i = 0; i < len; i++) {
    char c = text[i];

    *where = i;
    if (in_string) {
      if (escaped && c == 'u' && len - i > 4 && g_ascii_tolower (text[i + 1]) == 'd' &&
          text[i + 2] != '\0' && strchr ("89abcdefABCDEF", text[i + 2]) != NULL)
        return "a \\u escape of a UTF-16 surrogate";
      /* json-glib also reads C's octal escapes ("\\260" is the byte 0xb0):
       * not UTF-8 once written back. */
      if (escaped && (c == '\0' || strchr ("\"\\/bfnrtu", c) == NULL))
        return "an escape JSON does not have";
      if (escaped)
        escaped = FALSE;
      else if (c == '\\')
        escaped = TRUE;
      else if (c == '"')
        in_string = FALSE;
    }
    else if (c == '"')
      in_string = TRUE;
    else if (c == '{' || c == '[') {
      if (++depth > max_depth)
        return "more levels of nesting than allowed";
    }
    else if ((c == '}' || c == ']') && depth > 0)
      depth--;
  }
  return NULL;
}

/* Parse a JSON object of at most len bytes: UTF-8, no NUL, bounded depth.
 * Errors are OVA_ERROR_INTEGRITY naming what. */
JsonNode *
strm_json_parse_object (const char *json, gsize len, const char *what, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) err = NULL;
  g_autoptr(JsonNode) root = NULL;
  const char *problem;
  gsize where;

  if (!g_utf8_validate (json, len, NULL)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s is not UTF-8 text", what);
    return NULL;
  }
  /* Deeper JSON is refused before json-glib sees it: its parser recurses. */
  problem = strm_json_text_problem (json, len, STRM_MAX_JSON_DEPTH, &where);
  if (problem != NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY, "%s holds %s at byte %"
                 G_GSIZE_FORMAT, what, problem, where);
    return NULL;
  }

  if (!json_parser_load_from_data (parser, json, len, &err)) {
    g_autofree char *msg = strm_quote_untrusted (err->message, 200);

    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s is not valid JSON: %s", what, msg);
    return NULL;
  }
  root = json_parser_steal_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s is not a JSON object", what);
    return NULL;
  }
  return g_steal_pointer (&root);
}

gboolean
strm_json_need_string (JsonObject *o, const char *name, const char *what,
                       const char **out, GError **error)
{
  *out = ova_json_get_string (o, name);
  if (*out == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: \"%s\" is missing or not a string", what, name);
    return FALSE;
  }
  return TRUE;
}

gboolean
strm_json_need_uint (JsonObject *o, const char *name, const char *what,
                     guint64 *out, GError **error)
{
  if (!ova_json_get_uint (o, name, out)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: \"%s\" is missing or not a non-negative integer", what, name);
    return FALSE;
  }
  return TRUE;
}

GArray *
strm_meta_volumes_parse (const char *json, gsize len, GError **error)
{
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GArray) volumes = NULL;
  JsonObject *o;
  JsonArray *a;
  const char *format;
  guint64 version;
  guint count;

  root = strm_json_parse_object (json, len, "the stream metadata (META)", error);
  if (root == NULL)
    return NULL;
  o = json_node_get_object (root);
  if (!strm_json_need_string (o, "format", "META", &format, error) ||
      !strm_json_need_uint (o, "version", "META", &version, error))
    return NULL;
  if (strcmp (format, "ovagent-stream") != 0 || version != 1) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "META: \"format\" must be \"ovagent-stream\" and \"version\" 1");
    return NULL;
  }

  a = ova_json_get_array (o, "volumes");
  if (a == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "META: \"volumes\" is missing or not an array");
    return NULL;
  }
  count = json_array_get_length (a);
  if (count < 1 || count > STRM_MAX_VOLUMES) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "META: %u volumes (1 to %u allowed)", count, STRM_MAX_VOLUMES);
    return NULL;
  }

  volumes = g_array_sized_new (FALSE, TRUE, sizeof (strm_meta_volume), count);
  for (guint i = 0; i < count; i++) {
    JsonNode *vn = json_array_get_element (a, i);
    g_autofree char *what = g_strdup_printf ("META volume %u", i);
    strm_meta_volume v = { 0 };
    const char *uuid;

    if (!JSON_NODE_HOLDS_OBJECT (vn)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s is not an object", what);
      return NULL;
    }
    if (!strm_json_need_string (json_node_get_object (vn), "uuid", what, &uuid, error) ||
        !strm_json_need_uint (json_node_get_object (vn), "size", what, &v.size, error))
      return NULL;
    if (!ova_uuid_is_valid (uuid)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: \"uuid\" is not a valid UUID", what);
      return NULL;
    }
    /* Receivers name files after volumes: one volume, one entry. */
    for (guint j = 0; j < i; j++)
      if (g_ascii_strcasecmp (g_array_index (volumes, strm_meta_volume, j).uuid,
                              uuid) == 0) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                     "%s: volume %s is listed twice", what, uuid);
        return NULL;
      }
    memcpy (v.uuid, uuid, sizeof v.uuid);
    g_array_append_val (volumes, v);
  }
  return g_steal_pointer (&volumes);
}
