/* ovagent: which running libvirt domains use which volume files, and whether
 * as their writable top layer or as a read-only backing layer. */
#ifndef VIRT_VMUSAGE_H
#define VIRT_VMUSAGE_H

#include <glib.h>

typedef struct virt_disk_user {
  char *vm_name;
  char *vm_uuid;
  char *target;          /* vda, sda ... */
  gboolean writable_top; /* the disk's <source>, not a <backingStore> */
} virt_disk_user;

void virt_disk_user_free (virt_disk_user *u);

/* Map of canonical path (realpath) -> GPtrArray of virt_disk_user*, over
 * every running domain on uri (read-only connection). Fails with
 * OVA_ERROR_INTERNAL if libvirt cannot be reached. */
GHashTable *virt_volume_users (const char *uri, GError **error);

#endif
