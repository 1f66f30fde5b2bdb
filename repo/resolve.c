/* ovagent: a disk's backup resolved for reading (restore): the removal an
 * interrupted prune left is finished first, then the point's layers. */
#include <config.h>

#include "error.h"
#include "util.h"
#include "repo/repo.h"
#include "repo/manifest.h"
#include "repo/prune.h"

gboolean
repo_resolve (repo *r, const char *disk, const char *backup_id, GPtrArray **layers,
              guint64 *virtual_size, char **resolved_id, GError **error)
{
  g_autoptr(repo_manifest) m = NULL;
  g_autoptr(GError) err = NULL;
  g_autofree char *img = NULL;
  g_autofree char *disk_dir = NULL;
  const repo_backup *b;
  const repo_volume *top;

  if (disk == NULL || !ova_uuid_is_valid (disk)) {
    g_autofree char *q = ova_quote_untrusted (disk ? disk : "", 80);

    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "DISK must be an image UUID, not %s", q);
    return FALSE;
  }
  if (backup_id != NULL && !repo_backup_id_is_valid (backup_id)) {
    g_autofree char *q = ova_quote_untrusted (backup_id, 80);

    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "%s is not a backup id (like 20261122T031000Z-3f2a9c)", q);
    return FALSE;
  }
  img = g_ascii_strdown (disk, -1);
  disk_dir = repo_disk_dir (r, img);
  if (!repo_prune_settle (r, img, error))
    return FALSE;
  m = repo_manifest_load (disk_dir, img, FALSE, &err);
  if (m == NULL) {
    if (g_error_matches (err, OVA_ERROR, OVA_ERROR_NOT_FOUND))
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "repository %s has no backup of disk %s", r->dir, img);
    else
      g_propagate_error (error, g_steal_pointer (&err));
    return FALSE;
  }
  b = backup_id ? repo_manifest_find (m, backup_id) : repo_manifest_latest (m);
  if (b == NULL) {
    if (backup_id)
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "disk %s has no backup %s in %s", img, backup_id, r->dir);
    else
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "repository %s has no backup of disk %s", r->dir, img);
    return FALSE;
  }
  if (b->removing) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "backup %s of disk %s in %s is being removed by an unfinished "
                 "prune: it is no longer a point in time (run ovagent prune to "
                 "finish the removal)", b->id, img, r->dir);
    return FALSE;
  }
  *layers = repo_backup_layers (disk_dir, m, b, error);
  if (*layers == NULL)
    return FALSE;
  top = g_ptr_array_index (b->volumes, b->volumes->len - 1);
  *virtual_size = top->virtual_size;
  *resolved_id = g_strdup (b->id);
  return TRUE;
}
