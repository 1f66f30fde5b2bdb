/* ovagent: the libvirt connection, finding a domain, and the disks of its
 * live XML that can be backed up through a checkpoint. */
#ifndef VIRT_LIBVIRT_H
#define VIRT_LIBVIRT_H

#include <glib.h>
#include <libvirt/libvirt.h>

typedef struct virt_disk {
  char *target;         /* vda */
  char *path;           /* <source file|dev>; NULL for network disks */
  char *format;         /* <driver type>: qcow2, raw ... */
  gboolean is_block;    /* type='block' */
  guint64 virtual_size; /* from the image header; 0 if not read */
  char *unsupported;    /* NULL if it can be backed up, else why not */
  char *serial;         /* <serial>, trimmed; NULL if none */
  GPtrArray *layers;    /* stor_layer*: the image and its backing chain, top
                         * first, as the live XML's <backingStore> gives
                         * them; NULL unless every layer's path and format
                         * (qcow2 or raw) are given there */
} virt_disk;

void virt_disk_free (virt_disk *d);

/* Read-write connection (backups and checkpoints change the domain). */
virConnectPtr virt_connect (const char *uri, GError **error);

/* By UUID if vm looks like one, else by name; OVA_ERROR_NOT_FOUND. */
virDomainPtr virt_find_domain (virConnectPtr conn, const char *vm, GError **error);

/* Why the image at path cannot carry a checkpoint (not qcow2, compat
 * 0.10, unreadable), or NULL; *size gets its virtual size. format: what
 * the image is ("qcow2", "raw") as libvirt's XML or VDSM's metadata say,
 * never guessed from its bytes. */
char *virt_image_unsupported (const char *path, const char *format, guint64 *size);

/* Every <disk> of the domain's live XML, in XML order (virt_disk*). For a
 * running domain the images are looked at too (virt_image_unsupported, as
 * the format libvirt names); a stopped domain's are not (unsupported then
 * says only what the XML tells, virtual_size is 0): VDSM's metadata
 * describes them. */
GPtrArray *virt_domain_disks (virDomainPtr dom, GError **error);

#endif
