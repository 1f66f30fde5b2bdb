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
#include "virt/state.h"

#define NAME_MAX_LEN 255
#define SAVED_XML_MAX (1024 * 1024)

typedef struct cp_disk {
  char *target;
  char *bitmap;               /* NULL when checkpoint='no' */
} cp_disk;

typedef struct cp_entry {
  char *name;
  char *parent;
  gint64 created;             /* -1 if not known */
  gboolean known;             /* to libvirt */
  gboolean saved;             /* <state_dir>/checkpoints/<vm>/<name>.xml */
  GPtrArray *disks;           /* cp_disk* */
  GPtrArray *last_for;        /* image uuids (char*) */
  GPtrArray *images;          /* VM down: images whose top has the bitmap */
} cp_entry;

/* A disk the state knows, and (VM down) its top volume's bitmaps. */
typedef struct img_entry {
  char *image;
  const char *target;         /* from the state */
  const char *checkpoint;     /* from the state */
  stor_domain *sd;            /* borrowed from the scan */
  stor_image *img;            /* borrowed from the scan */
  GPtrArray *bitmaps;         /* virt_image_bitmap*; NULL if not read */
  char *problem;              /* why the bitmaps could not be read */
} img_entry;

typedef struct vm_view {
  char *uuid;
  char *name;                 /* NULL when libvirt does not know the VM */
  virDomainPtr dom;           /* NULL likewise */
  gboolean running;
  const char *state_dir;      /* from the configuration */
  char *dir;                  /* <state_dir>/checkpoints/<uuid> */
  virt_state *state;
  GPtrArray *cps;             /* cp_entry*, parents first */
  GPtrArray *images;          /* img_entry* */
  GPtrArray *domains;         /* the storage scan, when one was needed */
  stor_lv_guard *guard;
} vm_view;

static void
cp_disk_free (cp_disk *d)
{
  g_free (d->target);
  g_free (d->bitmap);
  g_free (d);
}

static void
cp_entry_free (cp_entry *e)
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

static cp_entry *
cp_entry_new (const char *name)
{
  cp_entry *e = g_new0 (cp_entry, 1);

  e->name = g_strdup (name);
  e->created = -1;
  e->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) cp_disk_free);
  e->last_for = g_ptr_array_new_with_free_func (g_free);
  e->images = g_ptr_array_new_with_free_func (g_free);
  return e;
}

static void
img_entry_free (img_entry *i)
{
  if (i == NULL)
    return;
  g_free (i->image);
  if (i->bitmaps)
    g_ptr_array_unref (i->bitmaps);
  g_free (i->problem);
  g_free (i);
}

static void
vm_view_free (vm_view *v)
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

G_DEFINE_AUTOPTR_CLEANUP_FUNC (vm_view, vm_view_free)

