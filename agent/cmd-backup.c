/* ovagent: the `backup` command: changed-block tracking backups of a VM's disks,
 * through a libvirt pull-mode job (running VM) or qemu-nbd (stopped VM). */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "agent/cancel.h"
#include "agent/command.h"
#include "agent/output.h"
#include "agent/progress.h"
#include "agent/stream-output.h"
#include "nbd/nbd.h"
#include "storage/lease.h"
#include "storage/lvm.h"
#include "storage/probe.h"
#include "storage/qemu-img.h"
#include "storage/scan.h"
#include "stream/copy.h"
#include "stream/ssh.h"
#include "stream/stream.h"
#include "virt/checkpoint.h"
#include "virt/state.h"
#include "virt/vmusage.h"

/* The stream and the receiver take disks up to this size. */
#define MAX_DISK_SIZE ((guint64) 64 << 40)
/* QEMU may hold the image lock for a moment after libvirt saw it exit. */
#define IMAGE_RETRY_COUNT 20
#define IMAGE_RETRY_US (250 * 1000)

static const char compat_advice[] =
  "; upgrade it with 'qemu-img amend -o compat=1.1' while the VM is down";

static struct {
  char **disks;
  gboolean full;
  gboolean incremental;
  gboolean differential;
  gboolean autom;
  char *from;
  char *scratch_dir;
  int requests;          /* 0: the reader's default */
  int connections;
} opts;

static const GOptionEntry entries[] = {
  { "disk", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opts.disks,
    "Back up this disk only (image UUID, or target dev such as vda); repeat "
    "for several", "DISK" },
  { "full", 0, 0, G_OPTION_ARG_NONE, &opts.full,
    "Send every allocated block", NULL },
  { "incremental", 0, 0, G_OPTION_ARG_NONE, &opts.incremental,
    "Send what changed since the last committed checkpoint (or --from CP)", NULL },
  { "differential", 0, 0, G_OPTION_ARG_NONE, &opts.differential,
    "Send what changed since checkpoint --from CP", NULL },
  { "auto", 0, 0, G_OPTION_ARG_NONE, &opts.autom,
    "Per disk: incremental when its last checkpoint is valid, else full", NULL },
  { "from", 0, 0, G_OPTION_ARG_STRING, &opts.from,
    "The checkpoint an incremental or differential backup starts from", "CP" },
  OVA_STREAM_OPTION_ENTRIES,
  { "scratch-dir", 0, 0, G_OPTION_ARG_FILENAME, &opts.scratch_dir,
    "Where a running VM's backup keeps the old content of rewritten clusters "
    "(config key scratch_dir)", "DIR" },
  { "requests", 0, 0, G_OPTION_ARG_INT, &opts.requests,
    "NBD reads in flight per disk (default 16)", "N" },
  { "connections", 0, 0, G_OPTION_ARG_INT, &opts.connections,
    "NBD connections per disk when the export allows several (default 4)", "N" },
  { NULL },
};

/* ---- the plan ---- */

typedef struct {
  char *target;          /* vda; NULL if not known (stopped, no libvirt domain) */
  char *image;           /* image UUID: the disk's identity */
  char *domain;          /* storage domain UUID, or NULL */
  char *volume;          /* top volume UUID, or NULL */
  char *path;            /* the top volume */
  guint64 size;          /* virtual size */
  const char *kind;      /* "full", "incremental", "differential" */
  char *from;            /* checkpoint, NULL for full */
  char *reason;          /* why this kind */
  char *last;            /* the disk's last committed checkpoint, or NULL */
  GPtrArray *layers;     /* stor_layer*: the image and its backing chain, top
                          * first, each format named (VDSM's metadata for a
                          * stopped VM, libvirt's XML for a running one);
                          * NULL where libvirt does not give all of it */
  nbdr_server *srv;      /* stopped VM: qemu-nbd over the chain */
  const stor_domain *sd; /* stopped VM: the domain and the top volume, */
  const stor_volume *top;/* borrowed from the storage scan */
  guint64 data, zero, hole, read;
} bdisk;

static void
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
G_DEFINE_AUTOPTR_CLEANUP_FUNC (bdisk, bdisk_free)

typedef struct {
  char *target;
  char *image;
  char *reason;
} skipped_disk;

static void
skipped_disk_free (skipped_disk *s)
{
  g_free (s->target);
  g_free (s->image);
  g_free (s->reason);
  g_free (s);
}

/* Everything one run holds; cleared by run_clear in the order that frees
 * the NBD servers before the LVs under them are deactivated. */
