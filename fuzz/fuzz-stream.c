/* ovagent: libFuzzer target for the stream decoder (bytes from a hypervisor).
 * Any input must decode or fail cleanly, and every frame returned must be sane. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"
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

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  /* Short reads on odd sizes, so that the buffered reader's edges are hit. */
  reader r = { data, size, 0, size % 2 ? 7 : SIZE_MAX };
  g_autoptr(strm_decoder) d = strm_decoder_new (read_input, &r);
  g_autoptr(GError) error = NULL;
  guint64 covered = 0;
  guint frames = 0;
  strm_frame f;

  while (strm_decoder_next (d, &f, &error)) {
    check_frame (&f, &covered);
    frames++;
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

    if (!strm_decoder_complete (d) || t->frames != frames || t->bytes_sent != size ||
        t->data_bytes + t->zero_bytes + t->hole_bytes != covered)
      abort ();
  }
  return 0;
}
