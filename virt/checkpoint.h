/* ovagent: the checkpoints of a libvirt domain (list, dump, save, redefine,
 * delete); includes the other virt/ role headers its callers have always used. */
#ifndef VIRT_CHECKPOINT_H
#define VIRT_CHECKPOINT_H

#include <glib.h>
#include <libvirt/libvirt.h>

#include "virt/backup-job.h"
#include "virt/bitmaps.h"
#include "virt/libvirt.h"
#include "virt/xml-build.h"

/* Checkpoint names, parents before children (char*). */
GPtrArray *virt_checkpoint_list (virDomainPtr dom, GError **error);

/* The checkpoint XML without the domain (what redefine takes). */
char *virt_checkpoint_dump (virDomainPtr dom, const char *name, GError **error);

/* <state_dir>/checkpoints/<vm-uuid>/<name>.xml; name must be a UUID. */
char *virt_checkpoint_saved_path (const char *state_dir, const char *vm_uuid,
                                  const char *name, GError **error);

/* Dump and write it there atomically, mode 0600. */
gboolean virt_checkpoint_save (virDomainPtr dom, const char *name,
                               const char *state_dir, GError **error);

/* Write xml as the saved XML of name (same path and mode as virt_checkpoint_save). */
gboolean virt_checkpoint_save_xml (const char *state_dir, const char *vm_uuid,
                                   const char *name, const char *xml, GError **error);

/* Redefine (with validation against the bitmaps) every saved checkpoint
 * libvirt does not know, parents first. *redefined gets their names. */
gboolean virt_checkpoint_redefine_missing (virDomainPtr dom, const char *state_dir,
                                           GPtrArray **redefined, GError **error);

/* Delete the checkpoint (its bitmaps merge into the parent's); with a
 * state_dir, its saved XML goes and the saved XML of the others is
 * refreshed (a child's parent changed). */
gboolean virt_checkpoint_delete (virDomainPtr dom, const char *name,
                                 const char *state_dir, GError **error);

#endif
