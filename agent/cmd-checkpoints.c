/* ovagent: the `checkpoints` command: a VM's checkpoints as libvirt, the saved
 * XML, the backup state and (VM down) the qcow2 bitmaps see them; --delete. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "agent/command.h"
#include "agent/output.h"
#include "storage/lease.h"
#include "storage/lvm.h"
#include "storage/scan.h"
#include "virt/checkpoint.h"
#include "virt/checkpoint-view.h"
#include "virt/state.h"

#define NAME_MAX_LEN 255

/* ------------------------------------------------------------------ */
/* Output */

static char *
format_time (gint64 t)
{
  g_autoptr (GDateTime) dt = t >= 0 ? g_date_time_new_from_unix_utc (t) : NULL;

  return dt ? g_date_time_format (dt, "%Y-%m-%dT%H:%M:%SZ") : NULL;
}

static void
json_pending (JsonBuilder *b, const virt_state *s)
{
  const char *job, *cp;
  const char *const *images;
  gboolean running;

  json_builder_set_member_name (b, "pending");
  if (!virt_state_get_pending (s, &job, &cp, &running, &images)) {
    json_builder_add_null_value (b);
    return;
  }
  json_builder_begin_object (b);
  ova_json_add_string (b, "job", job);
  ova_json_add_string (b, "checkpoint", cp);
  ova_json_add_bool (b, "running", running);
  json_builder_set_member_name (b, "disks");
  json_builder_begin_array (b);
  for (gsize i = 0; images[i]; i++)
    json_builder_add_string_value (b, images[i]);
  json_builder_end_array (b);
  json_builder_end_object (b);
}

static void
json_view_members (JsonBuilder *b, const virt_cp_view *v)
{
  ova_json_add_string (b, "vm", v->uuid);
  ova_json_add_string (b, "name", v->name);
  ova_json_add_bool (b, "running", v->running);
}

static void
print_json_view (const virt_cp_view *v)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;

  json_builder_begin_object (b);
  json_view_members (b, v);
  json_builder_set_member_name (b, "checkpoints");
  json_builder_begin_array (b);
  for (guint i = 0; i < v->cps->len; i++) {
    const virt_cp_entry *e = g_ptr_array_index (v->cps, i);
    g_autofree char *created = format_time (e->created);

    json_builder_begin_object (b);
    ova_json_add_string (b, "name", e->name);
    ova_json_add_string (b, "parent", e->parent);
    ova_json_add_string (b, "created", created);
    ova_json_add_bool (b, "known_to_libvirt", e->known);
    ova_json_add_bool (b, "saved", e->saved);
    json_builder_set_member_name (b, "disks");
    json_builder_begin_array (b);
    for (guint j = 0; j < e->disks->len; j++) {
      const virt_checkpoint_disk *d = g_ptr_array_index (e->disks, j);

      json_builder_begin_object (b);
      ova_json_add_string (b, "target", d->target);
      ova_json_add_string (b, "bitmap", d->bitmap);
      json_builder_end_object (b);
    }
    json_builder_end_array (b);
    ova_json_add_strings (b, "last_for", e->last_for);
    if (!v->running)
      ova_json_add_strings (b, "in_images", e->images);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);

  json_pending (b, v->state);

  json_builder_set_member_name (b, "disks");
  json_builder_begin_array (b);
  for (guint i = 0; i < v->images->len; i++) {
    const virt_cp_image *ie = g_ptr_array_index (v->images, i);
    const stor_volume *top = ie->img && ie->img->volumes->len
      ? g_ptr_array_index (ie->img->volumes, ie->img->volumes->len - 1) : NULL;

    json_builder_begin_object (b);
    ova_json_add_string (b, "disk", ie->image);
    ova_json_add_string (b, "target", ie->target);
    ova_json_add_string (b, "checkpoint", ie->checkpoint);
    ova_json_add_string (b, "domain", ie->sd ? ie->sd->uuid : NULL);
    ova_json_add_string (b, "volume", top ? top->uuid : NULL);
    json_builder_set_member_name (b, "bitmaps");
    if (ie->bitmaps == NULL) {
      json_builder_add_null_value (b);
    } else {
      json_builder_begin_array (b);
      for (guint j = 0; j < ie->bitmaps->len; j++) {
        const virt_image_bitmap *bm = g_ptr_array_index (ie->bitmaps, j);

        json_builder_begin_object (b);
        ova_json_add_string (b, "name", bm->name);
        ova_json_add_bool (b, "enabled", bm->enabled);
        ova_json_add_bool (b, "in_use", bm->in_use);
        json_builder_end_object (b);
      }
      json_builder_end_array (b);
    }
    ova_json_add_string (b, "problem", ie->problem);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  ova_print_json (root);
}

