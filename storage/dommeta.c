/* ovagent: parser of storage-domain metadata (dom_md/metadata, MDT_ VG tags),
 * the _SHA_CKSUM seal and LVM tag escapes (vdsm-storage.md §2.3, §3.1). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "dommeta.h"
#include "error.h"
#include "util.h"

#define SHA_CKSUM_KEY "_SHA_CKSUM"
#define VG_TAG_PREFIX "MDT_"

/* Real domains have about 20 keys (plus one PVn per PV) and short lines;
 * these bounds only stop a forged file or tag list from costing much. */
#define MAX_KEYS 1024
#define MAX_LINE 4096
#define MAX_TAGS 4096

/* At most this many bytes of an untrusted value are quoted in a message. */
#define SHOWN_VALUE_MAX 64

/* Longest decimal code point inside &...&: U+10FFFF is 1114111. */
#define ESCAPE_MAX_DIGITS 7

struct stor_dommeta {
  GHashTable *keys;   /* KEY -> stripped VALUE, _SHA_CKSUM excluded */
  gboolean sealed;
};

void
stor_dommeta_free (stor_dommeta *md)
{
  if (md == NULL)
    return;
  if (md->keys != NULL)
    g_hash_table_unref (md->keys);
  g_free (md);
}

const char *
stor_dommeta_get (const stor_dommeta *md, const char *key)
{
  return g_hash_table_lookup (md->keys, key);
}

gboolean
stor_dommeta_get_int (const stor_dommeta *md, const char *key, gint64 *out)
{
  const char *value = stor_dommeta_get (md, key);

  return value != NULL &&
         g_ascii_string_to_signed (value, 10, G_MININT64, G_MAXINT64, out,
                                   NULL);
}

gboolean
stor_dommeta_sealed (const stor_dommeta *md)
{
  return md->sealed;
}

static int
compare_keys (gconstpointer a, gconstpointer b)
{
  /* Byte order of UTF-8 is code point order, which is how VDSM sorts. */
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* VDSM hashes each line encoded as ASCII with "xmlcharrefreplace": any
 * character beyond ASCII enters the sum as "&#<decimal code point>;". */
static void
append_xmlcharref (GString *line, const char *s)
{
  const char *end = s + strlen (s);
  const char *p = s;

  while (p < end) {
    gunichar c = g_utf8_get_char_validated (p, end - p);

    /* Our parsers only store UTF-8; a caller's stray byte, which VDSM
     * could never have read, goes in as it is rather than being skipped. */
    if (c == (gunichar) -1 || c == (gunichar) -2) {
      g_string_append_c (line, *p);
      p++;
      continue;
    }
    if (c < 0x80)
      g_string_append_c (line, (char) c);
    else
      g_string_append_printf (line, "&#%u;", (unsigned) c);
    p = g_utf8_next_char (p);
  }
}

static void
checksum_update_line (GChecksum *sum, const char *key, const char *value)
{
  g_autoptr(GString) line = g_string_new (NULL);

  append_xmlcharref (line, key);
  g_string_append_c (line, '=');
  append_xmlcharref (line, value);
  g_checksum_update (sum, (const guchar *) line->str, line->len);
}

char *
stor_dommeta_checksum (GHashTable *keys)
{
  g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA1);
  g_autofree gpointer *names = NULL;
  guint n = 0;

  names = g_hash_table_get_keys_as_array (keys, &n);
  qsort (names, n, sizeof *names, compare_keys);
  for (guint i = 0; i < n; i++) {
    const char *key = names[i];

    if (strcmp (key, SHA_CKSUM_KEY) == 0)
      continue;
    checksum_update_line (sum, key, g_hash_table_lookup (keys, key));
  }
  return g_strdup (g_checksum_get_string (sum));
}

/* Build the key table from decoded "KEY=VALUE" lines, as VDSM's
 * PersistentDict does: lines without '=' are skipped, the key is kept as
 * written, the value is stripped, a repeated key keeps its last value, and
 * _SHA_CKSUM, when present, must match the sum of everything else. */
static stor_dommeta *
build (const char *const *lines, guint n_lines, const char *what,
       GError **error)
{
  g_autoptr(stor_dommeta) md = g_new0 (stor_dommeta, 1);
  g_autofree char *declared = NULL;

  md->keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  for (guint i = 0; i < n_lines; i++) {
    const char *eq = strchr (lines[i], '=');
    char *key;
    char *value;

    if (eq == NULL)
      continue;
    key = g_strndup (lines[i], eq - lines[i]);
    value = g_strstrip (g_strdup (eq + 1));
    if (strcmp (key, SHA_CKSUM_KEY) == 0) {
      g_free (key);
      g_free (declared);
      declared = value;
      continue;
    }
    g_hash_table_replace (md->keys, key, value);
    if (g_hash_table_size (md->keys) > MAX_KEYS) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s has more than %d keys", what, MAX_KEYS);
      return NULL;
    }
  }

  /* VDSM lets an empty table through unchecked; we check whatever is
   * declared, so "sealed" always means "verified". */
  if (declared != NULL) {
    g_autofree char *computed = stor_dommeta_checksum (md->keys);

    if (strcmp (declared, computed) != 0) {
      g_autofree char *shown = ova_quote_untrusted (declared, SHOWN_VALUE_MAX);

      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s seal is broken: %s is %s, contents sum to \"%s\"",
                   what, SHA_CKSUM_KEY, shown, computed);
      return NULL;
    }
    md->sealed = TRUE;
  }
  return g_steal_pointer (&md);
}

