/* ovagent: what the files of virt/ share and nothing above them sees: libvirt's
 * errors as GErrors, the domain's name and XML, size limits, XML attribute lookup. */
#ifndef VIRT_PRIV_H
#define VIRT_PRIV_H

#include <string.h>

#include <glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "domain-xml.h"

/* libvirt's XML of one domain, one backup job or one checkpoint. */
#define VIRT_LIBVIRT_XML_MAX (16 * 1024 * 1024)

/* A saved checkpoint: a name, a parent, a description, disks. */
#define VIRT_SAVED_XML_MAX (1024 * 1024)

#define VIRT_CHECKPOINT_NAME_MAX 255

/* libvirt prints every error on stderr unless told otherwise; ours are
 * reported once, as GErrors. Called before the first libvirt call. */
void virt_silence_libvirt (void);

/* "<context>: <libvirt's message>", coded by what libvirt said. */
void virt_set_libvirt_error_saved (GError **error, virErrorPtr saved,
                                   const char *fmt, ...) G_GNUC_PRINTF (3, 4);

/* The error is saved before the message arguments are evaluated: any
 * libvirt call among them (virDomainGetName) resets it. */
#define virt_set_libvirt_error(error, ...)                              \
  do {                                                                  \
    virErrorPtr saved_ = virSaveLastError ();                           \
    virt_set_libvirt_error_saved ((error), saved_, __VA_ARGS__);        \
    virFreeError (saved_);                                              \
  } while (0)

/* The domain's name for messages; never NULL. */
const char *virt_dom_name (virDomainPtr dom);

gboolean virt_dom_uuid (virDomainPtr dom, char out[VIR_UUID_STRING_BUFLEN],
                        GError **error);

/* The domain's live XML, parsed (domain-xml.h). */
virt_domain_xml *virt_domain_xml_load (virDomainPtr dom, GError **error);

/* The value of attribute name of an element, or NULL. */
static inline const char *
virt_xml_attr (const char **names, const char **values, const char *name)
{
  for (gsize i = 0; names[i]; i++)
    if (strcmp (names[i], name) == 0)
      return values[i];
  return NULL;
}

/* The name of the open element at depth i, or "". */
static inline const char *
virt_xml_stack_at (GPtrArray *stack, guint i)
{
  return i < stack->len ? g_ptr_array_index (stack, i) : "";
}

#endif
