/* ovagent: libFuzzer target for the volume metadata parser.
 * Any input must parse or fail cleanly, and a parsed record must be sane. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"
#include "volmeta.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_record (const stor_volmeta *md)
{
  if (md->cleared) {
    if (md->domain != NULL || md->image != NULL || md->parent != NULL)
      abort ();
    return;
  }
  if (!ova_uuid_is_valid (md->domain) || !ova_uuid_is_valid (md->image) ||
      !ova_uuid_is_valid (md->parent))
    abort ();
  if (md->capacity < 1 || md->gen > 999 || md->seq > G_MAXUINT32)
    abort ();
  if (md->type == NULL || md->disktype == NULL || md->description == NULL)
    abort ();
  if (strcmp (stor_format_name (md->format), "unknown") == 0 ||
      strcmp (stor_voltype_name (md->voltype), "unknown") == 0 ||
      strcmp (stor_legality_name (md->legality), "unknown") == 0)
    abort ();
  if (!g_utf8_validate (md->description, -1, NULL))
    abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md =
    stor_volmeta_parse ((const char *) data, size, &error);

  if (md != NULL)
    check_record (md);
  else if (error == NULL || error->domain != OVA_ERROR ||
           error->code != OVA_ERROR_INTEGRITY ||
           !g_utf8_validate (error->message, -1, NULL))
    abort ();
  return 0;
}
