/* ovagent: one view of a VM's checkpoints, gathered from libvirt, the saved
 * XML, the backup state and (VM down) the qcow2 bitmaps of its images. */
#include <config.h>

#include <string.h>

#include "checkpoint-view.h"
#include "checkpoint.h"
#include "checkpoint-xml.h"
#include "error.h"
#include "util.h"
#include "virt-priv.h"

static void
cp_entry_free (virt_cp_entry *e)
{
  if (e == NULL)
    return;
  g_free (e->name);
  g_free (e->parent);
  g_ptr_array_unref (e->disks);
  g_ptr_array_unref (e->last_for);
  g_ptr_array_unref (e->images);
  g_free (e);
}

static virt_cp_entry *
cp_entry_new (const char *name)
{
  virt_cp_entry *e = g_new0 (virt_cp_entry, 1);

  e->name = g_strdup (name);
  e->created = -1;
  e->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) virt_checkpoint_disk_free);
  e->last_for = g_ptr_array_new_with_free_func (g_free);
  e->images = g_ptr_array_new_with_free_func (g_free);
  return e;
}

static void
img_entry_free (virt_cp_image *i)
{
  if (i == NULL)
    return;
  g_free (i->image);
  if (i->bitmaps)
    g_ptr_array_unref (i->bitmaps);
  g_free (i->problem);
  g_free (i);
}

void
virt_cp_view_free (virt_cp_view *v)
{
  if (v == NULL)
    return;
  g_free (v->uuid);
  g_free (v->name);
  if (v->dom)
    virDomainFree (v->dom);
  g_free (v->dir);
  virt_state_free (v->state);
  if (v->cps)
    g_ptr_array_unref (v->cps);
  if (v->images)
    g_ptr_array_unref (v->images);
  /* LVs activated to read headers go back before the scan is freed. */
  if (v->guard)
    stor_lv_guard_free (v->guard);
  if (v->domains)
    g_ptr_array_unref (v->domains);
  g_free (v);
}

virt_cp_entry *
virt_cp_view_lookup (const virt_cp_view *v, const char *name)
{
  for (guint i = 0; i < v->cps->len; i++) {
    virt_cp_entry *e = g_ptr_array_index (v->cps, i);

    if (strcmp (e->name, name) == 0)
      return e;
  }
  return NULL;
}

char *
virt_cp_view_saved_path (const virt_cp_view *v, const char *name)
{
  g_autofree char *file = g_strconcat (name, ".xml", NULL);

  return g_build_filename (v->dir, file, NULL);
}

/* Fill e from its XML; where names the XML in errors. */
static gboolean
entry_from_xml (virt_cp_entry *e, const char *xml, gssize len, const char *where,
                GError **error)
{
  g_autoptr (virt_checkpoint_doc) doc = virt_checkpoint_doc_parse (xml, len, e->name, error);

  if (doc == NULL) {
    g_prefix_error (error, "checkpoint %s: %s: ", e->name, where);
    return FALSE;
  }
  g_free (e->parent);
  e->parent = g_steal_pointer (&doc->parent);
  if (doc->created >= 0)
    e->created = doc->created;
  g_ptr_array_unref (e->disks);
  e->disks = g_steal_pointer (&doc->disks);
  return TRUE;
}

