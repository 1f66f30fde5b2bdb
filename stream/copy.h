/* ovagent: the copy engine: any source (common/source.h) into a stream, with
 * reads in flight ahead of the writing and frames sent in offset order. */
#ifndef STRM_COPY_H
#define STRM_COPY_H

#include <glib.h>
#include <signal.h>

#include "common/source.h"
#include "stream/stream.h"

/* Zeros are found per block of this size: a qcow2 cluster by default, so
 * zeroed clusters and unused parts of raw volumes go as ZERO frames. */
#define STRM_ZERO_BLOCK (64u * 1024)

#define STRM_COPY_MAX_REQUESTS 256

/* How much is read ahead: memory is requests x request_size. */
typedef struct strm_copy_opts {
  guint requests;       /* reads in flight, at most STRM_COPY_MAX_REQUESTS
                         * (0: 16 for sources with aio_* requests, else 6) */
  guint request_size;   /* bytes per read (0: 1 MiB with aio_* requests,
                         * else STRM_DEFAULT_FRAME_SIZE), rounded down to
                         * 4 KiB, at most the source's max_request and one
                         * DATA frame */
} strm_copy_opts;

/* Called after each frame with the bytes of the source covered so far. */
typedef void (*strm_progress_fn) (void *opaque, guint64 done);

/* BEGIN(uuid, src->size), frames covering [0, size) in offset order, END.
 * Extents are asked per work range, one range ahead where the source
 * answers asynchronously; holes and zero extents become HOLE and ZERO
 * frames, merged; data is read with opts->requests reads in flight (the
 * source's asynchronous reads spread over its connections, or preads from
 * worker threads) while this thread writes, and blocks of STRM_ZERO_BLOCK
 * that read as zeros go as ZERO frames. opts and progress may be NULL.
 * *bytes_read (may be NULL) gets the bytes read from the source. Fails
 * with OVA_ERROR_INTERRUPTED once *cancel (may be NULL) is set; no request
 * is left pending when it returns, and a source with aio_* requests whose
 * copy failed has been aborted. */
gboolean strm_copy_source (strm_encoder *e, ova_source *src, const char *uuid,
                           const strm_copy_opts *opts,
                           strm_progress_fn progress, void *opaque,
                           volatile sig_atomic_t *cancel, guint64 *bytes_read,
                           GError **error);

#endif
