/* ovagent: the `import` command: a restore stream from stdin written through a
 * writable qemu-nbd into an existing volume (file or LV) or a new local file. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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
#include "agent/restore-dest.h"
#include "nbd/nbd.h"
#include "storage/lease.h"
#include "storage/lvm.h"
#include "storage/qemu-img.h"
#include "storage/scan.h"
#include "stream/dest.h"
#include "stream/stream.h"
#include "virt/vmusage.h"

typedef struct {
  char *to_volume;
  char *to;
  char *format;
} import_opts;

static void
import_opts_clear (import_opts *o)
{
  g_free (o->to_volume);
  g_free (o->to);
  g_free (o->format);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (import_opts, import_opts_clear)

/* What the META of a restore stream says. */
typedef struct {
  char *disk;
  char *backup_id;
  guint64 capacity;
} restore_meta;

static void
restore_meta_clear (restore_meta *m)
{
  g_free (m->disk);
  g_free (m->backup_id);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (restore_meta, restore_meta_clear)

/* Where the stream goes, and what has to be undone. */
typedef struct {
  char *label;            /* SD/IMG/VOL or the file, for messages and the result */
  char *image;            /* what qemu-nbd opens */
  const char *format;     /* "raw" | "qcow2" */
  gboolean is_volume;
  gboolean fresh;         /* created by this run: reads as zeros already */
  char *path;             /* --to: final name; image is path.part */
  int fd;                 /* --to: image as created by this run, or -1 */
  GPtrArray *domains;     /* the scan the volume comes from */
  stor_lv_guard *guard;   /* block volume: the LV we activated */
  stor_lease *lease;      /* volume: its sanlock lease, held while written */
  nbdr_server *srv;
  nbdr_dest *dest;
} import_target;

static void
import_target_clear (import_target *t)
{
  nbdr_dest_free (t->dest);
  nbdr_server_stop (t->srv);
  stor_lease_free (t->lease);
  stor_lv_guard_free (t->guard);
  if (t->domains != NULL)
    g_ptr_array_unref (t->domains);
  g_free (t->label);
  g_free (t->image);
  g_free (t->path);
  if (t->fd >= 0)
    close (t->fd);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (import_target, import_target_clear)

/* The messages of the stream on standard input (opaque: the io_timeout). */
static char *
stdin_say (void *opaque, int err)
{
  const guint *io_timeout = opaque;

  if (err == ECANCELED)
    return g_strdup ("interrupted");
  if (err == ETIMEDOUT)
    return g_strdup_printf ("the sender of the stream on standard input sent nothing "
                            "for %u s (io_timeout)", *io_timeout);
  return g_strdup_printf ("cannot read the stream from standard input: %s",
                          g_strerror (err));
}

static gboolean
check_options (const ova_ctx *ctx, const import_opts *o, int argc, char **argv,
               GError **error)
{
  if (argc > 1) {
    ova_usage_error (ctx, error, "unexpected argument '%s' (the stream comes "
                     "on standard input)", argv[1]);
    return FALSE;
  }
  if ((o->to_volume == NULL) == (o->to == NULL)) {
    ova_usage_error (ctx, error, "give either --to-volume SD/IMG/VOL or --to PATH");
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
  if (isatty (STDIN_FILENO)) {
    ova_usage_error (ctx, error, "standard input is a terminal; pipe a restore "
                     "stream in (ovagent restore ... --output -)");
    return FALSE;
  }
  return TRUE;
}

/* "SD/IMG/VOL", three UUIDs, lower-cased into parts. */
static gboolean
parse_volume_spec (const ova_ctx *ctx, const char *spec, char ***parts, GError **error)
{
  g_auto(GStrv) p = g_strsplit (spec, "/", 4);
  gboolean ok = g_strv_length (p) == 3;

  for (guint i = 0; ok && p[i] != NULL; i++)
    ok = ova_uuid_is_valid (p[i]);
  if (!ok) {
    g_autofree char *shown = ova_quote_untrusted (spec, 200);

    ova_usage_error (ctx, error, "--to-volume needs SD_UUID/IMG_UUID/VOL_UUID "
                     "(8-4-4-4-12 hex digits each), not %s", shown);
    return FALSE;
  }
  for (guint i = 0; p[i] != NULL; i++) {
    char *lower = g_ascii_strdown (p[i], -1);

    g_free (p[i]);
    p[i] = lower;
  }
  *parts = g_steal_pointer (&p);
  return TRUE;
}

static gboolean
bad_meta (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
bad_meta (GError **error, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
               "the stream's metadata is not a restore stream's: %s", msg);
  return FALSE;
}

static gboolean
parse_meta (const char *json, restore_meta *m, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) err = NULL;
  JsonObject *root, *vol;
  JsonArray *vols;
  JsonNode *node;
  const char *s;
  guint64 version = 0, size = 0;

  if (!json_parser_load_from_data (parser, json, -1, &err))
    return bad_meta (error, "invalid JSON: %s", err->message);
  node = json_parser_get_root (parser);
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    return bad_meta (error, "not a JSON object");
  root = json_node_get_object (node);

  s = ova_json_get_string (root, "format");
  if (g_strcmp0 (s, "ovagent-stream") != 0)
    return bad_meta (error, "\"format\" is not \"ovagent-stream\"");
  if (!ova_json_get_uint (root, "version", &version) || version != STRM_VERSION) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "the stream's metadata version is not %d", STRM_VERSION);
    return FALSE;
  }
  s = ova_json_get_string (root, "mode");
  if (g_strcmp0 (s, "chain") == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "this is a chain stream (from export-chain); use ovagent receive "
                 "to store it in a repository, and import what restore sends");
    return FALSE;
  }
  if (g_strcmp0 (s, "restore") != 0) {
    g_autofree char *shown = ova_quote_untrusted (s ? s : "", 40);

    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "unknown stream mode %s (import takes restore streams)", shown);
    return FALSE;
  }

  s = ova_json_get_string (root, "disk");
  if (s == NULL || !ova_uuid_is_valid (s))
    return bad_meta (error, "\"disk\" is not a UUID");
  m->disk = g_ascii_strdown (s, -1);
  s = ova_json_get_string (root, "backup_id");
  m->backup_id = s != NULL ? ova_quote_untrusted (s, 64) : NULL;
  if (!ova_json_get_uint (root, "capacity", &m->capacity) || m->capacity == 0)
    return bad_meta (error, "\"capacity\" is not a positive number");

  vols = ova_json_get_array (root, "volumes");
  if (vols == NULL)
    return bad_meta (error, "\"volumes\" is not an array");
  if (json_array_get_length (vols) != 1)
    return bad_meta (error, "\"volumes\" holds %u entries, not 1",
                     json_array_get_length (vols));
  node = json_array_get_element (vols, 0);
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return bad_meta (error, "\"volumes\"[0] is not an object");
  vol = json_node_get_object (node);
  s = ova_json_get_string (vol, "uuid");
  if (s == NULL || g_ascii_strcasecmp (s, m->disk) != 0)
    return bad_meta (error, "\"volumes\"[0].uuid is not the disk %s", m->disk);
  if (g_strcmp0 (ova_json_get_string (vol, "format"), "raw") != 0)
    return bad_meta (error, "\"volumes\"[0].format is not \"raw\"");
  if (!ova_json_get_uint (vol, "size", &size) || size != m->capacity)
    return bad_meta (error, "\"volumes\"[0].size is not the capacity %" G_GUINT64_FORMAT,
                     m->capacity);
  return TRUE;
}

