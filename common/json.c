/* ovagent: the JSON builder helpers shared by the commands, the state file
 * and the test drivers, and a compact writer that always writes JSON (json.h). */
#include <config.h>

#include <math.h>
#include <string.h>

#include "json.h"

void
ova_json_add_string (JsonBuilder *b, const char *name, const char *value)
{
  json_builder_set_member_name (b, name);
  if (value != NULL)
    json_builder_add_string_value (b, value);
  else
    json_builder_add_null_value (b);
}

void
ova_json_add_int (JsonBuilder *b, const char *name, gint64 value)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, value);
}

void
ova_json_add_uint (JsonBuilder *b, const char *name, guint64 value)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, (gint64) MIN (value, (guint64) G_MAXINT64));
}

void
ova_json_add_bool (JsonBuilder *b, const char *name, gboolean value)
{
  json_builder_set_member_name (b, name);
  json_builder_add_boolean_value (b, value);
}

void
ova_json_add_double (JsonBuilder *b, const char *name, double value)
{
  json_builder_set_member_name (b, name);
  json_builder_add_double_value (b, value);
}

void
ova_json_add_null (JsonBuilder *b, const char *name)
{
  json_builder_set_member_name (b, name);
  json_builder_add_null_value (b);
}

void
ova_json_add_strings (JsonBuilder *b, const char *name, const GPtrArray *values)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_array (b);
  for (guint i = 0; values != NULL && i < values->len; i++)
    json_builder_add_string_value (b, g_ptr_array_index (values, i));
  json_builder_end_array (b);
}

/* A string as a JSON string literal: json-glib's own escaping. */
static void
append_string (GString *out, const char *s)
{
  g_autoptr(JsonNode) n = json_node_init_string (json_node_alloc (), s);
  g_autofree char *text = json_to_string (n, FALSE);

  g_string_append (out, text);
}

static void
append_double (GString *out, double d)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  if (!isfinite (d)) {
    g_string_append (out, "null");
    return;
  }
  g_ascii_dtostr (buf, sizeof buf, d);
  g_string_append (out, buf);
  /* Still a double when read back, as json-glib means to keep it. */
  if (strpbrk (buf, ".eE") == NULL)
    g_string_append (out, ".0");
}

static void
append_node (GString *out, JsonNode *node)
{
  switch (JSON_NODE_TYPE (node)) {
  case JSON_NODE_OBJECT: {
    JsonObjectIter iter;
    const char *name;
    JsonNode *member;
    gboolean first = TRUE;

    g_string_append_c (out, '{');
    json_object_iter_init_ordered (&iter, json_node_get_object (node));
    while (json_object_iter_next_ordered (&iter, &name, &member)) {
      if (!first)
        g_string_append_c (out, ',');
      first = FALSE;
      append_string (out, name);
      g_string_append_c (out, ':');
      append_node (out, member);
    }
    g_string_append_c (out, '}');
    break;
  }
  case JSON_NODE_ARRAY: {
    JsonArray *a = json_node_get_array (node);

    g_string_append_c (out, '[');
    for (guint i = 0; i < json_array_get_length (a); i++) {
      if (i > 0)
        g_string_append_c (out, ',');
      append_node (out, json_array_get_element (a, i));
    }
    g_string_append_c (out, ']');
    break;
  }
  case JSON_NODE_VALUE:
    switch (json_node_get_value_type (node)) {
    case G_TYPE_INT64:
      g_string_append_printf (out, "%" G_GINT64_FORMAT, json_node_get_int (node));
      break;
    case G_TYPE_DOUBLE:
      append_double (out, json_node_get_double (node));
      break;
    case G_TYPE_BOOLEAN:
      g_string_append (out, json_node_get_boolean (node) ? "true" : "false");
      break;
    case G_TYPE_STRING:
      append_string (out, json_node_get_string (node));
      break;
    default:
      g_string_append (out, "null");
      break;
    }
    break;
  case JSON_NODE_NULL:
  default:
    g_string_append (out, "null");
    break;
  }
}

char *
ova_json_to_compact (JsonNode *node)
{
  GString *out = g_string_new (NULL);

  append_node (out, node);
  return g_string_free (out, FALSE);
}

static JsonNode *
member_value (JsonObject *o, const char *name, GType type)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != type)
    return NULL;
  return n;
}

const char *
ova_json_get_string (JsonObject *o, const char *name)
{
  JsonNode *n = member_value (o, name, G_TYPE_STRING);

  return n ? json_node_get_string (n) : NULL;
}

gboolean
ova_json_get_uint (JsonObject *o, const char *name, guint64 *out)
{
  JsonNode *n = member_value (o, name, G_TYPE_INT64);

  if (n == NULL || json_node_get_int (n) < 0)
    return FALSE;
  *out = (guint64) json_node_get_int (n);
  return TRUE;
}

gboolean
ova_json_get_bool (JsonObject *o, const char *name, gboolean *out)
{
  JsonNode *n = member_value (o, name, G_TYPE_BOOLEAN);

  if (n == NULL)
    return FALSE;
  *out = json_node_get_boolean (n);
  return TRUE;
}

JsonObject *
ova_json_get_object (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;

  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

JsonArray *
ova_json_get_array (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;

  return n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

gboolean
ova_json_is_null (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;

  return n == NULL || JSON_NODE_HOLDS_NULL (n);
}

gboolean
ova_json_is_finite (JsonNode *node)
{
  switch (JSON_NODE_TYPE (node)) {
  case JSON_NODE_OBJECT: {
    JsonObjectIter iter;
    JsonNode *member;

    json_object_iter_init (&iter, json_node_get_object (node));
    while (json_object_iter_next (&iter, NULL, &member))
      if (!ova_json_is_finite (member))
        return FALSE;
    return TRUE;
  }
  case JSON_NODE_ARRAY: {
    JsonArray *a = json_node_get_array (node);

    for (guint i = 0; i < json_array_get_length (a); i++)
      if (!ova_json_is_finite (json_array_get_element (a, i)))
        return FALSE;
    return TRUE;
  }
  case JSON_NODE_VALUE:
    return json_node_get_value_type (node) != G_TYPE_DOUBLE ||
      isfinite (json_node_get_double (node));
  case JSON_NODE_NULL:
    return TRUE;
  }
  return FALSE;
}
