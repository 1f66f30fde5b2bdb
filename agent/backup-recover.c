/* ovagent: backup: undoing a run that died (its job ended, its checkpoint
 * deleted, under the volumes' leases) and a checkpoint nothing committed. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "agent/backup-priv.h"
#include "virt/checkpoint.h"
#include "virt/state.h"

/* QEMU may hold the image lock for a moment after libvirt saw it exit. */
#define IMAGE_RETRY_COUNT 20
#define IMAGE_RETRY_US (250 * 1000)

/* Remove bitmap from the disk images once no QEMU holds them. */
static gboolean
remove_image_bitmap (const char *path, const char *bitmap, GError **error)
{
  g_autoptr (GError) err = NULL;

  for (int i = 0; i < IMAGE_RETRY_COUNT; i++) {
    g_clear_error (&err);
    if (virt_image_bitmap_remove (path, bitmap, &err))
      return TRUE;
    g_usleep (IMAGE_RETRY_US);
  }
  g_propagate_error (error, g_steal_pointer (&err));
  return FALSE;
}

gboolean
bk_domain_active (const run *r)
{
  return r->dom != NULL && virDomainIsActive (r->dom) == 1;
}

/* End a job of ours; when QEMU is gone its socket may be left: ours to
 * remove then. */
gboolean
bk_end_job (run *r, virt_backup *b, GError **error)
{
  g_autoptr (GError) err = NULL;

  if (virt_backup_end (r->dom, b, &err))
    return TRUE;
  if (!bk_domain_active (r)) {
    if (unlink (b->socket_path) < 0 && errno != ENOENT)
      ova_warn ("cannot remove %s: %s", b->socket_path, g_strerror (errno));
    g_clear_error (&err);
    if (virt_backup_end (r->dom, b, &err))
      return TRUE;
  }
  g_propagate_error (error, g_steal_pointer (&err));
  return FALSE;
}

static gboolean
remove_saved (const run *r, const char *cp)
{
  g_autofree char *path = virt_checkpoint_saved_path (r->env->state_dir, r->vm_uuid, cp, NULL);

  if (path && unlink (path) < 0 && errno != ENOENT) {
    ova_warn ("cannot remove %s: %s", path, g_strerror (errno));
    return FALSE;
  }
  return TRUE;
}

/* The new checkpoint must not survive a backup that was not committed:
 * through libvirt while it knows it, else from the images themselves. */
gboolean
bk_drop_checkpoint (run *r, const char *cp, GPtrArray *paths, const char *const *images,
                 GError **error)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GPtrArray) known = NULL;

  if (r->dom != NULL) {
    known = virt_checkpoint_list (r->dom, NULL);
    if (known && g_ptr_array_find_with_equal_func (known, cp, g_str_equal, NULL)) {
      if (virt_checkpoint_delete (r->dom, cp, r->env->state_dir, &err)) {
        ova_info ("deleted checkpoint %s of VM %s", cp, bk_vm_label (r));
        return TRUE;
      }
      if (bk_domain_active (r)) {
        g_propagate_error (error, g_steal_pointer (&err));
        return FALSE;
      }
      ova_debug ("%s", err->message);
    }
    else if (bk_domain_active (r))
      return remove_saved (r, cp);   /* never created */
  }
  /* No QEMU holds the images: the bitmap goes with qemu-img. */
  for (guint i = 0; paths && i < paths->len; i++)
    if (!remove_image_bitmap (paths->pdata[i], cp, error))
      return FALSE;
  for (gsize i = 0; images && images[i]; i++)
    virt_state_forget_disk (r->state, images[i]);
  remove_saved (r, cp);
  return TRUE;
}

/* Volume vol (NULL: the top) of image in domain sd (NULL: wherever it is),
 * its lease taken; *out: the volume. */
