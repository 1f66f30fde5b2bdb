/* ovagent: backup: moving the data: every disk read into the stream, through a
 * libvirt pull-mode job (running VM) or qemu-nbd (stopped VM), then committed. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <stdlib.h>

#include "error.h"
#include "log.h"
#include "agent/backup-priv.h"
#include "agent/cancel.h"
#include "agent/progress.h"
#include "storage/qemu-img.h"
#include "virt/checkpoint.h"
#include "virt/state.h"
#include "virt/vmusage.h"

/* Read every disk into the stream, which must be committed by its reader
 * (file closed, or the remote receive's result) for TRUE. */
static gboolean
send_disks (run *r, ova_stream_output *out, strm_encoder *enc, virt_backup *b,
            GError **error)
{
  g_autoptr (ova_progress_meter) meter = NULL;
  g_autofree char *meta = bk_build_meta (r);
  strm_copy_opts co = { .requests = (guint) backup_opts.requests };
  guint64 total = 0;

  for (guint i = 0; i < r->disks->len; i++)
    total += ((bdisk *) r->disks->pdata[i])->size;
  meter = ova_progress_new (r->ctx->progress, bk_vm_label (r), total);
  if (!strm_encoder_meta (enc, meta, error))
    return FALSE;

  for (guint i = 0; i < r->disks->len; i++) {
    bdisk *d = r->disks->pdata[i];
    g_autoptr (ova_source) rd = NULL;
    const char *uri = NULL;
    const char *context = NULL;
    strm_totals before = *strm_encoder_totals (enc);
    const strm_totals *after;

    if (b != NULL) {
      for (guint k = 0; k < b->disks->len && uri == NULL; k++) {
        const virt_backup_disk *bd = b->disks->pdata[k];

        if (g_strcmp0 (bd->target, d->target) == 0) {
          uri = bd->nbd_uri;
          context = bd->bitmap_context;
        }
      }
      if (uri == NULL) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                     "backup %s of VM %s does not export disk %s", r->job,
                     bk_vm_label (r), bk_disk_label (d));
        return FALSE;
      }
      if ((context != NULL) != (d->from != NULL)) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                     "backup %s of VM %s exports disk %s %s a bitmap", r->job,
                     bk_vm_label (r), bk_disk_label (d), context ? "with" : "without");
        return FALSE;
      }
    }
    else {
      g_autofree char *ctx_name = d->from ? g_strconcat ("qemu:dirty-bitmap:", d->from, NULL)
                                          : NULL;

      uri = nbdr_server_uri (d->srv);
      rd = nbdr_source_open (uri, ctx_name, (guint) backup_opts.connections, error);
      if (rd == NULL)
        return FALSE;
    }
    if (rd == NULL) {
      rd = nbdr_source_open (uri, context, (guint) backup_opts.connections, error);
      if (rd == NULL)
        return FALSE;
    }
    if (rd->size != d->size) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "the export of disk %s of VM %s has %" G_GUINT64_FORMAT
                   " bytes, its image %" G_GUINT64_FORMAT " (resized during the backup?)",
                   bk_disk_label (d), bk_vm_label (r), rd->size, d->size);
      return FALSE;
    }
    ova_info ("sending disk %s (%s) of VM %s: %s%s%s", bk_disk_label (d), d->image,
              bk_vm_label (r), d->kind, d->from ? " from " : "", d->from ? d->from : "");
    if (!strm_copy_source (enc, rd, d->image, &co, ova_progress_part_done, meter,
                           &ova_cancelled, &d->read, error))
      return FALSE;
    after = strm_encoder_totals (enc);
    d->data = after->data_bytes - before.data_bytes;
    d->zero = after->zero_bytes - before.zero_bytes;
    d->hole = after->hole_bytes - before.hole_bytes;
    r->bytes_read += d->read;
    ova_progress_next_part (meter, d->size);
  }
  if (ova_cancelled) {
    bk_check_cancel (error);
    return FALSE;
  }
  if (!strm_encoder_finish (enc, error))
    return FALSE;
  if (!ova_stream_output_close (out, error))
    return FALSE;
  ova_progress_finish (meter);
  return TRUE;
}