static gboolean
load_libvirt_checkpoints (virt_cp_view *v, GError **error)
{
  g_autoptr (GPtrArray) names = virt_checkpoint_list (v->dom, error);

  if (names == NULL)
    return FALSE;
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    g_autofree char *xml = virt_checkpoint_dump (v->dom, name, error);
    virt_cp_entry *e;

    if (xml == NULL)
      return FALSE;
    e = cp_entry_new (name);
    g_ptr_array_add (v->cps, e);
    e->known = TRUE;
    if (!entry_from_xml (e, xml, -1, "libvirt's XML", error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
load_saved_checkpoints (virt_cp_view *v, GError **error)
{
  g_autoptr (GPtrArray) files = NULL;

  if (!g_file_test (v->dir, G_FILE_TEST_IS_DIR))
    return TRUE;
  files = ova_list_dir_sorted (v->dir, error);
  if (files == NULL)
    return FALSE;
  for (guint i = 0; i < files->len; i++) {
    const char *f = g_ptr_array_index (files, i);
    g_autofree char *name = NULL;
    g_autofree char *path = NULL;
    g_autofree char *xml = NULL;
    gsize len;
    virt_cp_entry *e;

    if (!g_str_has_suffix (f, ".xml"))
      continue;
    name = g_strndup (f, strlen (f) - 4);
    if (!ova_uuid_is_valid (name))
      continue;
    path = g_build_filename (v->dir, f, NULL);
    e = virt_cp_view_lookup (v, name);
    if (e != NULL) {
      e->saved = TRUE;
      continue;
    }
    if (!ova_read_file_direct (path, VIRT_SAVED_XML_MAX, &xml, &len, error))
      return FALSE;
    e = cp_entry_new (name);
    g_ptr_array_add (v->cps, e);
    e->saved = TRUE;
    if (!entry_from_xml (e, xml, len, path, error))
      return FALSE;
  }
  return TRUE;
}

/* The images the state knows (last checkpoints and a pending backup), with
 * their chains from the storage scan and, unless QEMU holds them, the
 * bitmaps of their top volumes. */
static gboolean
load_images (virt_cp_view *v, const stor_env *env, GError **error)
{
  g_autoptr (GPtrArray) images = virt_state_disks (v->state);
  const char *const *pending = NULL;

  if (virt_state_get_pending (v->state, NULL, NULL, NULL, &pending))
    for (gsize i = 0; pending[i]; i++)
      if (!g_ptr_array_find_with_equal_func (images, pending[i], g_str_equal, NULL))
        g_ptr_array_add (images, g_strdup (pending[i]));
  g_ptr_array_sort (images, ova_compare_strings);
  if (images->len == 0 || v->running)
    goto fill;

  v->domains = stor_scan_domains (env, NULL, error);
  if (v->domains == NULL)
    return FALSE;
  for (guint i = 0; i < v->domains->len; i++) {
    stor_domain *d = g_ptr_array_index (v->domains, i);

    if (d->kind == STOR_KIND_BLOCK && v->guard == NULL) {
      stor_lv_cleanup_stale (env);
      v->guard = stor_lv_guard_new (env);
    }
  }

 fill:
  for (guint i = 0; i < images->len; i++) {
    const char *image = g_ptr_array_index (images, i);
    virt_cp_image *ie = g_new0 (virt_cp_image, 1);
    g_autoptr (GError) err = NULL;
    stor_volume *top;

    ie->image = g_strdup (image);
    ie->target = virt_state_disk_target (v->state, image);
    ie->checkpoint = virt_state_disk_checkpoint (v->state, image);
    g_ptr_array_add (v->images, ie);
    if (v->domains == NULL)
      continue;
    if (!stor_find_disk (v->domains, image, &ie->sd, &ie->img, &err)) {
      ie->problem = g_strdup (err->message);
      continue;
    }
    if (ie->img->volumes->len == 0) {
      ie->problem = g_strdup_printf ("image %s has no volumes", image);
      continue;
    }
    top = g_ptr_array_index (ie->img->volumes, ie->img->volumes->len - 1);
    if (top->path == NULL) {
      ie->problem = g_strdup_printf ("volume %s of image %s has no path", top->uuid, image);
      continue;
    }
    if (ie->sd->kind == STOR_KIND_BLOCK && !stor_lv_is_active (ie->sd->uuid, top->uuid) &&
        !stor_lv_guard_activate (v->guard, ie->sd->uuid, top->uuid, &err)) {
      ie->problem = g_strdup (err->message);
      continue;
    }
    ie->bitmaps = virt_image_bitmaps (top->path, &err);
    if (ie->bitmaps == NULL)
      ie->problem = g_strdup (err->message);
  }
  return TRUE;
}

static gint
cp_compare (gconstpointer a, gconstpointer b)
{
  const virt_cp_entry *x = *(virt_cp_entry *const *) a;
  const virt_cp_entry *y = *(virt_cp_entry *const *) b;

  if (x->created != y->created)
    return x->created < y->created ? -1 : 1;
  return strcmp (x->name, y->name);
}

/* Parents before children; among those ready, oldest first. */
static void
order_checkpoints (virt_cp_view *v)
{
  g_autoptr (GPtrArray) left = g_ptr_array_new ();
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) cp_entry_free);

  for (guint i = 0; i < v->cps->len; i++)
    g_ptr_array_add (left, g_ptr_array_index (v->cps, i));
  g_ptr_array_sort (left, cp_compare);
  while (left->len > 0) {
    guint pick = 0;

    for (guint i = 0; i < left->len; i++) {
      virt_cp_entry *e = g_ptr_array_index (left, i);
      gboolean parent_left = FALSE;

      for (guint j = 0; e->parent && j < left->len && !parent_left; j++)
        parent_left = strcmp (((virt_cp_entry *) g_ptr_array_index (left, j))->name,
                              e->parent) == 0;
      if (!parent_left) {
        pick = i;
        break;
      }
    }
    g_ptr_array_add (out, g_ptr_array_index (left, pick));
    g_ptr_array_remove_index (left, pick);
  }
  /* The entries moved to out. */
  g_ptr_array_set_free_func (v->cps, NULL);
  g_ptr_array_unref (v->cps);
  v->cps = out;
}

/* Who VM is: libvirt's domain, or a UUID with backup state. */
virt_cp_view *
virt_cp_view_find (const stor_env *env, virConnectPtr conn, const char *vm, GError **error)
{
  g_autoptr (virt_cp_view) v = g_new0 (virt_cp_view, 1);
  g_autoptr (GError) err = NULL;

  v->cps = g_ptr_array_new_with_free_func ((GDestroyNotify) cp_entry_free);
  v->images = g_ptr_array_new_with_free_func ((GDestroyNotify) img_entry_free);

  v->dom = virt_find_domain (conn, vm, &err);
  if (v->dom != NULL) {
    char uuid[VIR_UUID_STRING_BUFLEN];
    int active;

    if (virDomainGetUUIDString (v->dom, uuid) < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot get the UUID of domain %s", vm);
      return NULL;
    }
    v->uuid = g_strdup (uuid);
    v->name = g_strdup (virDomainGetName (v->dom));
    active = virDomainIsActive (v->dom);
    if (active < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot tell whether domain %s is running", v->name);
      return NULL;
    }
    v->running = active == 1;
  } else if (!g_error_matches (err, OVA_ERROR, OVA_ERROR_NOT_FOUND)) {
    g_propagate_error (error, g_steal_pointer (&err));
    return NULL;
  } else {
    g_autofree char *q = ova_quote_untrusted (vm, 128);
    g_autofree char *lower = ova_uuid_is_valid (vm) ? g_ascii_strdown (vm, -1) : NULL;
    g_autofree char *dir = lower ? g_build_filename (env->state_dir, "checkpoints",
                                                     lower, NULL) : NULL;

    if (dir == NULL || !g_file_test (dir, G_FILE_TEST_IS_DIR)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "unknown VM %s: libvirt at %s has no such domain and %s "
                   "holds no backup state for it", q, env->libvirt_uri,
                   env->state_dir);
      return NULL;
    }
    v->uuid = g_steal_pointer (&lower);
  }
  return g_steal_pointer (&v);
}

