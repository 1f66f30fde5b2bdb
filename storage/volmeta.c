/* ovagent: parser of VDSM volume metadata records and metadata-LV slot offsets.
 * Reads what VDSM writes (vdsm-storage.md §1.1-1.3, §3.4); never writes. */
#include <config.h>

#include <string.h>

#include "error.h"
#include "util.h"
#include "volmeta.h"

/* At most this many bytes of an untrusted value are quoted in a message. */
#define SHOWN_VALUE_MAX 64

/* Slot layout of the metadata LV (vdsm-storage.md §3.4). */
#define SLOT_SIZE_V4 G_GUINT64_CONSTANT (512)
#define SLOT_BASE_V5 G_GUINT64_CONSTANT (1024 * 1024)
#define SLOT_SIZE_V5 G_GUINT64_CONSTANT (8 * 1024)

#define GEN_MAX 999

typedef struct {
  const char *name;
  int value;
} enum_name;

static const enum_name format_names[] = {
  { "COW", STOR_FORMAT_COW },
  { "RAW", STOR_FORMAT_RAW },
};

static const enum_name voltype_names[] = {
  { "LEAF", STOR_VOLTYPE_LEAF },
  { "INTERNAL", STOR_VOLTYPE_INTERNAL },
  { "SHARED", STOR_VOLTYPE_SHARED },
};

static const enum_name legality_names[] = {
  { "LEGAL", STOR_LEGALITY_LEGAL },
  { "ILLEGAL", STOR_LEGALITY_ILLEGAL },
  { "FAKE", STOR_LEGALITY_FAKE },
};

const char *
stor_format_name (stor_format f)
{
  switch (f) {
  case STOR_FORMAT_COW: return "cow";
  case STOR_FORMAT_RAW: return "raw";
  case STOR_FORMAT_UNKNOWN: break;
  }
  return "unknown";
}

const char *
stor_voltype_name (stor_voltype t)
{
  switch (t) {
  case STOR_VOLTYPE_LEAF: return "leaf";
  case STOR_VOLTYPE_INTERNAL: return "internal";
  case STOR_VOLTYPE_SHARED: return "shared";
  case STOR_VOLTYPE_UNKNOWN: break;
  }
  return "unknown";
}

const char *
stor_legality_name (stor_legality l)
{
  switch (l) {
  case STOR_LEGALITY_LEGAL: return "legal";
  case STOR_LEGALITY_ILLEGAL: return "illegal";
  case STOR_LEGALITY_FAKE: return "fake";
  case STOR_LEGALITY_UNKNOWN: break;
  }
  return "unknown";
}

void
stor_volmeta_free (stor_volmeta *md)
{
  if (md == NULL)
    return;
  g_free (md->domain);
  g_free (md->image);
  g_free (md->parent);
  g_free (md->type);
  g_free (md->disktype);
  g_free (md->description);
  g_free (md);
}

guint64
stor_volmeta_slot_offset (int domain_version, guint64 slot)
{
  /* A slot number comes from an MD_ tag; saturate instead of wrapping so a
   * forged tag reads past the end of the LV rather than another slot. */
  if (domain_version < 5) {
    if (slot > G_MAXUINT64 / SLOT_SIZE_V4)
      return G_MAXUINT64;
    return slot * SLOT_SIZE_V4;
  }
  if (slot > (G_MAXUINT64 - SLOT_BASE_V5) / SLOT_SIZE_V5)
    return G_MAXUINT64;
  return SLOT_BASE_V5 + slot * SLOT_SIZE_V5;
}

static void
set_bad_value (GError **error, const char *key, const char *value,
               const char *expected)
{
  g_autofree char *shown = ova_quote_untrusted (value, SHOWN_VALUE_MAX);

  g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
               "invalid %s value %s (expected %s)", key, shown, expected);
}

