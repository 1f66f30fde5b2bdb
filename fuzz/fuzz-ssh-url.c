/* ovagent: libFuzzer target for a push target's URL (--target, the target
 * key of the configuration), whose parts end up on a remote command line. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "stream/ssh.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static gboolean
all_in (const char *s, const char *allowed)
{
  for (const char *p = s; *p; p++)
    if (!g_ascii_isalnum (*p) && strchr (allowed, *p) == NULL)
      return FALSE;
  return TRUE;
}

/* What a parsed URL may hold: each part within its grammar and bounds, so
 * that no part can carry a shell metacharacter, a space or an option. */
static void
check_url (const strm_ssh_url *u)
{
  if (u->user != NULL &&
      (strlen (u->user) == 0 || strlen (u->user) > STRM_SSH_USER_MAX ||
       u->user[0] == '-' || !all_in (u->user, "_.-")))
    abort ();
  if (u->host == NULL || u->host[0] == '\0' || u->host[0] == '-' ||
      strlen (u->host) > STRM_SSH_HOST_MAX || !all_in (u->host, ".-:"))
    abort ();
  if (u->port < 1 || u->port > 65535)
    abort ();
  if (u->path == NULL || u->path[0] != '/' || strlen (u->path) > STRM_SSH_PATH_MAX ||
      !all_in (u->path, "._+,=@:/-"))
    abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *text = g_strndup ((const char *) data, size);
  g_autoptr(strm_ssh_url) u = NULL;
  g_autoptr(GError) err = NULL;

  u = strm_ssh_url_parse (text, &err);
  if (u == NULL) {
    if (err == NULL || err->domain != OVA_ERROR || err->code != OVA_ERROR_USAGE ||
        !g_utf8_validate (err->message, -1, NULL))
      abort ();
    return 0;
  }
  if (err != NULL)
    abort ();
  check_url (u);
  return 0;
}
