/* ovagent: the one parser of a libvirt domain's XML: its disks (sources,
 * mirrors, backing chains, flags, serial) and QEMU's DAC label. */
#ifndef VIRT_DOMAIN_XML_H
#define VIRT_DOMAIN_XML_H

#include <glib.h>

/* One <disk> under <domain><devices>. Paths are local only (absolute,
 * shorter than PATH_MAX): network disks and pool volumes have none. */
typedef struct virt_xml_disk {
  char *type;           /* <disk type>: file, block, network ... */
  char *device;         /* <disk device>: disk, cdrom, floppy, lun */
  char *target;         /* the first <target dev>: vda */
  char *path;           /* the first local <source file|dev>, or NULL */
  char *format;         /* the first <driver type>: qcow2, raw ... */
  char *serial;         /* <serial>, trimmed; NULL if none or blank */
  gboolean readonly;    /* <readonly/> */
  gboolean shareable;   /* <shareable/> */
  gboolean transient;   /* <transient/> */
  GPtrArray *layers;    /* stor_layer*: the image and its backing chain, top
                         * first, as the nested <backingStore> give them;
                         * NULL unless every layer is a local file or device
                         * whose path and format (qcow2, or raw at the
                         * bottom) are given */
  GPtrArray *writes;    /* char*: what the guest writes: every local <source>
                         * of the disk, and a <mirror> being copied to */
  GPtrArray *backing;   /* char*: the local <source> of every <backingStore> */
} virt_xml_disk;

typedef struct virt_domain_xml {
  GPtrArray *disks;     /* virt_xml_disk*, in XML order */
  char *dac_label;      /* <seclabel model='dac'><label> of the domain:
                         * "+64055:+994" or "user:group"; NULL if none */
} virt_domain_xml;

void virt_domain_xml_free (virt_domain_xml *x);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (virt_domain_xml, virt_domain_xml_free)

/* Parse len bytes of xml (-1: up to its NUL). Elements and attributes not
 * listed above are ignored. On malformed or too large (over 16 MiB) XML,
 * NULL and OVA_ERROR_INTERNAL with the reason alone: the caller names the
 * domain. */
virt_domain_xml *virt_domain_xml_parse (const char *xml, gssize len, GError **error);

/* Why a disk cannot be backed up through a checkpoint, as its XML says
 * (the image itself is looked at apart), or NULL. */
char *virt_xml_disk_unsupported (const virt_xml_disk *d);

#endif
