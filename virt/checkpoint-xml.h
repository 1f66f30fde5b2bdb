/* ovagent: the one parser of a checkpoint's XML, as libvirt dumps it and as
 * it is saved under the state directory: name, parent, creation time, disks. */
#ifndef VIRT_CHECKPOINT_XML_H
#define VIRT_CHECKPOINT_XML_H

#include <glib.h>

typedef struct virt_checkpoint_disk {
  char *target;               /* <disk name> */
  char *bitmap;               /* NULL when checkpoint='no' */
} virt_checkpoint_disk;

typedef struct virt_checkpoint_doc {
  char *name;                 /* <name>, trimmed; NULL if absent, blank or
                               * longer than a checkpoint name may be */
  char *parent;               /* <parent><name>, likewise */
  gint64 created;             /* <creationTime>, seconds; -1 if not given */
  GPtrArray *disks;           /* virt_checkpoint_disk*, in XML order; a
                               * <disk> without a name (or with a name or
                               * bitmap too long) is left out */
} virt_checkpoint_doc;

void virt_checkpoint_disk_free (virt_checkpoint_disk *d);
void virt_checkpoint_doc_free (virt_checkpoint_doc *doc);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (virt_checkpoint_doc, virt_checkpoint_doc_free)

/* Parse len bytes of xml (-1: up to its NUL). known_as is the name the
 * checkpoint goes by (libvirt's, or its file's): the bitmap of a disk that
 * names none. Unknown elements and attributes are ignored. On malformed
 * or too large (over 16 MiB) XML, NULL and OVA_ERROR_INTEGRITY with the
 * reason alone: the caller says which document. */
virt_checkpoint_doc *virt_checkpoint_doc_parse (const char *xml, gssize len,
                                                const char *known_as, GError **error);

#endif
