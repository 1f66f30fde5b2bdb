/* ovagent: the destination of a restore stream (stream/dest.h): its one disk
 * written through an NBD export of the target volume or file. */
#ifndef OVA_RESTORE_DEST_H
#define OVA_RESTORE_DEST_H

#include <glib.h>

#include "nbd/nbd.h"
#include "stream/dest.h"

typedef struct restore_dest {
  const char *disk;       /* the disk META names (lower case) */
  guint64 capacity;       /* its size, as META says */
  nbdr_dest *nbd;         /* where it is written (not owned) */
  gboolean fresh;         /* the target reads as zeros already */
  guint begins;           /* BEGIN frames seen */
  guint64 data_bytes;
  guint64 zero_bytes;
  gboolean wrote;         /* the target has been touched */
} restore_dest;

/* ZERO and HOLE ranges are written as zeros unless the target is fresh;
 * the commit flushes the export. */
extern const strm_dest_ops restore_dest_ops;

#endif
