/* ovagent: libFuzzer target for the prune journal parser (R/disks/IMG/prune.journal
 * lives in the repository, which may have been edited). Any input parses or fails cleanly. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "repo/prune.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(GError) error = NULL;

  if (repo_prune_journal_check ((const char *) data, size, &error)) {
    if (error != NULL)
      abort ();
    return 0;
  }
  if (error == NULL || error->domain != OVA_ERROR || error->code != OVA_ERROR_INTEGRITY ||
      !g_utf8_validate (error->message, -1, NULL))
    abort ();
  return 0;
}
