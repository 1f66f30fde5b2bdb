/* ovagent: libFuzzer target for the stream decoder and its driver (bytes from
 * a hypervisor). Any input must decode or fail cleanly, every frame sane. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"
#include "stream/dest.h"
#include "stream/stream.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static volatile guint8 touched;

typedef struct {
  const uint8_t *data;
  size_t size, pos, chunk;
} reader;

static gssize
read_input (void *opaque, void *buf, size_t len, GError **error G_GNUC_UNUSED)
{
  reader *r = opaque;
  size_t n = MIN (len, MIN (r->chunk, r->size - r->pos));

  memcpy (buf, r->data + r->pos, n);
  r->pos += n;
  return n;
}

/* What the decoder promises about a frame it returns. */
static void
check_frame (const strm_frame *f, guint64 *covered)
{
  switch (f->type) {
  case STRM_FRAME_META:
  case STRM_FRAME_STREAM_END:
    if (f->data == NULL || strlen ((const char *) f->data) != f->length ||
        !g_utf8_validate ((const char *) f->data, f->length, NULL))
      abort ();
    break;
  case STRM_FRAME_BEGIN:
  case STRM_FRAME_END:
    if (f->data == NULL || !ova_uuid_is_valid (f->uuid))
      abort ();
    if (f->type == STRM_FRAME_BEGIN && f->offset != 0)
      abort ();
    break;
  case STRM_FRAME_DATA:
    if (f->data == NULL || f->length < 1 || f->length > STRM_MAX_DATA_PAYLOAD)
      abort ();
    /* Both ends of the payload must be readable (ASan checks). */
    touched ^= f->data[0] ^ f->data[f->length - 1];
    *covered += f->length;
    break;
  case STRM_FRAME_ZERO:
  case STRM_FRAME_HOLE:
    if (f->data != NULL || f->length < 1)
      abort ();
    *covered += f->length;
    break;
  default:
    abort ();
  }
}

/* A destination that checks every frame the driver hands it. */
typedef struct {
  guint64 covered;
  guint frames;
  gboolean ended;
} check_dest;

static gboolean
take_frame (void *dest, const strm_frame *f, GError **error G_GNUC_UNUSED)
{
  check_dest *c = dest;

  check_frame (f, &c->covered);
  c->frames++;
  return TRUE;
}

static gboolean
take_end (void *dest, GError **error G_GNUC_UNUSED)
{
  check_dest *c = dest;

  c->ended = TRUE;
  return TRUE;
}

static const strm_dest_ops check_ops = {
  .kind = "fuzzed",
  .begin = take_frame,
  .data = take_frame,
  .zero = take_frame,
  .hole = take_frame,
  .end = take_frame,
  .stream_end = take_end,
};

static char *
say (void *opaque G_GNUC_UNUSED, int err)
{
  return g_strdup (g_strerror (err));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  /* Short reads on odd sizes, so that the buffered reader's edges are hit. */
  reader r = { data, size, 0, size % 2 ? 7 : SIZE_MAX };
  g_autoptr(strm_decoder) d = strm_decoder_new (read_input, &r);
  g_autoptr(GError) error = NULL;
  strm_input in = { .fd = -1, .say = say };
  check_dest c = { 0 };
  const char *meta;

  meta = strm_decoder_meta (d, &in, &error);
  if (meta != NULL) {
    strm_frame f = { .type = STRM_FRAME_META, .data = (const guint8 *) meta,
                     .length = strlen (meta) };

    check_frame (&f, &c.covered);
    c.frames++;
    if (strm_decoder_drive (d, &in, &check_ops, &c, &error)) {
      /* STREAM_END itself went to stream_end. */
      if (!c.ended)
        abort ();
      c.frames++;
    }
  }

  if (error != NULL) {
    if (error->domain != OVA_ERROR ||
        (error->code != OVA_ERROR_INTEGRITY && error->code != OVA_ERROR_TRANSPORT &&
         error->code != OVA_ERROR_UNSUPPORTED) ||
        !g_utf8_validate (error->message, -1, NULL) ||
        strm_decoder_complete (d))
      abort ();
  }
  else {
    const strm_totals *t = strm_decoder_totals (d);

    if (!strm_decoder_complete (d) || t->frames != c.frames || t->bytes_sent != size ||
        t->data_bytes + t->zero_bytes + t->hole_bytes != c.covered)
      abort ();
  }
  return 0;
}
