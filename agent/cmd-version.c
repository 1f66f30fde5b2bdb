/* ovagent: the `version` command (and --version): the agent's version and the
 * versions of the libraries this binary runs with, for bug reports. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <stdio.h>

#include <json-glib/json-glib.h>
#include <libqcow.h>

#include "json.h"
#include "agent/command.h"
#include "agent/output.h"

const struct ova_command ova_cmd_version = {
  .name = "version",
  .handler = cmd_version,
  .args = NULL,
  .usage = "[--json]",
  .summary = "Print the version of ovagent and of the libraries it runs with.",
  .examples =
    "  ovagent version\n"
    "  ovagent version --json\n",
  .no_config = TRUE,
};

gboolean
cmd_version (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autofree char *glib_version = NULL;
  const char *qcow_version;

  if (!ova_command_parse (ctx, NULL, &argc, &argv, error))
    return FALSE;
  if (argc > 1) {
    ova_usage_error (ctx, error, "unexpected argument '%s'", argv[1]);
    return FALSE;
  }

  /* Run-time versions where the library tells them; json-glib only has
   * the version it was built against. */
  glib_version = g_strdup_printf ("%u.%u.%u", glib_major_version,
                                  glib_minor_version, glib_micro_version);
  qcow_version = libqcow_get_version ();

  if (ctx->json) {
    g_autoptr(JsonBuilder) b = json_builder_new ();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object (b);
    ova_json_add_string (b, "version", PACKAGE_VERSION);
    ova_json_add_string (b, "glib", glib_version);
    ova_json_add_string (b, "json_glib", JSON_VERSION_S);
    ova_json_add_string (b, "libqcow", qcow_version);
    json_builder_end_object (b);
    root = json_builder_get_root (b);
    ova_print_json (root);
    return TRUE;
  }

  printf ("ovagent %s\n"
          "glib %s\n"
          "json-glib %s\n"
          "libqcow %s\n",
          PACKAGE_VERSION, glib_version, JSON_VERSION_S, qcow_version);
  return TRUE;
}