static char *
join_targets (const virt_cp_entry *e)
{
  g_autoptr (GString) s = g_string_new (NULL);

  for (guint i = 0; i < e->disks->len; i++) {
    const virt_checkpoint_disk *d = g_ptr_array_index (e->disks, i);

    if (d->bitmap)
      g_string_append_printf (s, "%s%s", s->len ? "," : "", d->target);
  }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static void
print_table (const virt_cp_view *v)
{
  const char *job, *cp;
  gboolean running;

  printf ("VM %s%s%s%s (%s)\n", v->uuid, v->name ? " \"" : "", v->name ? v->name : "",
          v->name ? "\"" : "", v->running ? "running" : "not running");
  if (v->cps->len == 0) {
    printf ("no checkpoints\n");
  } else {
    printf ("%-36s  %-36s  %-20s  %-7s  %-5s  %-9s  %s\n", "CHECKPOINT", "PARENT",
            "CREATED", "LIBVIRT", "SAVED", "DISKS", "LAST FOR");
    for (guint i = 0; i < v->cps->len; i++) {
      const virt_cp_entry *e = g_ptr_array_index (v->cps, i);
      g_autofree char *created = format_time (e->created);
      g_autofree char *targets = join_targets (e);
      g_autofree char *last = NULL;

      if (!v->running && e->images->len > 0 && *targets == '\0') {
        g_free (targets);
        targets = g_strdup_printf ("%u image%s", e->images->len,
                                   e->images->len == 1 ? "" : "s");
      }
      last = e->last_for->len == 0 ? g_strdup ("-")
        : g_strdup_printf ("%u disk%s", e->last_for->len,
                           e->last_for->len == 1 ? "" : "s");
      printf ("%-36s  %-36s  %-20s  %-7s  %-5s  %-9s  %s\n", e->name,
              e->parent ? e->parent : "-", created ? created : "-",
              e->known ? "yes" : "no", e->saved ? "yes" : "no",
              *targets ? targets : "-", last);
    }
  }
  for (guint i = 0; i < v->images->len; i++) {
    const virt_cp_image *ie = g_ptr_array_index (v->images, i);
    g_autoptr (GString) bms = g_string_new (NULL);

    for (guint j = 0; ie->bitmaps && j < ie->bitmaps->len; j++) {
      const virt_image_bitmap *b = g_ptr_array_index (ie->bitmaps, j);

      g_string_append_printf (bms, " %s%s%s", b->name, b->enabled ? "" : " (disabled)",
                              b->in_use ? " (in-use)" : "");
    }
    printf ("disk %s%s%s: last checkpoint %s", ie->image, ie->target ? " " : "",
            ie->target ? ie->target : "", ie->checkpoint ? ie->checkpoint : "none");
    if (ie->bitmaps)
      printf ("; bitmaps:%s", bms->len ? bms->str : " none");
    else if (ie->problem)
      printf ("; bitmaps unknown: %s", ie->problem);
    printf ("\n");
  }
  if (virt_state_get_pending (v->state, &job, &cp, &running, NULL))
    printf ("pending: backup job %s creating checkpoint %s (VM %s); the next "
            "backup cleans it up\n", job, cp, running ? "running" : "not running");
}

/* ------------------------------------------------------------------ */
/* Delete */

/* A volume of a stopped VM that holds the bitmap of the checkpoint being
 * deleted, and what the deletion does there. */
typedef struct {
  const virt_cp_image *ie;
  const stor_volume *vol;
  gboolean merge;             /* the parent's bitmap is there: it takes the bits */
  gboolean enable;            /* ...and is enabled, as this one was */
} bitmap_site;

/* Where in the image's chain (top first) the bitmap name is, and what to
 * do there; nothing written yet. */
static gboolean
find_bitmap_sites (virt_cp_view *v, const virt_cp_image *ie, const char *name,
                   const char *parent, GArray *sites, GError **error)
{
  for (guint k = ie->img->volumes->len; k-- > 0;) {
    const stor_volume *vol = g_ptr_array_index (ie->img->volumes, k);
    g_autoptr (GPtrArray) bms = NULL;
    const virt_image_bitmap *mine = NULL, *up = NULL;
    bitmap_site site = { .ie = ie, .vol = vol };

    if (vol->path == NULL)
      continue;
    if (ie->sd->kind == STOR_KIND_BLOCK && !stor_lv_is_active (ie->sd->uuid, vol->uuid) &&
        !stor_lv_guard_activate (v->guard, ie->sd->uuid, vol->uuid, error))
      return FALSE;
    bms = virt_image_bitmaps (vol->path, NULL);
    if (bms == NULL)            /* raw base: no bitmaps below */
      break;
    for (guint j = 0; j < bms->len; j++) {
      const virt_image_bitmap *b = g_ptr_array_index (bms, j);

      if (strcmp (b->name, name) == 0)
        mine = b;
      else if (parent && strcmp (b->name, parent) == 0)
        up = b;
    }
    if (mine == NULL)
      continue;
    if (mine->in_use) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                   "bitmap %s in %s is in use: is a QEMU process holding the image?",
                   name, vol->path);
      return FALSE;
    }
    site.merge = up != NULL;
    site.enable = up != NULL && mine->enabled && !up->enabled;
    g_array_append_val (sites, site);
  }
  return TRUE;
}

