/* ovagent: verifying a repository: every file of the chosen backups re-read
 * and compared with its manifest (size, digest, backing string). */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "repo/repo.h"
#include "repo/prune.h"

/* The error lists this many problems, then counts the rest. */
#define PROBLEMS_SHOWN 20

typedef struct vf {
  repo *r;
  volatile sig_atomic_t *cancel;
  repo_verify_result *res;
  GPtrArray *problems;      /* char* */
} vf;

static void G_GNUC_PRINTF (2, 3)
problem (vf *v, const char *fmt, ...)
{
  va_list ap;
  char *msg;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  ova_debug ("verify: %s", msg);
  g_ptr_array_add (v->problems, msg);
}

static gboolean
interrupted (const vf *v, GError **error)
{
  if (v->cancel == NULL || !*v->cancel)
    return FALSE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED, "verify interrupted by a signal");
  return TRUE;
}

/* One file: FALSE only to stop the whole run (interrupted, or an error
 * that is not about this file's contents). */
static gboolean
verify_volume (vf *v, const char *disk_dir, const repo_backup *b,
               const repo_volume *vol, GError **error)
{
  g_autofree char *path = g_build_filename (disk_dir, vol->file, NULL);
  g_autofree char *digest = NULL;
  g_autoptr(GError) err = NULL;
  guint64 size = 0;

  digest = repo_file_digest (path, &size, v->cancel, &err);
  if (digest == NULL) {
    if (interrupted (v, error))
      return FALSE;
    problem (v, "backup %s: %s", b->id, err->message);
    return TRUE;
  }
  v->res->files++;
  v->res->bytes += size;
  if (size != vol->size)
    problem (v, "%s: %" G_GUINT64_FORMAT " bytes, the manifest says %" G_GUINT64_FORMAT,
             path, size, vol->size);
  else if (strcmp (digest, vol->digest) != 0)
    problem (v, "%s: digest %s, the manifest says %s", path, digest, vol->digest);

  if (strcmp (vol->format, "qcow2") == 0) {
    g_auto(repo_qcow2_info) info = { 0 };

    if (!repo_qcow2_probe (path, &info, &err))
      problem (v, "%s", err->message);
    else if (g_strcmp0 (info.backing, vol->backing) != 0)
      problem (v, "%s: backing file %s%s%s, the manifest says %s%s%s", path,
               info.backing ? "\"" : "", info.backing ? info.backing : "none",
               info.backing ? "\"" : "", vol->backing ? "\"" : "",
               vol->backing ? vol->backing : "none", vol->backing ? "\"" : "");
    else if (info.data_file)
      problem (v, "%s: uses an external data file", path);
  }
  return TRUE;
}

static gboolean
verify_disk (vf *v, const char *disk, const char *backup_id, gboolean must_exist,
             GError **error)
{
  g_autofree char *disk_dir = repo_disk_dir (v->r, disk);
  g_autoptr(repo_manifest) m = NULL;
  g_autoptr(GError) err = NULL;

  /* A removal an interrupted prune left with a merged file in place is
   * finished first: until then the manifest does not describe it. */
  if (!repo_prune_settle (v->r, disk, error))
    return FALSE;
  m = repo_manifest_load (disk_dir, disk, FALSE, &err);
  if (m == NULL) {
    if (!g_error_matches (err, OVA_ERROR, OVA_ERROR_NOT_FOUND)) {
      problem (v, "%s", err->message);
      return TRUE;
    }
    if (must_exist) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "repository %s has no backup of disk %s", v->r->dir, disk);
      return FALSE;
    }
    /* What a first receive interrupted before its commit leaves. */
    ova_info ("%s has no manifest: no committed backup to verify", disk_dir);
    return TRUE;
  }
  if (backup_id != NULL && repo_manifest_find (m, backup_id) == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "disk %s has no backup %s in %s", disk, backup_id, v->r->dir);
    return FALSE;
  }

  v->res->disks++;
  for (guint i = 0; i < m->backups->len; i++) {
    const repo_backup *b = g_ptr_array_index (m->backups, i);

    if (backup_id != NULL && strcmp (b->id, backup_id) != 0)
      continue;
    /* Not a point in time any more: an unfinished prune may be writing
     * its top; the next prune finishes its removal. */
    if (b->removing) {
      ova_info ("backup %s of disk %s is being removed by an unfinished prune: "
                "not verified", b->id, disk);
      continue;
    }
    v->res->backups++;
    for (guint j = 0; j < b->volumes->len; j++) {
      if (interrupted (v, error) ||
          !verify_volume (v, disk_dir, b, g_ptr_array_index (b->volumes, j), error))
        return FALSE;
    }
  }
  return TRUE;
}

/* All problems as one error naming each file (up to PROBLEMS_SHOWN). */
static void
set_problems_error (const repo *r, GPtrArray *problems, GError **error)
{
  g_autoptr(GString) msg = g_string_new (NULL);

  g_string_printf (msg, "%u problem%s in repository %s: ", problems->len,
                   problems->len == 1 ? "" : "s", r->dir);
  for (guint i = 0; i < problems->len && i < PROBLEMS_SHOWN; i++)
    g_string_append_printf (msg, "%s%s", i ? "; " : "",
                            (const char *) g_ptr_array_index (problems, i));
  if (problems->len > PROBLEMS_SHOWN)
    g_string_append_printf (msg, "; and %u more", problems->len - PROBLEMS_SHOWN);
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY, "%s", msg->str);
}

static gboolean
verify_all (vf *v, GError **error)
{
  g_autoptr(GPtrArray) disks = repo_list_disks (v->r, error);

  if (disks == NULL)
    return FALSE;
  for (guint i = 0; i < disks->len; i++)
    if (!verify_disk (v, g_ptr_array_index (disks, i), NULL, FALSE, error))
      return FALSE;
  return TRUE;
}

gboolean
repo_verify (repo *r, const char *disk, const char *backup_id,
             volatile sig_atomic_t *cancel, repo_verify_result *res, GError **error)
{
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *img = disk ? g_ascii_strdown (disk, -1) : NULL;
  vf v = { .r = r, .cancel = cancel, .res = res, .problems = problems };
  gboolean ok;

  memset (res, 0, sizeof *res);
  if (img != NULL)
    ok = verify_disk (&v, img, backup_id, TRUE, error);
  else
    ok = verify_all (&v, error);
  if (!ok)
    return FALSE;
  if (problems->len > 0) {
    set_problems_error (r, problems, error);
    return FALSE;
  }
  return TRUE;
}