stor_dommeta *
stor_dommeta_parse_text (const char *buf, gsize len, GError **error)
{
  g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  const char *nul;
  gsize pos = 0;

  g_return_val_if_fail (buf != NULL || len == 0, NULL);

  /* The file is read with direct I/O in whole blocks; VDSM strips the
   * NUL padding that comes with it. */
  while (len > 0 && buf[len - 1] == '\0')
    len--;

  if (len > STOR_DOMMETA_MAX_SIZE) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "domain metadata is larger than %d bytes",
                 STOR_DOMMETA_MAX_SIZE);
    return NULL;
  }
  nul = memchr (buf, '\0', len);
  if (nul != NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "domain metadata has a NUL byte at offset %td", nul - buf);
    return NULL;
  }
  if (!g_utf8_validate_len (buf, len, NULL)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "domain metadata is not valid UTF-8");
    return NULL;
  }

  while (pos < len) {
    gsize start = pos;

    while (pos < len && buf[pos] != '\n' && buf[pos] != '\r')
      pos++;
    if (pos - start > MAX_LINE) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "domain metadata line %u is longer than %d bytes",
                   lines->len + 1, MAX_LINE);
      return NULL;
    }
    if (pos > start)
      g_ptr_array_add (lines, g_strndup (buf + start, pos - start));
    pos++;
  }

  return build ((const char *const *) lines->pdata, lines->len,
                "domain metadata", error);
}

stor_dommeta *
stor_dommeta_parse_vg_tags (const char *const *tags, GError **error)
{
  g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);

  g_return_val_if_fail (tags != NULL, NULL);

  for (gsize i = 0; tags[i] != NULL; i++) {
    char *line;

    if (i >= MAX_TAGS) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "VG has more than %d tags", MAX_TAGS);
      return NULL;
    }
    if (!g_str_has_prefix (tags[i], VG_TAG_PREFIX))
      continue;
    if (strnlen (tags[i], MAX_LINE + 1) > MAX_LINE) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "VG tag %zu is longer than %d bytes", i, MAX_LINE);
      return NULL;
    }
    line = stor_lvtag_decode (tags[i] + strlen (VG_TAG_PREFIX), error);
    if (line == NULL) {
      g_autofree char *shown = ova_quote_untrusted (tags[i], SHOWN_VALUE_MAX);

      g_prefix_error (error, "VG tag %s: ", shown);
      return NULL;
    }
    g_ptr_array_add (lines, line);
  }

  return build ((const char *const *) lines->pdata, lines->len,
                "domain metadata in VG tags", error);
}

static gboolean
is_tag_char (gunichar c)
{
  return c < 0x80 &&
         (g_ascii_isalnum (c) || strchr ("_+.-/=!:#", (int) c) != NULL);
}

/* Returns NULL if s is not valid UTF-8: such a string has no code points
 * to escape, and LVM would refuse the bytes anyway. */
char *
stor_lvtag_encode (const char *s)
{
  g_autoptr(GString) out = NULL;

  g_return_val_if_fail (s != NULL, NULL);
  if (!g_utf8_validate (s, -1, NULL))
    return NULL;

  out = g_string_sized_new (strlen (s));
  for (const char *p = s; *p != '\0'; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);

    if (is_tag_char (c))
      g_string_append_c (out, (char) c);
    else
      g_string_append_printf (out, "&%u&", (unsigned) c);
  }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* Parse the escape at s[0] == '&'; on success *len is its length with
 * both '&'. VDSM takes any digit string; we take what names a Unicode
 * scalar value other than NUL, which is all an encoder can produce. */
static gboolean
parse_escape (const char *s, gsize *len, gunichar *c, GError **error)
{
  char digits[ESCAPE_MAX_DIGITS + 1];
  gsize n = 0;
  guint64 value;

  while (n <= ESCAPE_MAX_DIGITS && g_ascii_isdigit (s[1 + n]))
    n++;
  if (n > ESCAPE_MAX_DIGITS) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "escape with more than %d digits", ESCAPE_MAX_DIGITS);
    return FALSE;
  }
  if (s[1 + n] == '\0') {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "unterminated escape");
    return FALSE;
  }
  if (s[1 + n] != '&') {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "escape with a non-digit in its code point");
    return FALSE;
  }
  if (n == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "escape with an empty code point");
    return FALSE;
  }
  memcpy (digits, s + 1, n);
  digits[n] = '\0';
  if (!g_ascii_string_to_unsigned (digits, 10, 1, 0x10FFFF, &value, NULL) ||
      (value >= 0xD800 && value <= 0xDFFF)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "escape &%s& is not a valid code point", digits);
    return FALSE;
  }
  *c = (gunichar) value;
  *len = n + 2;
  return TRUE;
}

char *
stor_lvtag_decode (const char *s, GError **error)
{
  g_autoptr(GString) out = NULL;
  const char *p = s;

  g_return_val_if_fail (s != NULL, NULL);
  if (!g_utf8_validate (s, -1, NULL)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "LVM tag is not valid UTF-8");
    return NULL;
  }

  out = g_string_sized_new (strlen (s));
  while (*p != '\0') {
    const char *amp = strchr (p, '&');
    gunichar c;
    gsize len;

    if (amp == NULL) {
      g_string_append (out, p);
      break;
    }
    g_string_append_len (out, p, amp - p);
    if (!parse_escape (amp, &len, &c, error)) {
      g_prefix_error (error, "at offset %td: ", amp - s);
      return NULL;
    }
    g_string_append_unichar (out, c);
    p = amp + len;
  }
  return g_string_free (g_steal_pointer (&out), FALSE);
}
