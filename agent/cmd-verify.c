/* ovagent: the `verify` command: re-read the files of a repository (or of one
 * disk or backup) and check them against the manifests. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "util.h"
#include "agent/cancel.h"
#include "agent/command.h"
#include "agent/output.h"
#include "repo/repo.h"

static void
print_result (const ova_ctx *ctx, const repo_verify_result *res)
{
  if (ctx->json) {
    g_autoptr(JsonBuilder) b = json_builder_new ();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object (b);
    ova_json_add_string (b, "result", "ok");
    ova_json_add_int (b, "disks", res->disks);
    ova_json_add_int (b, "backups", res->backups);
    ova_json_add_int (b, "files", res->files);
    ova_json_add_int (b, "bytes", res->bytes);
    json_builder_end_object (b);
    root = json_builder_get_root (b);
    ova_print_json (root);
  }
  else {
    g_autofree char *bytes = ova_format_size (res->bytes);

    printf ("ok: %u disk%s, %u backup%s, %u file%s (%s) match their manifests\n",
            res->disks, res->disks == 1 ? "" : "s",
            res->backups, res->backups == 1 ? "" : "s",
            res->files, res->files == 1 ? "" : "s", bytes);
  }
}

const struct ova_command ova_cmd_verify = {
  .name = "verify",
  .handler = cmd_verify,
  .args = "[DISK]",
  .usage = "--repo DIR [DISK [--backup ID]] [--json]",
  .summary = "Re-read every file of a repository and check it against the manifest.",
  .details = "Every file of every backup (or of DISK, an image UUID, or of "
             "one backup of it) is read and its length, digest and "
             "qcow2 backing string compared with the manifest. Every "
             "mismatch, missing or replaced file is reported by name, and "
             "any is exit 6. An unknown disk or backup is exit 3. --json "
             "prints disks, backups, files and bytes checked.",
  .examples =
    "  ovagent verify --repo /backup\n"
    "  ovagent verify --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --backup 20261122T031000Z-3f2a9c --json\n",
};

gboolean
cmd_verify (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autofree char *repo_dir = NULL;
  g_autofree char *backup_id = NULL;
  g_autofree char *disk = NULL;
  g_autoptr(repo) r = NULL;
  repo_verify_result res = { 0 };
  const GOptionEntry entries[] = {
    { "repo", 0, 0, G_OPTION_ARG_FILENAME, &repo_dir,
      "The repository", "DIR" },
    { "backup", 0, 0, G_OPTION_ARG_STRING, &backup_id,
      "Only this backup of DISK", "ID" },
    { NULL },
  };

  if (!ova_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  if (!ova_repo_disk_args (ctx, repo_dir, argc, argv, &disk, error))
    return FALSE;
  if (backup_id != NULL && disk == NULL) {
    ova_usage_error (ctx, error, "--backup needs DISK");
    return FALSE;
  }
  if (backup_id != NULL && !repo_backup_id_is_valid (backup_id)) {
    ova_usage_error (ctx, error, "--backup needs a backup id like "
                     "20261122T031000Z-3f2a9c, not '%s'", backup_id);
    return FALSE;
  }

  ova_cancel_install ();

  r = repo_open (repo_dir, FALSE, REPO_LOCK_SHARED, error);
  if (r == NULL)
    return FALSE;
  if (!repo_verify (r, disk, backup_id, &ova_cancelled, &res, error))
    return FALSE;
  print_result (ctx, &res);
  return TRUE;
}
