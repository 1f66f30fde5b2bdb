/* ovagent: copying one source into a stream: extents asked per work range,
 * holes and zero runs sent as frames without payload, data read in large
 * sequential chunks, frames written in order. */
#ifndef STRM_SEND_H
#define STRM_SEND_H

#include <glib.h>

#include "common/source.h"
#include "stream/stream.h"

/* Called after each frame with the bytes of the source covered so far. */
typedef void (*strm_progress_fn) (void *opaque, guint64 done);

/* BEGIN(uuid, src->size), frames covering [0, size), END. Data blocks that
 * read as all zeros are sent as ZERO frames. Stops early with an
 * OVA_ERROR_INTERNAL "interrupted" error when *cancel becomes TRUE (may be
 * NULL), so that callers can clean up on SIGINT/SIGTERM. */
gboolean strm_send_source (strm_encoder *e, ova_source *src, const char *uuid,
                           strm_progress_fn progress, void *opaque,
                           volatile gboolean *cancel, GError **error);

#endif
