/* ovagent: the one loop that reads a stream into a destination (dest.h):
 * frame kinds, the trailer, the end of input, cancellation and idle limits. */
#include <config.h>

#include <errno.h>

#include "error.h"
#include "util.h"
#include "stream/dest.h"

static void
input_error (const strm_input *in, int err, GError **error)
{
  g_autofree char *msg = in->say (in->opaque, err);

  g_set_error_literal (error, OVA_ERROR,
                       err == ECANCELED ? OVA_ERROR_INTERRUPTED : OVA_ERROR_TRANSPORT, msg);
}

gboolean
strm_input_interrupted (const strm_input *in, GError **error)
{
  if (in->cancel == NULL || !*in->cancel)
    return FALSE;
  input_error (in, ECANCELED, error);
  return TRUE;
}

static gssize
input_read (void *opaque, void *buf, size_t len, GError **error)
{
  strm_input *in = opaque;
  gssize n = ova_read_idle (in->fd, buf, len, in->io_timeout, in->cancel);
  int e;

  if (n >= 0) {
    in->bytes += n;
    return n;
  }
  e = errno;
  if (!strm_input_interrupted (in, error))
    input_error (in, e, error);
  return -1;
}

strm_decoder *
strm_input_decoder (strm_input *in)
{
  ova_pipe_grow (in->fd);
  return strm_decoder_new (input_read, in);
}

const char *
strm_decoder_meta (strm_decoder *dec, const strm_input *in, GError **error)
{
  strm_frame f;

  if (strm_input_interrupted (in, error) || !strm_decoder_next (dec, &f, error))
    return NULL;
  /* The decoder returns nothing else first; said here all the same. */
  if (f.type != STRM_FRAME_META || f.data == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "the stream does not start with its metadata frame");
    return NULL;
  }
  return (const char *) f.data;
}

typedef gboolean (*frame_op) (void *dest, const strm_frame *f, GError **error);

/* STREAM_END: the destination has all it expected, only the end of the
 * input follows (the decoder fails on anything else), then the commit. */
static gboolean
drive_end (strm_decoder *dec, const strm_dest_ops *ops, void *dest, GError **error)
{
  g_autoptr(GError) err = NULL;
  strm_frame f;

  if (!strm_decoder_complete (dec)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "the stream ended without a checked trailer");
    return FALSE;
  }
  if (ops->stream_end != NULL && !ops->stream_end (dest, error))
    return FALSE;
  if (!strm_decoder_next (dec, &f, &err) && err != NULL) {
    g_propagate_error (error, g_steal_pointer (&err));
    return FALSE;
  }
  return ops->commit == NULL || ops->commit (dest, error);
}

gboolean
strm_decoder_drive (strm_decoder *dec, const strm_input *in, const strm_dest_ops *ops,
                    void *dest, GError **error)
{
  for (;;) {
    frame_op op;
    strm_frame f;

    if (strm_input_interrupted (in, error) || !strm_decoder_next (dec, &f, error))
      return FALSE;
    switch (f.type) {
    case STRM_FRAME_BEGIN:
      op = ops->begin;
      break;
    case STRM_FRAME_DATA:
      op = ops->data;
      break;
    case STRM_FRAME_ZERO:
      op = ops->zero;
      break;
    case STRM_FRAME_HOLE:
      op = ops->hole;
      break;
    case STRM_FRAME_END:
      op = ops->end;
      break;
    case STRM_FRAME_STREAM_END:
      return drive_end (dec, ops, dest, error);
    default:
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "unexpected frame of type %u in a %s stream", f.type, ops->kind);
      return FALSE;
    }
    if (op != NULL && !op (dest, &f, error))
      return FALSE;
  }
}