typedef struct {
  ova_ctx *ctx;
  const stor_env *env;
  char *scratch_dir;
  virConnectPtr conn;
  virDomainPtr dom;      /* NULL: libvirt does not know the VM */
  gboolean running;
  char *vm_uuid;
  char *vm_name;         /* NULL when libvirt does not know the VM */
  int lock_fd;
  virt_state *state;
  GPtrArray *storage;    /* stor_domain*, scanned on first need */
  stor_lv_guard *guard;
  GPtrArray *leases;     /* stor_lease*: stopped VM, the volumes written */
  GPtrArray *disks;      /* bdisk* */
  GPtrArray *skipped;    /* skipped_disk* */
  GPtrArray *redefined;  /* char* */
  GPtrArray *known;      /* running: libvirt's checkpoints, parents first */
  char *recovered;
  char *job;
  char *checkpoint;
  char *from;            /* running: the one from_checkpoint of the job */
  char *checkpoint_xml;
  guint64 bytes_read;
} run;

static void
run_clear (run *r)
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

static const char *
vm_label (const run *r)
{
  return r->vm_name ? r->vm_name : r->vm_uuid;
}

static const char *
disk_label (const bdisk *d)
{
  return d->target ? d->target : d->image;
}

/* ---- disk identity ---- */

/* SD, IMG and VOL of a VDSM path .../<SD>/images/<IMG>/<VOL>. */
static gboolean
vdsm_path_ids (const char *path, char **sd, char **img, char **vol)
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
static gboolean
prepare_image (run *r, const char *sd, const char *image, stor_domain **dom_out,
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

/* A stopped VM's disk d, read as VDSM's metadata describes its chain: the
 * layers, the top volume and why it cannot be backed up (*why, or NULL). */
static gboolean
plan_stopped_disk (run *r, bdisk *d, char **why, GError **error)
{
  stor_domain *sdom;
  stor_image *simg;
  const stor_volume *top;

  if (!prepare_image (r, d->domain, d->image, &sdom, &simg, &d->layers, error))
    return FALSE;
  top = simg->volumes->pdata[simg->volumes->len - 1];
  if (d->volume != NULL && strcmp (d->volume, top->uuid) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "disk %s of VM %s: libvirt's XML names volume %s, but the top "
                 "volume of image %s is %s", disk_label (d), vm_label (r),
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

/* Before a stopped VM's volume is written (a bitmap added or removed), its
 * sanlock lease, as VDSM takes it: another host may run the VM. Held until
 * release_leases. */
static gboolean
take_lease (run *r, const stor_domain *dom, const stor_volume *vol, GError **error)
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
static gboolean
release_leases (run *r, GError **error)
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
  ova_info ("VM %s: disk %s is not backed up: %s", vm_label (r),
            target ? target : image, reason);
}

/* A disk asked for by name that cannot be backed up: exit 5. */
static void
set_unsupported (run *r, GError **error, const char *what, const char *path,
                 const char *reason)
{
  g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
               "disk %s of VM %s (%s) cannot be backed up: %s%s", what,
               vm_label (r), path ? path : "no local path", reason,
               strstr (reason, "compat") ? compat_advice : "");
}

static gboolean
check_unmatched (run *r, const gboolean *matched, GError **error)
{
  for (gsize i = 0; opts.disks && opts.disks[i]; i++)
    if (!matched[i]) {
      g_autofree char *q = ova_quote_untrusted (opts.disks[i], 64);

      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "VM %s has no disk %s (give an image UUID or a target such as vda)",
                   vm_label (r), q);
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
                   disk_label (o), disk_label (d), vm_label (r), d->image);
      bdisk_free (d);
      return FALSE;
    }
  }
  if (d->size == 0 || d->size % 512 != 0 || d->size > MAX_DISK_SIZE) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "disk %s of VM %s has a virtual size of %" G_GUINT64_FORMAT
                 " bytes, which a backup stream cannot carry", disk_label (d),
                 vm_label (r), d->size);
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
  g_autofree gboolean *matched = g_new0 (gboolean, opts.disks ? g_strv_length (opts.disks) + 1 : 1);

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

    if (vdsm_path_ids (vd->path, &sd, &img, &vol)) {
      d->domain = g_steal_pointer (&sd);
      d->volume = g_steal_pointer (&vol);
      d->image = g_steal_pointer (&img);
    }
    else if (serial && ova_uuid_is_valid (serial))
      d->image = g_ascii_strdown (serial, -1);

    if (!disk_wanted ((const char *const *) opts.disks, vd->target, d->image, matched))
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
      if (opts.disks) {
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
  for (gsize i = 0; opts.disks[i]; i++) {
    g_autoptr (bdisk) d = g_new0 (bdisk, 1);
    g_autofree char *why = NULL;

    if (!ova_uuid_is_valid (opts.disks[i])) {
      g_autofree char *q = ova_quote_untrusted (opts.disks[i], 64);

      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "VM %s is not known to libvirt: --disk must be an image UUID, not %s",
                   r->vm_uuid, q);
      return FALSE;
    }
    d->image = g_ascii_strdown (opts.disks[i], -1);
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

static const char *vm_last_checkpoint (const run *r);

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
           (!found->enabled || g_strcmp0 (cp, vm_last_checkpoint (r)) != 0))
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
                  "is now %s", keep, vm_label (r), aside);
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
    if (!opts.autom) {
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

static void
set_kind (bdisk *d, const char *kind, const char *from, char *reason)
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
      set_kind (d, "full", NULL, g_strdup ("no checkpoint was committed for this disk"));
      continue;
    }
    if (r->running && !libvirt_knows (r, d->last)) {
      set_kind (d, "full", NULL,
                g_strdup_printf ("its last checkpoint %s is not known to libvirt and "
                                 "could not be redefined", d->last));
      continue;
    }
    problem = bitmap_problem (r, d, d->last, error);
    if (problem == NULL && error && *error)
      return FALSE;
    if (problem != NULL) {
      set_kind (d, "full", NULL,
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
      set_kind (d, "full", NULL,
                g_strdup_printf ("its last checkpoint %s is older than %s, the newest "
                                 "among the VM's disks", d->last, newest));
    else
      set_kind (d, "incremental", d->last,
                g_strdup_printf ("incremental from %s, the last checkpoint committed "
                                 "for this disk", d->last));
  }
  r->from = g_strdup (newest);
  return TRUE;
}

