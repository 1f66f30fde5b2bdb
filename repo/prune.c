/* ovagent: removing backups of a disk (docs/repository.md §7.3-7.4): merging
 * removed backups into the kept ones built on them, finishing a removal. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "repo/prune.h"
#include "repo/prune-priv.h"
#include "repo/receive-priv.h"
#include "repo/repo.h"
#include "storage/qemu-img.h"

/* The new top of a kept backup whose data moved into a raw full. */
#define MERGE_PREFIX ".merge-"

/* ---- the disk's removal as the manifest marks it ---- */

/* A kept backup (index c in the manifest) with removed ones under it:
 * run holds their indices, oldest first; the data of run[1..] and of c
 * moves into the top of run[0], which then takes c's top's place. */
typedef struct group {
  guint c;
  GArray *run;
  const prune_merged *done;      /* its merged file is in place */
} group;

static void
group_free (group *g)
{
  g_array_unref (g->run);
  g_free (g);
}

typedef struct removal {
  repo *r;
  char *disk;
  char *disk_dir;
  repo_manifest *m;
  GPtrArray *groups;       /* group* */
  gboolean *dead;          /* removing, and no kept backup reads through it */
  prune_journal_state js;
  prune_journal j;
  volatile sig_atomic_t *cancel;
  repo_prune_result *res;
} removal;

static void
removal_clear (removal *rm)
{
  g_free (rm->disk);
  g_free (rm->disk_dir);
  g_clear_pointer (&rm->m, repo_manifest_free);
  g_clear_pointer (&rm->groups, g_ptr_array_unref);
  g_free (rm->dead);
  prune_journal_state_clear (&rm->js);
  prune_journal_close (&rm->j);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (removal, removal_clear)

static const repo_backup *
bk (const removal *rm, guint i)
{
  return g_ptr_array_index (rm->m->backups, i);
}

static const repo_volume *
top_of (const repo_backup *b)
{
  return g_ptr_array_index (b->volumes, b->volumes->len - 1);
}

static int
index_of (const repo_manifest *m, const char *id)
{
  for (guint i = 0; id != NULL && i < m->backups->len; i++)
    if (strcmp (((const repo_backup *) g_ptr_array_index (m->backups, i))->id, id) == 0)
      return (int) i;
  return -1;
}

static char *
path_in (const removal *rm, const char *file)
{
  return g_build_filename (rm->disk_dir, file, NULL);
}

static gboolean
inode_of (const char *path, guint64 *ino)
{
  struct stat st;

  if (lstat (path, &st) < 0 || !S_ISREG (st.st_mode))
    return FALSE;
  *ino = st.st_ino;
  return TRUE;
}

/* A group's data can move as planned: one kind of backup, a base at most
 * as large as the kept backup, no file name that two of its files would
 * share in the kept backup's directory. The manifest may have been
 * edited since the plan. */
static gboolean
group_check (const removal *rm, const group *g, GError **error)
{
  const repo_backup *c = bk (rm, g->c);
  const repo_backup *r0 = bk (rm, g_array_index (g->run, guint, 0));

  if (top_of (r0)->virtual_size > top_of (c)->virtual_size) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "backup %s of disk %s is marked \"removing\" but is larger than %s "
                 "built on it; the manifest was edited", r0->id, rm->disk, c->id);
    return FALSE;
  }
  for (guint k = 0; k < g->run->len; k++) {
    if (repo_backup_is_cbt (bk (rm, g_array_index (g->run, guint, k))) !=
        repo_backup_is_cbt (c)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "backup %s of disk %s mixes chain exports and changed-block "
                   "backups in its chain", c->id, rm->disk);
      return FALSE;
    }
  }
  for (guint i = 0; i + 1 < r0->volumes->len; i++) {
    const repo_volume *v = g_ptr_array_index (r0->volumes, i);

    for (guint k = 0; k < c->volumes->len; k++) {
      if (strcmp (((const repo_volume *) g_ptr_array_index (c->volumes, k))->uuid,
                  v->uuid) == 0) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                     "backups %s and %s of disk %s both hold volume %s: their data "
                     "cannot be merged", r0->id, c->id, rm->disk, v->uuid);
        return FALSE;
      }
    }
  }
  return TRUE;
}

