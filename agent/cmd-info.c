/* ovagent: the `info` command: one disk's chain with what each volume's header
 * says, its activation and the VMs using it; activates block LVs only for the run. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "agent/command.h"
#include "agent/output.h"
#include "storage/lvm.h"
#include "storage/probe.h"
#include "storage/scan.h"
#include "virt/vmusage.h"

/* Check DISK ("IMG" or "SD/IMG") and give it back in lower case, with the
 * SD part (or NULL) in *sd_out. */
static char *
parse_disk (const ova_ctx *ctx, const char *disk, char **sd_out, GError **error)
{
  g_auto(GStrv) parts = g_strsplit (disk, "/", 3);
  guint n = g_strv_length (parts);

  for (guint i = 0; i < n; i++) {
    if (n > 2 || !ova_uuid_is_valid (parts[i])) {
      ova_usage_error (ctx, error,
                       "DISK must be an image UUID or SD_UUID/IMG_UUID "
                       "(8-4-4-4-12 hex digits each), not '%s'", disk);
      return NULL;
    }
  }
  if (n == 0) {
    ova_usage_error (ctx, error, "DISK is empty");
    return NULL;
  }
  *sd_out = n == 2 ? g_ascii_strdown (parts[0], -1) : NULL;
  return g_ascii_strdown (disk, -1);
}

/* Users of path, looked up by its real path and as written (libvirt keeps
 * the source as given to it, VDSM gives /rhev/... links). */
static GPtrArray *
volume_users (GHashTable *users, const char *path)
{
  GPtrArray *found = g_ptr_array_new ();
  g_autofree char *real = realpath (path, NULL);
  const char *keys[] = { real, path };

  for (size_t k = 0; k < G_N_ELEMENTS (keys); k++) {
    GPtrArray *list;

    if (keys[k] == NULL || (k == 1 && real != NULL && strcmp (real, path) == 0))
      continue;
    list = g_hash_table_lookup (users, keys[k]);
    for (guint i = 0; list != NULL && i < list->len; i++) {
      gpointer u = g_ptr_array_index (list, i);

      if (!g_ptr_array_find (found, u, NULL))
        g_ptr_array_add (found, u);
    }
  }
  return found;
}

static ova_volume_info *
inspect_volume (stor_domain *dom, stor_volume *v,
                stor_lv_guard *guard, GHashTable *users)
{
  g_autoptr(ova_volume_info) vi = g_new0 (ova_volume_info, 1);
  g_autoptr(GError) err = NULL;
  const stor_volume *parent = NULL;

  vi->vol = v;
  vi->active = TRUE;
  if (dom->kind == STOR_KIND_BLOCK) {
    vi->active = stor_lv_is_active (dom->uuid, v->uuid);
    if (!vi->active &&
        !stor_lv_guard_activate (guard, dom->uuid, v->uuid, &err)) {
      g_ptr_array_add (v->problems,
                       stor_problem_new ("activation-failed",
                                         "cannot activate %s/%s to read its header: %s",
                                         dom->uuid, v->uuid, err->message));
      g_clear_error (&err);
    }
  }

  /* The header is read only as what the metadata says the volume is. */
  if (v->path != NULL && v->md != NULL && !v->md->cleared) {
    vi->probe = stor_probe_volume (v->path, v->md->format, &err);
    if (vi->probe == NULL) {
      g_ptr_array_add (v->problems,
                       stor_problem_new ("unreadable-header", "%s", err->message));
      g_clear_error (&err);
    }
  }

  if (v->parent != NULL && !ova_uuid_is_blank (v->parent))
    parent = g_hash_table_lookup (dom->volumes, v->parent);
  if (vi->probe != NULL)
    stor_probe_check (vi->probe, v, parent);

  if (users != NULL && v->path != NULL)
    vi->users = volume_users (users, v->path);
  ova_debug ("volume %s/%s: %s, %s", dom->uuid, v->uuid,
             vi->probe ? vi->probe->format : "no header",
             vi->active ? "active" : "activated for this run");
  return g_steal_pointer (&vi);
}

const struct ova_command ova_cmd_info = {
  .name = "info",
  .handler = cmd_info,
  .args = "DISK",
  .usage = "DISK [--json]",
  .summary = "Show one disk's volume chain, base first: metadata, qcow2 compat, "
             "virtual and actual size, backing string, bitmaps, activation "
             "and the running VMs using each volume.",
  .details = "DISK is an image UUID, or SD_UUID/IMG_UUID when the image UUID "
             "alone is found in several storage domains. Block volumes that "
             "are not active are activated read-only for the command and "
             "deactivated again.",
  .examples =
    "  ovagent info 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b\n"
    "  ovagent info 5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60/0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --json\n",
};

gboolean
cmd_info (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autofree char *disk = NULL;
  g_autofree char *sd = NULL;
  g_autoptr(GPtrArray) domains = NULL;
  g_autoptr(GPtrArray) infos = NULL;
  g_autoptr(GHashTable) users = NULL;
  g_autoptr(stor_lv_guard) guard = NULL;
  g_autoptr(GError) err = NULL;
  stor_domain *dom = NULL;
  stor_image *img = NULL;

  if (!ova_command_parse (ctx, NULL, &argc, &argv, error))
    return FALSE;
  if (argc < 2) {
    ova_usage_error (ctx, error, "missing DISK (an image UUID or SD_UUID/IMG_UUID)");
    return FALSE;
  }
  if (argc > 2) {
    ova_usage_error (ctx, error, "unexpected argument '%s' after DISK", argv[2]);
    return FALSE;
  }
  disk = parse_disk (ctx, argv[1], &sd, error);
  if (disk == NULL)
    return FALSE;

  domains = stor_scan_domains (&ctx->cfg->env, sd, error);
  if (domains == NULL)
    return FALSE;
  if (!stor_find_disk (domains, disk, &dom, &img, error))
    return FALSE;

  /* Which VMs use the volumes is a detail: without libvirt, say so and
   * go on. */
  users = virt_volume_users (ctx->cfg->env.libvirt_uri, &err);
  if (users == NULL) {
    ova_warn ("cannot tell which VMs use disk %s: %s", disk, err->message);
    g_clear_error (&err);
  }

  if (dom->kind == STOR_KIND_BLOCK) {
    /* Leftovers of a run that died before deactivating its LVs. */
    stor_lv_cleanup_stale (&ctx->cfg->env);
    guard = stor_lv_guard_new (&ctx->cfg->env);
  }

  infos = g_ptr_array_new_with_free_func ((GDestroyNotify) ova_volume_info_free);
  for (guint i = 0; i < img->volumes->len; i++)
    g_ptr_array_add (infos, inspect_volume (dom, g_ptr_array_index (img->volumes, i),
                                            guard, users));

  if (ctx->json) {
    g_autoptr(JsonNode) root = ova_json_image_info (dom, img, infos);

    ova_print_json (root);
  }
  else
    ova_print_image_info (dom, img, infos);

  /* LVs this run activated go back to inactive before we report done. */
  if (guard != NULL)
    stor_lv_guard_release (guard);
  return TRUE;
}