/* The running VMs using path (by its real path and as written): "name
 * (vda)" joined, or NULL when none. */
static char *
describe_users (GHashTable *users, const char *path)
{
  g_autofree char *real = realpath (path, NULL);
  g_autoptr(GString) s = g_string_new (NULL);
  const char *keys[] = { real, path };

  for (size_t k = 0; k < G_N_ELEMENTS (keys); k++) {
    GPtrArray *list;

    if (keys[k] == NULL || (k == 1 && g_strcmp0 (real, path) == 0))
      continue;
    list = g_hash_table_lookup (users, keys[k]);
    for (guint i = 0; list != NULL && i < list->len; i++) {
      const virt_disk_user *u = g_ptr_array_index (list, i);

      g_string_append_printf (s, "%s%s (%s, %s)", s->len ? ", " : "", u->vm_name,
                              u->target, u->writable_top ? "writes to it" : "reads it");
    }
  }
  return s->len ? g_string_free (g_steal_pointer (&s), FALSE) : NULL;
}

static gboolean
check_not_in_use (const ova_ctx *ctx, const char *label, const char *path,
                  GError **error)
{
  g_autoptr(GHashTable) users = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *who = NULL;

  users = virt_volume_users (ctx->cfg->env.libvirt_uri, &err);
  if (users == NULL) {
    /* qemu's image locks still keep qemu-nbd off a volume a VM has open. */
    ova_warn ("cannot tell whether a VM uses volume %s: %s", label, err->message);
    return TRUE;
  }
  who = describe_users (users, path);
  if (who != NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                 "volume %s is in use by a running VM: %s; import writes only "
                 "into a volume no VM uses", label, who);
    return FALSE;
  }
  return TRUE;
}