/* The VM's last committed checkpoint: the newest among its disks'. */
static const char *
vm_last_checkpoint (const run *r)
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
  const char *kind = opts.differential ? "differential" : "incremental";
  g_autofree char *cp = NULL;

  if (opts.from != NULL)
    cp = g_strdup (opts.from);
  else {
    cp = g_strdup (vm_last_checkpoint (r));
    if (cp == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "VM %s has no committed checkpoint to continue from; take a full "
                   "backup first", vm_label (r));
      return FALSE;
    }
  }
  if (r->running && !libvirt_knows (r, cp)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "checkpoint %s of VM %s is neither known to libvirt nor saved in "
                 "%s/checkpoints/%s; take a full backup", cp, vm_label (r),
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
                   vm_label (r), cp, problem);
      return FALSE;
    }
    set_kind (d, kind, cp,
              opts.from ? g_strdup_printf ("%s from checkpoint %s, as asked", kind, cp)
                        : g_strdup_printf ("%s from %s, the VM's last committed "
                                           "checkpoint", kind, cp));
  }
  r->from = g_steal_pointer (&cp);
  return TRUE;
}

static gboolean
plan (run *r, GError **error)
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
                 "VM %s has no disk that can be backed up%s", vm_label (r),
                 r->skipped->len ? " (see the reasons above)" : "");
    return FALSE;
  }

  if (opts.full) {
    for (guint i = 0; i < r->disks->len; i++)
      set_kind (r->disks->pdata[i], "full", NULL, g_strdup ("full backup, as asked"));
    return TRUE;
  }
  if (!redefine (r, error))
    return FALSE;
  if (opts.autom)
    return plan_auto (r, error);
  return plan_from (r, error);
}

/* ---- undoing a run that died ---- */

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

static gboolean
domain_active (const run *r)
{
  return r->dom != NULL && virDomainIsActive (r->dom) == 1;
}

/* End a job of ours; when QEMU is gone its socket may be left: ours to
 * remove then. */