/* Running VM: one pull-mode job for all disks. */
gboolean
backup_running (run *r, ova_stream_output *out, strm_encoder *enc, GError **error)
{
  g_autoptr (virt_backup) b = NULL;
  g_autoptr (GPtrArray) targets = bk_disk_targets (r, FALSE);
  g_autoptr (GPtrArray) full = g_ptr_array_new ();
  g_autoptr (GError) err = NULL;
  g_autoptr (GError) cleanup_err = NULL;
  virt_backup_request req = { 0 };
  gboolean ok = FALSE;

  for (guint i = 0; i < r->disks->len; i++) {
    const bdisk *d = r->disks->pdata[i];

    if (d->from == NULL)
      g_ptr_array_add (full, d->target);
  }
  g_ptr_array_add (full, NULL);
  req.backup_id = r->job;
  req.checkpoint_id = r->checkpoint;
  req.from_checkpoint = r->from;
  req.disks = (const char *const *) targets->pdata;
  req.full_disks = r->from ? (const char *const *) full->pdata : NULL;
  req.run_dir = r->env->run_dir;
  req.scratch_dir = r->scratch_dir;

  b = virt_backup_begin (r->dom, &req, &err);
  if (b == NULL && backup_opts.autom && r->from != NULL &&
      g_error_matches (err, OVA_ERROR, OVA_ERROR_UNSUPPORTED) && !ova_cancelled) {
    /* libvirt found the bitmaps inconsistent: --auto takes a full. */
    ova_warn ("%s; taking a full backup instead", err->message);
    for (guint i = 0; i < r->disks->len; i++) {
      bdisk *d = r->disks->pdata[i];

      if (d->from != NULL)
        bk_set_kind (d, "full", NULL,
                  g_strdup_printf ("libvirt refused the incremental from %s: %s",
                                   d->from, err->message));
    }
    g_clear_pointer (&r->from, g_free);
    g_clear_error (&err);
    req.from_checkpoint = NULL;
    req.full_disks = NULL;
    b = virt_backup_begin (r->dom, &req, &err);
  }
  if (b != NULL) {
    bk_check_cancel (&err);
    if (err == NULL) {
      r->checkpoint_xml = virt_checkpoint_dump (r->dom, r->checkpoint, &err);
      if (r->checkpoint_xml != NULL)
        ok = send_disks (r, out, enc, b, &err);
    }
    if (!bk_end_job (r, b, &cleanup_err)) {
      if (ok)
        ova_warn ("%s", cleanup_err->message);
      else
        ova_warn ("while undoing backup %s: %s", r->job, cleanup_err->message);
      g_clear_error (&cleanup_err);
    }
  }
  if (ok) {
    if (!virt_checkpoint_save (r->dom, r->checkpoint, r->env->state_dir, &cleanup_err))
      ova_warn ("the backup is committed, but its checkpoint XML could not be "
                "saved (after a restart of VM %s the next backup will be full): %s",
                bk_vm_label (r), cleanup_err->message);
    return TRUE;
  }

  /* A checkpoint nothing committed: a later incremental must not trust it.
   * A VM that went away took its job with it, and its bitmaps go with
   * qemu-img, under the volumes' leases: the VM may start on another host. */
  {
    g_autoptr (GPtrArray) paths = bk_disk_paths (r);
    g_autoptr (GPtrArray) images = bk_disk_images (r);

    if (!bk_domain_active (r) && !bk_lease_paths (r, paths, &cleanup_err))
      ova_warn ("the bitmap of checkpoint %s is left in the disks of VM %s (no "
                "backup trusts it; qemu-img bitmap --remove removes it): %s",
                r->checkpoint, bk_vm_label (r), cleanup_err->message);
    else if (!bk_drop_checkpoint (r, r->checkpoint, paths,
                               (const char *const *) images->pdata, &cleanup_err))
      ova_warn ("checkpoint %s of VM %s could not be deleted after the failed "
                "backup: %s", r->checkpoint, bk_vm_label (r), cleanup_err->message);
    g_clear_error (&cleanup_err);
    if (!bk_release_leases (r, &cleanup_err))
      ova_warn ("%s", cleanup_err->message);
  }
  if (!bk_domain_active (r) && err != NULL && !ova_cancelled)
    g_prefix_error (&err, "VM %s stopped during the backup: ", bk_vm_label (r));
  g_propagate_error (error, g_steal_pointer (&err));
  return FALSE;
}

/* Stopped VM: qemu-nbd per disk; the checkpoint becomes a bitmap in each
 * top volume once the backup is committed. */
