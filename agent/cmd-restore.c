/* ovagent: the `restore` command: a disk as it was at a backup of a repository,
 * written as a sparse local file (qemu-img convert) or as a restore stream on stdout. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "agent/cancel.h"
#include "agent/command.h"
#include "agent/output.h"
#include "agent/progress.h"
#include "nbd/nbd.h"
#include "repo/repo.h"
#include "storage/qemu-img.h"
#include "stream/copy.h"
#include "stream/stream.h"

typedef struct {
  char *repo;
  char *backup;
  char *to;
  char *format;
  char *output;
} restore_opts;

static void
restore_opts_clear (restore_opts *o)
{
  g_free (o->repo);
  g_free (o->backup);
  g_free (o->to);
  g_free (o->format);
  g_free (o->output);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (restore_opts, restore_opts_clear)

static gboolean
check_interrupted (const char *what, GError **error)
{
  if (!ova_cancelled)
    return TRUE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED, "interrupted while %s", what);
  return FALSE;
}

static gboolean
check_options (const ova_ctx *ctx, const restore_opts *o, int argc, char **argv,
               GError **error)
{
  if (o->repo == NULL) {
    ova_usage_error (ctx, error, "missing --repo DIR");
    return FALSE;
  }
  if (argc < 2) {
    ova_usage_error (ctx, error, "missing DISK (an image UUID)");
    return FALSE;
  }
  if (argc > 2) {
    ova_usage_error (ctx, error, "unexpected argument '%s' after DISK", argv[2]);
    return FALSE;
  }
  if (!ova_uuid_is_valid (argv[1])) {
    g_autofree char *shown = ova_quote_untrusted (argv[1], 80);

    ova_usage_error (ctx, error, "DISK must be an image UUID (8-4-4-4-12 hex "
                     "digits), not %s", shown);
    return FALSE;
  }
  if ((o->to == NULL) == (o->output == NULL)) {
    ova_usage_error (ctx, error, "give either --to PATH or --output -");
    return FALSE;
  }
  if (o->output != NULL && strcmp (o->output, "-") != 0) {
    ova_usage_error (ctx, error, "--output takes only '-' (standard output); "
                     "to write a file use --to %s", o->output);
    return FALSE;
  }
  if (o->output != NULL && o->format != NULL) {
    ova_usage_error (ctx, error, "--format applies to --to only: the stream "
                     "always carries the raw guest view");
    return FALSE;
  }
  if (o->format != NULL && strcmp (o->format, "raw") != 0 &&
      strcmp (o->format, "qcow2") != 0) {
    ova_usage_error (ctx, error, "--format must be raw or qcow2, not '%s'", o->format);
    return FALSE;
  }
  if (o->to != NULL && *o->to == '\0') {
    ova_usage_error (ctx, error, "--to needs a file name");
    return FALSE;
  }
  return TRUE;
}

static void
print_file_result (const ova_ctx *ctx, const char *disk, const char *backup_id,
                   const char *path, const char *format, guint64 bytes_written)
{
  if (ctx->json) {
    g_autoptr(JsonBuilder) b = json_builder_new ();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object (b);
    ova_json_add_string (b, "result", "ok");
    ova_json_add_string (b, "disk", disk);
    ova_json_add_string (b, "backup_id", backup_id);
    ova_json_add_string (b, "path", path);
    ova_json_add_string (b, "format", format);
    ova_json_add_int (b, "bytes_written", (gint64) bytes_written);
    json_builder_end_object (b);
    root = json_builder_get_root (b);
    ova_print_json (root);
  }
  else {
    g_autofree char *size = ova_format_size (bytes_written);

    printf ("restored disk %s, backup %s, to %s (%s, %s allocated)\n",
            disk, backup_id, path, format, size);
  }
}

/* PATH.part is created new (never through a link, 0600), qemu-img writes
 * into it through its descriptor, and it is renamed to PATH only if PATH
 * still does not exist: a restore never overwrites anything. */