static gboolean
prepare_volume (const ova_ctx *ctx, const char *spec, const char *want_format,
                const restore_meta *m, import_target *t, GError **error)
{
  g_auto(GStrv) parts = NULL;
  g_autofree char *disk = NULL;
  stor_domain *dom = NULL;
  stor_image *img = NULL;
  stor_volume *vol = NULL;

  if (!parse_volume_spec (ctx, spec, &parts, error))
    return FALSE;
  t->is_volume = TRUE;
  t->label = g_strjoinv ("/", parts);
  disk = g_strdup_printf ("%s/%s", parts[0], parts[1]);

  t->domains = stor_scan_domains (&ctx->cfg->env, parts[0], error);
  if (t->domains == NULL)
    return FALSE;
  if (!stor_find_disk (t->domains, disk, &dom, &img, error))
    return FALSE;
  for (guint i = 0; i < img->volumes->len; i++) {
    stor_volume *v = g_ptr_array_index (img->volumes, i);

    if (strcmp (v->uuid, parts[2]) == 0 && g_strcmp0 (v->image, img->uuid) == 0)
      vol = v;
  }
  if (vol == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "volume %s not found in image %s of storage domain %s",
                 parts[2], parts[1], parts[0]);
    return FALSE;
  }
  if (vol->md == NULL || vol->md->cleared || vol->path == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "volume %s has no usable metadata record; its format is unknown",
                 t->label);
    return FALSE;
  }
  if (vol->md->voltype != STOR_VOLTYPE_LEAF) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "volume %s is %s: other volumes are based on it; import into "
                 "an empty leaf volume", t->label, stor_voltype_name (vol->md->voltype));
    return FALSE;
  }
  /* A restore target is a new disk; writing a whole disk over the top of
   * a snapshot chain is a mistake, not a restore. */
  if (vol->parent != NULL && !ova_uuid_is_blank (vol->parent)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "volume %s is a snapshot of volume %s; import writes a whole "
                 "disk into the only volume of an empty disk", t->label, vol->parent);
    return FALSE;
  }
  switch (vol->md->format) {
  case STOR_FORMAT_COW:
    t->format = "qcow2";
    break;
  case STOR_FORMAT_RAW:
    t->format = "raw";
    break;
  default:
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "volume %s has an unknown FORMAT in its metadata", t->label);
    return FALSE;
  }
  if (want_format != NULL && strcmp (want_format, t->format) != 0) {
    ova_usage_error (ctx, error, "volume %s is %s (FORMAT=%s in its metadata), "
                     "not %s; leave out --format or make it agree",
                     t->label, t->format, vol->md->format == STOR_FORMAT_COW ? "COW" : "RAW",
                     want_format);
    return FALSE;
  }
  if (vol->md->capacity < m->capacity) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "target volume %s is smaller than the disk: %" G_GUINT64_FORMAT
                 " < %" G_GUINT64_FORMAT " bytes", t->label, vol->md->capacity,
                 m->capacity);
    return FALSE;
  }
  if (!check_not_in_use (ctx, t->label, vol->path, error))
    return FALSE;
  /* A VM on another host is not in the local libvirt: the lease says
   * whether anyone else uses the volume, and keeps them off it. */
  t->lease = stor_lease_acquire (&ctx->cfg->env, dom, vol, error);
  if (t->lease == NULL)
    return FALSE;

  if (dom->kind == STOR_KIND_BLOCK) {
    /* Leftovers of a run that died before deactivating its LVs. */
    stor_lv_cleanup_stale (&ctx->cfg->env);
    t->guard = stor_lv_guard_new (&ctx->cfg->env);
    if (!stor_lv_guard_activate (t->guard, dom->uuid, vol->uuid, error))
      return FALSE;
  }
  t->image = g_strdup (vol->path);
  return TRUE;
}

