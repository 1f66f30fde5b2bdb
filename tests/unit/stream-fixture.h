/* ovagent tests: what the stream unit tests share: UUIDs, a sink into memory
 * that can be told to fail, and decoding a stream from memory. */
#ifndef TEST_STREAM_FIXTURE_H
#define TEST_STREAM_FIXTURE_H

#include <string.h>

#include <glib.h>

#include "error.h"
#include "stream/stream.h"

#define UUID_A "11111111-1111-4111-8111-111111111111"
#define UUID_B "22222222-2222-4222-8222-222222222222"
#define UUID_C "33333333-3333-4333-8333-333333333333"

/* ---- a sink into memory, that can be told to fail ---- */

typedef struct {
  strm_sink base;
  GByteArray *bytes;
  gsize fail_after;     /* fail a write that would go past this; 0: never */
  guint writes;
} mem_sink;

static inline gboolean
mem_write (strm_sink *sink, const void *buf, size_t len, GError **error)
{
  mem_sink *s = (mem_sink *) sink;

  s->writes++;
  if (s->fail_after > 0 && s->bytes->len + len > s->fail_after) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT, "the reader went away");
    return FALSE;
  }
  g_byte_array_append (s->bytes, buf, len);
  return TRUE;
}

static inline gboolean
mem_close (strm_sink *sink G_GNUC_UNUSED, GError **error G_GNUC_UNUSED)
{
  return TRUE;
}

static inline void
mem_free (strm_sink *sink)
{
  mem_sink *s = (mem_sink *) sink;

  g_byte_array_unref (s->bytes);
  g_free (s);
}

static const struct strm_sink_ops mem_ops = {
  .name = "memory",
  .write = mem_write,
  .close = mem_close,
  .free = mem_free,
};

static inline mem_sink *
mem_sink_new (void)
{
  mem_sink *s = g_new0 (mem_sink, 1);

  s->base.ops = &mem_ops;
  s->bytes = g_byte_array_new ();
  return s;
}

/* ---- decoding from memory, in reads of a chosen size ---- */

typedef struct {
  const guint8 *buf;
  size_t len, pos, chunk;
} mem_reader;

static inline gssize
mem_read (void *opaque, void *buf, size_t len, GError **error G_GNUC_UNUSED)
{
  mem_reader *r = opaque;
  size_t n = MIN (len, MIN (r->chunk, r->len - r->pos));

  memcpy (buf, r->buf + r->pos, n);
  r->pos += n;
  return n;
}

typedef struct {
  GPtrArray *contents;    /* GByteArray per volume: the bytes it reads as */
  GPtrArray *uuids;
  GString *kinds;         /* a letter per frame: M B D Z H E S */
  strm_totals totals;
  guint64 max_data_len;
} decoded;

static inline void
decoded_init (decoded *d)
{
  d->contents = g_ptr_array_new_with_free_func ((GDestroyNotify) g_byte_array_unref);
  d->uuids = g_ptr_array_new_with_free_func (g_free);
  d->kinds = g_string_new (NULL);
  memset (&d->totals, 0, sizeof d->totals);
  d->max_data_len = 0;
}

static inline void
decoded_clear (decoded *d)
{
  g_ptr_array_unref (d->contents);
  g_ptr_array_unref (d->uuids);
  g_string_free (d->kinds, TRUE);
}

/* Decode a whole stream; the error, or NULL when it was complete. */
static inline GError *
decode (const guint8 *buf, size_t len, size_t chunk, decoded *out)
{
  mem_reader r = { buf, len, 0, chunk };
  g_autoptr(strm_decoder) d = strm_decoder_new (mem_read, &r);
  GError *error = NULL;
  strm_frame f;

  while (strm_decoder_next (d, &f, &error)) {
    GByteArray *cur = out != NULL && out->contents->len > 0
      ? out->contents->pdata[out->contents->len - 1] : NULL;

    g_assert_null (error);
    if (out == NULL)
      continue;
    g_string_append_c (out->kinds, " MBDZHES"[f.type]);
    switch (f.type) {
    case STRM_FRAME_META:
    case STRM_FRAME_STREAM_END:
      g_assert_cmpuint (strlen ((const char *) f.data), ==, f.length);
      break;
    case STRM_FRAME_BEGIN:
      g_ptr_array_add (out->contents, g_byte_array_new ());
      g_ptr_array_add (out->uuids, g_strdup (f.uuid));
      break;
    case STRM_FRAME_DATA:
      g_assert_cmpuint (f.offset, ==, cur->len);
      g_byte_array_append (cur, f.data, f.length);
      out->max_data_len = MAX (out->max_data_len, f.length);
      break;
    case STRM_FRAME_ZERO:
    case STRM_FRAME_HOLE: {
      guint old = cur->len;

      g_assert_cmpuint (f.offset, ==, cur->len);
      g_assert_null (f.data);
      g_byte_array_set_size (cur, old + f.length);
      memset (cur->data + old, 0, f.length);
      break;
    }
    case STRM_FRAME_END:
      g_assert_cmpstr (f.uuid, ==, out->uuids->pdata[out->uuids->len - 1]);
      break;
    default:
      g_assert_not_reached ();
    }
  }
  if (error == NULL) {
    g_assert_true (strm_decoder_complete (d));
    /* Clean EOF stays clean. */
    g_assert_false (strm_decoder_next (d, &f, &error));
    g_assert_no_error (error);
    if (out != NULL)
      out->totals = *strm_decoder_totals (d);
  }
  else
    g_assert_false (strm_decoder_complete (d));
  return error;
}

static inline char *
meta_json (guint n, const char *const *uuids, const guint64 *sizes)
{
  GString *s = g_string_new ("{\"format\":\"ovagent-stream\",\"version\":1,"
                             "\"mode\":\"chain\",\"volumes\":[");

  for (guint i = 0; i < n; i++)
    g_string_append_printf (s, "%s{\"uuid\":\"%s\",\"format\":\"cow\",\"size\":%"
                            G_GUINT64_FORMAT "}", i > 0 ? "," : "", uuids[i], sizes[i]);
  g_string_append (s, "]}");
  return g_string_free (s, FALSE);
}

static inline void
fill_random (guint8 *buf, size_t len, guint32 seed)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed);

  for (size_t i = 0; i < len; i++)
    buf[i] = g_rand_int (rand);
}

/* Text-like bytes that zstd shrinks well. */
static inline void
fill_compressible (guint8 *buf, size_t len, guint32 seed)
{
  static const char words[] = "qcow2 volume backup chain snapshot extent ";
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed);

  guint shift = 0;

  for (size_t i = 0; i < len; i++) {
    if (i % 64 == 0)
      shift = g_rand_int_range (rand, 0, sizeof words - 1);
    buf[i] = words[(i + shift) % (sizeof words - 1)];
  }
}

#endif