/* As libvirt does: the parent's bitmap takes this one's bits, so an
 * incremental from the parent still sees every write. */
static gboolean
delete_at_site (const bitmap_site *site, const char *name, const char *parent,
                GError **error)
{
  const char *path = site->vol->path;

  if (site->merge && !virt_image_bitmap_merge (path, name, parent, error))
    return FALSE;
  if (site->enable && !virt_image_bitmap_enable (path, parent, error))
    return FALSE;
  return virt_image_bitmap_remove (path, name, error);
}

/* Every volume that holds the bitmap, under its sanlock lease (another host
 * may run the VM): all leases are taken before the first write, and
 * released, each volume synced, after the last. */
static gboolean
delete_bitmaps (const stor_env *env, const char *name, const char *parent,
                GArray *sites, GPtrArray *touched, GError **error)
{
  g_autoptr (GPtrArray) leases =
    g_ptr_array_new_with_free_func ((GDestroyNotify) stor_lease_free);

  for (guint i = 0; i < sites->len; i++) {
    const bitmap_site *site = &g_array_index (sites, bitmap_site, i);
    stor_lease *l = stor_lease_acquire (env, site->ie->sd, site->vol, error);

    if (l == NULL)
      return FALSE;
    g_ptr_array_add (leases, l);
  }
  for (guint i = 0; i < sites->len; i++) {
    const bitmap_site *site = &g_array_index (sites, bitmap_site, i);

    if (!delete_at_site (site, name, parent, error))
      return FALSE;
    g_ptr_array_add (touched, g_strdup (site->vol->path));
  }
  for (guint i = 0; i < leases->len; i++)
    if (!stor_lease_release (leases->pdata[i], error))
      return FALSE;
  return TRUE;
}

