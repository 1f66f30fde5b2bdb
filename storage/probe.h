/* ovagent: what a COW volume's own header says: qcow2 compat, virtual size,
 * backing string (libqcow), bitmaps (qemu-img info -U), checked against VDSM's metadata. */
#ifndef STOR_PROBE_H
#define STOR_PROBE_H

#include <glib.h>

#include "model.h"
#include "qemu-img.h"

typedef struct stor_probe {
  char *format;         /* "qcow2" or "raw": the metadata's COW or RAW */
  char *qcow2_compat;   /* "0.10" or "1.1"; NULL for raw */
  guint64 virtual_size;
  char *backing;        /* raw backing string, NULL if none */
  char *backing_format; /* NULL if not recorded */
  guint64 actual_size;  /* allocated bytes (st_blocks*512), LV size on block */
  GPtrArray *bitmaps;   /* stor_bitmap* */
} stor_probe;

/* Probe the file or device at path as the format VDSM's metadata gives it
 * (STOR_FORMAT_RAW or STOR_FORMAT_COW), never as its content suggests: a
 * raw volume's bytes are the guest's, so only its sizes are read. A COW
 * volume's header is checked (stor_qcow2_header_parse) before libqcow and
 * qemu-img (on the image alone, with every driver named) read it.
 * OVA_ERROR_INTEGRITY for a COW volume without a qcow2 header, a corrupt or
 * out-of-bounds header, an external data file or no format given;
 * OVA_ERROR_UNSUPPORTED for qcow version 1; OVA_ERROR_NOT_FOUND or
 * OVA_ERROR_INTERNAL if it cannot be read. */
stor_probe *stor_probe_volume (const char *path, stor_format format, GError **error);
void stor_probe_free (stor_probe *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_probe, stor_probe_free)

/* The volume UUID a backing string names, accepting the forms VDSM writes:
 * "<vol>", "../<img>/<vol>", and absolute paths ending in <img>/<vol>.
 * NULL if it names no UUID. If img_out is set, the <img> part (or NULL). */
char *stor_backing_volume (const char *backing, char **img_out);

/* Compare a probe with the volume's metadata and chain: capacity,
 * backing string vs parent; appends stor_problem* to v->problems. parent:
 * the volume the chain says is the parent (NULL for a base). */
void stor_probe_check (const stor_probe *p, stor_volume *v, const stor_volume *parent);

/* What qemu is to open for image img of dom: its volumes as stor_layer*
 * (storage/qemu-img.h), top first, each with the format VDSM's metadata
 * gives, once every volume's header has been checked against the metadata
 * and the chain (stor_probe_volume, stor_probe_check): a volume without
 * usable metadata, or whose header names another backing file or format
 * than its parent, is OVA_ERROR_INTEGRITY naming it; other mismatches are
 * warnings. LVs must be active. */
GPtrArray *stor_image_layers (const stor_domain *dom, stor_image *img, GError **error);

#endif
