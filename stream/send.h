/* ovagent: copying one source into a stream: extents asked per work range,
 * holes and zero runs sent as frames without payload, data read in large
 * sequential chunks, frames written in order. */
#ifndef STRM_SEND_H
#define STRM_SEND_H

#include <glib.h>
#include <signal.h>

#include "common/source.h"
#include "stream/stream.h"

/* Zeros are found per block of this size: a qcow2 cluster by default, so
 * zeroed clusters and unused parts of raw volumes go as ZERO frames. */
#define STRM_ZERO_BLOCK (64u * 1024)

/* Frames extents given in offset order: ZERO and HOLE runs merged across
 * calls, blocks of data that read as all zeros sent as ZERO frames. Used by
 * every sender (volume files, NBD exports). */
typedef struct strm_framer {
  strm_encoder *e;
  ova_extent_kind kind;   /* of the pending run */
  guint64 offset;
  guint64 length;         /* 0: no run pending */
} strm_framer;

void strm_framer_init (strm_framer *f, strm_encoder *e);
gboolean strm_framer_run (strm_framer *f, ova_extent_kind kind, guint64 offset,
                          guint64 length, GError **error);
gboolean strm_framer_data (strm_framer *f, const char *buf, size_t len,
                           guint64 offset, GError **error);
/* Write the pending run, if any: before END. */
gboolean strm_framer_flush (strm_framer *f, GError **error);

/* Called after each frame with the bytes of the source covered so far. */
typedef void (*strm_progress_fn) (void *opaque, guint64 done);

/* BEGIN(uuid, src->size), frames covering [0, size), END. Data blocks that
 * read as all zeros are sent as ZERO frames. Stops early with an
 * OVA_ERROR_INTERRUPTED error when *cancel becomes non-zero (may be
 * NULL), so that callers can clean up on SIGINT/SIGTERM. */
gboolean strm_send_source (strm_encoder *e, ova_source *src, const char *uuid,
                           strm_progress_fn progress, void *opaque,
                           volatile sig_atomic_t *cancel, GError **error);

#endif