/* Saved XML of the children of a deleted checkpoint names its parent now. */
static gboolean
reparent_saved (virt_cp_view *v, const virt_cp_entry *gone, GError **error)
{
  for (guint i = 0; i < v->cps->len; i++) {
    const virt_cp_entry *e = g_ptr_array_index (v->cps, i);
    g_autoptr (GPtrArray) targets = NULL;
    g_autofree char *xml = NULL;

    if (!e->saved || g_strcmp0 (e->parent, gone->name) != 0)
      continue;
    if (e->known && v->dom) {
      if (!virt_checkpoint_save (v->dom, e->name, v->state_dir, error))
        return FALSE;
      continue;
    }
    targets = g_ptr_array_new ();
    for (guint j = 0; j < e->disks->len; j++) {
      const virt_checkpoint_disk *d = g_ptr_array_index (e->disks, j);

      if (d->bitmap)
        g_ptr_array_add (targets, d->target);
    }
    g_ptr_array_add (targets, NULL);
    xml = virt_checkpoint_redefine_xml (e->name, gone->parent,
                                        e->created >= 0 ? e->created : 0,
                                        (const char *const *) targets->pdata);
    if (!virt_checkpoint_save_xml (v->state_dir, v->uuid, e->name, xml, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
delete_stopped (virt_cp_view *v, const stor_env *env, virt_cp_entry *e, JsonBuilder *b,
                GError **error)
{
  g_autoptr (GPtrArray) touched = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) sites = g_array_new (FALSE, FALSE, sizeof (bitmap_site));

  for (guint i = 0; i < v->images->len; i++) {
    virt_cp_image *ie = g_ptr_array_index (v->images, i);

    if (ie->img == NULL) {
      if (g_ptr_array_find_with_equal_func (e->last_for, ie->image, g_str_equal, NULL))
        ova_warn ("cannot remove bitmap %s from disk %s: %s", e->name, ie->image,
                  ie->problem ? ie->problem : "not found");
      continue;
    }
    if (!find_bitmap_sites (v, ie, e->name, e->parent, sites, error))
      return FALSE;
  }
  if (!delete_bitmaps (env, e->name, e->parent, sites, touched, error))
    return FALSE;

  /* The state names the images; one whose disks it forgot is not seen. */
  if (touched->len == 0)
    ova_warn ("no disk of VM %s known to the backup state carries bitmap %s; "
              "if another one does, remove it with qemu-img bitmap --remove",
              v->uuid, e->name);

  if (e->known) {
    virDomainCheckpointPtr cp = virDomainCheckpointLookupByName (v->dom, e->name, 0);
    int rc = cp ? virDomainCheckpointDelete (cp, VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
                : -1;

    if (cp)
      virDomainCheckpointFree (cp);
    if (rc < 0) {
      virErrorPtr le = virGetLastError ();

      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot delete checkpoint %s of domain %s from libvirt: %s",
                   e->name, v->name, le && le->message ? le->message : "unknown error");
      return FALSE;
    }
  }
  if (e->saved) {
    g_autofree char *path = virt_cp_view_saved_path (v, e->name);

    if (unlink (path) < 0 && errno != ENOENT) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot remove %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
  }
  if (!reparent_saved (v, e, error))
    return FALSE;

  json_builder_set_member_name (b, "volumes");
  json_builder_begin_array (b);
  for (guint i = 0; i < touched->len; i++)
    json_builder_add_string_value (b, g_ptr_array_index (touched, i));
  json_builder_end_array (b);
  return TRUE;
}

static gboolean
delete_checkpoint (ova_ctx *ctx, virConnectPtr conn, const char *vm, const char *name,
                   GError **error)
{
  g_autoptr (virt_cp_view) v = NULL;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (GPtrArray) redefined = NULL;
  g_autofree char *vm_uuid = NULL;
  g_autofree char *parent = NULL;
  virt_cp_entry *e;
  int lock = -1;
  gboolean ok = FALSE;

  /* The lock needs the UUID; the view is loaded under it. */
  {
    g_autoptr (virt_cp_view) who = virt_cp_view_find (&ctx->cfg->env, conn, vm, error);

    if (who == NULL)
      return FALSE;
    vm_uuid = g_strdup (who->uuid);
  }
  lock = virt_state_lock (ctx->cfg->env.run_dir, vm_uuid, error);
  if (lock < 0)
    return FALSE;
  v = virt_cp_view_load (&ctx->cfg->env, conn, vm_uuid, error);
  if (v == NULL)
    goto out;

  e = virt_cp_view_lookup (v, name);
  if (e == NULL) {
    g_autofree char *q = ova_quote_untrusted (name, 128);

    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "VM %s has no checkpoint %s (neither libvirt, nor %s, nor the "
                 "backup state know it)", v->name ? v->name : v->uuid, q, v->dir);
    goto out;
  }
  parent = g_strdup (e->parent);

  json_builder_begin_object (b);
  ova_json_add_string (b, "result", "ok");
  json_view_members (b, v);
  ova_json_add_string (b, "deleted", name);
  ova_json_add_string (b, "parent", parent);

  if (v->running) {
    /* After a restart libvirt forgot what only our saved XML remembers:
     * it can delete it (and merge its bitmap) once redefined. */
    if (!e->known && e->saved &&
        !virt_checkpoint_redefine_missing (v->dom, v->state_dir, &redefined, error))
      goto out;
    if (!e->known && (redefined == NULL ||
                      !g_ptr_array_find_with_equal_func (redefined, name, g_str_equal,
                                                         NULL))) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                   "checkpoint %s of VM %s is not known to libvirt and has no saved "
                   "XML to redefine it from; its bitmaps cannot be removed while "
                   "the VM runs", name, v->name);
      goto out;
    }
    if (!virt_checkpoint_delete (v->dom, name, v->state_dir, error))
      goto out;
  } else if (!delete_stopped (v, &ctx->cfg->env, e, b, error)) {
    goto out;
  }

  virt_state_forget_checkpoint (v->state, name);
  if (!virt_state_save (v->state, error))
    goto out;
  json_builder_end_object (b);

  if (ctx->json) {
    g_autoptr (JsonNode) root = json_builder_get_root (b);

    ova_print_json (root);
  } else {
    printf ("deleted checkpoint %s of VM %s%s%s\n", name, v->name ? v->name : v->uuid,
            parent ? "; its changes now belong to " : "", parent ? parent : "");
  }
  ok = TRUE;

 out:
  close (lock);
  return ok;
}

