/* ovagent: the stream decoder's readers of JSON records (record.c), for
 * decoder.c only: stream.h has what other modules may call. */
#ifndef STRM_RECORD_H
#define STRM_RECORD_H

#include <glib.h>
#include <json-glib/json-glib.h>

/* An untrusted string for a message: valid UTF-8, printable, and at most
 * max characters (json-glib's own messages quote the input). */
char *strm_quote_untrusted (const char *s, int max);

/* Parse a JSON object of at most len bytes: UTF-8, no NUL, bounded depth.
 * Errors are OVA_ERROR_INTEGRITY naming what. */
JsonNode *strm_json_parse_object (const char *json, gsize len, const char *what,
                                  GError **error);

/* Member name of o: a string, a non-negative integer; else
 * OVA_ERROR_INTEGRITY naming what holds it. */
gboolean strm_json_need_string (JsonObject *o, const char *name, const char *what,
                                const char **out, GError **error);
gboolean strm_json_need_uint (JsonObject *o, const char *name, const char *what,
                              guint64 *out, GError **error);

#endif
