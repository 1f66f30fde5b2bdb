/* ovagent: the `backups` command: the catalogue of a repository (or of one
 * disk): every backup its manifests list and the storage its files take. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "agent/command.h"
#include "agent/output.h"
#include "repo/repo.h"

/* Columns of a backup row. */
#define ROW_FORMAT "  %-23s  %-20s  %-12s  %-5s  %9s  %9s  %s%s\n"

/* One disk as listed: its manifest and the bytes each backup's own files
 * take on the file system. */
typedef struct cat_disk {
  repo_manifest *m;
  guint64 *stored;          /* per backup, in manifest order */
  guint64 total;
} cat_disk;

static void
cat_disk_free (cat_disk *d)
{
  if (d == NULL)
    return;
  repo_manifest_free (d->m);
  g_free (d->stored);
  g_free (d);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (cat_disk, cat_disk_free)

typedef struct catalogue {
  const repo *r;
  GPtrArray *disks;         /* cat_disk*, sorted by disk */
  GHashTable *seen;         /* "DEV:INO" of the files counted so far */
  guint64 total;
} catalogue;

/* The allocated bytes of one file of a backup, counted once per inode: an
 * interrupted prune leaves files hard-linked into two backups, and the
 * older one listed counts them. A file that is gone (the same prune
 * renamed it into the backup that took its data) takes nothing. */
static gboolean
file_stored (catalogue *c, const char *path, guint64 *bytes, GError **error)
{
  struct stat st;
  char *key;

  *bytes = 0;
  if (lstat (path, &st) < 0) {
    int e = errno;

    if (e == ENOENT) {
      ova_debug ("backups: %s is missing: counted as 0 bytes", path);
      return TRUE;
    }
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot look at %s: %s", path, g_strerror (e));
    return FALSE;
  }
  if (!S_ISREG (st.st_mode))
    return TRUE;
  key = g_strdup_printf ("%ju:%ju", (uintmax_t) st.st_dev, (uintmax_t) st.st_ino);
  if (!g_hash_table_add (c->seen, key))
    return TRUE;
  *bytes = (guint64) st.st_blocks * 512;
  return TRUE;
}

/* The disk's manifest and its backups' storage; *out NULL when the disk
 * directory holds no manifest (a first receive that never committed). */
static gboolean
load_disk (catalogue *c, const char *disk, cat_disk **out, GError **error)
{
  g_autofree char *disk_dir = repo_disk_dir (c->r, disk);
  g_autoptr(cat_disk) d = g_new0 (cat_disk, 1);
  g_autoptr(GError) err = NULL;

  *out = NULL;
  d->m = repo_manifest_load (disk_dir, disk, FALSE, &err);
  if (d->m == NULL) {
    if (g_error_matches (err, OVA_ERROR, OVA_ERROR_NOT_FOUND))
      return TRUE;
    g_propagate_error (error, g_steal_pointer (&err));
    return FALSE;
  }
  d->stored = g_new0 (guint64, MAX (d->m->backups->len, 1));
  for (guint i = 0; i < d->m->backups->len; i++) {
    const repo_backup *b = g_ptr_array_index (d->m->backups, i);

    for (guint j = 0; j < b->volumes->len; j++) {
      const repo_volume *v = g_ptr_array_index (b->volumes, j);
      g_autofree char *path = g_build_filename (disk_dir, v->file, NULL);
      guint64 bytes;

      if (!file_stored (c, path, &bytes, error))
        return FALSE;
      d->stored[i] += bytes;
    }
    d->total += d->stored[i];
  }
  c->total += d->total;
  *out = g_steal_pointer (&d);
  return TRUE;
}

/* Every disk of the repository, or only disk (which must have backups). */
static gboolean
load_catalogue (catalogue *c, const char *disk, GError **error)
{
  g_autoptr(GPtrArray) disks = NULL;

  if (disk != NULL) {
    disks = g_ptr_array_new_with_free_func (g_free);
    g_ptr_array_add (disks, g_strdup (disk));
  }
  else {
    disks = repo_list_disks (c->r, error);
    if (disks == NULL)
      return FALSE;
  }
  for (guint i = 0; i < disks->len; i++) {
    cat_disk *d;

    if (!load_disk (c, g_ptr_array_index (disks, i), &d, error))
      return FALSE;
    if (d != NULL)
      g_ptr_array_add (c->disks, d);
    else if (disk != NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "repository %s has no backup of disk %s; 'ovagent backups "
                   "--repo %s' lists the disks it holds", c->r->dir, disk, c->r->dir);
      return FALSE;
    }
  }
  return TRUE;
}

/* ---- JSON ---- */

static void
add_backup (JsonBuilder *jb, const repo_backup *b, guint64 stored)
{
  const repo_volume *top = g_ptr_array_index (b->volumes, b->volumes->len - 1);

  json_builder_begin_object (jb);
  ova_json_add_string (jb, "id", b->id);
  ova_json_add_string (jb, "time", b->time);
  ova_json_add_string (jb, "kind", repo_kind_name (b->kind));
  ova_json_add_string (jb, "type", repo_backup_is_cbt (b) ? "cbt" : "chain");
  ova_json_add_string (jb, "parent", b->parent);
  ova_json_add_string (jb, "checkpoint", b->checkpoint);
  ova_json_add_string (jb, "from_checkpoint", b->from_checkpoint);
  ova_json_add_string (jb, "vm", b->vm);
  ova_json_add_string (jb, "host", b->host);
  ova_json_add_string (jb, "domain", b->domain);
  json_builder_set_member_name (jb, "volumes");
  json_builder_begin_array (jb);
  for (guint i = 0; i < b->volumes->len; i++)
    json_builder_add_string_value (jb, ((const repo_volume *)
                                        g_ptr_array_index (b->volumes, i))->uuid);
  json_builder_end_array (jb);
  ova_json_add_uint (jb, "stored_bytes", stored);
  ova_json_add_uint (jb, "virtual_size", top->virtual_size);
  ova_json_add_bool (jb, "removing", b->removing);
  json_builder_end_object (jb);
}

