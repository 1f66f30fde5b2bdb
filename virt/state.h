/* ovagent: the sender's per-VM backup state: the last committed checkpoint of
 * each disk, the pending record of a backup in progress, and the per-VM lock. */
#ifndef VIRT_STATE_H
#define VIRT_STATE_H

#include <glib.h>

typedef struct virt_state virt_state;

/* Exclusive per-VM lock <run_dir>/backup-<vm-uuid>.lock (flock, never waits):
 * OVA_ERROR_BUSY naming the VM if held. Returns the fd (>= 0), -1 on error. */
int virt_state_lock (const char *run_dir, const char *vm_uuid, GError **error);

/* <state_dir>/checkpoints/<vm-uuid>/state.json. Missing file → empty state.
 * Bad JSON/values → OVA_ERROR_INTEGRITY naming the file. */
virt_state *virt_state_load (const char *state_dir, const char *vm_uuid,
                             GError **error);
void virt_state_free (virt_state *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (virt_state, virt_state_free)

/* Atomically (tmp + fsync + rename), file 0600 in a 0700 directory. */
gboolean virt_state_save (virt_state *s, GError **error);

/* The disk's last committed checkpoint / target, or NULL. */
const char *virt_state_disk_checkpoint (const virt_state *s, const char *image);
const char *virt_state_disk_target (const virt_state *s, const char *image);

/* Image uuids (char*, owned by the array), sorted. */
GPtrArray *virt_state_disks (const virt_state *s);

/* Record a backup that is about to change the VM (before backup-begin /
 * before qemu-nbd). images is NULL-terminated. */
void virt_state_set_pending (virt_state *s, const char *job,
                             const char *checkpoint, gboolean running,
                             const char *const *images);

/* The pending record, or FALSE if none; out strings owned by s. Any out
 * pointer may be NULL. */
gboolean virt_state_get_pending (const virt_state *s, const char **job,
                                 const char **checkpoint, gboolean *running,
                                 const char *const **images);
void virt_state_clear_pending (virt_state *s);

/* After the receiver committed: the disks' last checkpoint becomes
 * checkpoint; pending cleared. targets is NULL or parallel to images (an
 * entry may be NULL when the target is not known). */
void virt_state_commit (virt_state *s, const char *checkpoint, const char *job,
                        const char *const *images, const char *const *targets);

/* A checkpoint deleted or found broken: disks whose last checkpoint it was
 * forget it (their next --auto is full). */
void virt_state_forget_checkpoint (virt_state *s, const char *checkpoint);
void virt_state_forget_disk (virt_state *s, const char *image);

#endif