/* From the manifest's "removing" marks: each kept backup with removed
 * ones under it, and the removed ones nothing kept reads through. */
static gboolean
removal_derive (removal *rm, GError **error)
{
  guint n = rm->m->backups->len;
  g_autofree gboolean *used = g_new0 (gboolean, n);

  rm->groups = g_ptr_array_new_with_free_func ((GDestroyNotify) group_free);
  rm->dead = g_new0 (gboolean, n);
  for (guint c = 0; c < n; c++) {
    group *g;
    int p = index_of (rm->m, bk (rm, c)->parent);

    if (bk (rm, c)->removing || p < 0 || !bk (rm, (guint) p)->removing)
      continue;
    g = g_new0 (group, 1);
    g->c = c;
    g->run = g_array_new (FALSE, FALSE, sizeof (guint));
    g_ptr_array_add (rm->groups, g);
    for (; p >= 0 && bk (rm, (guint) p)->removing; p = index_of (rm->m, bk (rm, (guint) p)->parent)) {
      guint u = (guint) p;

      if (used[u]) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                     "backup %s of disk %s is marked \"removing\" but two kept "
                     "backups are built on it; the manifest was edited",
                     bk (rm, u)->id, rm->disk);
        return FALSE;
      }
      used[u] = TRUE;
      g_array_prepend_val (g->run, u);
    }
    if (!group_check (rm, g, error))
      return FALSE;
    g->done = prune_journal_merged (&rm->js, bk (rm, c)->id);
    if (g->done != NULL) {
      g_autofree char *top = path_in (rm, top_of (bk (rm, c))->file);
      guint64 ino;

      if (!inode_of (top, &ino) || ino != g->done->ino)
        g->done = NULL;
    }
  }
  for (guint i = 0; i < n; i++)
    rm->dead[i] = bk (rm, i)->removing && !used[i];
  return TRUE;
}

static gboolean
removal_load (removal *rm, repo *r, const char *disk, volatile sig_atomic_t *cancel,
              repo_prune_result *res, GError **error)
{
  g_autofree char *jpath = NULL;

  rm->r = r;
  rm->disk = g_strdup (disk);
  rm->disk_dir = repo_disk_dir (r, disk);
  rm->cancel = cancel;
  rm->res = res;
  rm->j.fd = -1;
  rm->m = repo_manifest_load (rm->disk_dir, disk, FALSE, error);
  if (rm->m == NULL)
    return FALSE;
  jpath = g_build_filename (rm->disk_dir, REPO_PRUNE_JOURNAL, NULL);
  return prune_journal_read (jpath, &rm->js, error) && removal_derive (rm, error);
}

static gboolean
stopped (const removal *rm, GError **error)
{
  if (rm->cancel == NULL || !*rm->cancel)
    return FALSE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED,
               "prune of disk %s interrupted by a signal; the next prune finishes it",
               rm->disk);
  return TRUE;
}

/* ---- moving the data of removed backups into a kept one ---- */

static guint64
allocated (const char *path)
{
  struct stat st;

  return lstat (path, &st) == 0 ? (guint64) st.st_blocks * 512 : 0;
}

static gboolean
sync_file (const char *path, GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  int saved;

  if (fd >= 0 && fsync (fd) == 0) {
    close (fd);
    return TRUE;
  }
  saved = errno;
  if (fd >= 0)
    close (fd);
  g_set_error (error, OVA_ERROR, saved == ENOSPC ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
               "cannot sync %s: %s", path, g_strerror (saved));
  return FALSE;
}

/* dst as another name of src (a name left by an earlier attempt replaced). */
static gboolean
link_into (const char *src, const char *dst, GError **error)
{
  struct stat a, b;

  if (lstat (src, &a) < 0 || !S_ISREG (a.st_mode)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s is missing or not a regular file", src);
    return FALSE;
  }
  if (lstat (dst, &b) == 0) {
    if (b.st_ino == a.st_ino && b.st_dev == a.st_dev)
      return TRUE;
    if (unlink (dst) < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot remove %s: %s", dst, g_strerror (errno));
      return FALSE;
    }
  }
  if (link (src, dst) < 0) {
    int saved = errno;

    g_set_error (error, OVA_ERROR, saved == ENOSPC ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
                 "cannot link %s to %s: %s", src, dst, g_strerror (saved));
    return FALSE;
  }
  return TRUE;
}

