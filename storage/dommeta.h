/* ovagent: storage-domain metadata: `dom_md/metadata` of file domains and the
 * MDT_ VG tags of block domains, with LVM tag escapes and the _SHA_CKSUM seal. */
#ifndef STOR_DOMMETA_H
#define STOR_DOMMETA_H

#include <glib.h>

/* Largest dom_md/metadata file read. */
#define STOR_DOMMETA_MAX_SIZE (64 * 1024)

typedef struct stor_dommeta stor_dommeta;

/* Parse the text of dom_md/metadata (trailing NULs ignored). If a
 * _SHA_CKSUM line is present it is checked; a mismatch fails with
 * OVA_ERROR_INTEGRITY giving both sums. */
stor_dommeta *stor_dommeta_parse_text (const char *buf, gsize len, GError **error);

/* Same from the VG tags of a block domain: every tag starting with "MDT_"
 * is decoded (&NN& escapes) and taken as KEY=VALUE; other tags are ignored. */
stor_dommeta *stor_dommeta_parse_vg_tags (const char *const *tags, GError **error);

/* Value of KEY, or NULL. */
const char *stor_dommeta_get (const stor_dommeta *md, const char *key);
/* Integer value of KEY; FALSE if missing or not a decimal integer. */
gboolean stor_dommeta_get_int (const stor_dommeta *md, const char *key, gint64 *out);
/* Whether a _SHA_CKSUM was present (and so was verified). */
gboolean stor_dommeta_sealed (const stor_dommeta *md);

void stor_dommeta_free (stor_dommeta *md);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_dommeta, stor_dommeta_free)

/* VDSM's seal: SHA-1 hex over the sorted "KEY=VALUE" strings concatenated
 * without separators, _SHA_CKSUM itself excluded. */
char *stor_dommeta_checksum (GHashTable *keys);

/* LVM tag escaping as VDSM does it: characters outside
 * [a-zA-Z0-9_+.\-/=!:#] become &<decimal code point>&. decode fails with
 * OVA_ERROR_INTEGRITY on an unterminated or out-of-range escape. */
char *stor_lvtag_encode (const char *s);
char *stor_lvtag_decode (const char *s, GError **error);

#endif