static gboolean
end_job (run *r, virt_backup *b, GError **error)
{
  g_autoptr (GError) err = NULL;

  if (virt_backup_end (r->dom, b, &err))
    return TRUE;
  if (!domain_active (r)) {
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
static gboolean
drop_checkpoint (run *r, const char *cp, GPtrArray *paths, const char *const *images,
                 GError **error)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GPtrArray) known = NULL;

  if (r->dom != NULL) {
    known = virt_checkpoint_list (r->dom, NULL);
    if (known && g_ptr_array_find_with_equal_func (known, cp, g_str_equal, NULL)) {
      if (virt_checkpoint_delete (r->dom, cp, r->env->state_dir, &err)) {
        ova_info ("deleted checkpoint %s of VM %s", cp, vm_label (r));
        return TRUE;
      }
      if (domain_active (r)) {
        g_propagate_error (error, g_steal_pointer (&err));
        return FALSE;
      }
      ova_debug ("%s", err->message);
    }
    else if (domain_active (r))
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

  if (!prepare_image (r, sd, image, &sdom, &simg, NULL, error))
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
  return take_lease (r, sdom, v, error);
}

/* The volumes at paths (a VM's disks as libvirt names them), their leases
 * taken. */
static gboolean
lease_paths (run *r, GPtrArray *paths, GError **error)
{
  for (guint i = 0; i < paths->len; i++) {
    const char *path = paths->pdata[i];
    g_autofree char *sd = NULL, *img = NULL, *vol = NULL;
    const stor_volume *v;

    if (!vdsm_path_ids (path, &sd, &img, &vol)) {
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

    if (!vd->is_block && vdsm_path_ids (vd->path, &s, &img, &vl) &&
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

static gboolean
recover_pending (run *r, GError **error)
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
            vm_label (r), job_copy, cp_copy);

  if (was_running) {
    g_autoptr (virt_backup) b = virt_backup_for_id (r->env->run_dir, r->scratch_dir,
                                                    job_copy, error);

    if (b == NULL || !end_job (r, b, error))
      return FALSE;
  }
  if (!domain_active (r)) {
    /* The pending disks' top volumes, where the bitmap would be. */
    g_autoptr (GPtrArray) xml = r->dom ? virt_domain_disks (r->dom, NULL) : NULL;

    for (gsize i = 0; img_copy[i]; i++) {
      char *path = NULL;

      if (!lease_pending_top (r, xml, img_copy[i], &path, error)) {
        g_prefix_error (error, "cannot undo backup %s of VM %s: ", job_copy, vm_label (r));
        return FALSE;
      }
      g_ptr_array_add (paths, path);
    }
  }
  if (!drop_checkpoint (r, cp_copy, paths, (const char *const *) img_copy, error) ||
      !release_leases (r, error))
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

/* ---- META and the result ---- */

static char *
build_meta (const run *r)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;

  strm_meta_begin (b, "backup");
  json_builder_set_member_name (b, "vm");
  json_builder_begin_object (b);
  ova_json_add_string (b, "uuid", r->vm_uuid);
  ova_json_add_string (b, "name", r->vm_name);
  ova_json_add_bool (b, "running", r->running);
  json_builder_end_object (b);
  ova_json_add_string (b, "job", r->job);
  ova_json_add_string (b, "checkpoint", r->checkpoint);
  ova_json_add_string (b, "checkpoint_xml", r->checkpoint_xml);
  json_builder_set_member_name (b, "volumes");
  json_builder_begin_array (b);
  for (guint i = 0; i < r->disks->len; i++) {
    const bdisk *d = r->disks->pdata[i];

    json_builder_begin_object (b);
    ova_json_add_string (b, "uuid", d->image);
    ova_json_add_string (b, "disk", d->image);
    ova_json_add_string (b, "target", d->target);
    ova_json_add_string (b, "domain", d->domain);
    ova_json_add_string (b, "volume", d->volume);
    ova_json_add_string (b, "kind", d->kind);
    ova_json_add_string (b, "from_checkpoint", d->from);
    ova_json_add_string (b, "format", "guest");
    ova_json_add_uint (b, "size", d->size);
    ova_json_add_uint (b, "capacity", d->size);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

static void
print_result (const run *r, const strm_totals *t, double seconds,
              const ova_stream_output *out)
{
  gboolean to_stdout = ova_stream_output_is_stdout (out);
  const char *backup_id = ova_stream_output_remote_backup_id (out);

  if (r->ctx->json) {
    g_autoptr (JsonBuilder) b = json_builder_new ();
    g_autoptr (JsonNode) root = NULL;

    json_builder_begin_object (b);
    ova_json_add_string (b, "result", "ok");
    ova_json_add_string (b, "vm", r->vm_uuid);
    ova_json_add_string (b, "name", r->vm_name);
    ova_json_add_bool (b, "running", r->running);
    ova_json_add_string (b, "job", r->job);
    ova_json_add_string (b, "checkpoint", r->checkpoint);
    ova_json_add_string (b, "backup_id", backup_id);
    json_builder_set_member_name (b, "disks");
    json_builder_begin_array (b);
    for (guint i = 0; i < r->disks->len; i++) {
      const bdisk *d = r->disks->pdata[i];

      json_builder_begin_object (b);
      ova_json_add_string (b, "target", d->target);
      ova_json_add_string (b, "disk", d->image);
      ova_json_add_string (b, "domain", d->domain);
      ova_json_add_string (b, "volume", d->volume);
      ova_json_add_string (b, "kind", d->kind);
      ova_json_add_string (b, "from_checkpoint", d->from);
      ova_json_add_string (b, "reason", d->reason);
      ova_json_add_uint (b, "virtual_size", d->size);
      ova_json_add_uint (b, "data_bytes", d->data);
      ova_json_add_uint (b, "zero_bytes", d->zero);
      ova_json_add_uint (b, "hole_bytes", d->hole);
      json_builder_end_object (b);
    }
    json_builder_end_array (b);
    json_builder_set_member_name (b, "skipped");
    json_builder_begin_array (b);
    for (guint i = 0; i < r->skipped->len; i++) {
      const skipped_disk *s = r->skipped->pdata[i];

      json_builder_begin_object (b);
      ova_json_add_string (b, "target", s->target);
      ova_json_add_string (b, "disk", s->image);
      ova_json_add_string (b, "reason", s->reason);
      json_builder_end_object (b);
    }
    json_builder_end_array (b);
    json_builder_set_member_name (b, "redefined");
    json_builder_begin_array (b);
    for (guint i = 0; r->redefined && i < r->redefined->len; i++)
      json_builder_add_string_value (b, r->redefined->pdata[i]);
    json_builder_end_array (b);
    ova_json_add_string (b, "recovered", r->recovered);
    ova_json_add_uint (b, "bytes_read", r->bytes_read);
    ova_json_add_uint (b, "bytes_sent", t->bytes_sent);
    ova_json_add_uint (b, "data_bytes", t->data_bytes);
    ova_json_add_uint (b, "zero_bytes", t->zero_bytes);
    ova_json_add_uint (b, "hole_bytes", t->hole_bytes);
    ova_json_add_double (b, "seconds", seconds);
    ova_stream_output_add_remote (b, out);
    json_builder_end_object (b);
    root = json_builder_get_root (b);
    if (to_stdout) {
      /* The stream owns stdout: the result is the last line of stderr. */
      g_autofree char *line = json_to_string (root, FALSE);

      fprintf (stderr, "%s\n", line);
    }
    else
      ova_print_json (root);
    return;
  }

  {
    FILE *fp = to_stdout ? stderr : stdout;
    g_autofree char *read = ova_format_size (r->bytes_read);
    g_autofree char *sent = ova_format_size (t->bytes_sent);
    g_autofree char *rate = ova_format_size (seconds > 0 ? r->bytes_read / seconds : 0);

    for (guint i = 0; i < r->disks->len; i++) {
      const bdisk *d = r->disks->pdata[i];
      g_autofree char *data = ova_format_size (d->data);

      fprintf (fp, "%s %s: %s, %s of data (%s)\n", d->target ? d->target : "-",
               d->image, d->kind, data, d->reason);
    }
    for (guint i = 0; i < r->skipped->len; i++) {
      const skipped_disk *s = r->skipped->pdata[i];

      fprintf (fp, "%s %s: skipped (%s)\n", s->target ? s->target : "-",
               s->image ? s->image : "-", s->reason);
    }
    fprintf (fp, "Backed up %u disk%s of VM %s to checkpoint %s: %s read, %s sent "
             "in %.1f s (%s/s)%s%s\n", r->disks->len, r->disks->len == 1 ? "" : "s",
             vm_label (r), r->checkpoint, read, sent, seconds, rate,
             backup_id ? "; backup " : "", backup_id ? backup_id : "");
  }
}

/* ---- moving the data ---- */

typedef struct {
  ova_progress_meter *meter;
  guint64 base;
} progress_state;

static void
on_progress (void *opaque, guint64 done)
{
  progress_state *ps = opaque;

  ova_progress_update (ps->meter, ps->base + done);
}

static void
check_cancel (GError **error)
{
  if (ova_cancelled && error && *error == NULL)
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED, "interrupted by a signal");
}

/* Read every disk into the stream, which must be committed by its reader
 * (file closed, or the remote receive's result) for TRUE. */
static gboolean
send_disks (run *r, ova_stream_output *out, strm_encoder *enc, virt_backup *b,
            GError **error)
{
  g_autoptr (ova_progress_meter) meter = NULL;
  g_autofree char *meta = build_meta (r);
  strm_copy_opts co = { .requests = (guint) opts.requests };
  progress_state ps = { 0 };
  guint64 total = 0;

  for (guint i = 0; i < r->disks->len; i++)
    total += ((bdisk *) r->disks->pdata[i])->size;
  meter = ova_progress_new (r->ctx->progress, vm_label (r), total);
  ps.meter = meter;
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
                     vm_label (r), disk_label (d));
        return FALSE;
      }
      if ((context != NULL) != (d->from != NULL)) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                     "backup %s of VM %s exports disk %s %s a bitmap", r->job,
                     vm_label (r), disk_label (d), context ? "with" : "without");
        return FALSE;
      }
    }
    else {
      g_autofree char *ctx_name = d->from ? g_strconcat ("qemu:dirty-bitmap:", d->from, NULL)
                                          : NULL;

      uri = nbdr_server_uri (d->srv);
      rd = nbdr_source_open (uri, ctx_name, (guint) opts.connections, error);
      if (rd == NULL)
        return FALSE;
    }
    if (rd == NULL) {
      rd = nbdr_source_open (uri, context, (guint) opts.connections, error);
      if (rd == NULL)
        return FALSE;
    }
    if (rd->size != d->size) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "the export of disk %s of VM %s has %" G_GUINT64_FORMAT
                   " bytes, its image %" G_GUINT64_FORMAT " (resized during the backup?)",
                   disk_label (d), vm_label (r), rd->size, d->size);
      return FALSE;
    }
    ova_info ("sending disk %s (%s) of VM %s: %s%s%s", disk_label (d), d->image,
              vm_label (r), d->kind, d->from ? " from " : "", d->from ? d->from : "");
    if (!strm_copy_source (enc, rd, d->image, &co, on_progress, &ps, &ova_cancelled,
                           &d->read, error))
      return FALSE;
    after = strm_encoder_totals (enc);
    d->data = after->data_bytes - before.data_bytes;
    d->zero = after->zero_bytes - before.zero_bytes;
    d->hole = after->hole_bytes - before.hole_bytes;
    r->bytes_read += d->read;
    ps.base += d->size;
  }
  if (ova_cancelled) {
    check_cancel (error);
    return FALSE;
  }
  if (!strm_encoder_finish (enc, error))
    return FALSE;
  if (!ova_stream_output_close (out, error))
    return FALSE;
  ova_progress_finish (meter);
  return TRUE;
}

