/* ovagent: a VM's checkpoints as libvirt, the saved XML, the backup state
 * and (VM down) the bitmaps of its images see them, gathered in one view. */
#ifndef VIRT_CHECKPOINT_VIEW_H
#define VIRT_CHECKPOINT_VIEW_H

#include <glib.h>
#include <libvirt/libvirt.h>

#include "storage/env.h"
#include "storage/lvm.h"
#include "storage/scan.h"
#include "virt/checkpoint-xml.h"
#include "virt/state.h"

typedef struct virt_cp_entry {
  char *name;
  char *parent;
  gint64 created;             /* -1 if not known */
  gboolean known;             /* to libvirt */
  gboolean saved;             /* <state_dir>/checkpoints/<vm>/<name>.xml */
  GPtrArray *disks;           /* virt_checkpoint_disk* */
  GPtrArray *last_for;        /* image uuids (char*) */
  GPtrArray *images;          /* VM down: images whose top has the bitmap */
} virt_cp_entry;

/* A disk the state knows, and (VM down) its top volume's bitmaps. */
typedef struct virt_cp_image {
  char *image;
  const char *target;         /* from the state */
  const char *checkpoint;     /* from the state */
  stor_domain *sd;            /* borrowed from the scan */
  stor_image *img;            /* borrowed from the scan */
  GPtrArray *bitmaps;         /* virt_image_bitmap*; NULL if not read */
  char *problem;              /* why the bitmaps could not be read */
} virt_cp_image;

typedef struct virt_cp_view {
  char *uuid;
  char *name;                 /* NULL when libvirt does not know the VM */
  virDomainPtr dom;           /* NULL likewise */
  gboolean running;
  const char *state_dir;      /* from the configuration */
  char *dir;                  /* <state_dir>/checkpoints/<uuid> */
  virt_state *state;
  GPtrArray *cps;             /* virt_cp_entry*, parents first */
  GPtrArray *images;          /* virt_cp_image* */
  GPtrArray *domains;         /* the storage scan, when one was needed */
  stor_lv_guard *guard;       /* LVs activated to read their bitmaps */
} virt_cp_view;

void virt_cp_view_free (virt_cp_view *v);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (virt_cp_view, virt_cp_view_free)

/* Who vm is: libvirt's domain (by name or UUID), or a UUID that has backup
 * state under env->state_dir (OVA_ERROR_NOT_FOUND if neither). Only the
 * identity is filled in. */
virt_cp_view *virt_cp_view_find (const stor_env *env, virConnectPtr conn, const char *vm,
                                 GError **error);

/* The whole view: libvirt's checkpoints, the saved XML, the state, and for
 * a stopped VM the storage scan and the bitmaps of the top volumes (block
 * volumes activated under v->guard). Checkpoints parents first, among
 * those ready oldest first; one only a bitmap or the state names is
 * listed too. */
virt_cp_view *virt_cp_view_load (const stor_env *env, virConnectPtr conn, const char *vm,
                                 GError **error);

virt_cp_entry *virt_cp_view_lookup (const virt_cp_view *v, const char *name);

/* The saved XML of name: <dir>/<name>.xml. */
char *virt_cp_view_saved_path (const virt_cp_view *v, const char *name);

#endif