static void
print_json (const catalogue *c)
{
  g_autoptr(JsonBuilder) jb = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;

  json_builder_begin_object (jb);
  ova_json_add_string (jb, "repo", c->r->dir);
  ova_json_add_uint (jb, "stored_bytes", c->total);
  json_builder_set_member_name (jb, "disks");
  json_builder_begin_array (jb);
  for (guint i = 0; i < c->disks->len; i++) {
    const cat_disk *d = g_ptr_array_index (c->disks, i);

    json_builder_begin_object (jb);
    ova_json_add_string (jb, "disk", d->m->disk);
    ova_json_add_uint (jb, "stored_bytes", d->total);
    json_builder_set_member_name (jb, "backups");
    json_builder_begin_array (jb);
    for (guint j = 0; j < d->m->backups->len; j++)
      add_backup (jb, g_ptr_array_index (d->m->backups, j), d->stored[j]);
    json_builder_end_array (jb);
    json_builder_end_object (jb);
  }
  json_builder_end_array (jb);
  json_builder_end_object (jb);
  root = json_builder_get_root (jb);
  ova_print_json (root);
}

/* ---- the table ---- */

static const char *
plural (guint n)
{
  return n == 1 ? "" : "s";
}

static void
print_disk (const cat_disk *d)
{
  g_autofree char *total = ova_format_size (d->total);
  guint n = d->m->backups->len;

  printf ("DISK %s  %u backup%s, %s stored\n", d->m->disk, n, plural (n), total);
  if (n == 0)
    return;
  printf (ROW_FORMAT, "BACKUP", "TIME", "KIND", "TYPE", "VIRTUAL", "STORED",
          "PARENT", "");
  for (guint i = 0; i < n; i++) {
    const repo_backup *b = g_ptr_array_index (d->m->backups, i);
    const repo_volume *top = g_ptr_array_index (b->volumes, b->volumes->len - 1);
    g_autofree char *virt = ova_format_size (top->virtual_size);
    g_autofree char *stored = ova_format_size (d->stored[i]);

    printf (ROW_FORMAT, b->id, b->time, repo_kind_name (b->kind),
            repo_backup_is_cbt (b) ? "cbt" : "chain", virt, stored,
            b->parent ? b->parent : "-", b->removing ? "  (being removed)" : "");
  }
}

static void
print_table (const catalogue *c)
{
  g_autofree char *total = ova_format_size (c->total);
  guint backups = 0;

  for (guint i = 0; i < c->disks->len; i++)
    backups += ((const cat_disk *) g_ptr_array_index (c->disks, i))->m->backups->len;
  printf ("Repository %s: %u disk%s, %u backup%s, %s stored\n", c->r->dir,
          c->disks->len, plural (c->disks->len), backups, plural (backups), total);
  for (guint i = 0; i < c->disks->len; i++) {
    putchar ('\n');
    print_disk (g_ptr_array_index (c->disks, i));
  }
}

const struct ova_command ova_cmd_backups = {
  .name = "backups",
  .handler = cmd_backups,
  .args = "[DISK]",
  .usage = "--repo DIR [DISK] [--json]",
  .summary = "List the backups of a repository (or of one disk), oldest "
             "first, with the storage each one takes.",
  .details = "For every disk (or DISK, an image UUID) the backups its "
             "manifest lists: id, commit time, kind (full, incremental, "
             "differential), type (chain export or cbt), the backup it is "
             "built on, its guest-visible size and the bytes its own files "
             "take on the file system (allocated blocks; a file linked into "
             "two backups counts once), with per-disk and repository totals. "
             "A backup an unfinished prune or forget is removing is shown "
             "as being removed. Holds the repository lock shared, like "
             "verify: a prune or forget running is exit 4. A missing "
             "repository or an unknown disk is exit 3; a manifest that "
             "fails its checks is exit 6, naming it. --json prints repo, "
             "stored_bytes and disks (disk, stored_bytes, backups: id, time, "
             "kind, type, parent, checkpoint, from_checkpoint, vm, host, "
             "domain, volumes, stored_bytes, virtual_size, removing).",
  .examples =
    "  ovagent backups --repo /backup\n"
    "  ovagent backups --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --json | jq -r '.disks[].backups[].id'\n",
};

gboolean
cmd_backups (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autofree char *repo_dir = NULL;
  g_autofree char *disk = NULL;
  g_autoptr(repo) r = NULL;
  g_autoptr(GPtrArray) disks = g_ptr_array_new_with_free_func ((GDestroyNotify) cat_disk_free);
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  catalogue c = { .disks = disks, .seen = seen };
  const GOptionEntry entries[] = {
    { "repo", 0, 0, G_OPTION_ARG_FILENAME, &repo_dir,
      "The repository", "DIR" },
    { NULL },
  };

  if (!ova_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  if (!ova_repo_disk_args (ctx, repo_dir, argc, argv, &disk, error))
    return FALSE;

  r = repo_open (repo_dir, FALSE, REPO_LOCK_SHARED, error);
  if (r == NULL)
    return FALSE;
  c.r = r;
  if (!load_catalogue (&c, disk, error))
    return FALSE;
  if (ctx->json)
    print_json (&c);
  else
    print_table (&c);
  return TRUE;
}
