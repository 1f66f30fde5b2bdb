/* ovagent: backup: the records of one run (the VM, its disks, the disks left
 * out) and the stopped VM's storage: chains found and activated, leases. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <string.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "agent/backup-priv.h"
#include "agent/cancel.h"
#include "storage/lease.h"
#include "storage/probe.h"

/* ---- the records of a run ---- */

void
bdisk_free (bdisk *d)
{
  if (d == NULL)
    return;
  nbdr_server_stop (d->srv);
  g_free (d->target);
  g_free (d->image);
  g_free (d->domain);
  g_free (d->volume);
  g_free (d->path);
  g_free (d->from);
  g_free (d->reason);
  g_free (d->last);
  if (d->layers)
    g_ptr_array_unref (d->layers);
  g_free (d);
}

void
skipped_disk_free (skipped_disk *s)
{
  g_free (s->target);
  g_free (s->image);
  g_free (s->reason);
  g_free (s);
}

void
bk_run_clear (run *r)
{
  g_clear_pointer (&r->disks, g_ptr_array_unref);
  g_clear_pointer (&r->leases, g_ptr_array_unref);
  g_clear_pointer (&r->guard, stor_lv_guard_free);
  g_clear_pointer (&r->storage, g_ptr_array_unref);
  g_clear_pointer (&r->skipped, g_ptr_array_unref);
  g_clear_pointer (&r->redefined, g_ptr_array_unref);
  g_clear_pointer (&r->known, g_ptr_array_unref);
  g_clear_pointer (&r->state, virt_state_free);
  if (r->lock_fd >= 0)
    close (r->lock_fd);
  r->lock_fd = -1;
  if (r->dom)
    virDomainFree (r->dom);
  r->dom = NULL;
  if (r->conn)
    virConnectClose (r->conn);
  r->conn = NULL;
  g_clear_pointer (&r->scratch_dir, g_free);
  g_clear_pointer (&r->vm_uuid, g_free);
  g_clear_pointer (&r->vm_name, g_free);
  g_clear_pointer (&r->recovered, g_free);
  g_clear_pointer (&r->job, g_free);
  g_clear_pointer (&r->checkpoint, g_free);
  g_clear_pointer (&r->from, g_free);
  g_clear_pointer (&r->checkpoint_xml, g_free);
}

const char *
bk_vm_label (const run *r)
{
  return r->vm_name ? r->vm_name : r->vm_uuid;
}

const char *
bk_disk_label (const bdisk *d)
{
  return d->target ? d->target : d->image;
}

void
bk_check_cancel (GError **error)
{
  if (ova_cancelled && error && *error == NULL)
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED, "interrupted by a signal");
}

GPtrArray *
bk_disk_images (const run *r)
{
  GPtrArray *v = g_ptr_array_new ();

  for (guint i = 0; i < r->disks->len; i++)
    g_ptr_array_add (v, ((bdisk *) r->disks->pdata[i])->image);
  g_ptr_array_add (v, NULL);
  return v;
}

GPtrArray *
bk_disk_targets (const run *r, gboolean skip_unknown)
{
  GPtrArray *v = g_ptr_array_new ();

  for (guint i = 0; i < r->disks->len; i++) {
    const char *t = ((bdisk *) r->disks->pdata[i])->target;

    if (t != NULL || !skip_unknown)
      g_ptr_array_add (v, (gpointer) t);
  }
  g_ptr_array_add (v, NULL);
  return v;
}

GPtrArray *
bk_disk_paths (const run *r)
{
  GPtrArray *v = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; i < r->disks->len; i++)
    g_ptr_array_add (v, g_strdup (((bdisk *) r->disks->pdata[i])->path));
  return v;
}

/* ---- disk identity ---- */