const struct ova_command ova_cmd_checkpoints = {
  .name = "checkpoints",
  .handler = cmd_checkpoints,
  .args = "VM",
  .usage = "VM [--delete CP] [--json]",
  .summary = "List a VM's backup checkpoints, or delete one.",
  .details = "VM is a libvirt domain name or a VM UUID (a VM that is down "
             "and no longer defined in libvirt is found by its UUID in "
             "state_dir). The list merges the checkpoints libvirt knows "
             "(parents first), the checkpoint XML 'backup' saved in "
             "state_dir/checkpoints/VM_UUID (VDSM runs VMs as transient "
             "domains: after a restart libvirt has forgotten them, the next "
             "backup redefines them) and the backup state: for each disk "
             "its last committed checkpoint, and a pending backup that did "
             "not finish (the next backup cleans it up). For a VM that is "
             "not running, the bitmaps in each disk's top volume are shown "
             "too (qemu-img info -U). --delete CP removes the checkpoint: "
             "through libvirt when the VM runs (its bitmaps merge into the "
             "parent's); otherwise with qemu-img bitmap on the disks' "
             "volumes (merged into the parent's bitmap, then removed) and "
             "its saved XML. Disks whose last checkpoint it was get a full "
             "backup next time with 'backup --auto'. An unknown VM or "
             "checkpoint is exit 3; a backup of the same VM in progress is "
             "exit 4. --json prints vm, name, running, checkpoints (name, "
             "parent, created, known_to_libvirt, saved, disks, last_for), "
             "pending and disks.",
  .examples =
    "  ovagent checkpoints vm1\n"
    "  ovagent checkpoints 5d3f0a2e-1b4c-4d6e-8f70-a1b2c3d4e5f6 --json\n"
    "  ovagent checkpoints vm1 --delete aaaa0b1c-2d3e-4f5a-8b6c-7d8e9f0a1b2c\n",
};

gboolean
cmd_checkpoints (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autofree char *delete = NULL;
  virConnectPtr conn = NULL;
  gboolean ok = FALSE;
  const GOptionEntry entries[] = {
    { "delete", 0, 0, G_OPTION_ARG_STRING, &delete,
      "Delete this checkpoint (its changes merge into its parent)", "CP" },
    { NULL },
  };

  if (!ova_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  if (argc < 2) {
    ova_usage_error (ctx, error, "missing VM (a libvirt domain name or a VM UUID)");
    return FALSE;
  }
  if (argc > 2) {
    ova_usage_error (ctx, error, "unexpected argument '%s' after VM", argv[2]);
    return FALSE;
  }
  if (delete && (*delete == '\0' || strlen (delete) > NAME_MAX_LEN ||
                 strchr (delete, '/') != NULL)) {
    g_autofree char *q = ova_quote_untrusted (delete, 64);

    ova_usage_error (ctx, error, "--delete: invalid checkpoint name %s", q);
    return FALSE;
  }

  conn = virt_connect (ctx->cfg->env.libvirt_uri, error);
  if (conn == NULL)
    return FALSE;
  if (delete) {
    ok = delete_checkpoint (ctx, conn, argv[1], delete, error);
  } else {
    g_autoptr (virt_cp_view) v = virt_cp_view_load (&ctx->cfg->env, conn, argv[1], error);

    if (v != NULL) {
      if (ctx->json)
        print_json_view (v);
      else
        print_table (v);
      ok = TRUE;
    }
  }
  virConnectClose (conn);
  return ok;
}
