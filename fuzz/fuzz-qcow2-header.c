/* ovagent: libFuzzer target for the qcow2 header check (bytes a guest, a host's
 * storage or a sending host wrote). Any input must parse or fail cleanly. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "qcow2.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_header (const stor_qcow2_header *h, size_t size)
{
  if ((h->version != 2 && h->version != 3) || h->cluster_bits < 9 ||
      h->cluster_bits > 21 || h->size > STOR_VIRTUAL_SIZE_MAX)
    abort ();
  if (h->incompatible & (STOR_QCOW2_INCOMPAT_DATA_FILE | ~STOR_QCOW2_INCOMPAT_KNOWN))
    abort ();
  if (h->backing != NULL &&
      (*h->backing == '\0' || strlen (h->backing) > STOR_QCOW2_BACKING_MAX ||
       strlen (h->backing) > size || !g_utf8_validate (h->backing, -1, NULL)))
    abort ();
  if (h->backing_format != NULL &&
      (*h->backing_format == '\0' ||
       strlen (h->backing_format) > STOR_QCOW2_BACKING_FORMAT_MAX))
    abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(GError) error = NULL;
  g_auto(stor_qcow2_header) h = { 0 };

  if (stor_qcow2_header_parse (data, size, "input", &h, &error))
    check_header (&h, size);
  else if (error == NULL || error->domain != OVA_ERROR ||
           (error->code != OVA_ERROR_INTEGRITY && error->code != OVA_ERROR_UNSUPPORTED) ||
           !g_utf8_validate (error->message, -1, NULL))
    abort ();
  return 0;
}