static gboolean
restore_to_file (const ova_ctx *ctx, const char *disk, GPtrArray *layers,
                 guint64 virtual_size, const char *backup_id, const char *to,
                 const char *format, GError **error)
{
  g_autofree char *path = g_canonicalize_filename (to, NULL);
  g_autofree char *part = g_strconcat (path, ".part", NULL);
  g_autoptr(GError) err = NULL;
  struct stat st;
  int fd;

  if (lstat (path, &st) == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "%s already exists; restore never overwrites a file, "
                 "remove it or choose another --to", path);
    return FALSE;
  }
  fd = ova_create_new_file (part, error);
  if (fd < 0)
    return FALSE;
  ova_info ("writing %s (%s) from backup %s", path, format, backup_id);
  if (!stor_qemu_img_convert (layers, fd, format, virtual_size, &err) ||
      !check_interrupted ("converting the backup", &err) ||
      !ova_commit_file (part, path, &err)) {
    close (fd);
    if (g_unlink (part) < 0 && errno != ENOENT)
      ova_warn ("cannot remove %s: %s", part, g_strerror (errno));
    g_propagate_prefixed_error (error, g_steal_pointer (&err),
                                "cannot restore disk %s to %s: ", disk, path);
    return FALSE;
  }
  if (fstat (fd, &st) < 0) {
    int saved = errno;

    close (fd);
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot stat %s: %s",
                 path, g_strerror (saved));
    return FALSE;
  }
  close (fd);
  print_file_result (ctx, disk, backup_id, path, format, (guint64) st.st_blocks * 512);
  return TRUE;
}

/* The META of a restore stream: one "volume", the guest view of the disk. */
static char *
restore_meta (const char *disk, const char *backup_id, guint64 capacity)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;

  strm_meta_begin (b, "restore");
  ova_json_add_string (b, "disk", disk);
  ova_json_add_string (b, "backup_id", backup_id);
  ova_json_add_int (b, "capacity", (gint64) capacity);
  json_builder_set_member_name (b, "volumes");
  json_builder_begin_array (b);
  json_builder_begin_object (b);
  ova_json_add_string (b, "uuid", disk);
  ova_json_add_string (b, "format", "raw");
  ova_json_add_int (b, "size", (gint64) capacity);
  json_builder_end_object (b);
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

static void
progress_cb (void *opaque, guint64 done)
{
  ova_progress_update (opaque, done);
}

static gboolean
restore_to_stream (const ova_ctx *ctx, const char *disk, GPtrArray *layers,
                   guint64 virtual_size, const char *backup_id, GError **error)
{
  g_autoptr(nbdr_server) srv = NULL;
  g_autoptr(ova_source) src = NULL;
  g_autoptr(strm_sink) sink = NULL;
  g_autoptr(strm_encoder) enc = NULL;
  g_autoptr(ova_progress_meter) meter = NULL;
  g_autofree char *meta = NULL;
  guint64 size;

  if (isatty (STDOUT_FILENO)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "refusing to write a stream to a terminal: redirect standard "
                 "output or pipe it into 'ovagent import'");
    return FALSE;
  }

  srv = nbdr_server_start (layers, 0, NULL, -1, ctx->cfg->env.run_dir, error);
  if (srv == NULL)
    return FALSE;
  src = nbdr_source_open (nbdr_server_uri (srv), NULL, 0, error);
  if (src == NULL)
    return FALSE;
  size = src->size;
  if (size != virtual_size)
    ova_warn ("backup %s of disk %s: the manifest says %" G_GUINT64_FORMAT
              " bytes, it opens as %" G_GUINT64_FORMAT "; sending what it opens as",
              backup_id, disk, virtual_size, size);

  meta = restore_meta (disk, backup_id, size);
  sink = strm_sink_fd_new (STDOUT_FILENO, "standard output");
  strm_sink_set_io_limits (sink, ctx->cfg->io_timeout, &ova_cancelled);
  enc = strm_encoder_new (sink, 0);
  meter = ova_progress_new (ctx->progress, disk, size);
  if (!check_interrupted ("starting", error) ||
      !strm_encoder_meta (enc, meta, error) ||
      !strm_copy_source (enc, src, disk, NULL, progress_cb, meter, &ova_cancelled,
                         NULL, error) ||
      !strm_encoder_finish (enc, error) ||
      !sink->ops->close (sink, error)) {
    g_prefix_error (error, "cannot send backup %s of disk %s: ", backup_id, disk);
    return FALSE;
  }
  ova_progress_finish (meter);
  ova_info ("sent backup %s of disk %s: %" G_GUINT64_FORMAT " stream bytes",
            backup_id, disk, strm_encoder_totals (enc)->bytes_sent);
  return TRUE;
}

