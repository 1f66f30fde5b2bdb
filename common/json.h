/* ovagent: the JSON helpers every module shares: builders (one member of
 * each kind, a missing string written as null), a compact writer, and typed
 * readers of members whose text came from elsewhere. */
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

/* FALSE when node holds a number beyond the range of a double anywhere
 * (1e400 parses as an infinity, which no writer can write back as JSON).
 * Recursive: the text must have been checked for depth before it was parsed. */
gboolean ova_json_is_finite (JsonNode *node);

/* Readers: the member name of o (o may be NULL) when it has the type
 * asked for, else NULL or FALSE, so that each caller words its own error
 * (which document, where in it). None of them coerces: "1" is no number,
 * 1.0 is no integer. */
const char *ova_json_get_string (JsonObject *o, const char *name);
/* A JSON integer >= 0. */
gboolean ova_json_get_uint (JsonObject *o, const char *name, guint64 *out);
gboolean ova_json_get_bool (JsonObject *o, const char *name, gboolean *out);
JsonObject *ova_json_get_object (JsonObject *o, const char *name);
JsonArray *ova_json_get_array (JsonObject *o, const char *name);
/* TRUE when the member is absent or JSON null. */
gboolean ova_json_is_null (JsonObject *o, const char *name);

#endif
