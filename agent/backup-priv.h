/* ovagent: what the files of the backup command share: its options, the records
 * of one run, and the step each file owns (plan, recover, send, result). */
#ifndef OVA_BACKUP_PRIV_H
#define OVA_BACKUP_PRIV_H

#include <glib.h>
#include <libvirt/libvirt.h>

#include "agent/command.h"
#include "agent/stream-output.h"
#include "nbd/nbd.h"
#include "storage/lvm.h"
#include "storage/scan.h"
#include "stream/copy.h"
#include "stream/stream.h"
#include "virt/checkpoint.h"
#include "virt/state.h"

/* The command's options (cmd-backup.c); one command runs per process. */
typedef struct {
  char **disks;
  gboolean full;
  gboolean incremental;
  gboolean differential;
  gboolean autom;
  char *from;
  char *scratch_dir;
  int requests;          /* 0: the copy engine's default */
  int connections;
} backup_options;

extern backup_options backup_opts;

/* ---- the records of a run (backup-run.c) ---- */

typedef struct {
  char *target;          /* vda; NULL if not known (stopped, no libvirt domain) */
  char *image;           /* image UUID: the disk's identity */
  char *domain;          /* storage domain UUID, or NULL */
  char *volume;          /* top volume UUID, or NULL */
  char *path;            /* the top volume */
  guint64 size;          /* virtual size */
  const char *kind;      /* "full", "incremental", "differential" */
  char *from;            /* checkpoint, NULL for full */
  char *reason;          /* why this kind */
  char *last;            /* the disk's last committed checkpoint, or NULL */
  GPtrArray *layers;     /* stor_layer*: the image and its backing chain, top
                          * first, each format named (VDSM's metadata for a
                          * stopped VM, libvirt's XML for a running one);
                          * NULL where libvirt does not give all of it */
  nbdr_server *srv;      /* stopped VM: qemu-nbd over the chain */
  const stor_domain *sd; /* stopped VM: the domain and the top volume, */
  const stor_volume *top;/* borrowed from the storage scan */
  guint64 data, zero, hole, read;
} bdisk;

void bdisk_free (bdisk *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (bdisk, bdisk_free)

typedef struct {
  char *target;
  char *image;
  char *reason;
} skipped_disk;

void skipped_disk_free (skipped_disk *s);

/* Everything one run holds; cleared by run_clear in the order that frees
 * the NBD servers before the LVs under them are deactivated. */
typedef struct {
  ova_ctx *ctx;
  const stor_env *env;
  char *scratch_dir;
  virConnectPtr conn;
  virDomainPtr dom;      /* NULL: libvirt does not know the VM */
  gboolean running;
  char *vm_uuid;
  char *vm_name;         /* NULL when libvirt does not know the VM */
  int lock_fd;
  virt_state *state;
  GPtrArray *storage;    /* stor_domain*, scanned on first need */
  stor_lv_guard *guard;
  GPtrArray *leases;     /* stor_lease*: stopped VM, the volumes written */
  GPtrArray *disks;      /* bdisk* */
  GPtrArray *skipped;    /* skipped_disk* */
  GPtrArray *redefined;  /* char* */
  GPtrArray *known;      /* running: libvirt's checkpoints, parents first */
  char *recovered;
  char *job;
  char *checkpoint;
  char *from;            /* running: the one from_checkpoint of the job */
  char *checkpoint_xml;
  guint64 bytes_read;
} run;

void bk_run_clear (run *r);
const char *bk_vm_label (const run *r);
const char *bk_disk_label (const bdisk *d);

/* An interruption by a signal as the error, unless one is set already. */
void bk_check_cancel (GError **error);

/* The disks' images (NULL-terminated), targets (NULL-terminated; with
 * skip_unknown, the disks without one left out) and top volume paths. */
GPtrArray *bk_disk_images (const run *r);
GPtrArray *bk_disk_targets (const run *r, gboolean skip_unknown);
GPtrArray *bk_disk_paths (const run *r);

gboolean bk_vdsm_path_ids (const char *path, char **sd, char **img, char **vol);
gboolean bk_prepare_image (run *r, const char *sd, const char *image,
                        stor_domain **dom_out, stor_image **img_out,
                        GPtrArray **layers_out, GError **error);
gboolean bk_take_lease (run *r, const stor_domain *dom, const stor_volume *vol,
                     GError **error);
gboolean bk_release_leases (run *r, GError **error);

/* ---- the bk_plan (backup-plan.c) ---- */

/* The disks to send and the kind of each, as the options ask. */
gboolean bk_plan (run *r, GError **error);
void bk_set_kind (bdisk *d, const char *kind, const char *from, char *reason);
const char *bk_vm_last_checkpoint (const run *r);

/* ---- undoing (backup-recover.c) ---- */

/* Undo the backup an earlier run left pending, if any (r->recovered). */
gboolean bk_recover_pending (run *r, GError **error);
gboolean bk_domain_active (const run *r);
gboolean bk_end_job (run *r, virt_backup *b, GError **error);
gboolean bk_drop_checkpoint (run *r, const char *cp, GPtrArray *paths,
                          const char *const *images, GError **error);
gboolean bk_lease_paths (run *r, GPtrArray *paths, GError **error);

/* ---- the result (backup-result.c) ---- */

char *bk_build_meta (const run *r);
void bk_print_result (const run *r, const strm_totals *t, double seconds,
                   const ova_stream_output *out);

/* ---- moving the data (backup-send.c) ---- */

gboolean backup_running (run *r, ova_stream_output *out, strm_encoder *enc,
                         GError **error);
gboolean backup_stopped (run *r, ova_stream_output *out, strm_encoder *enc,
                         GError **error);

#endif
