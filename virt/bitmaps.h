/* ovagent: qcow2 persistent bitmaps: the rules a chain's bitmap must meet to
 * serve an incremental backup, and qemu-img bitmap on a stopped domain's images. */
#ifndef VIRT_BITMAPS_H
#define VIRT_BITMAPS_H

#include <glib.h>

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

#endif
