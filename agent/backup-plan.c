/* ovagent: backup: the plan: which disks of the VM are sent, and for each
 * whether full, incremental or differential, from which checkpoint and why. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "agent/backup-priv.h"
#include "storage/qemu-img.h"
#include "virt/checkpoint.h"
#include "virt/state.h"

/* The stream and the receiver take disks up to this size. */
#define MAX_DISK_SIZE ((guint64) 64 << 40)

static const char compat_advice[] =
  "; upgrade it with 'qemu-img amend -o compat=1.1' while the VM is down";

/* A stopped VM's disk d, read as VDSM's metadata describes its chain: the
 * layers, the top volume and why it cannot be backed up (*why, or NULL). */
static gboolean
plan_stopped_disk (run *r, bdisk *d, char **why, GError **error)
{
  stor_domain *sdom;
  stor_image *simg;
  const stor_volume *top;

  if (!bk_prepare_image (r, d->domain, d->image, &sdom, &simg, &d->layers, error))
    return FALSE;
  top = simg->volumes->pdata[simg->volumes->len - 1];
  if (d->volume != NULL && strcmp (d->volume, top->uuid) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "disk %s of VM %s: libvirt's XML names volume %s, but the top "
                 "volume of image %s is %s", bk_disk_label (d), bk_vm_label (r),
                 d->volume, d->image, top->uuid);
    return FALSE;
  }
  g_free (d->domain);
  d->domain = g_strdup (sdom->uuid);
  g_free (d->volume);
  d->volume = g_strdup (top->uuid);
  g_free (d->path);
  d->path = g_strdup (top->path);
  d->sd = sdom;
  d->top = top;
  *why = virt_image_unsupported (d->path,
                                 ((const stor_layer *) d->layers->pdata[0])->format,
                                 &d->size);
  return TRUE;
}

/* ---- choosing the disks ---- */

static gboolean
disk_wanted (const char *const *want, const char *target, const char *image,
             gboolean *matched)
{
  gboolean found = FALSE;

  if (want == NULL)
    return TRUE;
  for (gsize i = 0; want[i]; i++)
    if ((target && g_ascii_strcasecmp (want[i], target) == 0) ||
        (image && g_ascii_strcasecmp (want[i], image) == 0)) {
      matched[i] = TRUE;
      found = TRUE;
    }
  return found;
}

static void
add_skipped (run *r, const char *target, const char *image, const char *reason)
{
  skipped_disk *s = g_new0 (skipped_disk, 1);

  s->target = g_strdup (target);
  s->image = g_strdup (image);
  s->reason = g_strdup (reason);
  g_ptr_array_add (r->skipped, s);
  ova_info ("VM %s: disk %s is not backed up: %s", bk_vm_label (r),
            target ? target : image, reason);
}

/* A disk asked for by name that cannot be backed up: exit 5. */
static void
set_unsupported (run *r, GError **error, const char *what, const char *path,
                 const char *reason)
{
  g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
               "disk %s of VM %s (%s) cannot be backed up: %s%s", what,
               bk_vm_label (r), path ? path : "no local path", reason,
               strstr (reason, "compat") ? compat_advice : "");
}

static gboolean
check_unmatched (run *r, const gboolean *matched, GError **error)
{
  for (gsize i = 0; backup_opts.disks && backup_opts.disks[i]; i++)
    if (!matched[i]) {
      g_autofree char *q = ova_quote_untrusted (backup_opts.disks[i], 64);

      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "VM %s has no disk %s (give an image UUID or a target such as vda)",
                   bk_vm_label (r), q);
      return FALSE;
    }
  return TRUE;
}

static gboolean
add_disk (run *r, bdisk *d, GError **error)
{
  for (guint i = 0; i < r->disks->len; i++) {
    const bdisk *o = r->disks->pdata[i];

    if (strcmp (o->image, d->image) == 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                   "disks %s and %s of VM %s are the same image %s",
                   bk_disk_label (o), bk_disk_label (d), bk_vm_label (r), d->image);
      bdisk_free (d);
      return FALSE;
    }
  }
  if (d->size == 0 || d->size % 512 != 0 || d->size > MAX_DISK_SIZE) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "disk %s of VM %s has a virtual size of %" G_GUINT64_FORMAT
                 " bytes, which a backup stream cannot carry", bk_disk_label (d),
                 bk_vm_label (r), d->size);
    bdisk_free (d);
    return FALSE;
  }
  d->last = g_strdup (virt_state_disk_checkpoint (r->state, d->image));
  g_ptr_array_add (r->disks, d);
  return TRUE;
}

