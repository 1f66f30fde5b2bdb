/* ovagent: libFuzzer target for domain metadata: the dom_md/metadata text,
 * the same bytes as a VG tag list (one tag per line), and LVM tag escapes. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dommeta.h"
#include "error.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_error (const GError *error)
{
  if (error == NULL || error->domain != OVA_ERROR ||
      error->code != OVA_ERROR_INTEGRITY ||
      !g_utf8_validate (error->message, -1, NULL))
    abort ();
}

static void
check_metadata (const stor_dommeta *md)
{
  gint64 n;

  /* The seal is never visible as a key. */
  if (stor_dommeta_get (md, "_SHA_CKSUM") != NULL)
    abort ();
  (void) stor_dommeta_get_int (md, "VERSION", &n);
  (void) stor_dommeta_sealed (md);
}

static void
fuzz_text (const char *buf, size_t size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_dommeta) md = stor_dommeta_parse_text (buf, size, &error);

  if (md != NULL)
    check_metadata (md);
  else
    check_error (error);
}

static void
fuzz_vg_tags (const char *buf, size_t size)
{
  g_autofree char *text = g_strndup (buf, size);
  g_auto(GStrv) tags = g_strsplit (text, "\n", -1);
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_dommeta) md =
    stor_dommeta_parse_vg_tags ((const char *const *) tags, &error);

  if (md != NULL)
    check_metadata (md);
  else
    check_error (error);
}

/* decode must fail cleanly or give UTF-8 that encodes and decodes back to
 * itself; any UTF-8 input must survive encode then decode unchanged. */
static void
fuzz_lvtag (const char *buf, size_t size)
{
  g_autofree char *text = g_strndup (buf, size);
  g_autoptr(GError) error = NULL;
  g_autofree char *decoded = stor_lvtag_decode (text, &error);

  if (decoded != NULL) {
    g_autofree char *encoded = stor_lvtag_encode (decoded);
    g_autofree char *again = NULL;

    if (encoded == NULL)
      abort ();
    again = stor_lvtag_decode (encoded, NULL);
    if (again == NULL || strcmp (again, decoded) != 0)
      abort ();
  }
  else {
    check_error (error);
  }

  if (g_utf8_validate (text, -1, NULL)) {
    g_autofree char *encoded = stor_lvtag_encode (text);
    g_autofree char *back = NULL;

    if (encoded == NULL)
      abort ();
    back = stor_lvtag_decode (encoded, NULL);
    if (back == NULL || strcmp (back, text) != 0)
      abort ();
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *buf = (const char *) data;

  fuzz_text (buf, size);
  fuzz_vg_tags (buf, size);
  fuzz_lvtag (buf, size);
  return 0;
}