const struct ova_command ova_cmd_restore = {
  .name = "restore",
  .handler = cmd_restore,
  .args = "DISK",
  .usage = "--repo DIR DISK [--backup ID] (--to PATH [--format raw|qcow2] | --output - [--io-timeout SECONDS]) [--json]",
  .summary = "Write a disk as it was at a backup, as a file or as a stream.",
  .details = "DISK is an image UUID; the backup is the latest one unless "
             "--backup names another. --to PATH writes the guest-visible "
             "disk to the new file PATH (raw by default, or one qcow2 file "
             "with --format qcow2), sparse, through PATH.part renamed at the "
             "end; an existing PATH or PATH.part is exit 2. --output - "
             "writes a restore stream to standard output instead (never to "
             "a terminal), for 'ovagent import' on a host; no result object "
             "is printed then. An unknown disk or backup is exit 3. --json "
             "prints disk, backup_id, path, format and bytes_written (the "
             "space the file takes).",
  .examples =
    "  ovagent restore --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --to /var/tmp/disk.raw\n"
    "  ovagent restore --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --backup 20261122T031000Z-3f2a9c \\\n"
    "      --to /var/tmp/disk.qcow2 --format qcow2 --json\n",
};

gboolean
cmd_restore (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_auto(restore_opts) o = { 0 };
  const GOptionEntry entries[] = {
    { "repo", 0, 0, G_OPTION_ARG_FILENAME, &o.repo,
      "The repository", "DIR" },
    { "backup", 0, 0, G_OPTION_ARG_STRING, &o.backup,
      "The backup to restore (default: the latest)", "ID" },
    { "to", 0, 0, G_OPTION_ARG_FILENAME, &o.to,
      "Write the disk to this new file (never overwritten)", "PATH" },
    { "format", 0, 0, G_OPTION_ARG_STRING, &o.format,
      "Format of the --to file: raw (default) or qcow2", "FMT" },
    { "output", 0, 0, G_OPTION_ARG_FILENAME, &o.output,
      "'-': write a restore stream to standard output (no result is "
      "printed then)", "-" },
    OVA_IO_TIMEOUT_OPTION_ENTRY,
    { NULL },
  };
  g_autofree char *disk = NULL;
  g_autofree char *backup_id = NULL;
  g_autoptr(GPtrArray) layers = NULL;
  g_autoptr(repo) r = NULL;
  guint64 virtual_size = 0;

  if (!ova_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  /* Even a usage error must not go into the stream. */
  if (o.output != NULL)
    ova_output_stdout_is_stream ();
  if (!check_options (ctx, &o, argc, argv, error))
    return FALSE;
  disk = g_ascii_strdown (argv[1], -1);
  ova_cancel_install ();

  /* The shared lock is held until the files have been read. */
  r = repo_open (o.repo, FALSE, REPO_LOCK_SHARED, error);
  if (r == NULL ||
      !repo_resolve (r, disk, o.backup, &layers, &virtual_size, &backup_id, error))
    return FALSE;
  ova_debug ("backup %s of disk %s: %s and %u more files (%" G_GUINT64_FORMAT " bytes)",
             backup_id, disk, ((const stor_layer *) layers->pdata[0])->path,
             layers->len - 1, virtual_size);

  if (o.to != NULL)
    return restore_to_file (ctx, disk, layers, virtual_size, backup_id, o.to,
                            o.format != NULL ? o.format : "raw", error);
  return restore_to_stream (ctx, disk, layers, virtual_size, backup_id, error);
}
