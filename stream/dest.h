/* ovagent: where a decoded stream goes: the destination ops table every
 * reader of a stream implements, the input it is read from, and the driver. */
#ifndef STRM_DEST_H
#define STRM_DEST_H

#include <glib.h>
#include <signal.h>

#include "stream/stream.h"

/* A stream read from a descriptor: a signal (installed without SA_RESTART)
 * ends a read that waits for a slow sender, and so does a sender that
 * sends nothing for io_timeout seconds. */
typedef struct strm_input {
  int fd;
  guint io_timeout;                /* seconds the sender may send nothing; 0: no limit */
  volatile sig_atomic_t *cancel;   /* set by a signal handler; may be NULL */
  /* The message of the error that stops the stream, in its reader's words:
   * err is ECANCELED once *cancel is set (OVA_ERROR_INTERRUPTED),
   * ETIMEDOUT after io_timeout idle seconds, else the errno of a failed
   * read (both OVA_ERROR_TRANSPORT). */
  char *(*say) (void *opaque, int err);
  void *opaque;
  guint64 bytes;                   /* read so far */
} strm_input;

/* A decoder reading from in, which must outlive it. */
strm_decoder *strm_input_decoder (strm_input *in);

/* OVA_ERROR_INTERRUPTED (in in->say's words) if *in->cancel is set. */
gboolean strm_input_interrupted (const strm_input *in, GError **error);

/* What a destination does with the frames of a stream. The driver calls
 * them in stream order with frames the decoder checked (hashes, order,
 * coverage, sizes against META); each op only does its job and says why
 * it fails. Ops left NULL take the frame without doing anything. */
typedef struct strm_dest_ops {
  const char *kind;     /* names the stream in messages: "chain", "restore"... */
  gboolean (*begin) (void *dest, const strm_frame *f, GError **error);
  gboolean (*data) (void *dest, const strm_frame *f, GError **error);
  gboolean (*zero) (void *dest, const strm_frame *f, GError **error);
  gboolean (*hole) (void *dest, const strm_frame *f, GError **error);
  gboolean (*end) (void *dest, const strm_frame *f, GError **error);
  /* STREAM_END read and checked: whether all the destination expected came. */
  gboolean (*stream_end) (void *dest, GError **error);
  /* The end of the input followed STREAM_END: make it all permanent. */
  gboolean (*commit) (void *dest, GError **error);
} strm_dest_ops;

/* The first frame of the stream, its META: the JSON text (valid until the
 * next call on dec). in->cancel is looked at first. */
const char *strm_decoder_meta (strm_decoder *dec, const strm_input *in, GError **error);

/* Every frame after META into dest, through ops, up to STREAM_END and the
 * end of the input after it; then ops->commit. *in->cancel is looked at
 * before every frame. Nothing is undone here: on failure the caller undoes
 * what dest made. */
gboolean strm_decoder_drive (strm_decoder *dec, const strm_input *in,
                             const strm_dest_ops *ops, void *dest, GError **error);

#endif
