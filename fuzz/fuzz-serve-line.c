/* ovagent: libFuzzer target for serve's command-line grammar and allow-lists
 * (SSH_ORIGINAL_COMMAND, written by whoever holds a restricted key). */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmdline.h"
#include "error.h"
#include "agent/serve.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define ROOT "/srv/ovagent-fuzz-root"

static gboolean
is_clean_text (const char *s)
{
  if (!g_utf8_validate (s, -1, NULL))
    return FALSE;
  for (const char *p = s; *p; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);

    if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
      return FALSE;
  }
  return TRUE;
}

static void
check_refusal (const GError *err)
{
  if (err == NULL || err->domain != OVA_ERROR || err->code != OVA_ERROR_USAGE ||
      !g_utf8_validate (err->message, -1, NULL))
    abort ();
}

/* What runs: an allowed command, its arguments (no options), then options
 * in --NAME[=VALUE] form with a --repo under the root, all clean text. */
static void
check_argv (const ova_serve_policy *p, char **argv)
{
  g_autofree char *allowed = ova_serve_allowed_commands (p->role);
  g_auto(GStrv) names = g_strsplit (allowed, ", ", -1);
  gboolean in_options = FALSE;

  if (argv == NULL || argv[0] == NULL || !g_strv_contains ((const char *const *) names, argv[0]))
    abort ();
  for (guint i = 1; argv[i] != NULL; i++) {
    const char *a = argv[i];

    if (!is_clean_text (a) || *a == '\0')
      abort ();
    if (g_str_has_prefix (a, "--")) {
      if (a[2] == '\0' || a[2] == '=')
        abort ();
      in_options = TRUE;
      if (g_str_has_prefix (a, "--repo=") &&
          strcmp (a + 7, ROOT) != 0 && !g_str_has_prefix (a + 7, ROOT "/"))
        abort ();
      if (strstr (a, "/../") != NULL || g_str_has_suffix (a, "/.."))
        abort ();
    }
    else if (*a == '-' || in_options)
      abort ();
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(GError) err = NULL;
  g_auto(GStrv) words = NULL;
  const ova_serve_policy policies[] = {
    { .role = OVA_SERVE_ROLE_HOST, .self_path = "/usr/bin/ovagent",
      .state_dir = "/var/lib/ovagent-fuzz" },
    { .role = OVA_SERVE_ROLE_TARGET, .repo_root = ROOT, .append_only = TRUE },
  };

  if (!ova_cmdline_split ((const char *) data, size, &words, &err)) {
    check_refusal (err);
    return 0;
  }
  if (g_strv_length (words) > OVA_CMDLINE_MAX_WORDS || size > OVA_CMDLINE_MAX)
    abort ();
  for (guint i = 0; words[i] != NULL; i++)
    if (*words[i] == '\0' || strlen (words[i]) > OVA_CMDLINE_MAX_WORD ||
        !is_clean_text (words[i]))
      abort ();

  for (size_t i = 0; i < G_N_ELEMENTS (policies); i++) {
    g_autoptr(GError) refusal = NULL;
    g_auto(GStrv) argv = NULL;

    if (ova_serve_check (&policies[i], words, &argv, &refusal))
      check_argv (&policies[i], argv);
    else
      check_refusal (refusal);
  }
  return 0;
}
