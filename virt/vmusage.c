/* ovagent: which running libvirt domains use which volume files, read from
 * each domain's live XML (disk sources, mirrors and backingStore chains). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "domain-xml.h"
#include "error.h"
#include "log.h"
#include "virt-priv.h"
#include "vmusage.h"

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
  g_autoptr (virt_domain_xml) x = NULL;

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
  x = virt_domain_xml_parse (xml, -1, error);
  free (xml);
  if (x == NULL) {
    g_prefix_error (error, "cannot parse the XML of running domain %s: ", vm_name);
    return FALSE;
  }

  for (guint i = 0; i < x->disks->len; i++) {
    const virt_xml_disk *d = g_ptr_array_index (x->disks, i);
    /* <readonly/> or <transient/>: the guest never writes to its source. */
    gboolean writable = !d->readonly && !d->transient;

    for (guint j = 0; j < d->writes->len; j++)
      add_path (map, g_ptr_array_index (d->writes, j), vm_name, vm_uuid,
                d->target, writable);
    for (guint j = 0; j < d->backing->len; j++)
      add_path (map, g_ptr_array_index (d->backing, j), vm_name, vm_uuid,
                d->target, FALSE);
  }
  return TRUE;
}

GHashTable *
virt_volume_users (const char *uri, GError **error)
{
  GHashTable *map = NULL;
  virConnectPtr conn;
  virDomainPtr *doms = NULL;
  int n;

  virt_silence_libvirt ();
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
