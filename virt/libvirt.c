/* ovagent: the libvirt connection and domain lookup, libvirt's errors as
 * GErrors coded by what libvirt said, and the disks of a domain's live XML. */
#include <config.h>

#include <string.h>

#include "error.h"
#include "libvirt.h"
#include "probe.h"
#include "util.h"
#include "virt-priv.h"

/* ------------------------------------------------------------------ */
/* Errors */

static void
ignore_libvirt_error (void *opaque, virErrorPtr err)
{
}

void
virt_silence_libvirt (void)
{
  static gsize silenced = 0;

  if (g_once_init_enter (&silenced)) {
    virSetErrorFunc (NULL, ignore_libvirt_error);
    g_once_init_leave (&silenced, 1);
  }
}

static int
code_for_libvirt_error (int code)
{
  switch (code) {
  case VIR_ERR_NO_DOMAIN:
  case VIR_ERR_NO_DOMAIN_CHECKPOINT:
  case VIR_ERR_NO_DOMAIN_BACKUP:
    return OVA_ERROR_NOT_FOUND;
  case VIR_ERR_OPERATION_INVALID:
    return OVA_ERROR_BUSY;
  case VIR_ERR_CHECKPOINT_INCONSISTENT:
  case VIR_ERR_OPERATION_UNSUPPORTED:
  case VIR_ERR_NO_SUPPORT:
    return OVA_ERROR_UNSUPPORTED;
  default:
    return OVA_ERROR_INTERNAL;
  }
}

void
virt_set_libvirt_error_saved (GError **error, virErrorPtr saved, const char *fmt, ...)
{
  g_autofree char *context = NULL;
  va_list ap;

  va_start (ap, fmt);
  context = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR,
               code_for_libvirt_error (saved ? saved->code : VIR_ERR_OK),
               "%s: %s", context,
               saved && saved->message ? saved->message : "unknown libvirt error");
}

const char *
virt_dom_name (virDomainPtr dom)
{
  const char *name = virDomainGetName (dom);

  return name ? name : "(unnamed)";
}

gboolean
virt_dom_uuid (virDomainPtr dom, char out[VIR_UUID_STRING_BUFLEN], GError **error)
{
  if (virDomainGetUUIDString (dom, out) < 0) {
    virt_set_libvirt_error (error, "cannot get the UUID of domain %s", virt_dom_name (dom));
    return FALSE;
  }
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Connection, domain, disks */

virConnectPtr
virt_connect (const char *uri, GError **error)
{
  virConnectPtr conn;

  virt_silence_libvirt ();
  conn = virConnectOpen (uri);
  if (conn == NULL)
    virt_set_libvirt_error (error, "cannot connect to libvirt at %s",
                            uri ? uri : "the default URI");
  return conn;
}

virDomainPtr
virt_find_domain (virConnectPtr conn, const char *vm, GError **error)
{
  virDomainPtr dom;

  virt_silence_libvirt ();
  if (vm == NULL || *vm == '\0' || strlen (vm) > 1024) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "invalid VM name or UUID");
    return NULL;
  }
  if (ova_uuid_is_valid (vm)) {
    dom = virDomainLookupByUUIDString (conn, vm);
    if (dom)
      return dom;
    /* A domain may be named like a UUID. */
  }
  dom = virDomainLookupByName (conn, vm);
  if (dom == NULL) {
    g_autofree char *q = ova_quote_untrusted (vm, 128);

    virt_set_libvirt_error (error, "no domain %s", q);
  }
  return dom;
}

virt_domain_xml *
virt_domain_xml_load (virDomainPtr dom, GError **error)
{
  char *xml = virDomainGetXMLDesc (dom, 0);
  virt_domain_xml *x;

  if (xml == NULL) {
    virt_set_libvirt_error (error, "cannot get the XML of domain %s", virt_dom_name (dom));
    return NULL;
  }
  x = virt_domain_xml_parse (xml, -1, error);
  free (xml);
  if (x == NULL)
    g_prefix_error (error, "cannot parse the XML of domain %s: ", virt_dom_name (dom));
  return x;
}

void
virt_disk_free (virt_disk *d)
{
  if (d == NULL)
    return;
  g_free (d->target);
  g_free (d->path);
  g_free (d->format);
  g_free (d->unsupported);
  g_free (d->serial);
  if (d->layers)
    g_ptr_array_unref (d->layers);
  g_free (d);
}

char *
virt_image_unsupported (const char *path, const char *format, guint64 *size)
{
  g_autoptr (stor_probe) probe = NULL;
  g_autoptr (GError) err = NULL;

  if (g_strcmp0 (format, "qcow2") != 0)
    return g_strdup_printf ("%s disk", format ? format : "raw");
  probe = stor_probe_volume (path, STOR_FORMAT_COW, &err);
  if (probe == NULL)
    return g_strdup_printf ("cannot read its image: %s", err->message);
  *size = probe->virtual_size;
  if (g_strcmp0 (probe->qcow2_compat, "1.1") != 0)
    return g_strdup_printf ("qcow2 compat %s cannot hold persistent bitmaps",
                            probe->qcow2_compat ? probe->qcow2_compat : "(unknown)");
  return NULL;
}

GPtrArray *
virt_domain_disks (virDomainPtr dom, GError **error)
{
  g_autoptr (virt_domain_xml) x = virt_domain_xml_load (dom, error);
  GPtrArray *out;
  gboolean active;

  if (x == NULL)
    return NULL;
  /* A running domain's images are what QEMU opened as libvirt says; a
   * stopped one's are described by VDSM's metadata, read by the caller. */
  active = virDomainIsActive (dom) == 1;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) virt_disk_free);
  for (guint i = 0; i < x->disks->len; i++) {
    virt_xml_disk *p = g_ptr_array_index (x->disks, i);
    virt_disk *d = g_new0 (virt_disk, 1);

    d->is_block = g_strcmp0 (p->type, "block") == 0;
    d->unsupported = virt_xml_disk_unsupported (p);
    d->target = g_steal_pointer (&p->target);
    d->path = g_steal_pointer (&p->path);
    d->format = g_steal_pointer (&p->format);
    d->serial = g_steal_pointer (&p->serial);
    d->layers = g_steal_pointer (&p->layers);
    if (d->unsupported == NULL && active)
      d->unsupported = virt_image_unsupported (d->path, d->format, &d->virtual_size);
    g_ptr_array_add (out, d);
  }
  return out;
}
