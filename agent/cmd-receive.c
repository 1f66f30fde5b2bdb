/* ovagent: the `receive` command: a stream on standard input committed as a
 * new backup to a repository, or nothing at all if anything goes wrong. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "agent/cancel.h"
#include "agent/command.h"
#include "agent/output.h"
#include "repo/repo.h"

static void
print_result (const ova_ctx *ctx, const repo_receive_result *res)
{
  const char *kind = repo_kind_name (res->kind);

  if (ctx->json) {
    g_autoptr(JsonBuilder) b = json_builder_new ();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object (b);
    ova_json_add_string (b, "result", "ok");
    ova_json_add_string (b, "backup_id", res->backup_id);
    ova_json_add_string (b, "disk", res->disk);
    ova_json_add_string (b, "kind", kind);
    json_builder_set_member_name (b, "volumes");
    json_builder_begin_array (b);
    for (guint i = 0; i < res->volumes->len; i++)
      json_builder_add_string_value (b, g_ptr_array_index (res->volumes, i));
    json_builder_end_array (b);
    if (res->disks != NULL) {
      json_builder_set_member_name (b, "disks");
      json_builder_begin_array (b);
      for (guint i = 0; i < res->disks->len; i++) {
        const repo_receive_disk *d = g_ptr_array_index (res->disks, i);

        json_builder_begin_object (b);
        ova_json_add_string (b, "disk", d->disk);
        ova_json_add_string (b, "backup_id", d->backup_id);
        ova_json_add_string (b, "kind", repo_kind_name (d->kind));
        ova_json_add_string (b, "parent", d->parent);
        json_builder_end_object (b);
      }
      json_builder_end_array (b);
    }
    ova_json_add_int (b, "bytes_received", res->bytes_received);
    ova_json_add_int (b, "data_bytes", res->data_bytes);
    ova_json_add_double (b, "seconds", res->seconds);
    json_builder_end_object (b);
    root = json_builder_get_root (b);
    ova_print_json (root);
  }
  else if (res->disks != NULL) {
    g_autofree char *received = ova_format_size (res->bytes_received);

    for (guint i = 0; i < res->disks->len; i++) {
      const repo_receive_disk *d = g_ptr_array_index (res->disks, i);

      printf ("backup %s of disk %s committed: %s%s%s\n", d->backup_id, d->disk,
              repo_kind_name (d->kind), d->parent ? ", backed by " : "",
              d->parent ? d->parent : "");
    }
    printf ("%u disk%s, %s received in %.1f s\n", res->disks->len,
            res->disks->len == 1 ? "" : "s", received, res->seconds);
  }
  else {
    g_autofree char *received = ova_format_size (res->bytes_received);

    printf ("backup %s of disk %s committed: %s, %u volume%s, %s received in %.1f s\n",
            res->backup_id, res->disk, kind, res->volumes->len,
            res->volumes->len == 1 ? "" : "s", received, res->seconds);
  }
}

const struct ova_command ova_cmd_receive = {
  .name = "receive",
  .handler = cmd_receive,
  .args = NULL,
  .usage = "--repo DIR [--io-timeout SECONDS] [--json] < STREAM",
  .summary = "Read a stream on standard input and commit it to a repository.",
  .details = "The stream comes from 'ovagent export-chain --output -' (or a "
             "file it wrote). It becomes a new backup of the repository DIR "
             "(plain qcow2 files and a manifest per disk, see "
             "docs/repository.md) only if it arrived whole and every "
             "checksum matched; on any error or signal the repository is "
             "left as it was. DIR is created if missing; a non-empty "
             "directory that is not a repository is exit 2. A full backup "
             "starts a new chain; an incremental (export-chain --since VOL) "
             "must continue the latest backup of the disk (VOL its last "
             "volume), else exit 6. The stream's metadata is checked before "
             "DIR is opened; then receive holds the repository lock shared "
             "(verify and restore run alongside, and so do receives of other "
             "disks) and the lock of its disk: another receive writing the "
             "same disk, or a run holding the repository exclusively, is "
             "exit 4. A stream cut short, or a sender that sends nothing for "
             "--io-timeout seconds (the io_timeout key, default 300), is exit "
             "7, a full file system exit 8. --json prints backup_id, disk, "
             "kind (full or incremental), volumes, bytes_received, "
             "data_bytes, seconds.",
  .examples =
    "  ssh root@node ovagent export-chain 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --output - | \\\n"
    "      ovagent receive --repo /backup --json\n"
    "  ovagent receive --repo /backup < /var/tmp/disk.ovs\n",
};

gboolean
cmd_receive (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autofree char *repo_dir = NULL;
  repo_receive_result res = { 0 };
  repo_receive_opts opts = { .cancel = &ova_cancelled };
  gboolean ok;
  const GOptionEntry entries[] = {
    { "repo", 0, 0, G_OPTION_ARG_FILENAME, &repo_dir,
      "The repository (created if missing)", "DIR" },
    OVA_IO_TIMEOUT_OPTION_ENTRY,
    { NULL },
  };

  if (!ova_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  if (argc > 1) {
    ova_usage_error (ctx, error, "unexpected argument '%s' (the stream comes "
                     "on standard input)", argv[1]);
    return FALSE;
  }
  if (repo_dir == NULL) {
    ova_usage_error (ctx, error, "missing --repo DIR");
    return FALSE;
  }
  if (isatty (STDIN_FILENO)) {
    ova_usage_error (ctx, error, "standard input is a terminal; pipe a stream "
                     "into it, e.g. from ovagent export-chain --output -");
    return FALSE;
  }

  ova_cancel_install ();
  opts.run_dir = ctx->cfg->env.run_dir;
  opts.io_timeout = ctx->cfg->io_timeout;
  ok = repo_receive (repo_dir, STDIN_FILENO, &opts, &res, error);
  if (ok)
    print_result (ctx, &res);
  repo_receive_result_clear (&res);
  return ok;
}