/* The file that will take c's top's place: r0's top itself (qcow2), or a
 * new empty qcow2 over r0's raw file, linked into c's directory. */
static char *
merged_file (removal *rm, const repo_backup *c, const repo_backup *r0, GError **error)
{
  const repo_volume *r0top = top_of (r0);
  const repo_volume *ctop = top_of (c);
  g_autofree char *base = NULL;
  g_autofree char *overlay = NULL;
  g_autofree char *name = NULL;

  if (strcmp (r0top->format, "raw") != 0)
    return path_in (rm, r0top->file);
  base = g_path_get_basename (r0top->file);
  name = g_strconcat (MERGE_PREFIX, ctop->uuid, ".qcow2", NULL);
  overlay = g_build_filename (rm->disk_dir, c->id, name, NULL);
  if (unlink (overlay) < 0 && errno != ENOENT) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot remove %s: %s",
                 overlay, g_strerror (errno));
    return NULL;
  }
  if (!prune_journal_step (&rm->j, error, "overlay %s %s", c->id, name) ||
      !stor_qemu_img_create (overlay, -1, "qcow2", "compat=1.1", ctop->virtual_size,
                             base, "raw", error) ||
      !sync_file (overlay, error))
    return NULL;
  return g_steal_pointer (&overlay);
}

/* Check the merged file and note it in the journal (with what the
 * manifest will say of it) before it takes c's top's place: g->done. */
static gboolean
record_merged (removal *rm, group *g, const repo_backup *r0, const char *path,
               GError **error)
{
  const repo_backup *c = bk (rm, g->c);
  const repo_volume *r0top = top_of (r0);
  g_auto(repo_qcow2_info) info = { 0 };
  g_autoptr(GString) line = g_string_new (NULL);
  g_autofree char *want = NULL;
  prune_merged *mg = g_new0 (prune_merged, 1);

  g_ptr_array_add (rm->js.merged, mg);
  mg->id = g_strdup (c->id);
  want = strcmp (r0top->format, "raw") == 0 ? g_path_get_basename (r0top->file)
    : g_strdup (r0top->backing);
  if (!repo_qcow2_probe (path, &info, error))
    return FALSE;
  if (g_strcmp0 (info.backing, want) != 0 ||
      info.virtual_size != top_of (c)->virtual_size) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "the merged file %s has backing %s and %" G_GUINT64_FORMAT " bytes, "
                 "not %s and %" G_GUINT64_FORMAT, path,
                 info.backing ? info.backing : "none", info.virtual_size,
                 want ? want : "none", top_of (c)->virtual_size);
    return FALSE;
  }
  mg->virtual_size = info.virtual_size;
  if (strcmp (r0top->format, "raw") == 0) {
    g_autofree char *raw = path_in (rm, r0top->file);

    mg->raw_digest = repo_file_digest (raw, &mg->raw_size, rm->cancel, error);
    if (mg->raw_digest == NULL)
      return FALSE;
  }
  mg->digest = repo_file_digest (path, &mg->size, rm->cancel, error);
  if (mg->digest == NULL)
    return FALSE;
  if (!inode_of (path, &mg->ino)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "%s vanished", path);
    return FALSE;
  }
  g_string_printf (line, "merged %s %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %"
                   G_GUINT64_FORMAT " %s", c->id, mg->ino, mg->size, mg->virtual_size,
                   mg->digest);
  if (mg->raw_digest != NULL)
    g_string_append_printf (line, " %" G_GUINT64_FORMAT " %s", mg->raw_size,
                            mg->raw_digest);
  if (!prune_journal_step (&rm->j, error, "%s", line->str))
    return FALSE;
  g->done = mg;
  return TRUE;
}

/* qemu opens the chain under r0's top from the files' headers: each must
 * name exactly the backing file and format the manifest gives, and the
 * last none. */
