/* ovagent: the error domain and its mapping to exit codes and JSON code names.
 * Every module reports failures as GErrors in this domain. */
#include <config.h>

#include "error.h"

G_DEFINE_QUARK (ovagent-error-quark, ova_error)

int
ova_error_exit_code (const GError *err)
{
  if (err == NULL)
    return 0;
  if (err->domain == OVA_ERROR && err->code >= OVA_ERROR_INTERNAL &&
      err->code <= OVA_ERROR_NO_SPACE)
    return err->code;
  return OVA_ERROR_INTERNAL;
}

const char *
ova_error_code_name (const GError *err)
{
  static const char *const names[] = {
    [OVA_ERROR_INTERNAL] = "internal",
    [OVA_ERROR_USAGE] = "usage",
    [OVA_ERROR_NOT_FOUND] = "not-found",
    [OVA_ERROR_BUSY] = "busy",
    [OVA_ERROR_UNSUPPORTED] = "unsupported",
    [OVA_ERROR_INTEGRITY] = "integrity",
    [OVA_ERROR_TRANSPORT] = "transport",
    [OVA_ERROR_NO_SPACE] = "no-space",
  };

  return names[ova_error_exit_code (err) ?: OVA_ERROR_INTERNAL];
}