/* The disks libvirt describes (running or defined VM). */
static gboolean
plan_libvirt_disks (run *r, GError **error)
{
  g_autoptr (GPtrArray) xml = NULL;
  g_autofree gboolean *matched = g_new0 (gboolean, backup_opts.disks ? g_strv_length (backup_opts.disks) + 1 : 1);

  xml = virt_domain_disks (r->dom, error);
  if (xml == NULL)
    return FALSE;

  for (guint i = 0; i < xml->len; i++) {
    virt_disk *vd = xml->pdata[i];
    g_autoptr (bdisk) d = g_new0 (bdisk, 1);
    g_autofree char *sd = NULL, *img = NULL, *vol = NULL;
    g_autofree char *stopped_why = NULL;
    const char *serial = vd->serial;
    const char *why = vd->unsupported;

    if (bk_vdsm_path_ids (vd->path, &sd, &img, &vol)) {
      d->domain = g_steal_pointer (&sd);
      d->volume = g_steal_pointer (&vol);
      d->image = g_steal_pointer (&img);
    }
    else if (serial && ova_uuid_is_valid (serial))
      d->image = g_ascii_strdown (serial, -1);

    if (!disk_wanted ((const char *const *) backup_opts.disks, vd->target, d->image, matched))
      continue;
    if (why == NULL && d->image == NULL)
      why = "not an oVirt volume (no image UUID in its path or serial)";
    if (why == NULL && !r->running) {
      if (d->volume == NULL)
        why = "its volume chain is not known: its path is not a volume of an "
              "oVirt storage domain";
      else {
        d->target = g_strdup (vd->target);
        if (!plan_stopped_disk (r, d, &stopped_why, error))
          return FALSE;
        why = stopped_why;
      }
    }
    if (why != NULL) {
      if (backup_opts.disks) {
        set_unsupported (r, error, vd->target ? vd->target : "(no target)",
                         vd->path, why);
        return FALSE;
      }
      add_skipped (r, vd->target, d->image, why);
      continue;
    }
    if (r->running) {
      g_free (d->target);
      d->target = g_strdup (vd->target);
      d->path = g_strdup (vd->path);
      d->size = vd->virtual_size;
      d->layers = vd->layers ? g_ptr_array_ref (vd->layers) : NULL;
    }
    if (!add_disk (r, g_steal_pointer (&d), error))
      return FALSE;
  }
  return check_unmatched (r, matched, error);
}

/* A stopped VM libvirt does not know: --disk IMG for every disk. */
static gboolean
plan_storage_disks (run *r, GError **error)
{
  for (gsize i = 0; backup_opts.disks[i]; i++) {
    g_autoptr (bdisk) d = g_new0 (bdisk, 1);
    g_autofree char *why = NULL;

    if (!ova_uuid_is_valid (backup_opts.disks[i])) {
      g_autofree char *q = ova_quote_untrusted (backup_opts.disks[i], 64);

      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "VM %s is not known to libvirt: --disk must be an image UUID, not %s",
                   r->vm_uuid, q);
      return FALSE;
    }
    d->image = g_ascii_strdown (backup_opts.disks[i], -1);
    d->target = g_strdup (virt_state_disk_target (r->state, d->image));
    if (!plan_stopped_disk (r, d, &why, error))
      return FALSE;
    if (why != NULL) {
      set_unsupported (r, error, d->image, d->path, why);
      return FALSE;
    }
    if (!add_disk (r, g_steal_pointer (&d), error))
      return FALSE;
  }
  return TRUE;
}

/* ---- choosing the kind of each disk ---- */

/* <creationTime> of a saved checkpoint, 0 if unknown. */
static gint64
saved_creation_time (const run *r, const char *cp)
{
  g_autofree char *path = virt_checkpoint_saved_path (r->env->state_dir, r->vm_uuid, cp, NULL);
  g_autofree char *xml = NULL;
  const char *a, *b;
  gint64 t = 0;

  if (path == NULL || !g_file_get_contents (path, &xml, NULL, NULL) ||
      strlen (xml) > 1024 * 1024)
    return 0;
  a = strstr (xml, "<creationTime>");
  b = a ? strstr (a, "</creationTime>") : NULL;
  if (a && b) {
    g_autofree char *num = g_strndup (a + strlen ("<creationTime>"),
                                      b - a - strlen ("<creationTime>"));

    if (!g_ascii_string_to_signed (g_strstrip (num), 10, 0, G_MAXINT64, &t, NULL))
      t = 0;
  }
  return t;
}

/* How new a checkpoint is, for choosing among the disks' last ones:
 * libvirt's order for a running VM, the saved creation time otherwise. */