static gboolean
check_headers_below (const removal *rm, const repo_backup *r0, GError **error)
{
  const repo_backup *b = r0;

  for (guint hops = 0; b != NULL && hops <= rm->m->backups->len; hops++) {
    const repo_backup *parent = b->parent ? repo_manifest_find (rm->m, b->parent) : NULL;

    for (guint i = b->volumes->len; i-- > 0;) {
      const repo_volume *v = g_ptr_array_index (b->volumes, i);
      const repo_volume *below = i > 0 ? g_ptr_array_index (b->volumes, i - 1)
        : parent ? top_of (parent) : NULL;
      g_autofree char *path = path_in (rm, v->file);
      g_auto(repo_qcow2_info) info = { 0 };

      if (strcmp (v->format, "qcow2") != 0)
        continue;
      if (!repo_qcow2_probe (path, &info, error))
        return FALSE;
      if (info.data_file || g_strcmp0 (info.backing, v->backing) != 0 ||
          (below != NULL && g_strcmp0 (info.backing_format, below->format) != 0)) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                     "%s does not name the backing file and format the manifest of "
                     "disk %s gives (%s, %s); run ovagent verify", path, rm->disk,
                     v->backing ? v->backing : "none", below ? below->format : "none");
        return FALSE;
      }
    }
    b = parent;
  }
  return TRUE;
}

/* qemu-img commit of everything above r0's top into it; r0's lower files
 * linked into c's directory; the merged file renamed over c's top. Each
 * kept backup reads the same bytes at every instant: c's files are only
 * read, and what is written into r0's top is what c reads there. */
static gboolean
merge_group (removal *rm, group *g, GError **error)
{
  const repo_backup *c = bk (rm, g->c);
  const repo_backup *r0 = bk (rm, g_array_index (g->run, guint, 0));
  g_autofree char *cdir = g_build_filename (rm->disk_dir, c->id, NULL);
  g_autofree char *r0dir = g_build_filename (rm->disk_dir, r0->id, NULL);
  g_autofree char *ctop = path_in (rm, top_of (c)->file);
  g_autofree char *merged = NULL;
  g_autofree char *scratch = g_build_filename (r0dir, MERGE_PREFIX "top.qcow2", NULL);
  g_autoptr(GPtrArray) layers = NULL;
  gboolean raw = strcmp (top_of (r0)->format, "raw") == 0;
  guint base = c->volumes->len;

  for (guint k = 1; k < g->run->len; k++)
    base += bk (rm, g_array_index (g->run, guint, k))->volumes->len;
  layers = repo_backup_layers (rm->disk_dir, rm->m, c, error);
  if (layers == NULL)
    return FALSE;
  for (guint i = 0; i < base; i++)
    rm->res->merged_bytes += allocated (((stor_layer *) g_ptr_array_index (layers, i))->path);

  /* qemu-img commit opens its top read-write, and a qcow2 with persistent
   * bitmaps opened so is rewritten on close: the top is an empty file of
   * its own, K's files only layers under it, opened read-only. */
  if (unlink (scratch) < 0 && errno != ENOENT) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot remove %s: %s",
                 scratch, g_strerror (errno));
    return FALSE;
  }
  if (!check_headers_below (rm, r0, error) ||
      !prune_journal_step (&rm->j, error, "commit %s into %s", c->id, r0->id) ||
      !stor_qemu_img_create (scratch, -1, "qcow2", "compat=1.1", top_of (c)->virtual_size,
                             NULL, NULL, error))
    return FALSE;
  g_ptr_array_insert (layers, 0, stor_layer_new (scratch, "qcow2"));
  if (!stor_qemu_img_commit (layers, base + 1, error) ||
      !sync_file (((stor_layer *) g_ptr_array_index (layers, base + 1))->path, error) ||
      stopped (rm, error))
    return FALSE;
  if (unlink (scratch) < 0)
    ova_warn ("cannot remove %s: %s", scratch, g_strerror (errno));

  for (guint i = 0; i < r0->volumes->len; i++) {
    const repo_volume *v = g_ptr_array_index (r0->volumes, i);
    g_autofree char *src = path_in (rm, v->file);
    g_autofree char *name = g_path_get_basename (v->file);
    g_autofree char *dst = g_build_filename (cdir, name, NULL);

    if (i + 1 == r0->volumes->len && !raw)
      break;
    if (!prune_journal_step (&rm->j, error, "link %s %s", c->id, name) ||
        !link_into (src, dst, error))
      return FALSE;
  }
  merged = merged_file (rm, c, r0, error);
  if (merged == NULL || !repo_fsync_dir (cdir, error) ||
      !record_merged (rm, g, r0, merged, error) || stopped (rm, error))
    return FALSE;
  if (rename (merged, ctop) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot rename %s to %s: %s",
                 merged, ctop, g_strerror (errno));
    return FALSE;
  }
  return repo_fsync_dir (cdir, error) && repo_fsync_dir (r0dir, error);
}

