/* ovagent: the JSON builder helpers every module's output shares (one
 * member of each kind, a missing string written as null) and a compact writer. */
#ifndef OVA_JSON_H
#define OVA_JSON_H

#include <glib.h>
#include <json-glib/json-glib.h>

/* name: value, or name: null when value is NULL. */
void ova_json_add_string (JsonBuilder *b, const char *name, const char *value);

void ova_json_add_int (JsonBuilder *b, const char *name, gint64 value);

/* JSON integers are signed 64-bit here: larger values are clamped. */
void ova_json_add_uint (JsonBuilder *b, const char *name, guint64 value);

void ova_json_add_bool (JsonBuilder *b, const char *name, gboolean value);

void ova_json_add_double (JsonBuilder *b, const char *name, double value);

void ova_json_add_null (JsonBuilder *b, const char *name);

/* name: [ the strings of values ] (char *). */
void ova_json_add_strings (JsonBuilder *b, const char *name,
                           const GPtrArray *values);

/* node as compact JSON text that always parses back. json-glib 1.6 writes
 * a double such as 1e+20 as "1e+20.0", which is no JSON: text that holds
 * numbers from elsewhere (a stream's META kept in a manifest) is written
 * here. Infinities and NaN, which JSON cannot hold, are written as null. */
char *ova_json_to_compact (JsonNode *node);

#endif
