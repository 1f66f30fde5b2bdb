/* ovagent: libvirt checkpoints and pull-mode backup jobs of a running domain:
 * disks that can be backed up, the XML VDSM sends, begin/end, bitmap chains. */
#ifndef VIRT_CHECKPOINT_H
#define VIRT_CHECKPOINT_H

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

/* Pure XML builders, in VDSM's form (vdsm-storage.md §6.3-6.4). */
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

/* Redefine (with validation against the bitmaps) every saved checkpoint
 * libvirt does not know, parents first. *redefined gets their names. */
gboolean virt_checkpoint_redefine_missing (virDomainPtr dom, const char *state_dir,
                                           GPtrArray **redefined, GError **error);

/* Delete the checkpoint (its bitmaps merge into the parent's); with a
 * state_dir, its saved XML goes and the saved XML of the others is
 * refreshed (a child's parent changed). */
gboolean virt_checkpoint_delete (virDomainPtr dom, const char *name,
                                 const char *state_dir, GError **error);

/* features.md §5 rules for bitmap in the chain layers (stor_layer*, top
 * first, formats known; each layer read alone): present in
 * the top, contiguous, auto, not in-use (unless running: QEMU holding the
 * image marks its bitmaps in-use). NULL if the chain is good, else the
 * reason; NULL with *error set if qemu-img fails. */
char *virt_bitmap_chain_problem (GPtrArray *layers, const char *bitmap,
                                 gboolean running, GError **error);

/* The same rules on a JSON array of `qemu-img info --output=json` objects,
 * top first (what `qemu-img info --backing-chain` prints). */
char *virt_bitmap_chain_problem_json (const char *json, const char *bitmap,
                                      gboolean running, GError **error);

/* ------------------------------------------------------------------ */
/* Bitmaps in the qcow2 images of a stopped domain, where its checkpoints
 * live while no QEMU holds them. */

/* qemu-img bitmap on an image no process has open (-f qcow2, never the chain). */
gboolean virt_image_bitmap_add (const char *image, const char *bitmap, GError **error);
gboolean virt_image_bitmap_disable (const char *image, const char *bitmap, GError **error);
gboolean virt_image_bitmap_enable (const char *image, const char *bitmap, GError **error);
/* Absent bitmap: TRUE, nothing done. */
gboolean virt_image_bitmap_remove (const char *image, const char *bitmap, GError **error);
/* Merge from into into (both in image), as libvirt does when it deletes a checkpoint. */
gboolean virt_image_bitmap_merge (const char *image, const char *from, const char *into,
                                  GError **error);

/* The bitmaps of the image alone: (virt_image_bitmap*) name + enabled/in_use/auto flags. */
typedef struct virt_image_bitmap {
  char *name;
  gboolean enabled, in_use;  /* flags "auto" (recording) and "in-use" */
} virt_image_bitmap;

void virt_image_bitmap_free (virt_image_bitmap *b);
/* The array frees its elements. */
GPtrArray *virt_image_bitmaps (const char *image, GError **error);

/* The checkpoint XML a stopped-VM backup leaves for a later redefine: name, parent (or
 * NULL), creation time (seconds), and the disks (target dev → bitmap = name). */
char *virt_checkpoint_redefine_xml (const char *name, const char *parent, gint64 created,
                                    const char *const *targets);

/* Write xml as the saved XML of name (same path and mode as virt_checkpoint_save). */
gboolean virt_checkpoint_save_xml (const char *state_dir, const char *vm_uuid,
                                   const char *name, const char *xml, GError **error);

#endif