/* ---- the manifest without the removed backups ---- */

static repo_volume *
volume_copy (const repo_volume *v, const char *id)
{
  repo_volume *n = g_new0 (repo_volume, 1);
  g_autofree char *name = g_path_get_basename (v->file);

  n->uuid = g_strdup (v->uuid);
  n->format = g_strdup (v->format);
  n->file = g_build_filename (id, name, NULL);
  n->size = v->size;
  n->virtual_size = v->virtual_size;
  n->digest = g_strdup (v->digest);
  n->backing = g_strdup (v->backing);
  return n;
}

/* c (an entry of m2) as the merged group g leaves it: r0's lower volumes
 * and the merged top, r0's parent; the names of c's files it no longer
 * uses are added to gone. */
static void
rewrite_kept (const removal *rm, const group *g, repo_backup *c, GPtrArray *gone)
{
  const repo_backup *r0 = bk (rm, g_array_index (g->run, guint, 0));
  const repo_volume *r0top = top_of (r0);
  const repo_volume *old_top = top_of (c);
  GPtrArray *vols = g_ptr_array_new_with_free_func ((GDestroyNotify) repo_volume_free);
  gboolean raw = strcmp (r0top->format, "raw") == 0;
  repo_volume *top;

  for (guint i = 0; i + 1 < r0->volumes->len; i++)
    g_ptr_array_add (vols, volume_copy (g_ptr_array_index (r0->volumes, i), c->id));
  if (raw) {
    repo_volume *v = volume_copy (r0top, c->id);

    v->size = g->done->raw_size;
    v->virtual_size = g->done->raw_size;
    g_free (v->digest);
    v->digest = g_strdup (g->done->raw_digest);
    g_ptr_array_add (vols, v);
  }
  top = volume_copy (old_top, c->id);
  top->size = g->done->size;
  top->virtual_size = g->done->virtual_size;
  g_free (top->digest);
  top->digest = g_strdup (g->done->digest);
  g_free (top->backing);
  top->backing = raw ? g_path_get_basename (r0top->file) : g_strdup (r0top->backing);
  g_ptr_array_add (vols, top);

  for (guint i = 0; i + 1 < c->volumes->len; i++)
    g_ptr_array_add (gone, g_strdup (((repo_volume *) g_ptr_array_index (c->volumes, i))->file));
  g_ptr_array_unref (c->volumes);
  c->volumes = vols;
  g_free (c->parent);
  c->parent = g_strdup (r0->parent);
  g_free (c->since);
  c->since = g_strdup (r0->since);
  g_free (c->from_checkpoint);
  c->from_checkpoint = g_strdup (r0->from_checkpoint);
  c->kind = r0->kind == REPO_KIND_FULL ? REPO_KIND_FULL : REPO_KIND_INCREMENTAL;
}

/* A changed-block incremental is backed by the backup just before it;
 * one whose new parent is further back is a differential. */
static void
fix_cbt_kinds (repo_manifest *m2)
{
  for (guint i = 0; i < m2->backups->len; i++) {
    repo_backup *b = g_ptr_array_index (m2->backups, i);
    const repo_backup *prev = i > 0 ? g_ptr_array_index (m2->backups, i - 1) : NULL;

    if (repo_backup_is_cbt (b) && b->kind != REPO_KIND_FULL)
      b->kind = prev != NULL && g_strcmp0 (prev->id, b->parent) == 0
        ? REPO_KIND_INCREMENTAL : REPO_KIND_DIFFERENTIAL;
  }
}

/* The manifest without the dead backups and the groups whose merged file
 * is in place; the names those leave behind, for deleting, in gone. */
