/* ovagent: which running libvirt domains use which volume files, read from
 * each domain's live XML (disk sources, mirrors and backingStore chains). */
#include <config.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "error.h"
#include "log.h"
#include "vmusage.h"

/* One <disk> of a domain's XML. */
typedef struct parsed_disk {
  char *target;
  gboolean readonly;    /* <readonly/> or <transient/>: the guest never
                         * writes to its source */
  GPtrArray *top;       /* char*: <source>, and a <mirror> being copied to */
  GPtrArray *backing;   /* char*: every <backingStore><source> */
} parsed_disk;

typedef struct parse_ctx {
  GPtrArray *stack;     /* char*: names of the open elements */
  parsed_disk *disk;    /* the <disk> being read, if any */
  GPtrArray *disks;     /* parsed_disk* */
} parse_ctx;

void
virt_disk_user_free (virt_disk_user *u)
{
  if (u == NULL)
    return;
  g_free (u->vm_name);
  g_free (u->vm_uuid);
  g_free (u->target);
  g_free (u);
}

static void
parsed_disk_free (parsed_disk *d)
{
  if (d == NULL)
    return;
  g_free (d->target);
  g_ptr_array_unref (d->top);
  g_ptr_array_unref (d->backing);
  g_free (d);
}

static parsed_disk *
parsed_disk_new (void)
{
  parsed_disk *d = g_new0 (parsed_disk, 1);

  d->top = g_ptr_array_new_with_free_func (g_free);
  d->backing = g_ptr_array_new_with_free_func (g_free);
  return d;
}

static const char *
stack_at (const parse_ctx *ctx, guint depth)
{
  return depth < ctx->stack->len ? g_ptr_array_index (ctx->stack, depth) : NULL;
}

static const char *
attr (const char **names, const char **values, const char *name)
{
  for (size_t i = 0; names[i]; i++)
    if (strcmp (names[i], name) == 0)
      return values[i];
  return NULL;
}

/* Only local files and devices can be volumes; network disks (gluster
 * over libgfapi, nbd) and pool volumes have no path here. */
static void
add_source_path (GPtrArray *paths, const char **names, const char **values)
{
  const char *path = attr (names, values, "file");

  if (path == NULL)
    path = attr (names, values, "dev");
  if (path == NULL || path[0] != '/' || strlen (path) >= PATH_MAX)
    return;
  g_ptr_array_add (paths, g_strdup (path));
}

static void
on_start (GMarkupParseContext *context, const char *name,
          const char **names, const char **values,
          gpointer user_data, GError **error)
{
  parse_ctx *ctx = user_data;
  guint depth = ctx->stack->len;
  const char *parent = depth > 0 ? stack_at (ctx, depth - 1) : NULL;
  parsed_disk *d = ctx->disk;

  g_ptr_array_add (ctx->stack, g_strdup (name));

  if (depth == 2 && strcmp (name, "disk") == 0 &&
      g_strcmp0 (stack_at (ctx, 0), "domain") == 0 &&
      g_strcmp0 (stack_at (ctx, 1), "devices") == 0) {
    ctx->disk = parsed_disk_new ();
    return;
  }
  if (d == NULL || parent == NULL)
    return;

  if (strcmp (parent, "disk") == 0 && depth == 3) {
    if (strcmp (name, "source") == 0)
      add_source_path (d->top, names, values);
    else if (strcmp (name, "readonly") == 0 || strcmp (name, "transient") == 0)
      d->readonly = TRUE;
    else if (strcmp (name, "target") == 0 && d->target == NULL)
      d->target = g_strdup (attr (names, values, "dev"));
    else if (strcmp (name, "mirror") == 0)  /* older form: <mirror file=...> */
      add_source_path (d->top, names, values);
  }
  else if (strcmp (name, "source") == 0) {
    /* A block copy writes its destination while the guest runs. */
    if (strcmp (parent, "mirror") == 0 && depth == 4)
      add_source_path (d->top, names, values);
    else if (strcmp (parent, "backingStore") == 0)
      add_source_path (d->backing, names, values);
  }
}

static void
on_end (GMarkupParseContext *context, const char *name,
        gpointer user_data, GError **error)
{
  parse_ctx *ctx = user_data;

  g_ptr_array_remove_index (ctx->stack, ctx->stack->len - 1);
  if (ctx->disk && ctx->stack->len == 2 && strcmp (name, "disk") == 0) {
    g_ptr_array_add (ctx->disks, ctx->disk);
    ctx->disk = NULL;
  }
}

static const GMarkupParser disk_parser = {
  .start_element = on_start,
  .end_element = on_end,
};

