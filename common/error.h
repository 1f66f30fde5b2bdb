/* ovagent: the error domain shared by every module.
 * GError codes in OVA_ERROR are the documented exit codes (DESIGN §3). */
#ifndef OVA_ERROR_H
#define OVA_ERROR_H

#include <glib.h>

#define OVA_ERROR (ova_error_quark ())
GQuark ova_error_quark (void);

/* Values are the process exit codes; do not renumber. */
typedef enum {
  OVA_ERROR_INTERNAL = 1,
  OVA_ERROR_USAGE = 2,
  OVA_ERROR_NOT_FOUND = 3,
  OVA_ERROR_BUSY = 4,
  OVA_ERROR_UNSUPPORTED = 5,
  OVA_ERROR_INTEGRITY = 6,
  OVA_ERROR_TRANSPORT = 7,
  OVA_ERROR_NO_SPACE = 8,
  /* Stopped by SIGINT, SIGTERM or SIGHUP. Not an exit code of its own: the
   * process exits 1 with the JSON code "internal" (DESIGN §3). */
  OVA_ERROR_INTERRUPTED = 64,
} OvaErrorCode;

/* Exit code for an error: its code in OVA_ERROR, else 1. */
int ova_error_exit_code (const GError *err);

/* The JSON "code" string for an error: "not-found", "usage", ... */
const char *ova_error_code_name (const GError *err);

#endif