static repo_manifest *
manifest_after (removal *rm, GPtrArray *gone, guint *removed, guint *merges,
                GError **error)
{
  g_autofree char *text = repo_manifest_to_json (rm->m);
  g_autoptr(repo_manifest) m2 = NULL;
  g_autofree gboolean *drop = g_new0 (gboolean, rm->m->backups->len);
  g_autofree char *check = NULL;
  g_autoptr(repo_manifest) again = NULL;
  g_autoptr(GError) err = NULL;

  m2 = repo_manifest_parse (rm->disk, text, strlen (text), "the manifest", error);
  if (m2 == NULL)
    return NULL;
  for (guint i = 0; i < rm->m->backups->len; i++)
    drop[i] = rm->dead[i];
  for (guint k = 0; k < rm->groups->len; k++) {
    const group *g = g_ptr_array_index (rm->groups, k);

    if (g->done == NULL)
      continue;
    rewrite_kept (rm, g, g_ptr_array_index (m2->backups, g->c), gone);
    for (guint i = 0; i < g->run->len; i++)
      drop[g_array_index (g->run, guint, i)] = TRUE;
    (*merges)++;
  }
  for (guint i = rm->m->backups->len; i-- > 0;) {
    if (!drop[i])
      continue;
    g_ptr_array_add (gone, g_strdup (bk (rm, i)->id));
    g_ptr_array_remove_index (m2->backups, i);
    (*removed)++;
  }
  fix_cbt_kinds (m2);
  /* What is committed must read back: a mistake here would make every
   * backup of the disk unreadable. */
  check = repo_manifest_to_json (m2);
  again = repo_manifest_parse (rm->disk, check, strlen (check), "the new manifest", &err);
  if (again == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "removing backups of disk %s would leave a manifest that does not "
                 "load (%s); nothing was changed in it", rm->disk, err->message);
    return NULL;
  }
  return g_steal_pointer (&m2);
}

static gboolean
is_listed (const repo_manifest *m, const char *name)
{
  for (guint i = 0; i < m->backups->len; i++) {
    const repo_backup *b = g_ptr_array_index (m->backups, i);

    if (strcmp (b->id, name) == 0)
      return TRUE;
    for (guint k = 0; k < b->volumes->len; k++)
      if (strcmp (((const repo_volume *) g_ptr_array_index (b->volumes, k))->file, name) == 0)
        return TRUE;
  }
  return FALSE;
}

/* Delete what the journal names and the manifest m does not list. */
static gboolean
delete_unlisted (removal *rm, const repo_manifest *m, GPtrArray *names, GError **error)
{
  g_autoptr(GHashTable) dirs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GHashTableIter it;
  gpointer dir;

  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    g_autofree char *path = path_in (rm, name);
    g_autofree char *id = g_strndup (name, REPO_BACKUP_ID_LEN);

    if (is_listed (m, name) || (strchr (name, '/') && !is_listed (m, id)))
      continue;
    if (strchr (name, '/') == NULL) {
      if (!repo_rx_remove_tree (rm->disk_dir, name, error))
        return FALSE;
      continue;
    }
    if (unlink (path) < 0 && errno != ENOENT) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot remove %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
    g_hash_table_add (dirs, g_path_get_dirname (path));
  }
  g_hash_table_iter_init (&it, dirs);
  while (g_hash_table_iter_next (&it, &dir, NULL))
    if (!repo_fsync_dir (dir, error))
      return FALSE;
  return repo_fsync_dir (rm->disk_dir, error);
}

static gboolean
has_removing (const repo_manifest *m)
{
  for (guint i = 0; i < m->backups->len; i++)
    if (((const repo_backup *) g_ptr_array_index (m->backups, i))->removing)
      return TRUE;
  return FALSE;
}

/* Commit the manifest without what can leave it now, delete what it no
 * longer lists, and end the journal when nothing is left to remove. */