virt_cp_view *
virt_cp_view_load (const stor_env *env, virConnectPtr conn, const char *vm, GError **error)
{
  g_autoptr (virt_cp_view) v = virt_cp_view_find (env, conn, vm, error);

  if (v == NULL)
    return NULL;
  v->state_dir = env->state_dir;
  v->dir = g_build_filename (env->state_dir, "checkpoints", v->uuid, NULL);
  v->state = virt_state_load (env->state_dir, v->uuid, error);
  if (v->state == NULL)
    return NULL;

  if (v->dom && !load_libvirt_checkpoints (v, error))
    return NULL;
  if (!load_saved_checkpoints (v, error))
    return NULL;
  if (!load_images (v, env, error))
    return NULL;

  /* Which disks each checkpoint is the last one of, and (VM down) which
   * images carry its bitmap; a bitmap no other source names is shown too. */
  for (guint i = 0; i < v->images->len; i++) {
    virt_cp_image *ie = g_ptr_array_index (v->images, i);

    if (ie->checkpoint) {
      virt_cp_entry *e = virt_cp_view_lookup (v, ie->checkpoint);

      if (e == NULL) {
        e = cp_entry_new (ie->checkpoint);
        g_ptr_array_add (v->cps, e);
      }
      g_ptr_array_add (e->last_for, g_strdup (ie->image));
    }
    for (guint j = 0; ie->bitmaps && j < ie->bitmaps->len; j++) {
      const virt_image_bitmap *b = g_ptr_array_index (ie->bitmaps, j);
      virt_cp_entry *e = virt_cp_view_lookup (v, b->name);

      if (e == NULL) {
        e = cp_entry_new (b->name);
        g_ptr_array_add (v->cps, e);
      }
      g_ptr_array_add (e->images, g_strdup (ie->image));
    }
  }
  order_checkpoints (v);
  return g_steal_pointer (&v);
}
