/* ovagent: a push target's URL (ssh://[USER@]HOST[:PORT]/PATH) parsed and
 * checked, user input that ends up on a remote command line. */
#include <config.h>

#include <stdarg.h>
#include <string.h>

#include "error.h"
#include "ssh.h"
#include "util.h"

#define URL_SCHEME "ssh://"
#define URL_EXPECTED "expected ssh://USER@HOST[:PORT]/PATH"

static void G_GNUC_PRINTF (3, 4)
set_url_error (GError **error, const char *url, const char *fmt, ...)
{
  g_autofree char *quoted = ova_quote_untrusted (url, 256);
  g_autofree char *why = NULL;
  va_list ap;

  va_start (ap, fmt);
  why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
               "invalid target URL %s: %s (%s)", quoted, why, URL_EXPECTED);
}

void
strm_ssh_url_free (strm_ssh_url *u)
{
  if (u == NULL)
    return;
  g_free (u->user);
  g_free (u->host);
  g_free (u->path);
  g_free (u);
}

static gboolean
user_is_valid (const char *user)
{
  gsize len = strlen (user);
  gsize i;

  if (len == 0 || len > STRM_SSH_USER_MAX)
    return FALSE;
  if (!(g_ascii_islower (user[0]) || user[0] == '_'))
    return FALSE;
  for (i = 1; i < len; i++) {
    char c = user[i];
    if (!(g_ascii_islower (c) || g_ascii_isdigit (c) ||
          c == '_' || c == '.' || c == '-'))
      return FALSE;
  }
  return TRUE;
}

/* A DNS name of letters, digits and hyphens, or a dotted IPv4 address. */
static gboolean
hostname_is_valid (const char *host)
{
  g_auto (GStrv) labels = NULL;
  gboolean all_numeric = TRUE;
  gsize len = strlen (host);
  gsize i, j;

  if (len == 0 || len > STRM_SSH_HOST_MAX)
    return FALSE;
  labels = g_strsplit (host, ".", -1);
  for (i = 0; labels[i] != NULL; i++) {
    const char *l = labels[i];
    gsize llen = strlen (l);

    if (llen == 0 || llen > 63 || l[0] == '-' || l[llen - 1] == '-')
      return FALSE;
    for (j = 0; j < llen; j++) {
      if (!(g_ascii_isalnum (l[j]) || l[j] == '-'))
        return FALSE;
      if (!g_ascii_isdigit (l[j]))
        all_numeric = FALSE;
    }
  }
  /* "300.1.1.1" is no name: digits only must be an address. */
  if (all_numeric)
    return g_hostname_is_ip_address (host) && strchr (host, ':') == NULL;
  return TRUE;
}

static gboolean
ipv6_is_valid (const char *addr)
{
  const char *p;

  if (*addr == '\0' || strlen (addr) > 45 || strchr (addr, ':') == NULL)
    return FALSE;
  /* No zone index ("%eth0"): it is no part of a portable target. */
  for (p = addr; *p; p++)
    if (!(g_ascii_isxdigit (*p) || *p == ':' || *p == '.'))
      return FALSE;
  return g_hostname_is_ip_address (addr);
}

static gboolean
path_char_is_valid (char c)
{
  return g_ascii_isalnum (c) || strchr ("._+,=@:/-", c) != NULL;
}

strm_ssh_url *
strm_ssh_url_parse (const char *url, GError **error)
{
  g_autoptr (strm_ssh_url) u = g_new0 (strm_ssh_url, 1);
  g_autofree char *authority = NULL;
  g_autofree char *port_str = NULL;
  const char *rest, *slash, *hostport, *after, *at, *p;
  guint64 port;

  if (url == NULL || *url == '\0') {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "empty target URL (%s)", URL_EXPECTED);
    return NULL;
  }
  if (strnlen (url, STRM_SSH_URL_MAX + 1) > STRM_SSH_URL_MAX) {
    set_url_error (error, url, "longer than %d bytes", STRM_SSH_URL_MAX);
    return NULL;
  }
  if (!g_str_has_prefix (url, URL_SCHEME)) {
    set_url_error (error, url, "only ssh:// targets are supported");
    return NULL;
  }

  rest = url + strlen (URL_SCHEME);
  slash = strchr (rest, '/');
  if (slash == NULL) {
    set_url_error (error, url, "no repository path");
    return NULL;
  }
  authority = g_strndup (rest, slash - rest);

  hostport = authority;
  at = strchr (authority, '@');
  if (at != NULL) {
    u->user = g_strndup (authority, at - authority);
    hostport = at + 1;
    if (!user_is_valid (u->user)) {
      set_url_error (error, url, "the user name must match [a-z_][a-z0-9_.-]* "
                     "and have at most %d characters", STRM_SSH_USER_MAX);
      return NULL;
    }
  }

  if (hostport[0] == '[') {
    const char *close = strchr (hostport, ']');

    if (close == NULL) {
      set_url_error (error, url, "'[' without ']' around the IPv6 address");
      return NULL;
    }
    u->host = g_strndup (hostport + 1, close - hostport - 1);
    after = close + 1;
    if (!ipv6_is_valid (u->host)) {
      set_url_error (error, url, "not an IPv6 address between '[' and ']'");
      return NULL;
    }
  }
  else {
    after = strchr (hostport, ':');
    if (after == NULL)
      after = hostport + strlen (hostport);
    u->host = g_strndup (hostport, after - hostport);
    if (!hostname_is_valid (u->host)) {
      set_url_error (error, url, "the host must be a DNS name, an IPv4 address "
                     "or an IPv6 address in brackets");
      return NULL;
    }
  }

  u->port = 22;
  if (*after == ':') {
    port_str = g_strdup (after + 1);
    for (p = port_str; *p; p++)
      if (!g_ascii_isdigit (*p))
        break;
    if (*port_str == '\0' || *p != '\0' || strlen (port_str) > 5 ||
        !g_ascii_string_to_unsigned (port_str, 10, 1, 65535, &port, NULL)) {
      set_url_error (error, url, "the port must be a number from 1 to 65535");
      return NULL;
    }
    u->port = port;
  }
  else if (*after != '\0') {
    set_url_error (error, url, "unexpected characters after the host");
    return NULL;
  }

  if (strlen (slash) > STRM_SSH_PATH_MAX) {
    set_url_error (error, url, "the path is longer than %d bytes", STRM_SSH_PATH_MAX);
    return NULL;
  }
  for (p = slash; *p; p++) {
    if (!path_char_is_valid (*p)) {
      set_url_error (error, url, "the path may hold only letters, digits and "
                     "._+,=@:/- (found %s)",
                     g_ascii_isprint (*p) ? "a special character" : "a control character");
      return NULL;
    }
  }
  u->path = g_strdup (slash);
  return g_steal_pointer (&u);
}

