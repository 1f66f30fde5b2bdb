/* ovagent: pull-mode backup jobs of a running domain: the request, the job
 * with its NBD exports, scratch files and socket, begin and end. */
#ifndef VIRT_BACKUP_JOB_H
#define VIRT_BACKUP_JOB_H

#include <glib.h>
#include <libvirt/libvirt.h>

/* Scratch space asked for before a backup starts, as a percentage of the
 * virtual size of the disks backed up. The scratch file receives the old
 * content of every cluster the guest rewrites while the export is open;
 * a backup window rewrites a small part of a disk, and a guest that
 * rewrites more makes the job fail, never the VM. */
#define VIRT_SCRATCH_PERCENT_DEFAULT 10

/* How long end waits for QEMU to remove the NBD socket. */
#define VIRT_SOCKET_WAIT_MS 10000

/* nbd+unix:///EXPORT?socket=PATH, both URI-escaped. */
char *virt_nbd_uri (const char *export_name, const char *socket_path);

typedef struct virt_backup_request {
  const char *backup_id;        /* UUID; names the socket and scratch dirs */
  const char *checkpoint_id;    /* UUID of the checkpoint to create, or NULL */
  const char *from_checkpoint;  /* incremental from it; NULL = full */
  const char *const *disks;     /* targets; NULL = every disk that can be */
  const char *const *full_disks;/* targets read in full even when
                                 * from_checkpoint is set; may be NULL */
  const char *run_dir;          /* socket directory parent */
  const char *scratch_dir;      /* scratch directory parent */
  guint scratch_percent;        /* 0 = VIRT_SCRATCH_PERCENT_DEFAULT */
} virt_backup_request;

typedef struct virt_backup_disk {
  char *target;
  char *export_name;
  char *nbd_uri;
  char *bitmap_context;         /* qemu:dirty-bitmap:NAME; NULL for full */
  char *scratch;
  gboolean incremental;
} virt_backup_disk;

typedef struct virt_backup {
  char *backup_id;
  char *socket_dir;
  char *socket_path;
  char *scratch_dir;
  GPtrArray *disks;             /* virt_backup_disk* */
  gboolean ended;
} virt_backup;

void virt_backup_free (virt_backup *b);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (virt_backup, virt_backup_free)

/* The paths a backup with this id uses, with no disks: what end needs to
 * clean up after a process that began the job and went away. */
virt_backup *virt_backup_for_id (const char *run_dir, const char *scratch_dir,
                                 const char *backup_id, GError **error);

/* Checks the disks (OVA_ERROR_UNSUPPORTED naming the disk and why) and
 * the scratch space (OVA_ERROR_NO_SPACE) before the domain is touched,
 * then makes the scratch files (qcow2, QEMU's own, as VDSM does) and
 * starts the pull backup (REUSE_EXTERNAL) and reads back its exports. If
 * the job started but cannot be read back, it is ended before returning;
 * the checkpoint it created is left for the caller to delete. */
virt_backup *virt_backup_begin (virDomainPtr dom, const virt_backup_request *req,
                                GError **error);

/* Ends the job if it is ours (virDomainAbortJob), waits for the socket to
 * go, removes scratch and socket directories and reports a paused domain.
 * Safe to call again, on a backup that never began, and after the domain
 * went away. */
gboolean virt_backup_end (virDomainPtr dom, virt_backup *b, GError **error);

#endif