/* --to PATH: PATH.part created new (never through a link, 0600) at the
 * stream's capacity, and written through its descriptor; renamed at the end. */
static gboolean
prepare_file (const char *to, const char *want_format, const restore_meta *m,
              import_target *t, GError **error)
{
  struct stat st;

  t->path = g_canonicalize_filename (to, NULL);
  t->label = g_strdup (t->path);
  t->image = g_strconcat (t->path, ".part", NULL);
  t->format = want_format != NULL ? want_format : "raw";
  if (lstat (t->path, &st) == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "%s already exists; import never overwrites a file, remove "
                 "it or choose another --to", t->path);
    return FALSE;
  }
  t->fd = ova_create_new_file (t->image, error);
  if (t->fd < 0)
    return FALSE;
  /* From here on the .part is ours to remove. */
  t->fresh = TRUE;
  if (!stor_qemu_img_create (t->image, t->fd, t->format, NULL, m->capacity, NULL,
                             NULL, error))
    return FALSE;
  return TRUE;
}

static void
print_result (const ova_ctx *ctx, const import_target *t, const restore_dest *tot,
              double seconds)
{
  if (ctx->json) {
    g_autoptr(JsonBuilder) b = json_builder_new ();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object (b);
    ova_json_add_string (b, "result", "ok");
    ova_json_add_string (b, "target", t->label);
    ova_json_add_string (b, "format", t->format);
    ova_json_add_int (b, "data_bytes", (gint64) tot->data_bytes);
    ova_json_add_int (b, "zero_bytes", (gint64) tot->zero_bytes);
    ova_json_add_double (b, "seconds", seconds);
    json_builder_end_object (b);
    root = json_builder_get_root (b);
    ova_print_json (root);
  }
  else {
    g_autofree char *data = ova_format_size (tot->data_bytes);
    g_autofree char *zero = ova_format_size (tot->zero_bytes);

    printf ("imported into %s (%s): %s of data, %s of zeros in %.1f s\n",
            t->label, t->format, data, zero, seconds);
  }
}

static gboolean
run_import (const ova_ctx *ctx, const import_opts *o, import_target *t,
            restore_dest *tot, GError **error)
{
  g_auto(restore_meta) m = { 0 };
  strm_input in = { .fd = STDIN_FILENO, .io_timeout = ctx->cfg->io_timeout,
                    .cancel = &ova_cancelled, .say = stdin_say,
                    .opaque = &ctx->cfg->io_timeout };
  g_autoptr(strm_decoder) dec = strm_input_decoder (&in);
  const char *meta;

  /* The stream is checked for what it is before the target is touched. */
  meta = strm_decoder_meta (dec, &in, error);
  if (meta == NULL || !parse_meta (meta, &m, error))
    return FALSE;
  ova_debug ("restore stream of disk %s (backup %s), %" G_GUINT64_FORMAT " bytes",
             m.disk, m.backup_id ? m.backup_id : "?", m.capacity);

  if (o->to_volume != NULL) {
    if (!prepare_volume (ctx, o->to_volume, o->format, &m, t, error))
      return FALSE;
  }
  else if (!prepare_file (o->to, o->format, &m, t, error))
    return FALSE;

  {
    g_autoptr(GPtrArray) layers = stor_layers_new ();
    g_autofree char *image = t->fd >= 0 ? stor_fd_path (t->fd) : g_strdup (t->image);

    stor_layers_add (layers, image, t->format);
    t->srv = nbdr_server_start (layers, NBDR_SERVER_WRITABLE, NULL, t->fd,
                                ctx->cfg->env.run_dir, error);
    if (t->srv == NULL)
      return FALSE;
  }
  t->dest = nbdr_dest_open (nbdr_server_uri (t->srv), error);
  if (t->dest == NULL)
    return FALSE;
  if (nbdr_dest_size (t->dest) < m.capacity) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "target %s is smaller than the disk: %" G_GUINT64_FORMAT
                 " < %" G_GUINT64_FORMAT " bytes", t->label,
                 nbdr_dest_size (t->dest), m.capacity);
    return FALSE;
  }

  tot->disk = m.disk;
  tot->capacity = m.capacity;
  tot->nbd = t->dest;
  tot->fresh = t->fresh;
  /* The commit flushes the export. */
  if (!strm_decoder_drive (dec, &in, &restore_dest_ops, tot, error))
    return FALSE;
  /* qemu-nbd has flushed; it must be gone before the file gets its name,
   * and before the volume's lease goes. */
  g_clear_pointer (&t->dest, nbdr_dest_free);
  g_clear_pointer (&t->srv, nbdr_server_stop);
  if (t->lease != NULL && !stor_lease_release (t->lease, error))
    return FALSE;
  if (t->path != NULL && !ova_commit_file (t->image, t->path, error))
    return FALSE;
  return TRUE;
}