static gboolean
settle_manifest (removal *rm, GError **error)
{
  g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(repo_manifest) m2 = NULL;
  guint removed = 0, merges = 0;

  m2 = manifest_after (rm, gone, &removed, &merges, error);
  if (m2 == NULL)
    return FALSE;
  if (removed > 0) {
    if (rm->j.fd < 0 && !prune_journal_open (&rm->j, rm->disk_dir, error))
      return FALSE;
    for (guint i = 0; i < gone->len; i++)
      if (!prune_journal_step (&rm->j, error, "delete %s", (char *) g_ptr_array_index (gone, i)))
        return FALSE;
    if (!prune_journal_step (&rm->j, error, "manifest %u removed, %u merged", removed, merges) ||
        !repo_manifest_save (m2, rm->disk_dir, error))
      return FALSE;
    rm->res->removed += removed;
    rm->res->merges += merges;
  }
  g_ptr_array_extend (rm->js.deletes, gone, (GCopyFunc) (void (*) (void)) g_strdup, NULL);
  if (!delete_unlisted (rm, m2, rm->js.deletes, error))
    return FALSE;
  if (!has_removing (m2)) {
    g_autofree char *jpath = g_build_filename (rm->disk_dir, REPO_PRUNE_JOURNAL, NULL);
    g_autofree char *tmp = g_build_filename (rm->disk_dir, REPO_MANIFEST_NAME ".tmp", NULL);

    /* What a manifest write killed midway leaves: never read. */
    if (unlink (tmp) < 0 && errno != ENOENT)
      ova_warn ("cannot remove %s: %s", tmp, g_strerror (errno));
    if (unlink (jpath) < 0 && errno != ENOENT) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot remove %s: %s",
                   jpath, g_strerror (errno));
      return FALSE;
    }
    return repo_fsync_dir (rm->disk_dir, error);
  }
  return TRUE;
}

/* ---- the entry points ---- */

/* Allocated bytes of the disk directory's files (each inode once). */
static guint64
disk_allocated (const char *dir, GHashTable *seen)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  guint64 total = 0;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL) {
    g_autofree char *path = g_build_filename (dir, name, NULL);
    struct stat st;

    if (lstat (path, &st) < 0)
      continue;
    if (S_ISDIR (st.st_mode))
      total += disk_allocated (path, seen);
    else if (S_ISREG (st.st_mode) &&
             g_hash_table_add (seen, g_memdup2 (&st.st_ino, sizeof st.st_ino)))
      total += (guint64) st.st_blocks * 512;
  }
  return total;
}

static guint64
disk_usage (const char *dir)
{
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_int64_hash, g_int64_equal,
                                                      g_free, NULL);

  return disk_allocated (dir, seen);
}

/* One merge at a time, each followed by its manifest commit: the next
 * group's chain may pass through the kept backup this one rewrote. */
static gboolean
finish (repo *r, const char *disk, gboolean merges, volatile sig_atomic_t *cancel,
        repo_prune_result *res, GError **error)
{
  for (;;) {
    g_auto(removal) rm = { 0 };
    group *todo = NULL;

    if (!removal_load (&rm, r, disk, cancel, res, error))
      return FALSE;
    for (guint k = 0; merges && todo == NULL && k < rm.groups->len; k++)
      if (((group *) g_ptr_array_index (rm.groups, k))->done == NULL)
        todo = g_ptr_array_index (rm.groups, k);
    if (todo != NULL &&
        ((rm.j.fd < 0 && !prune_journal_open (&rm.j, rm.disk_dir, error)) ||
         !merge_group (&rm, todo, error)))
      return FALSE;
    if (!settle_manifest (&rm, error))
      return FALSE;
    if (todo == NULL)
      return TRUE;
  }
}

gboolean
repo_prune_finish (repo *r, const char *disk, gboolean merges,
                   volatile sig_atomic_t *cancel, repo_prune_result *res, GError **error)
{
  g_autofree char *disk_dir = repo_disk_dir (r, disk);
  g_autofree char *jpath = g_build_filename (disk_dir, REPO_PRUNE_JOURNAL, NULL);
  guint64 before;

  g_return_val_if_fail (r->lock == REPO_LOCK_EXCLUSIVE, FALSE);
  if (!g_file_test (jpath, G_FILE_TEST_EXISTS))
    return TRUE;
  before = disk_usage (disk_dir);
  if (!finish (r, disk, merges, cancel, res, error))
    return FALSE;
  res->freed += before - MIN (before, disk_usage (disk_dir));
  return TRUE;
}

