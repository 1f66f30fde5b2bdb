/* ovagent: what a volume's own header says: format, qcow2 compat, virtual
 * size, backing string (libqcow), bitmaps (qemu-img info -U, where libqcow
 * can't), and checks of the backing string against VDSM's metadata. */
#ifndef STOR_PROBE_H
#define STOR_PROBE_H

#include <glib.h>

#include "model.h"

typedef struct stor_bitmap {
  char *name;
  char **flags;         /* "auto", "in-use" ... */
  guint64 granularity;
} stor_bitmap;

typedef struct stor_probe {
  char *format;         /* "qcow2" or "raw" as found on disk */
  char *qcow2_compat;   /* "0.10" or "1.1"; NULL for raw */
  guint64 virtual_size;
  char *backing;        /* raw backing string, NULL if none */
  char *backing_format; /* NULL if not recorded */
  guint64 actual_size;  /* allocated bytes (st_blocks*512), LV size on block */
  GPtrArray *bitmaps;   /* stor_bitmap* */
} stor_probe;

/* Probe the file or device at path. Fails with OVA_ERROR_INTEGRITY for a
 * corrupt header and OVA_ERROR_INTERNAL if it cannot be read. */
stor_probe *stor_probe_volume (const char *path, GError **error);
void stor_probe_free (stor_probe *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_probe, stor_probe_free)

/* A qemu-img image name for one qcow2 image alone: "json:{...}" with an
 * explicit driver ("file", or "host_device" for a block device) and
 * "backing": null, so that qemu-img neither probes the format nor opens
 * (or needs) the backing chain; used with -U, it also reads an image a
 * running VM holds locked. */
char *stor_qemu_img_spec (const char *path, gboolean is_block);

/* The volume UUID a backing string names, accepting the forms VDSM writes:
 * "<vol>", "../<img>/<vol>", and absolute paths ending in <img>/<vol>.
 * NULL if it names no UUID. If img_out is set, the <img> part (or NULL). */
char *stor_backing_volume (const char *backing, char **img_out);

/* Compare a probe with the volume's metadata and chain: format, capacity,
 * backing string vs parent; appends stor_problem* to v->problems. parent:
 * the volume the chain says is the parent (NULL for a base). */
void stor_probe_check (const stor_probe *p, stor_volume *v, const stor_volume *parent);

#endif