static gint64
checkpoint_rank (const run *r, const char *cp)
{
  guint idx;

  if (r->known && g_ptr_array_find_with_equal_func (r->known, cp, g_str_equal, &idx))
    return ((gint64) 1 << 40) + idx;
  return saved_creation_time (r, cp);
}

static gboolean
libvirt_knows (const run *r, const char *cp)
{
  return r->known && g_ptr_array_find_with_equal_func (r->known, cp, g_str_equal, NULL);
}

/* Why the disk cannot be read from checkpoint cp, or NULL. */
static char *
bitmap_problem (run *r, const bdisk *d, const char *cp, GError **error)
{
  g_autoptr (GPtrArray) bms = virt_image_bitmaps (d->path, error);
  const virt_image_bitmap *found = NULL;

  if (bms == NULL)
    return NULL;
  for (guint i = 0; i < bms->len && !found; i++)
    if (strcmp (((virt_image_bitmap *) bms->pdata[i])->name, cp) == 0)
      found = bms->pdata[i];
  if (r->running) {
    /* QEMU writes the bitmaps it created to the image only when it closes
     * it: one libvirt knows (it validated it when it was redefined) and
     * the file does not show yet is QEMU's, and backup-begin checks it. */
    if (found == NULL && libvirt_knows (r, cp))
      return NULL;
  }
  else if (found != NULL &&
           (!found->enabled || g_strcmp0 (cp, bk_vm_last_checkpoint (r)) != 0))
    return g_strdup_printf ("bitmap %s in %s is not the VM's last checkpoint: a "
                            "differential of a stopped VM can start only from "
                            "its last checkpoint", cp, d->path);
  if (d->layers == NULL)
    return g_strdup_printf ("libvirt's XML does not give the format of every volume "
                            "under %s, so bitmap %s cannot be followed down its chain",
                            d->path, cp);
  return virt_bitmap_chain_problem (d->layers, cp, r->running, error);
}

/* Checkpoints libvirt could not redefine are set aside (renamed *.broken),
 * so that they stop blocking the redefinition of newer ones, and the disks
 * whose last checkpoint they were forget them. */
static void
set_aside_unknown (run *r)
{
  g_autoptr (GPtrArray) images = virt_state_disks (r->state);

  for (guint i = 0; i < images->len; i++) {
    const char *cp = virt_state_disk_checkpoint (r->state, images->pdata[i]);
    g_autofree char *path = NULL;
    g_autofree char *aside = NULL;
    g_autofree char *keep = NULL;

    if (cp == NULL || libvirt_knows (r, cp))
      continue;
    keep = g_strdup (cp);
    path = virt_checkpoint_saved_path (r->env->state_dir, r->vm_uuid, keep, NULL);
    if (path && g_file_test (path, G_FILE_TEST_EXISTS)) {
      aside = g_strconcat (path, ".broken", NULL);
      if (rename (path, aside) < 0)
        ova_warn ("cannot rename %s to %s: %s", path, aside, g_strerror (errno));
      else
        ova_warn ("checkpoint %s of VM %s could not be redefined; its saved XML "
                  "is now %s", keep, bk_vm_label (r), aside);
    }
    virt_state_forget_checkpoint (r->state, keep);
  }
}

static gboolean
redefine (run *r, GError **error)
{
  g_autoptr (GError) err = NULL;

  if (!r->running)
    return TRUE;
  if (!virt_checkpoint_redefine_missing (r->dom, r->env->state_dir, &r->redefined, &err)) {
    if (!backup_opts.autom) {
      g_propagate_error (error, g_steal_pointer (&err));
      return FALSE;
    }
    ova_warn ("%s", err->message);
  }
  g_clear_pointer (&r->known, g_ptr_array_unref);
  r->known = virt_checkpoint_list (r->dom, error);
  if (r->known == NULL)
    return FALSE;
  if (err != NULL)
    set_aside_unknown (r);
  for (guint i = 0; i < r->disks->len; i++) {
    bdisk *d = r->disks->pdata[i];

    g_free (d->last);
    d->last = g_strdup (virt_state_disk_checkpoint (r->state, d->image));
  }
  return TRUE;
}

void
bk_set_kind (bdisk *d, const char *kind, const char *from, char *reason)
{
  d->kind = kind;
  g_free (d->from);
  d->from = g_strdup (from);
  g_free (d->reason);
  d->reason = reason;
}