static GPtrArray *
parse_disks (const char *xml, const char *vm_name, GError **error)
{
  parse_ctx ctx = { 0 };
  GMarkupParseContext *pc;
  g_autoptr (GError) perr = NULL;
  gboolean ok;

  ctx.stack = g_ptr_array_new_with_free_func (g_free);
  ctx.disks = g_ptr_array_new_with_free_func ((GDestroyNotify) parsed_disk_free);
  pc = g_markup_parse_context_new (&disk_parser, 0, &ctx, NULL);
  ok = g_markup_parse_context_parse (pc, xml, -1, &perr) &&
       g_markup_parse_context_end_parse (pc, &perr);
  g_markup_parse_context_free (pc);
  parsed_disk_free (ctx.disk);
  g_ptr_array_unref (ctx.stack);

  if (!ok) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot parse the XML of running domain %s: %s",
                 vm_name, perr->message);
    g_ptr_array_unref (ctx.disks);
    return NULL;
  }
  return ctx.disks;
}

static void
add_user (GHashTable *map, const char *key, const char *vm_name,
          const char *vm_uuid, const char *target, gboolean writable_top)
{
  GPtrArray *users = g_hash_table_lookup (map, key);
  virt_disk_user *u = g_new0 (virt_disk_user, 1);

  u->vm_name = g_strdup (vm_name);
  u->vm_uuid = g_strdup (vm_uuid);
  u->target = g_strdup (target);
  u->writable_top = writable_top;
  if (users == NULL) {
    users = g_ptr_array_new_with_free_func ((GDestroyNotify) virt_disk_user_free);
    g_hash_table_insert (map, g_strdup (key), users);
  }
  g_ptr_array_add (users, u);
}

/* Keyed by the canonical path, and by the path as libvirt names it too:
 * /dev/<vg>/<lv> and the /rhev/... image links resolve to the same
 * device, but a caller may know either name. */
static void
add_path (GHashTable *map, const char *path, const char *vm_name,
          const char *vm_uuid, const char *target, gboolean writable_top)
{
  g_autofree char *canon = realpath (path, NULL);

  if (canon)
    add_user (map, canon, vm_name, vm_uuid, target, writable_top);
  else
    ova_debug ("domain %s disk %s: %s does not resolve", vm_name,
               target ? target : "?", path);
  if (canon == NULL || strcmp (canon, path) != 0)
    add_user (map, path, vm_name, vm_uuid, target, writable_top);
}

static gboolean
add_domain (GHashTable *map, virDomainPtr dom, GError **error)
{
  const char *vm_name = virDomainGetName (dom);
  char vm_uuid[VIR_UUID_STRING_BUFLEN];
  char *xml;
  GPtrArray *disks;

  if (vm_name == NULL || virDomainGetUUIDString (dom, vm_uuid) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot get the name of a running domain: %s",
                 virGetLastErrorMessage ());
    return FALSE;
  }
  xml = virDomainGetXMLDesc (dom, 0);
  if (xml == NULL) {
    /* Stopped since it was listed: it uses nothing any more. */
    if (virGetLastErrorCode () == VIR_ERR_NO_DOMAIN) {
      ova_debug ("domain %s went away while listing disks", vm_name);
      return TRUE;
    }
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot get the XML of running domain %s: %s",
                 vm_name, virGetLastErrorMessage ());
    return FALSE;
  }
  disks = parse_disks (xml, vm_name, error);
  free (xml);
  if (disks == NULL)
    return FALSE;

  for (guint i = 0; i < disks->len; i++) {
    const parsed_disk *d = g_ptr_array_index (disks, i);

    for (guint j = 0; j < d->top->len; j++)
      add_path (map, g_ptr_array_index (d->top, j), vm_name, vm_uuid,
                d->target, !d->readonly);
    for (guint j = 0; j < d->backing->len; j++)
      add_path (map, g_ptr_array_index (d->backing, j), vm_name, vm_uuid,
                d->target, FALSE);
  }
  g_ptr_array_unref (disks);
  return TRUE;
}

/* libvirt prints every error to stderr by default; ours are reported
 * once, as GErrors, by the caller. */
static void
ignore_libvirt_error (void *opaque, virErrorPtr err)
{
}

GHashTable *
virt_volume_users (const char *uri, GError **error)
{
  static gsize silenced = 0;
  GHashTable *map = NULL;
  virConnectPtr conn;
  virDomainPtr *doms = NULL;
  int n;

  if (g_once_init_enter (&silenced)) {
    virSetErrorFunc (NULL, ignore_libvirt_error);
    g_once_init_leave (&silenced, 1);
  }

  conn = virConnectOpenReadOnly (uri);
  if (conn == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot connect to libvirt at %s: %s",
                 uri ? uri : "the default URI", virGetLastErrorMessage ());
    return NULL;
  }

  n = virConnectListAllDomains (conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  if (n < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot list the running domains at %s: %s",
                 uri ? uri : "the default URI", virGetLastErrorMessage ());
    goto out;
  }

  map = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                               (GDestroyNotify) g_ptr_array_unref);
  for (int i = 0; i < n; i++) {
    if (!add_domain (map, doms[i], error)) {
      g_clear_pointer (&map, g_hash_table_unref);
      goto out;
    }
  }

 out:
  for (int i = 0; i < n; i++)
    virDomainFree (doms[i]);
  free (doms);
  virConnectClose (conn);
  return map;
}