/* SD, IMG and VOL of a VDSM path .../<SD>/images/<IMG>/<VOL>. */
gboolean
bk_vdsm_path_ids (const char *path, char **sd, char **img, char **vol)
{
  g_auto (GStrv) parts = NULL;
  guint n;

  if (path == NULL)
    return FALSE;
  parts = g_strsplit (path, "/", -1);
  n = g_strv_length (parts);
  if (n < 4 || strcmp (parts[n - 3], "images") != 0 ||
      !ova_uuid_is_valid (parts[n - 4]) || !ova_uuid_is_valid (parts[n - 2]) ||
      !ova_uuid_is_valid (parts[n - 1]))
    return FALSE;
  *sd = g_ascii_strdown (parts[n - 4], -1);
  *img = g_ascii_strdown (parts[n - 2], -1);
  *vol = g_ascii_strdown (parts[n - 1], -1);
  return TRUE;
}

/* ---- storage of a stopped VM ---- */

static gboolean
scan_storage (run *r, GError **error)
{
  if (r->storage != NULL)
    return TRUE;
  stor_lv_cleanup_stale (r->env);
  r->storage = stor_scan_domains (r->env, NULL, error);
  return r->storage != NULL;
}

/* Find image (optionally in sd) and activate its chain's LVs: qemu-nbd
 * reads them all, and qemu-img bitmap writes the top after the commit
 * (the guard activates read-write, as VDSM does). With layers_out, the
 * chain qemu is to open, each header checked against the metadata. */
gboolean
bk_prepare_image (run *r, const char *sd, const char *image, stor_domain **dom_out,
               stor_image **img_out, GPtrArray **layers_out, GError **error)
{
  g_autofree char *key = sd ? g_strdup_printf ("%s/%s", sd, image) : g_strdup (image);
  stor_domain *dom;
  stor_image *img;

  if (!scan_storage (r, error))
    return FALSE;
  if (!stor_find_disk (r->storage, key, &dom, &img, error))
    return FALSE;
  if (img->volumes->len == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "disk %s/%s has no volumes", dom->uuid, img->uuid);
    return FALSE;
  }
  for (guint i = 0; i < img->problems->len; i++) {
    const stor_problem *p = img->problems->pdata[i];

    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "disk %s/%s has chain problems (see 'ovagent info %s'): %s",
                 dom->uuid, img->uuid, img->uuid, p->message);
    return FALSE;
  }
  if (dom->kind == STOR_KIND_BLOCK) {
    if (r->guard == NULL)
      r->guard = stor_lv_guard_new (r->env);
    for (guint i = 0; i < img->volumes->len; i++) {
      const stor_volume *v = img->volumes->pdata[i];

      if (ova_cancelled) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED,
                     "interrupted by a signal while activating disk %s", img->uuid);
        return FALSE;
      }
      if (!stor_lv_guard_activate (r->guard, dom->uuid, v->uuid, error))
        return FALSE;
    }
  }
  if (layers_out != NULL && (*layers_out = stor_image_layers (dom, img, error)) == NULL)
    return FALSE;
  *dom_out = dom;
  *img_out = img;
  return TRUE;
}

/* Before a stopped VM's volume is written (a bitmap added or removed), its
 * sanlock lease, as VDSM takes it: another host may run the VM. Held until
 * release_leases. */
gboolean
bk_take_lease (run *r, const stor_domain *dom, const stor_volume *vol, GError **error)
{
  stor_lease *l = stor_lease_acquire (r->env, dom, vol, error);

  if (l == NULL)
    return FALSE;
  if (r->leases == NULL)
    r->leases = g_ptr_array_new_with_free_func ((GDestroyNotify) stor_lease_free);
  g_ptr_array_add (r->leases, l);
  return TRUE;
}

/* The writes are done: each volume synced, its lease released; the first
 * failure is the error, later ones are warnings. */
gboolean
bk_release_leases (run *r, GError **error)
{
  gboolean ok = TRUE;

  for (guint i = 0; r->leases != NULL && i < r->leases->len; i++) {
    g_autoptr (GError) err = NULL;

    if (stor_lease_release (r->leases->pdata[i], &err))
      continue;
    if (ok)
      g_propagate_error (error, g_steal_pointer (&err));
    else
      ova_warn ("%s", err->message);
    ok = FALSE;
  }
  g_clear_pointer (&r->leases, g_ptr_array_unref);
  return ok;
}