gboolean
backup_stopped (run *r, ova_stream_output *out, strm_encoder *enc, GError **error)
{
  g_autoptr (GHashTable) users = NULL;
  g_autoptr (GPtrArray) targets = NULL;
  g_autofree char *parent = NULL;
  const char *prev;

  users = virt_volume_users (r->env->libvirt_uri, error);
  if (users == NULL)
    return FALSE;
  for (guint i = 0; i < r->disks->len; i++) {
    bdisk *d = r->disks->pdata[i];

    for (guint k = 0; k < d->layers->len; k++) {
      const char *p = ((const stor_layer *) d->layers->pdata[k])->path;
      g_autofree char *real = realpath (p, NULL);
      GPtrArray *list = g_hash_table_lookup (users, real ? real : p);

      if (list == NULL && real != NULL)
        list = g_hash_table_lookup (users, p);
      if (list != NULL && list->len > 0) {
        const virt_disk_user *u = list->pdata[0];

        g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                     "disk %s of VM %s is in use by running VM %s (disk %s, %s)",
                     d->image, bk_vm_label (r), u->vm_name, u->target, p);
        return FALSE;
      }
    }
  }

  /* Another host may run the VM: the bitmaps go into the top volumes
   * under their leases, taken before anything is read. */
  for (guint i = 0; i < r->disks->len; i++) {
    const bdisk *d = r->disks->pdata[i];

    if (!bk_take_lease (r, d->sd, d->top, error))
      return FALSE;
  }

  prev = bk_vm_last_checkpoint (r);
  if (prev != NULL) {
    g_autofree char *path = virt_checkpoint_saved_path (r->env->state_dir, r->vm_uuid,
                                                        prev, NULL);

    if (path && g_file_test (path, G_FILE_TEST_EXISTS))
      parent = g_strdup (prev);
  }
  targets = bk_disk_targets (r, TRUE);
  r->checkpoint_xml = virt_checkpoint_redefine_xml (r->checkpoint, parent,
                                                    g_get_real_time () / G_USEC_PER_SEC,
                                                    (const char *const *) targets->pdata);

  for (guint i = 0; i < r->disks->len; i++) {
    bdisk *d = r->disks->pdata[i];
    const char *bitmaps[] = { d->from, NULL };

    if (ova_cancelled) {
      bk_check_cancel (error);
      return FALSE;
    }
    d->srv = nbdr_server_start (d->layers, 0, d->from ? bitmaps : NULL, -1,
                                r->env->run_dir, error);
    if (d->srv == NULL)
      return FALSE;
  }
  if (!send_disks (r, out, enc, NULL, error))
    return FALSE;
  for (guint i = 0; i < r->disks->len; i++)
    g_clear_pointer (&((bdisk *) r->disks->pdata[i])->srv, nbdr_server_stop);

  /* Committed: the new checkpoint is a new bitmap in each top volume. The
   * older ones keep recording, as libvirt keeps them: libvirt refuses to
   * redefine a checkpoint whose bitmap is disabled, and the newer ones
   * after it, once the VM runs again. */
  for (guint i = 0; i < r->disks->len; i++) {
    bdisk *d = r->disks->pdata[i];

    if (!virt_image_bitmap_add (d->path, r->checkpoint, error))
      goto undo;
  }
  if (!virt_checkpoint_save_xml (r->env->state_dir, r->vm_uuid, r->checkpoint,
                                 r->checkpoint_xml, error))
    goto undo;
  if (!bk_release_leases (r, error)) {
    g_prefix_error (error, "the backup was committed and checkpoint %s recorded, "
                    "but: ", r->checkpoint);
    return FALSE;
  }
  return TRUE;

 undo:
  g_prefix_error (error, "the backup was committed, but checkpoint %s could not be "
                  "recorded in the images (the next backup of these disks must be "
                  "full): ", r->checkpoint);
  for (guint i = 0; i < r->disks->len; i++) {
    bdisk *d = r->disks->pdata[i];
    g_autoptr (GError) err = NULL;

    if (!virt_image_bitmap_remove (d->path, r->checkpoint, &err))
      ova_warn ("%s", err->message);
    virt_state_forget_disk (r->state, d->image);
  }
  {
    g_autoptr (GError) err = NULL;

    if (!bk_release_leases (r, &err))
      ova_warn ("%s", err->message);
  }
  return FALSE;
}