gboolean
repo_prune_apply (repo *r, const repo_prune_plan *plan, volatile sig_atomic_t *cancel,
                  repo_prune_result *res, GError **error)
{
  g_autofree char *disk_dir = repo_disk_dir (r, plan->disk);
  g_autoptr(repo_manifest) m = NULL;
  g_auto(prune_journal) j = { NULL, -1 };
  guint marked = 0;

  g_return_val_if_fail (r->lock == REPO_LOCK_EXCLUSIVE, FALSE);
  m = repo_manifest_load (disk_dir, plan->disk, FALSE, error);
  if (m == NULL)
    return FALSE;
  if (m->backups->len != plan->items->len) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "the manifest of disk %s changed since the plan", plan->disk);
    return FALSE;
  }
  for (guint i = 0; i < plan->items->len; i++) {
    const repo_prune_item *it = g_ptr_array_index (plan->items, i);
    repo_backup *b = g_ptr_array_index (m->backups, i);

    if (strcmp (b->id, it->id) != 0 || (b->removing && it->keep)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "the manifest of disk %s changed since the plan", plan->disk);
      return FALSE;
    }
    if (!it->keep && !b->removing) {
      b->removing = TRUE;
      marked++;
    }
  }
  if (marked > 0) {
    if (!prune_journal_open (&j, disk_dir, error))
      return FALSE;
    for (guint i = 0; i < plan->items->len; i++) {
      const repo_prune_item *it = g_ptr_array_index (plan->items, i);

      if (!it->keep &&
          !prune_journal_step (&j, error, "remove %s %s", it->id,
                         it->merged_into ? it->merged_into : "-"))
        return FALSE;
    }
    /* From here on the removed backups are no longer points in time. */
    if (!repo_manifest_save (m, disk_dir, error))
      return FALSE;
  }
  return repo_prune_finish (r, plan->disk, TRUE, cancel, res, error);
}

/* Whether a reader must finish disk's removal before it trusts the
 * manifest: a merged file in place that the manifest does not describe
 * yet, or names the journal deletes that the manifest no longer lists. */
static gboolean
needs_settling (repo *r, const char *disk, gboolean *needed, GError **error)
{
  g_auto(removal) rm = { 0 };
  repo_prune_result res = { 0 };

  *needed = FALSE;
  if (!removal_load (&rm, r, disk, NULL, &res, error))
    return FALSE;
  for (guint k = 0; k < rm.groups->len; k++)
    if (((group *) g_ptr_array_index (rm.groups, k))->done != NULL)
      *needed = TRUE;
  for (guint i = 0; i < rm.js.deletes->len; i++) {
    const char *name = g_ptr_array_index (rm.js.deletes, i);
    g_autofree char *path = path_in (&rm, name);

    if (!is_listed (rm.m, name) && g_file_test (path, G_FILE_TEST_EXISTS))
      *needed = TRUE;
  }
  if (!has_removing (rm.m))
    *needed = TRUE;        /* a journal to remove */
  return TRUE;
}

gboolean
repo_prune_settle (repo *r, const char *disk, GError **error)
{
  g_autofree char *disk_dir = repo_disk_dir (r, disk);
  g_autofree char *jpath = g_build_filename (disk_dir, REPO_PRUNE_JOURNAL, NULL);
  repo_prune_result res = { 0 };
  gboolean needed, ok;

  if (!g_file_test (jpath, G_FILE_TEST_EXISTS))
    return TRUE;
  if (r->lock == REPO_LOCK_EXCLUSIVE)
    return repo_prune_finish (r, disk, FALSE, NULL, &res, error);
  if (!needs_settling (r, disk, &needed, error))
    return FALSE;
  if (!needed)
    return TRUE;
  /* Converting the lock is not atomic: if another run takes R/lock in
   * between, this one has lost its lock and stops. */
  if (flock (r->lock_fd, LOCK_EX | LOCK_NB) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                 "disk %s has a removal an interrupted prune left to finish, and "
                 "repository %s is in use meanwhile; retry when it is idle, or run "
                 "ovagent prune", disk, r->dir);
    return FALSE;
  }
  ova_info ("finishing the removal an interrupted prune of disk %s left", disk);
  r->lock = REPO_LOCK_EXCLUSIVE;
  ok = repo_prune_finish (r, disk, FALSE, NULL, &res, error);
  r->lock = REPO_LOCK_SHARED;
  if (flock (r->lock_fd, LOCK_SH) < 0 && ok) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot lock %s again: %s",
                 r->dir, g_strerror (errno));
    return FALSE;
  }
  return ok;
}