static gboolean
plan_auto (run *r, GError **error)
{
  g_autofree gboolean *valid = g_new0 (gboolean, r->disks->len + 1);
  const char *newest = NULL;
  gint64 newest_rank = -1;

  for (guint i = 0; i < r->disks->len; i++) {
    bdisk *d = r->disks->pdata[i];
    g_autofree char *problem = NULL;
    gint64 rank;

    if (d->last == NULL) {
      bk_set_kind (d, "full", NULL, g_strdup ("no checkpoint was committed for this disk"));
      continue;
    }
    if (r->running && !libvirt_knows (r, d->last)) {
      bk_set_kind (d, "full", NULL,
                g_strdup_printf ("its last checkpoint %s is not known to libvirt and "
                                 "could not be redefined", d->last));
      continue;
    }
    problem = bitmap_problem (r, d, d->last, error);
    if (problem == NULL && error && *error)
      return FALSE;
    if (problem != NULL) {
      bk_set_kind (d, "full", NULL,
                g_strdup_printf ("the bitmap chain of its last checkpoint is broken: %s",
                                 problem));
      continue;
    }
    valid[i] = TRUE;
    rank = checkpoint_rank (r, d->last);
    if (rank > newest_rank) {
      newest_rank = rank;
      newest = d->last;
    }
  }
  for (guint i = 0; i < r->disks->len; i++) {
    bdisk *d = r->disks->pdata[i];

    if (!valid[i])
      continue;
    if (strcmp (d->last, newest) != 0)
      bk_set_kind (d, "full", NULL,
                g_strdup_printf ("its last checkpoint %s is older than %s, the newest "
                                 "among the VM's disks", d->last, newest));
    else
      bk_set_kind (d, "incremental", d->last,
                g_strdup_printf ("incremental from %s, the last checkpoint committed "
                                 "for this disk", d->last));
  }
  r->from = g_strdup (newest);
  return TRUE;
}

/* The VM's last committed checkpoint: the newest among its disks'. */
const char *
bk_vm_last_checkpoint (const run *r)
{
  g_autoptr (GPtrArray) images = virt_state_disks (r->state);
  const char *best = NULL;
  gint64 best_rank = -1;

  for (guint i = 0; i < images->len; i++) {
    const char *cp = virt_state_disk_checkpoint (r->state, images->pdata[i]);
    gint64 rank = cp ? checkpoint_rank (r, cp) : -1;

    if (rank > best_rank) {
      best_rank = rank;
      best = cp;
    }
  }
  return best;
}

static gboolean
plan_from (run *r, GError **error)
{
  const char *kind = backup_opts.differential ? "differential" : "incremental";
  g_autofree char *cp = NULL;

  if (backup_opts.from != NULL)
    cp = g_strdup (backup_opts.from);
  else {
    cp = g_strdup (bk_vm_last_checkpoint (r));
    if (cp == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "VM %s has no committed checkpoint to continue from; take a full "
                   "backup first", bk_vm_label (r));
      return FALSE;
    }
  }
  if (r->running && !libvirt_knows (r, cp)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "checkpoint %s of VM %s is neither known to libvirt nor saved in "
                 "%s/checkpoints/%s; take a full backup", cp, bk_vm_label (r),
                 r->env->state_dir, r->vm_uuid);
    return FALSE;
  }
  for (guint i = 0; i < r->disks->len; i++) {
    bdisk *d = r->disks->pdata[i];
    g_autofree char *problem = bitmap_problem (r, d, cp, error);

    if (problem == NULL && error && *error)
      return FALSE;
    if (problem != NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                   "disk %s%s%s of VM %s cannot be backed up from checkpoint %s: %s",
                   d->image, d->target ? " as " : "", d->target ? d->target : "",
                   bk_vm_label (r), cp, problem);
      return FALSE;
    }
    bk_set_kind (d, kind, cp,
              backup_opts.from ? g_strdup_printf ("%s from checkpoint %s, as asked", kind, cp)
                        : g_strdup_printf ("%s from %s, the VM's last committed "
                                           "checkpoint", kind, cp));
  }
  r->from = g_steal_pointer (&cp);
  return TRUE;
}

gboolean
bk_plan (run *r, GError **error)
{
  r->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) bdisk_free);
  r->skipped = g_ptr_array_new_with_free_func ((GDestroyNotify) skipped_disk_free);
  if (r->dom != NULL) {
    if (!plan_libvirt_disks (r, error))
      return FALSE;
  }
  else if (!plan_storage_disks (r, error))
    return FALSE;
  if (r->disks->len == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "VM %s has no disk that can be backed up%s", bk_vm_label (r),
                 r->skipped->len ? " (see the reasons above)" : "");
    return FALSE;
  }

  if (backup_opts.full) {
    for (guint i = 0; i < r->disks->len; i++)
      bk_set_kind (r->disks->pdata[i], "full", NULL, g_strdup ("full backup, as asked"));
    return TRUE;
  }
  if (!redefine (r, error))
    return FALSE;
  if (backup_opts.autom)
    return plan_auto (r, error);
  return plan_from (r, error);
}
