/* ovagent: volumes of a storage domain as copy sources: files with their
 * holes (SEEK_DATA/SEEK_HOLE), and LVs up to the qcow2 image's end offset. */
#ifndef STOR_SOURCE_FILE_H
#define STOR_SOURCE_FILE_H

#include <glib.h>

#include "common/source.h"
#include "model.h"

/* A regular file or block device, read-only. Holes found with
 * SEEK_DATA/SEEK_HOLE become HOLE extents (a block device has none).
 * size: bytes to copy; 0 means the file's size (or the device's). */
ova_source *stor_source_open_path (const char *path, guint64 size, GError **error);

/* The bytes of a volume that must move: a file volume whole, with its
 * holes; an LV holding qcow2 up to the image end offset (qemu-img check);
 * an LV holding raw data up to the volume's capacity. The volume must be
 * readable (LV active). */
ova_source *stor_source_open_volume (const stor_domain *d, const stor_volume *v,
                                     GError **error);

#endif
