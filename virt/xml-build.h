/* ovagent: the XML ovagent hands to libvirt, in VDSM's form
 * (vdsm-storage.md §6.3-6.4): backup jobs and checkpoints. Pure builders. */
#ifndef VIRT_XML_BUILD_H
#define VIRT_XML_BUILD_H

#include <glib.h>

typedef struct virt_scratch_disk {
  const char *name;             /* target dev */
  const char *scratch;          /* scratch file or device path */
  gboolean scratch_block;       /* dev= instead of file= */
  gboolean incremental;         /* backupmode='incremental' from the
                                 * backup's from_checkpoint */
} virt_scratch_disk;

char *virt_checkpoint_xml (const char *checkpoint_id, const char *backup_id,
                           const char *const *disks);
char *virt_backup_xml (const char *from_checkpoint, const char *socket_path,
                       const virt_scratch_disk *disks, gsize n_disks);

/* The checkpoint XML a stopped-VM backup leaves for a later redefine: name, parent (or
 * NULL), creation time (seconds), and the disks (target dev → bitmap = name). */
char *virt_checkpoint_redefine_xml (const char *name, const char *parent, gint64 created,
                                    const char *const *targets);

#endif