static GPtrArray *
disk_images (const run *r)
{
  GPtrArray *v = g_ptr_array_new ();

  for (guint i = 0; i < r->disks->len; i++)
    g_ptr_array_add (v, ((bdisk *) r->disks->pdata[i])->image);
  g_ptr_array_add (v, NULL);
  return v;
}

static GPtrArray *
disk_targets (const run *r, gboolean skip_unknown)
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

static GPtrArray *
disk_paths (const run *r)
{
  GPtrArray *v = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; i < r->disks->len; i++)
    g_ptr_array_add (v, g_strdup (((bdisk *) r->disks->pdata[i])->path));
  return v;
}

/* Running VM: one pull-mode job for all disks. */
static gboolean
backup_running (run *r, ova_stream_output *out, strm_encoder *enc, GError **error)
{
  g_autoptr (virt_backup) b = NULL;
  g_autoptr (GPtrArray) targets = disk_targets (r, FALSE);
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
  if (b == NULL && opts.autom && r->from != NULL &&
      g_error_matches (err, OVA_ERROR, OVA_ERROR_UNSUPPORTED) && !ova_cancelled) {
    /* libvirt found the bitmaps inconsistent: --auto takes a full. */
    ova_warn ("%s; taking a full backup instead", err->message);
    for (guint i = 0; i < r->disks->len; i++) {
      bdisk *d = r->disks->pdata[i];

      if (d->from != NULL)
        set_kind (d, "full", NULL,
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
    check_cancel (&err);
    if (err == NULL) {
      r->checkpoint_xml = virt_checkpoint_dump (r->dom, r->checkpoint, &err);
      if (r->checkpoint_xml != NULL)
        ok = send_disks (r, out, enc, b, &err);
    }
    if (!end_job (r, b, &cleanup_err)) {
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
                vm_label (r), cleanup_err->message);
    return TRUE;
  }

  /* A checkpoint nothing committed: a later incremental must not trust it.
   * A VM that went away took its job with it, and its bitmaps go with
   * qemu-img, under the volumes' leases: the VM may start on another host. */
  {
    g_autoptr (GPtrArray) paths = disk_paths (r);
    g_autoptr (GPtrArray) images = disk_images (r);

    if (!domain_active (r) && !lease_paths (r, paths, &cleanup_err))
      ova_warn ("the bitmap of checkpoint %s is left in the disks of VM %s (no "
                "backup trusts it; qemu-img bitmap --remove removes it): %s",
                r->checkpoint, vm_label (r), cleanup_err->message);
    else if (!drop_checkpoint (r, r->checkpoint, paths,
                               (const char *const *) images->pdata, &cleanup_err))
      ova_warn ("checkpoint %s of VM %s could not be deleted after the failed "
                "backup: %s", r->checkpoint, vm_label (r), cleanup_err->message);
    g_clear_error (&cleanup_err);
    if (!release_leases (r, &cleanup_err))
      ova_warn ("%s", cleanup_err->message);
  }
  if (!domain_active (r) && err != NULL && !ova_cancelled)
    g_prefix_error (&err, "VM %s stopped during the backup: ", vm_label (r));
  g_propagate_error (error, g_steal_pointer (&err));
  return FALSE;
}

/* Stopped VM: qemu-nbd per disk; the checkpoint becomes a bitmap in each
 * top volume once the backup is committed. */
static gboolean
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
                     d->image, vm_label (r), u->vm_name, u->target, p);
        return FALSE;
      }
    }
  }

  /* Another host may run the VM: the bitmaps go into the top volumes
   * under their leases, taken before anything is read. */
  for (guint i = 0; i < r->disks->len; i++) {
    const bdisk *d = r->disks->pdata[i];

    if (!take_lease (r, d->sd, d->top, error))
      return FALSE;
  }

  prev = vm_last_checkpoint (r);
  if (prev != NULL) {
    g_autofree char *path = virt_checkpoint_saved_path (r->env->state_dir, r->vm_uuid,
                                                        prev, NULL);

    if (path && g_file_test (path, G_FILE_TEST_EXISTS))
      parent = g_strdup (prev);
  }
  targets = disk_targets (r, TRUE);
  r->checkpoint_xml = virt_checkpoint_redefine_xml (r->checkpoint, parent,
                                                    g_get_real_time () / G_USEC_PER_SEC,
                                                    (const char *const *) targets->pdata);

  for (guint i = 0; i < r->disks->len; i++) {
    bdisk *d = r->disks->pdata[i];
    const char *bitmaps[] = { d->from, NULL };

    if (ova_cancelled) {
      check_cancel (error);
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
  if (!release_leases (r, error)) {
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

    if (!release_leases (r, &err))
      ova_warn ("%s", err->message);
  }
  return FALSE;
}

/* ---- the command ---- */

static gboolean
open_vm (run *r, const char *vm, GError **error)
{
  g_autoptr (GError) err = NULL;
  char uuid[VIR_UUID_STRING_BUFLEN];

  r->conn = virt_connect (r->env->libvirt_uri, error);
  if (r->conn == NULL)
    return FALSE;
  r->dom = virt_find_domain (r->conn, vm, &err);
  if (r->dom == NULL) {
    if (!g_error_matches (err, OVA_ERROR, OVA_ERROR_NOT_FOUND)) {
      g_propagate_error (error, g_steal_pointer (&err));
      return FALSE;
    }
    if (!ova_uuid_is_valid (vm) || opts.disks == NULL) {
      g_autofree char *q = ova_quote_untrusted (vm, 128);

      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "VM %s is not known to libvirt at %s; for a stopped VM give its "
                   "UUID and --disk IMAGE_UUID for each of its disks", q,
                   r->env->libvirt_uri);
      return FALSE;
    }
    r->vm_uuid = g_ascii_strdown (vm, -1);
    return TRUE;
  }
  if (virDomainGetUUIDString (r->dom, uuid) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot get the UUID of domain %s", vm);
    return FALSE;
  }
  r->vm_uuid = g_ascii_strdown (uuid, -1);
  r->vm_name = g_strdup (virDomainGetName (r->dom));
  r->running = virDomainIsActive (r->dom) == 1;
  return TRUE;
}