static cp_entry *
find_cp (const vm_view *v, const char *name)
{
  for (guint i = 0; i < v->cps->len; i++) {
    cp_entry *e = g_ptr_array_index (v->cps, i);

    if (strcmp (e->name, name) == 0)
      return e;
  }
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Checkpoint XML: name, parent, creation time, disks */

typedef struct xml_ctx {
  cp_entry *e;
  GPtrArray *stack;
  GString *text;
} xml_ctx;

static const char *
stack_at (GPtrArray *stack, guint i)
{
  return i < stack->len ? g_ptr_array_index (stack, i) : "";
}

static void
xml_start (GMarkupParseContext *pc, const char *name, const char **names,
           const char **values, gpointer data, GError **error)
{
  xml_ctx *x = data;
  guint depth = x->stack->len;

  g_ptr_array_add (x->stack, g_strdup (name));
  g_string_truncate (x->text, 0);
  if (depth == 2 && strcmp (name, "disk") == 0 &&
      strcmp (stack_at (x->stack, 1), "disks") == 0) {
    const char *target = NULL, *mode = NULL, *bitmap = NULL;
    cp_disk *d;

    for (gsize i = 0; names[i]; i++) {
      if (strcmp (names[i], "name") == 0)
        target = values[i];
      else if (strcmp (names[i], "checkpoint") == 0)
        mode = values[i];
      else if (strcmp (names[i], "bitmap") == 0)
        bitmap = values[i];
    }
    if (target == NULL || strlen (target) > NAME_MAX_LEN ||
        (bitmap && strlen (bitmap) > NAME_MAX_LEN))
      return;
    d = g_new0 (cp_disk, 1);
    d->target = g_strdup (target);
    if (g_strcmp0 (mode, "no") != 0)
      d->bitmap = g_strdup (bitmap ? bitmap : x->e->name);
    g_ptr_array_add (x->e->disks, d);
  }
}

static void
xml_end (GMarkupParseContext *pc, const char *name, gpointer data, GError **error)
{
  xml_ctx *x = data;
  guint depth = x->stack->len;
  g_autofree char *text = g_strstrip (g_strdup (x->text->str));

  if (depth == 3 && strcmp (name, "name") == 0 &&
      strcmp (stack_at (x->stack, 1), "parent") == 0 && x->e->parent == NULL &&
      *text && strlen (text) <= NAME_MAX_LEN)
    x->e->parent = g_steal_pointer (&text);
  else if (depth == 2 && strcmp (name, "creationTime") == 0) {
    guint64 t;

    if (g_ascii_string_to_unsigned (text, 10, 0, G_MAXINT64, &t, NULL))
      x->e->created = (gint64) t;
  }
  g_ptr_array_remove_index (x->stack, depth - 1);
  g_string_truncate (x->text, 0);
}

static void
xml_text (GMarkupParseContext *pc, const char *text, gsize len, gpointer data,
          GError **error)
{
  xml_ctx *x = data;

  if (x->text->len + len <= NAME_MAX_LEN + 64)
    g_string_append_len (x->text, text, len);
}

static const GMarkupParser xml_parser = {
  .start_element = xml_start,
  .end_element = xml_end,
  .text = xml_text,
};

/* Fill e from its XML; where names the XML in errors. */
static gboolean
parse_cp_xml (cp_entry *e, const char *xml, const char *where, GError **error)
{
  xml_ctx x = { e, g_ptr_array_new_with_free_func (g_free), g_string_new (NULL) };
  GMarkupParseContext *pc = g_markup_parse_context_new (&xml_parser, 0, &x, NULL);
  g_autoptr (GError) perr = NULL;
  gboolean ok;

  g_ptr_array_set_size (e->disks, 0);
  g_clear_pointer (&e->parent, g_free);
  ok = g_markup_parse_context_parse (pc, xml, -1, &perr) &&
       g_markup_parse_context_end_parse (pc, &perr);
  g_markup_parse_context_free (pc);
  g_ptr_array_unref (x.stack);
  g_string_free (x.text, TRUE);
  if (!ok) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "checkpoint %s: %s: %s", e->name, where, perr->message);
    return FALSE;
  }
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Gathering */

static char *
saved_path (const vm_view *v, const char *name)
{
  g_autofree char *file = g_strconcat (name, ".xml", NULL);

  return g_build_filename (v->dir, file, NULL);
}