static gboolean
lease_volume (run *r, const char *sd, const char *image, const char *vol,
              const stor_volume **out, GError **error)
{
  stor_domain *sdom;
  stor_image *simg;
  const stor_volume *v;

  if (!bk_prepare_image (r, sd, image, &sdom, &simg, NULL, error))
    return FALSE;
  v = vol ? g_hash_table_lookup (sdom->volumes, vol)
          : simg->volumes->pdata[simg->volumes->len - 1];
  if (v == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "volume %s of disk %s is not in storage domain %s", vol, image,
                 sdom->uuid);
    return FALSE;
  }
  *out = v;
  return bk_take_lease (r, sdom, v, error);
}

/* The volumes at paths (a VM's disks as libvirt names them), their leases
 * taken. */
gboolean
bk_lease_paths (run *r, GPtrArray *paths, GError **error)
{
  for (guint i = 0; i < paths->len; i++) {
    const char *path = paths->pdata[i];
    g_autofree char *sd = NULL, *img = NULL, *vol = NULL;
    const stor_volume *v;

    if (!bk_vdsm_path_ids (path, &sd, &img, &vol)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                   "%s is not a volume of a storage domain: its lease cannot be "
                   "taken", path);
      return FALSE;
    }
    if (!lease_volume (r, sd, img, vol, &v, error))
      return FALSE;
  }
  return TRUE;
}

/* A disk of a stopped VM's backup that died: the volume its bitmap may be
 * in (libvirt's XML names it, else the top of VDSM's chain) in *path, its
 * lease taken. */
static gboolean
lease_pending_top (run *r, GPtrArray *xml, const char *image, char **path,
                   GError **error)
{
  g_autofree char *sd = NULL;
  g_autofree char *vol = NULL;
  const char *found = NULL;
  const stor_volume *v;

  for (guint k = 0; xml && k < xml->len && !found; k++) {
    const virt_disk *vd = xml->pdata[k];
    g_autofree char *s = NULL, *img = NULL, *vl = NULL;

    if (!vd->is_block && bk_vdsm_path_ids (vd->path, &s, &img, &vl) &&
        strcmp (img, image) == 0) {
      found = vd->path;
      sd = g_steal_pointer (&s);
      vol = g_steal_pointer (&vl);
    }
  }
  if (!lease_volume (r, sd, image, vol, &v, error))
    return FALSE;
  *path = g_strdup (found ? found : v->path);
  return TRUE;
}

gboolean
bk_recover_pending (run *r, GError **error)
{
  const char *job, *cp;
  const char *const *images;
  gboolean was_running;
  g_autofree char *job_copy = NULL;
  g_autofree char *cp_copy = NULL;
  g_auto (GStrv) img_copy = NULL;
  g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);

  if (!virt_state_get_pending (r->state, &job, &cp, &was_running, &images))
    return TRUE;
  job_copy = g_strdup (job);
  cp_copy = g_strdup (cp);
  img_copy = g_strdupv ((char **) images);
  ova_warn ("VM %s: backup %s (checkpoint %s) did not finish; undoing it",
            bk_vm_label (r), job_copy, cp_copy);

  if (was_running) {
    g_autoptr (virt_backup) b = virt_backup_for_id (r->env->run_dir, r->scratch_dir,
                                                    job_copy, error);

    if (b == NULL || !bk_end_job (r, b, error))
      return FALSE;
  }
  if (!bk_domain_active (r)) {
    /* The pending disks' top volumes, where the bitmap would be. */
    g_autoptr (GPtrArray) xml = r->dom ? virt_domain_disks (r->dom, NULL) : NULL;

    for (gsize i = 0; img_copy[i]; i++) {
      char *path = NULL;

      if (!lease_pending_top (r, xml, img_copy[i], &path, error)) {
        g_prefix_error (error, "cannot undo backup %s of VM %s: ", job_copy, bk_vm_label (r));
        return FALSE;
      }
      g_ptr_array_add (paths, path);
    }
  }
  if (!bk_drop_checkpoint (r, cp_copy, paths, (const char *const *) img_copy, error) ||
      !bk_release_leases (r, error))
    return FALSE;
  /* LVs the recovery activated are not needed any more. */
  if (r->guard)
    stor_lv_guard_release (r->guard);
  virt_state_clear_pending (r->state);
  if (!virt_state_save (r->state, error))
    return FALSE;
  r->recovered = g_steal_pointer (&job_copy);
  return TRUE;
}