static gboolean
backup (ova_ctx *ctx, const char *vm, GError **error)
{
  run r = { .ctx = ctx, .env = &ctx->cfg->env, .lock_fd = -1 };
  g_auto (ova_stream_output) out = OVA_STREAM_OUTPUT_INIT;
  g_autoptr (strm_encoder) enc = NULL;
  g_autoptr (GPtrArray) images = NULL;
  g_autoptr (GPtrArray) targets = NULL;
  g_autoptr (GError) err = NULL;
  gint64 start = g_get_monotonic_time ();
  gboolean ok = FALSE;
  const char *sd = opts.scratch_dir ? opts.scratch_dir : ctx->cfg->scratch_dir;

  r.scratch_dir = sd ? g_canonicalize_filename (sd, NULL)
                     : g_build_filename (r.env->state_dir, "scratch", NULL);

  if (!open_vm (&r, vm, error))
    goto out;
  r.lock_fd = virt_state_lock (r.env->run_dir, r.vm_uuid, error);
  if (r.lock_fd < 0)
    goto out;
  r.state = virt_state_load (r.env->state_dir, r.vm_uuid, error);
  if (r.state == NULL || !recover_pending (&r, error) || !plan (&r, error))
    goto out;
  if (ova_cancelled) {
    check_cancel (error);
    goto out;
  }

  /* Nothing is changed before the output is open: a file that exists or a
   * target that cannot be reached leaves the VM alone. */
  if (!ova_stream_output_open (ctx, &out, ova_stream_opts.output, ova_stream_opts.target, error))
    goto out;
  enc = strm_encoder_new (out.sink, ova_stream_opts.compress);

  r.job = g_uuid_string_random ();
  r.checkpoint = g_uuid_string_random ();
  images = disk_images (&r);
  virt_state_set_pending (r.state, r.job, r.checkpoint, r.running,
                          (const char *const *) images->pdata);
  if (!virt_state_save (r.state, error))
    goto out;

  ok = r.running ? backup_running (&r, &out, enc, &err)
                 : backup_stopped (&r, &out, enc, &err);
  if (ok) {
    targets = disk_targets (&r, FALSE);
    virt_state_commit (r.state, r.checkpoint, r.job, (const char *const *) images->pdata,
                       (const char *const *) targets->pdata);
  }
  else
    virt_state_clear_pending (r.state);
  /* Stopped VM: the LVs go before the result says done. */
  for (guint i = 0; i < r.disks->len; i++)
    g_clear_pointer (&((bdisk *) r.disks->pdata[i])->srv, nbdr_server_stop);
  if (r.guard)
    stor_lv_guard_release (r.guard);
  if (!virt_state_save (r.state, ok ? error : NULL) && ok) {
    ok = FALSE;
    goto out;
  }
  if (!ok) {
    g_propagate_error (error, g_steal_pointer (&err));
    goto out;
  }
  print_result (&r, strm_encoder_totals (enc),
                (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC, &out);

 out:
  g_clear_pointer (&enc, strm_encoder_free);
  ova_stream_output_clear (&out);
  run_clear (&r);
  return ok;
}

static gboolean
check_options (const ova_ctx *ctx, int argc, char **argv, GError **error)
{
  int modes = !!opts.full + !!opts.incremental + !!opts.differential + !!opts.autom;

  if (argc < 2) {
    ova_usage_error (ctx, error, "missing VM (a libvirt domain name or UUID)");
    return FALSE;
  }
  if (argc > 2) {
    ova_usage_error (ctx, error, "unexpected argument '%s' after VM", argv[2]);
    return FALSE;
  }
  if (modes != 1) {
    ova_usage_error (ctx, error, "give exactly one of --full, --incremental, "
                     "--differential and --auto");
    return FALSE;
  }
  if (opts.from != NULL && !opts.incremental && !opts.differential) {
    ova_usage_error (ctx, error, "--from goes only with --incremental or --differential");
    return FALSE;
  }
  if (opts.differential && opts.from == NULL) {
    ova_usage_error (ctx, error, "--differential needs --from CHECKPOINT");
    return FALSE;
  }
  if (opts.from != NULL && (*opts.from == '\0' || strlen (opts.from) > 255 ||
                            strpbrk (opts.from, ",=/\n") != NULL)) {
    g_autofree char *q = ova_quote_untrusted (opts.from, 64);

    ova_usage_error (ctx, error, "--from needs a checkpoint name, not %s", q);
    return FALSE;
  }
  for (gsize i = 0; opts.disks && opts.disks[i]; i++)
    if (*opts.disks[i] == '\0' || strlen (opts.disks[i]) > 64) {
      ova_usage_error (ctx, error, "--disk needs an image UUID or a target such as vda");
      return FALSE;
    }
  if (opts.requests < 0 || opts.requests > STRM_COPY_MAX_REQUESTS) {
    ova_usage_error (ctx, error, "--requests takes 1 to %d", STRM_COPY_MAX_REQUESTS);
    return FALSE;
  }
  if (opts.connections < 0 || opts.connections > NBDR_MAX_CONNECTIONS) {
    ova_usage_error (ctx, error, "--connections takes 1 to %d", NBDR_MAX_CONNECTIONS);
    return FALSE;
  }
  if (!ova_stream_output_check (ctx, ova_stream_opts.output, ova_stream_opts.target, error))
    return FALSE;
  return TRUE;
}

gboolean
cmd_backup (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  if (!ova_stream_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  if (!check_options (ctx, argc, argv, error))
    return FALSE;
  ova_cancel_install ();
  if (backup (ctx, argv[1], error))
    return TRUE;
  ova_cancel_explain (error);
  return FALSE;
}