static const char *
require (GHashTable *keys, const char *key, GError **error)
{
  const char *value = g_hash_table_lookup (keys, key);

  if (value == NULL)
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY, "missing key %s", key);
  return value;
}

static char *
require_uuid (GHashTable *keys, const char *key, GError **error)
{
  const char *value = require (keys, key, error);

  if (value == NULL)
    return NULL;
  if (!ova_uuid_is_valid (value)) {
    set_bad_value (error, key, value, "a UUID");
    return NULL;
  }
  return g_strdup (value);
}

static gboolean
parse_unsigned (const char *key, const char *value, guint64 max,
                guint64 *out, GError **error)
{
  if (!g_ascii_string_to_unsigned (value, 10, 0, max, out, NULL)) {
    g_autofree char *expected =
      g_strdup_printf ("a decimal integer 0..%" G_GUINT64_FORMAT, max);
    set_bad_value (error, key, value, expected);
    return FALSE;
  }
  return TRUE;
}

/* Optional counters: VDSM reads a missing GEN or SEQ as 0. */
static gboolean
optional_unsigned (GHashTable *keys, const char *key, guint64 max,
                   guint64 *out, GError **error)
{
  const char *value = g_hash_table_lookup (keys, key);

  *out = 0;
  return value == NULL || parse_unsigned (key, value, max, out, error);
}

static gboolean
parse_enum (GHashTable *keys, const char *key, const enum_name *names,
            gsize n_names, const char *expected, int *out, GError **error)
{
  const char *value = require (keys, key, error);

  if (value == NULL)
    return FALSE;
  for (gsize i = 0; i < n_names; i++) {
    if (strcmp (value, names[i].name) == 0) {
      *out = names[i].value;
      return TRUE;
    }
  }
  set_bad_value (error, key, value, expected);
  return FALSE;
}

/* CAP (bytes) wins over the legacy SIZE (512-byte units); a capacity of 0
 * is as invalid for VDSM as a missing one. */
static gboolean
parse_capacity (GHashTable *keys, guint64 *out, GError **error)
{
  const char *cap = g_hash_table_lookup (keys, "CAP");
  const char *size = g_hash_table_lookup (keys, "SIZE");
  guint64 n;

  if (cap != NULL) {
    if (!parse_unsigned ("CAP", cap, G_MAXUINT64, &n, error))
      return FALSE;
    *out = n;
  }
  else if (size != NULL) {
    if (!parse_unsigned ("SIZE", size, G_MAXUINT64 / 512, &n, error))
      return FALSE;
    *out = n * 512;
  }
  else {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "missing key CAP (or SIZE)");
    return FALSE;
  }
  if (*out < 1) {
    set_bad_value (error, cap != NULL ? "CAP" : "SIZE",
                   cap != NULL ? cap : size, "a capacity of at least 1");
    return FALSE;
  }
  return TRUE;
}

static gboolean
is_line_end (char c)
{
  return c == '\n' || c == '\r';
}

/* Length of the record proper: everything before the first line starting
 * with "EOF", or the whole text. Scanning stops once the record is known
 * to be too long, so a huge input costs no more than a long line. */
static gsize
record_length (const char *buf, gsize len)
{
  gsize pos = 0;

  while (pos < len) {
    if (len - pos >= 3 && memcmp (buf + pos, "EOF", 3) == 0)
      return pos;
    if (pos > STOR_VOLMETA_MAX_RECORD)
      return pos;
    while (pos < len && !is_line_end (buf[pos]))
      pos++;
    if (pos < len)
      pos++;
  }
  return len;
}

/* Split the record into KEY=VALUE pairs the way VDSM does: lines without
 * '=' are skipped, the split is on the first '=', key and value are
 * stripped, and a repeated key keeps its last value (VDSM fills a dict). */