const struct ova_command ova_cmd_import = {
  .name = "import",
  .handler = cmd_import,
  .args = NULL,
  .usage = "(--to-volume SD/IMG/VOL | --to PATH) [--format raw|qcow2] [--io-timeout SECONDS] [--json] < STREAM",
  .summary = "Write a restore stream into an existing volume or a local file.",
  .details = "The stream comes from 'ovagent restore --output -' on "
             "standard input; a chain stream is exit 2 (it goes to "
             "receive). --to-volume writes through a writable qemu-nbd into "
             "an existing volume of this host: the only volume of an empty "
             "disk created through the engine (a LEAF without a parent, at "
             "least as large as the disk), used by no running VM (else exit "
             "4), in the format its metadata gives (--format, if given, must "
             "agree). A block volume is activated for the run and "
             "deactivated again. --to PATH writes a new file instead (raw by "
             "default, or qcow2 with --format), never overwriting one. "
             "--json prints target, format, data_bytes, zero_bytes and "
             "seconds.",
  .examples =
    "  ssh backup@target ovagent restore --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --output - | \\\n"
    "      ovagent import --to-volume 5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60/9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d/1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b --json\n"
    "  ovagent import --to /var/tmp/disk.qcow2 --format qcow2 < restore.ovs\n",
};

gboolean
cmd_import (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_auto(import_opts) o = { 0 };
  const GOptionEntry entries[] = {
    { "to-volume", 0, 0, G_OPTION_ARG_STRING, &o.to_volume,
      "Write into this existing volume (not used by any running VM)", "SD/IMG/VOL" },
    { "to", 0, 0, G_OPTION_ARG_FILENAME, &o.to,
      "Write into this new file (never overwritten)", "PATH" },
    { "format", 0, 0, G_OPTION_ARG_STRING, &o.format,
      "raw or qcow2: the new file's format (default raw), or the volume's, "
      "which must agree with its metadata", "FMT" },
    OVA_IO_TIMEOUT_OPTION_ENTRY,
    { NULL },
  };
  g_auto(import_target) t = { .fd = -1 };
  restore_dest tot = { 0 };
  gint64 start = g_get_monotonic_time ();
  g_autoptr(GError) err = NULL;

  if (!ova_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  if (!check_options (ctx, &o, argc, argv, error))
    return FALSE;
  ova_cancel_install ();

  if (!run_import (ctx, &o, &t, &tot, &err)) {
    /* Stop qemu-nbd (and deactivate the LV) before saying what is left. */
    g_clear_pointer (&t.dest, nbdr_dest_free);
    g_clear_pointer (&t.srv, nbdr_server_stop);
    if (t.guard != NULL)
      stor_lv_guard_release (t.guard);
    if (t.path != NULL && t.fresh && g_unlink (t.image) < 0 && errno != ENOENT)
      ova_warn ("cannot remove %s: %s", t.image, g_strerror (errno));
    if (t.is_volume && tot.wrote)
      g_prefix_error (&err, "import into volume %s stopped; the volume holds "
                      "partial data and must not be used as it is: ", t.label);
    g_propagate_error (error, g_steal_pointer (&err));
    return FALSE;
  }
  if (t.guard != NULL)
    stor_lv_guard_release (t.guard);
  print_result (ctx, &t, &tot, (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC);
  return TRUE;
}