static gboolean
load_libvirt_checkpoints (vm_view *v, GError **error)
{
  g_autoptr (GPtrArray) names = virt_checkpoint_list (v->dom, error);

  if (names == NULL)
    return FALSE;
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    g_autofree char *xml = virt_checkpoint_dump (v->dom, name, error);
    cp_entry *e;

    if (xml == NULL)
      return FALSE;
    e = cp_entry_new (name);
    g_ptr_array_add (v->cps, e);
    e->known = TRUE;
    if (!parse_cp_xml (e, xml, "libvirt's XML", error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
load_saved_checkpoints (vm_view *v, GError **error)
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
    cp_entry *e;

    if (!g_str_has_suffix (f, ".xml"))
      continue;
    name = g_strndup (f, strlen (f) - 4);
    if (!ova_uuid_is_valid (name))
      continue;
    path = g_build_filename (v->dir, f, NULL);
    e = find_cp (v, name);
    if (e != NULL) {
      e->saved = TRUE;
      continue;
    }
    if (!ova_read_file_direct (path, SAVED_XML_MAX, &xml, &len, error))
      return FALSE;
    e = cp_entry_new (name);
    g_ptr_array_add (v->cps, e);
    e->saved = TRUE;
    if (!parse_cp_xml (e, xml, path, error))
      return FALSE;
  }
  return TRUE;
}

/* The images the state knows (last checkpoints and a pending backup), with
 * their chains from the storage scan and, unless QEMU holds them, the
 * bitmaps of their top volumes. */
static gboolean
load_images (vm_view *v, const ova_config *cfg, GError **error)
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

  v->domains = stor_scan_domains (&cfg->env, NULL, error);
  if (v->domains == NULL)
    return FALSE;
  for (guint i = 0; i < v->domains->len; i++) {
    stor_domain *d = g_ptr_array_index (v->domains, i);

    if (d->kind == STOR_KIND_BLOCK && v->guard == NULL) {
      stor_lv_cleanup_stale (&cfg->env);
      v->guard = stor_lv_guard_new (&cfg->env);
    }
  }

 fill:
  for (guint i = 0; i < images->len; i++) {
    const char *image = g_ptr_array_index (images, i);
    img_entry *ie = g_new0 (img_entry, 1);
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
  const cp_entry *x = *(cp_entry *const *) a;
  const cp_entry *y = *(cp_entry *const *) b;

  if (x->created != y->created)
    return x->created < y->created ? -1 : 1;
  return strcmp (x->name, y->name);
}

/* Parents before children; among those ready, oldest first. */
static void
order_checkpoints (vm_view *v)
{
  g_autoptr (GPtrArray) left = g_ptr_array_new ();
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) cp_entry_free);

  for (guint i = 0; i < v->cps->len; i++)
    g_ptr_array_add (left, g_ptr_array_index (v->cps, i));
  g_ptr_array_sort (left, cp_compare);
  while (left->len > 0) {
    guint pick = 0;

    for (guint i = 0; i < left->len; i++) {
      cp_entry *e = g_ptr_array_index (left, i);
      gboolean parent_left = FALSE;

      for (guint j = 0; e->parent && j < left->len && !parent_left; j++)
        parent_left = strcmp (((cp_entry *) g_ptr_array_index (left, j))->name,
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
static vm_view *
find_vm (const ova_config *cfg, virConnectPtr conn, const char *vm, GError **error)
{
  g_autoptr (vm_view) v = g_new0 (vm_view, 1);
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
    g_autofree char *dir = lower ? g_build_filename (cfg->env.state_dir, "checkpoints",
                                                     lower, NULL) : NULL;

    if (dir == NULL || !g_file_test (dir, G_FILE_TEST_IS_DIR)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "unknown VM %s: libvirt at %s has no such domain and %s "
                   "holds no backup state for it", q, cfg->env.libvirt_uri,
                   cfg->env.state_dir);
      return NULL;
    }
    v->uuid = g_steal_pointer (&lower);
  }
  return g_steal_pointer (&v);
}

static vm_view *
load_view (const ova_config *cfg, virConnectPtr conn, const char *vm, GError **error)
{
  g_autoptr (vm_view) v = find_vm (cfg, conn, vm, error);

  if (v == NULL)
    return NULL;
  v->state_dir = cfg->env.state_dir;
  v->dir = g_build_filename (cfg->env.state_dir, "checkpoints", v->uuid, NULL);
  v->state = virt_state_load (cfg->env.state_dir, v->uuid, error);
  if (v->state == NULL)
    return NULL;

  if (v->dom && !load_libvirt_checkpoints (v, error))
    return NULL;
  if (!load_saved_checkpoints (v, error))
    return NULL;
  if (!load_images (v, cfg, error))
    return NULL;

  /* Which disks each checkpoint is the last one of, and (VM down) which
   * images carry its bitmap; a bitmap no other source names is shown too. */
  for (guint i = 0; i < v->images->len; i++) {
    img_entry *ie = g_ptr_array_index (v->images, i);

    if (ie->checkpoint) {
      cp_entry *e = find_cp (v, ie->checkpoint);

      if (e == NULL) {
        e = cp_entry_new (ie->checkpoint);
        g_ptr_array_add (v->cps, e);
      }
      g_ptr_array_add (e->last_for, g_strdup (ie->image));
    }
    for (guint j = 0; ie->bitmaps && j < ie->bitmaps->len; j++) {
      const virt_image_bitmap *b = g_ptr_array_index (ie->bitmaps, j);
      cp_entry *e = find_cp (v, b->name);

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
json_view_members (JsonBuilder *b, const vm_view *v)
{
  ova_json_add_string (b, "vm", v->uuid);
  ova_json_add_string (b, "name", v->name);
  ova_json_add_bool (b, "running", v->running);
}

static void
print_json_view (const vm_view *v)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;

  json_builder_begin_object (b);
  json_view_members (b, v);
  json_builder_set_member_name (b, "checkpoints");
  json_builder_begin_array (b);
  for (guint i = 0; i < v->cps->len; i++) {
    const cp_entry *e = g_ptr_array_index (v->cps, i);
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
      const cp_disk *d = g_ptr_array_index (e->disks, j);

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
    const img_entry *ie = g_ptr_array_index (v->images, i);
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
join_targets (const cp_entry *e)
{
  g_autoptr (GString) s = g_string_new (NULL);

  for (guint i = 0; i < e->disks->len; i++) {
    const cp_disk *d = g_ptr_array_index (e->disks, i);

    if (d->bitmap)
      g_string_append_printf (s, "%s%s", s->len ? "," : "", d->target);
  }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static void
print_table (const vm_view *v)
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
      const cp_entry *e = g_ptr_array_index (v->cps, i);
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
    const img_entry *ie = g_ptr_array_index (v->images, i);
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
  const img_entry *ie;
  const stor_volume *vol;
  gboolean merge;             /* the parent's bitmap is there: it takes the bits */
  gboolean enable;            /* ...and is enabled, as this one was */
} bitmap_site;

/* Where in the image's chain (top first) the bitmap name is, and what to
 * do there; nothing written yet. */
static gboolean
find_bitmap_sites (vm_view *v, const img_entry *ie, const char *name,
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
reparent_saved (vm_view *v, const cp_entry *gone, GError **error)
{
  for (guint i = 0; i < v->cps->len; i++) {
    const cp_entry *e = g_ptr_array_index (v->cps, i);
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
      const cp_disk *d = g_ptr_array_index (e->disks, j);

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
delete_stopped (vm_view *v, const stor_env *env, cp_entry *e, JsonBuilder *b,
                GError **error)
{
  g_autoptr (GPtrArray) touched = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) sites = g_array_new (FALSE, FALSE, sizeof (bitmap_site));

  for (guint i = 0; i < v->images->len; i++) {
    img_entry *ie = g_ptr_array_index (v->images, i);

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
    g_autofree char *path = saved_path (v, e->name);

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
  g_autoptr (vm_view) v = NULL;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (GPtrArray) redefined = NULL;
  g_autofree char *vm_uuid = NULL;
  g_autofree char *parent = NULL;
  cp_entry *e;
  int lock = -1;
  gboolean ok = FALSE;

  /* The lock needs the UUID; the view is loaded under it. */
  {
    g_autoptr (vm_view) who = find_vm (ctx->cfg, conn, vm, error);

    if (who == NULL)
      return FALSE;
    vm_uuid = g_strdup (who->uuid);
  }
  lock = virt_state_lock (ctx->cfg->env.run_dir, vm_uuid, error);
  if (lock < 0)
    return FALSE;
  v = load_view (ctx->cfg, conn, vm_uuid, error);
  if (v == NULL)
    goto out;

  e = find_cp (v, name);
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
    g_autoptr (vm_view) v = load_view (ctx->cfg, conn, argv[1], error);

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