static GHashTable *
split_pairs (const char *text)
{
  g_autoptr(GHashTable) keys =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  const char *p = text;

  while (*p != '\0') {
    gsize line_len = strcspn (p, "\n\r");
    const char *eq = memchr (p, '=', line_len);

    if (eq != NULL) {
      char *key = g_strndup (p, eq - p);
      char *value = g_strndup (eq + 1, line_len - (eq - p) - 1);

      g_hash_table_replace (keys, g_strstrip (key), g_strstrip (value));
    }
    p += line_len;
    if (*p != '\0')
      p++;
  }
  return g_steal_pointer (&keys);
}

stor_volmeta *
stor_volmeta_parse (const char *buf, gsize len, GError **error)
{
  g_autoptr(stor_volmeta) md = g_new0 (stor_volmeta, 1);
  g_autoptr(GHashTable) keys = NULL;
  g_autofree char *text = NULL;
  const char *nul;
  const char *value;
  gsize rec_len;
  guint64 n;
  int e;

  g_return_val_if_fail (buf != NULL || len == 0, NULL);

  /* Block slots are NUL padded to 512 bytes; VDSM strips the padding. */
  while (len > 0 && buf[len - 1] == '\0')
    len--;

  rec_len = record_length (buf, len);
  if (rec_len > STOR_VOLMETA_MAX_RECORD) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "metadata record longer than %d bytes",
                 STOR_VOLMETA_MAX_RECORD);
    return NULL;
  }
  if (rec_len == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "empty metadata record");
    return NULL;
  }
  nul = memchr (buf, '\0', rec_len);
  if (nul != NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "metadata record has a NUL byte at offset %td", nul - buf);
    return NULL;
  }
  if (!g_utf8_validate_len (buf, rec_len, NULL)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "metadata record is not valid UTF-8");
    return NULL;
  }

  text = g_strndup (buf, rec_len);
  keys = split_pairs (text);

  /* Written over a deleted volume's record before VDSM 4.2.5; the volume
   * is half removed and nothing else in the record means anything. */
  if (g_hash_table_contains (keys, "NONE")) {
    md->cleared = TRUE;
    return g_steal_pointer (&md);
  }

  if ((md->domain = require_uuid (keys, "DOMAIN", error)) == NULL ||
      (md->image = require_uuid (keys, "IMAGE", error)) == NULL ||
      (md->parent = require_uuid (keys, "PUUID", error)) == NULL ||
      !parse_capacity (keys, &md->capacity, error))
    return NULL;

  if (!parse_enum (keys, "FORMAT", format_names, G_N_ELEMENTS (format_names),
                   "COW or RAW", &e, error))
    return NULL;
  md->format = e;

  if ((value = require (keys, "TYPE", error)) == NULL)
    return NULL;
  md->type = g_strdup (value);

  if (!parse_enum (keys, "VOLTYPE", voltype_names,
                   G_N_ELEMENTS (voltype_names),
                   "LEAF, INTERNAL or SHARED", &e, error))
    return NULL;
  md->voltype = e;

  if ((value = require (keys, "DISKTYPE", error)) == NULL)
    return NULL;
  md->disktype = g_strdup (value);

  if ((value = require (keys, "DESCRIPTION", error)) == NULL)
    return NULL;
  md->description = g_strdup (value);

  if (!parse_enum (keys, "LEGALITY", legality_names,
                   G_N_ELEMENTS (legality_names),
                   "LEGAL, ILLEGAL or FAKE", &e, error))
    return NULL;
  md->legality = e;

  if ((value = require (keys, "CTIME", error)) == NULL)
    return NULL;
  if (!g_ascii_string_to_signed (value, 10, G_MININT64, G_MAXINT64,
                                 &md->ctime, NULL)) {
    set_bad_value (error, "CTIME", value, "a decimal integer");
    return NULL;
  }

  if (!optional_unsigned (keys, "GEN", GEN_MAX, &n, error))
    return NULL;
  md->gen = n;
  if (!optional_unsigned (keys, "SEQ", G_MAXUINT32, &md->seq, error))
    return NULL;

  return g_steal_pointer (&md);
}
