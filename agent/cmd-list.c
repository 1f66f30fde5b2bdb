/* ovagent: the `list` command: every storage domain of this host (or one),
 * with its images and their volume chains, as a table or as JSON. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include "error.h"
#include "util.h"
#include "agent/command.h"
#include "agent/output.h"
#include "storage/scan.h"

const struct ova_command ova_cmd_list = {
  .name = "list",
  .handler = cmd_list,
  .args = NULL,
  .usage = "[--domain SD] [--json]",
  .summary = "List the storage domains of this host, their images (disks) "
             "and each image's volume chain, base first.",
  .details = "Problems found on the way (unreadable metadata, broken chains) "
             "are shown on lines starting with '!' and do not stop the listing.",
  .examples =
    "  ovagent list\n"
    "  ovagent list --domain 5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60\n"
    "  ovagent list --json | jq -r '.domains[].images[].uuid'\n",
};

gboolean
cmd_list (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autofree char *domain = NULL;
  g_autofree char *sd = NULL;
  g_autoptr(GPtrArray) domains = NULL;
  const GOptionEntry entries[] = {
    { "domain", 'd', 0, G_OPTION_ARG_STRING, &domain,
      "Only the storage domain with this UUID", "SD" },
    { NULL },
  };

  if (!ova_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  if (argc > 1) {
    ova_usage_error (ctx, error, "unexpected argument '%s'", argv[1]);
    return FALSE;
  }
  if (domain != NULL) {
    if (!ova_uuid_is_valid (domain)) {
      ova_usage_error (ctx, error,
                       "--domain needs a storage domain UUID "
                       "(8-4-4-4-12 hex digits), not '%s'", domain);
      return FALSE;
    }
    /* VDSM writes UUIDs in lower case; names on storage follow. */
    sd = g_ascii_strdown (domain, -1);
  }

  domains = stor_scan_domains (&ctx->cfg->env, sd, error);
  if (domains == NULL)
    return FALSE;
  if (sd != NULL && domains->len == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "storage domain %s not found under %s/mnt nor in the volume "
                 "groups LVM sees; 'ovagent list' shows the domains of this host",
                 sd, ctx->cfg->env.data_center);
    return FALSE;
  }

  if (ctx->json) {
    g_autoptr(JsonNode) root = ova_json_domains (domains);

    ova_print_json (root);
  }
  else
    ova_print_domains (domains);
  return TRUE;
}
