/* ovagent tests: the stream wire format: encoder and decoder round trips, the
 * fd sink, the decode driver, and streams cut, flipped or lying in every way a
 * reader must catch. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "error.h"
#include "stream/dest.h"
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

static gboolean
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

static gboolean
mem_close (strm_sink *sink G_GNUC_UNUSED, GError **error G_GNUC_UNUSED)
{
  return TRUE;
}

static void
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

static mem_sink *
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

static gssize
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

static void
decoded_init (decoded *d)
{
  d->contents = g_ptr_array_new_with_free_func ((GDestroyNotify) g_byte_array_unref);
  d->uuids = g_ptr_array_new_with_free_func (g_free);
  d->kinds = g_string_new (NULL);
  memset (&d->totals, 0, sizeof d->totals);
  d->max_data_len = 0;
}

static void
decoded_clear (decoded *d)
{
  g_ptr_array_unref (d->contents);
  g_ptr_array_unref (d->uuids);
  g_string_free (d->kinds, TRUE);
}

/* Decode a whole stream; the error, or NULL when it was complete. */
static GError *
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

static char *
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

static void
fill_random (guint8 *buf, size_t len, guint32 seed)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed);

  for (size_t i = 0; i < len; i++)
    buf[i] = g_rand_int (rand);
}

/* Text-like bytes that zstd shrinks well. */
static void
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

/* ---- round trips ---- */

typedef enum { EXT_DATA, EXT_ZERO, EXT_HOLE } ext_kind;

typedef struct {
  ext_kind kind;
  guint64 len;
} extent;

typedef struct {
  const char *uuid;
  const extent *extents;
  guint n_extents;
  gboolean compressible;
} volume_plan;

/* Encode the plan, checking the encoder's totals; returns the stream and
 * the contents each volume should decode to. */
static GByteArray *
encode_plan (const volume_plan *plan, guint n, int level, GPtrArray *expected,
             strm_totals *totals)
{
  g_autofree const char **uuids = g_new0 (const char *, n);
  g_autofree guint64 *sizes = g_new0 (guint64, n);
  g_autofree char *meta = NULL;
  mem_sink *sink = mem_sink_new ();
  g_autoptr(strm_encoder) e = strm_encoder_new (&sink->base, level);
  g_autoptr(GError) error = NULL;
  GByteArray *out;
  guint32 seed = 1;

  for (guint i = 0; i < n; i++) {
    uuids[i] = plan[i].uuid;
    for (guint j = 0; j < plan[i].n_extents; j++)
      sizes[i] += plan[i].extents[j].len;
  }
  meta = meta_json (n, uuids, sizes);
  g_assert_true (strm_encoder_meta (e, meta, &error));

  for (guint i = 0; i < n; i++) {
    GByteArray *content = g_byte_array_sized_new (sizes[i]);
    guint64 off = 0;

    g_assert_true (strm_encoder_begin (e, plan[i].uuid, sizes[i], &error));
    for (guint j = 0; j < plan[i].n_extents; j++) {
      const extent *x = &plan[i].extents[j];
      guint old = content->len;

      g_byte_array_set_size (content, old + x->len);
      if (x->kind == EXT_DATA) {
        if (plan[i].compressible)
          fill_compressible (content->data + old, x->len, seed++);
        else
          fill_random (content->data + old, x->len, seed++);
        g_assert_true (strm_encoder_data (e, off, content->data + old, x->len, &error));
      }
      else {
        memset (content->data + old, 0, x->len);
        if (x->kind == EXT_ZERO)
          g_assert_true (strm_encoder_zero (e, off, x->len, &error));
        else
          g_assert_true (strm_encoder_hole (e, off, x->len, &error));
      }
      g_assert_no_error (error);
      off += x->len;
    }
    g_assert_true (strm_encoder_end (e, &error));
    g_ptr_array_add (expected, content);
  }
  g_assert_true (strm_encoder_finish (e, &error));
  g_assert_no_error (error);

  *totals = *strm_encoder_totals (e);
  g_assert_cmpuint (totals->bytes_sent, ==, sink->bytes->len);
  out = g_byte_array_ref (sink->bytes);
  strm_sink_free (&sink->base);
  return out;
}

static void
check_round_trip (const volume_plan *plan, guint n, int level, size_t chunk,
                  strm_totals *totals_out)
{
  g_autoptr(GPtrArray) expected =
    g_ptr_array_new_with_free_func ((GDestroyNotify) g_byte_array_unref);
  g_autoptr(GByteArray) stream = NULL;
  g_autoptr(GError) error = NULL;
  strm_totals totals;
  decoded d;

  stream = encode_plan (plan, n, level, expected, &totals);
  decoded_init (&d);
  error = decode (stream->data, stream->len, chunk, &d);
  g_assert_no_error (error);

  g_assert_cmpuint (d.contents->len, ==, n);
  for (guint i = 0; i < n; i++) {
    GByteArray *want = expected->pdata[i], *got = d.contents->pdata[i];

    g_assert_cmpstr (d.uuids->pdata[i], ==, plan[i].uuid);
    g_assert_cmpmem (got->data, got->len, want->data, want->len);
  }
  g_assert_cmpuint (d.totals.frames, ==, totals.frames);
  g_assert_cmpuint (d.totals.bytes_sent, ==, totals.bytes_sent);
  g_assert_cmpuint (d.totals.data_bytes, ==, totals.data_bytes);
  g_assert_cmpuint (d.totals.zero_bytes, ==, totals.zero_bytes);
  g_assert_cmpuint (d.totals.hole_bytes, ==, totals.hole_bytes);
  g_assert_cmpuint (d.totals.payload_bytes, ==, totals.payload_bytes);
  g_assert_cmpuint (d.kinds->str[0], ==, 'M');
  g_assert_cmpuint (d.kinds->str[d.kinds->len - 1], ==, 'S');
  if (totals_out != NULL)
    *totals_out = totals;
  decoded_clear (&d);
}

static const extent ext_mixed[] = {
  { EXT_DATA, 65536 }, { EXT_ZERO, 1 << 20 }, { EXT_DATA, 1 },
  { EXT_HOLE, 3 << 20 }, { EXT_DATA, 1 << 20 }, { EXT_DATA, 4093 },
  { EXT_ZERO, 512 }, { EXT_HOLE, 1 },
};
static const extent ext_small[] = {
  { EXT_DATA, 100 }, { EXT_HOLE, 4096 }, { EXT_DATA, 1000 },
};

static void
test_round_trip (void)
{
  const volume_plan plans[] = {
    { UUID_A, ext_mixed, G_N_ELEMENTS (ext_mixed), FALSE },
    { UUID_B, NULL, 0, FALSE },      /* empty volume */
    { UUID_C, ext_small, G_N_ELEMENTS (ext_small), TRUE },
  };
  static const size_t chunks[] = { 1 << 20, 65536, 4093, 48 };
  strm_totals t;

  for (size_t i = 0; i < G_N_ELEMENTS (chunks); i++)
    check_round_trip (plans, G_N_ELEMENTS (plans), 0, chunks[i], NULL);
  check_round_trip (plans, G_N_ELEMENTS (plans), 0, SIZE_MAX, &t);
  g_assert_cmpuint (t.payload_bytes, ==, t.data_bytes);
  g_assert_cmpuint (t.data_bytes, ==, 65536 + 1 + (1 << 20) + 4093 + 100 + 1000);
  g_assert_cmpuint (t.zero_bytes, ==, (1 << 20) + 512);
  g_assert_cmpuint (t.hole_bytes, ==, (3 << 20) + 1 + 4096);
  /* META, 3 x (BEGIN, END), 11 extents, STREAM_END */
  g_assert_cmpuint (t.frames, ==, 1 + 6 + 11 + 1);
}

static void
test_compression (void)
{
  static const extent ext[] = { { EXT_DATA, 1 << 20 }, { EXT_DATA, 77 } };
  const volume_plan text[] = { { UUID_A, ext, G_N_ELEMENTS (ext), TRUE } };
  const volume_plan noise[] = { { UUID_A, ext, G_N_ELEMENTS (ext), FALSE } };
  strm_totals t;

  check_round_trip (text, 1, 3, 4093, &t);
  g_assert_cmpuint (t.payload_bytes, <, t.data_bytes / 4);
  check_round_trip (text, 1, 19, SIZE_MAX, &t);
  g_assert_cmpuint (t.payload_bytes, <, t.data_bytes / 4);
  /* Incompressible payloads go as they are. */
  check_round_trip (noise, 1, 3, 4093, &t);
  g_assert_cmpuint (t.payload_bytes, ==, t.data_bytes);
  check_round_trip (text, 1, 0, SIZE_MAX, &t);
  g_assert_cmpuint (t.payload_bytes, ==, t.data_bytes);
}

static void
test_large_frame (void)
{
  static const extent ext[] = {
    { EXT_DATA, STRM_MAX_DATA_PAYLOAD }, { EXT_ZERO, 1 }, { EXT_DATA, STRM_MAX_DATA_PAYLOAD },
  };
  const volume_plan noise[] = { { UUID_A, ext, G_N_ELEMENTS (ext), FALSE } };
  const volume_plan text[] = { { UUID_B, ext, G_N_ELEMENTS (ext), TRUE } };
  mem_sink *sink = mem_sink_new ();
  g_autoptr(strm_encoder) e = strm_encoder_new (&sink->base, 0);
  g_autoptr(GError) error = NULL;
  const char *uuid = UUID_A;
  guint64 size = STRM_MAX_DATA_PAYLOAD + 1;
  g_autofree char *meta = meta_json (1, &uuid, &size);
  g_autofree guint8 *buf = g_malloc0 (size);

  check_round_trip (noise, 1, 0, SIZE_MAX, NULL);
  check_round_trip (text, 1, 1, 1 << 20, NULL);

  /* One byte more than a frame may carry is the caller's mistake. */
  g_assert_true (strm_encoder_meta (e, meta, &error));
  g_assert_true (strm_encoder_begin (e, uuid, size, &error));
  g_assert_false (strm_encoder_data (e, 0, buf, size, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERNAL);
  strm_sink_free (&sink->base);
}

/* ---- the encoder refuses to write a stream its reader would reject ---- */

static void
test_encoder_order (void)
{
  const char *uuids[] = { UUID_A, UUID_B };
  const guint64 sizes[] = { 100, 0 };
  g_autofree char *meta = meta_json (2, uuids, sizes);
  mem_sink *sink = mem_sink_new ();
  g_autoptr(strm_encoder) e = strm_encoder_new (&sink->base, 0);
  guint8 buf[100] = { 0 };

#define REFUSED(call) do {                                      \
    g_autoptr(GError) err_ = NULL;                              \
    gboolean ok_ = call;                                        \
    (void) ok_;                                                 \
    g_assert_error (err_, OVA_ERROR, OVA_ERROR_INTERNAL);       \
  } while (0)
#define ACCEPTED(call) do {                                     \
    g_autoptr(GError) err_ = NULL;                              \
    gboolean ok_ = call;                                        \
    g_assert_no_error (err_);                                   \
    g_assert_true (ok_);                                        \
  } while (0)

  REFUSED (strm_encoder_begin (e, UUID_A, 100, &err_));
  REFUSED (strm_encoder_meta (e, "{\"format\":\"ovagent-stream\",\"version\":1}", &err_));
  REFUSED (strm_encoder_meta (e, "not json", &err_));
  ACCEPTED (strm_encoder_meta (e, meta, &err_));
  REFUSED (strm_encoder_meta (e, meta, &err_));
  REFUSED (strm_encoder_data (e, 0, buf, 10, &err_));
  REFUSED (strm_encoder_finish (e, &err_));
  REFUSED (strm_encoder_begin (e, UUID_B, 0, &err_));
  REFUSED (strm_encoder_begin (e, UUID_A, 99, &err_));
  ACCEPTED (strm_encoder_begin (e, UUID_A, 100, &err_));
  REFUSED (strm_encoder_data (e, 1, buf, 10, &err_));      /* gap */
  REFUSED (strm_encoder_data (e, 0, buf, 0, &err_));       /* empty */
  REFUSED (strm_encoder_data (e, 0, buf, 101, &err_));     /* past the end */
  ACCEPTED (strm_encoder_data (e, 0, buf, 10, &err_));
  REFUSED (strm_encoder_zero (e, 5, 10, &err_));           /* overlap */
  REFUSED (strm_encoder_end (e, &err_));                   /* short */
  ACCEPTED (strm_encoder_hole (e, 10, 90, &err_));
  REFUSED (strm_encoder_hole (e, 100, 1, &err_));
  ACCEPTED (strm_encoder_end (e, &err_));
  REFUSED (strm_encoder_end (e, &err_));
  REFUSED (strm_encoder_finish (e, &err_));                /* a volume missing */
  ACCEPTED (strm_encoder_begin (e, UUID_B, 0, &err_));
  ACCEPTED (strm_encoder_end (e, &err_));
  REFUSED (strm_encoder_begin (e, UUID_C, 0, &err_));      /* not in META */
  ACCEPTED (strm_encoder_finish (e, &err_));
  REFUSED (strm_encoder_finish (e, &err_));
  REFUSED (strm_encoder_begin (e, UUID_A, 100, &err_));

  g_assert_null (decode (sink->bytes->data, sink->bytes->len, SIZE_MAX, NULL));
  strm_sink_free (&sink->base);
}

static void
test_encoder_sink_fails (void)
{
  const char *uuid = UUID_A;
  guint64 size = 2 << 20;
  g_autofree char *meta = meta_json (1, &uuid, &size);
  g_autofree guint8 *buf = g_malloc0 (1 << 20);
  mem_sink *sink = mem_sink_new ();
  g_autoptr(strm_encoder) e = strm_encoder_new (&sink->base, 0);
  g_autoptr(GError) error = NULL;

  sink->fail_after = 4096;
  g_assert_true (strm_encoder_meta (e, meta, &error));
  g_assert_true (strm_encoder_begin (e, uuid, size, &error));
  g_assert_false (strm_encoder_data (e, 0, buf, 1 << 20, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT);
  g_clear_error (&error);
  /* A broken stream stays broken. */
  g_assert_false (strm_encoder_hole (e, 1 << 20, 1 << 20, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERNAL);
  strm_sink_free (&sink->base);
}

/* ---- a small stream, cut and damaged everywhere ---- */

static GByteArray *
small_stream (int level)
{
  static const extent ext_a[] = { { EXT_DATA, 300 }, { EXT_ZERO, 4096 }, { EXT_DATA, 5 } };
  static const extent ext_b[] = { { EXT_HOLE, 65536 }, { EXT_DATA, 200 } };
  const volume_plan plans[] = {
    { UUID_A, ext_a, G_N_ELEMENTS (ext_a), TRUE },
    { UUID_B, NULL, 0, FALSE },
    { UUID_C, ext_b, G_N_ELEMENTS (ext_b), TRUE },
  };
  g_autoptr(GPtrArray) expected =
    g_ptr_array_new_with_free_func ((GDestroyNotify) g_byte_array_unref);
  strm_totals t;

  return encode_plan (plans, G_N_ELEMENTS (plans), level, expected, &t);
}

static void
test_truncated (void)
{
  for (int level = 0; level <= 3; level += 3) {
    g_autoptr(GByteArray) s = small_stream (level);

    g_assert_null (decode (s->data, s->len, SIZE_MAX, NULL));
    for (guint cut = 0; cut < s->len; cut++) {
      g_autoptr(GError) error = decode (s->data, cut, cut % 2 ? 7 : SIZE_MAX, NULL);

      g_assert_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT);
      g_assert_true (g_str_has_prefix (error->message, "stream ends before "));
    }
  }
}

static void
test_flipped (void)
{
  for (int level = 0; level <= 3; level += 3) {
    g_autoptr(GByteArray) s = small_stream (level);

    for (guint i = 0; i < s->len; i++) {
      guint8 saved = s->data[i];

      for (int bit = 0; bit <= 8; bit++) {
        g_autoptr(GError) error = NULL;

        /* Every single bit, then the whole byte. */
        s->data[i] = saved ^ (bit < 8 ? 1u << bit : 0xff);
        error = decode (s->data, s->len, SIZE_MAX, NULL);
        if (i >= 8 && i < STRM_HEADER_SIZE)
          g_assert_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED);
        else
          g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
      }
      s->data[i] = saved;
    }
  }
}

/* ---- hand-made streams with valid hashes, each lying in one way ---- */

typedef struct {
  GByteArray *b;
  XXH3_state_t *sd;
  XXH3_state_t *vd;
  guint64 frames;
  guint64 data, zero, hole;           /* whole stream */
  guint64 vdata, vzero, vhole;        /* current volume */
} raw;

static void
raw_init (raw *r)
{
  memset (r, 0, sizeof *r);
  r->b = g_byte_array_new ();
  r->sd = XXH3_createState ();
  r->vd = XXH3_createState ();
  XXH3_128bits_reset (r->sd);
  XXH3_128bits_reset (r->vd);
}

static void
raw_clear (raw *r)
{
  g_byte_array_unref (r->b);
  XXH3_freeState (r->sd);
  XXH3_freeState (r->vd);
}

static void
put32 (guint8 *p, guint32 v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, 4);
}

static void
put64 (guint8 *p, guint64 v)
{
  v = GUINT64_TO_LE (v);
  memcpy (p, &v, 8);
}

static void
raw_header (raw *r, guint32 version, guint32 flags)
{
  guint8 h[16];

  memcpy (h, "OVSTREAM", 8);
  put32 (h + 8, version);
  put32 (h + 12, flags);
  g_byte_array_append (r->b, h, sizeof h);
  XXH3_128bits_update (r->sd, h, sizeof h);
}

static void
raw_frame (raw *r, guint32 type, guint32 flags, guint64 offset, guint64 length,
           const void *payload, guint32 payload_len, guint64 payload_hash,
           guint32 reserved)
{
  guint8 h[48];

  put32 (h, type);
  put32 (h + 4, flags);
  put64 (h + 8, offset);
  put64 (h + 16, length);
  put32 (h + 24, payload_len);
  put32 (h + 28, reserved);
  put64 (h + 32, payload_hash);
  put64 (h + 40, XXH3_64bits (h, 40));
  g_byte_array_append (r->b, h, 48);
  g_byte_array_append (r->b, payload, payload_len);
  if (type != STRM_FRAME_STREAM_END) {
    XXH3_128bits_update (r->sd, h, 48);
    XXH3_128bits_update (r->sd, payload, payload_len);
  }
  if (type == STRM_FRAME_BEGIN)
    XXH3_128bits_reset (r->vd);
  if (type >= STRM_FRAME_BEGIN && type <= STRM_FRAME_HOLE) {
    XXH3_128bits_update (r->vd, h, 48);
    XXH3_128bits_update (r->vd, payload, payload_len);
  }
  r->frames++;
}

static void
raw_json (raw *r, guint32 type, const char *json)
{
  size_t len = strlen (json);

  raw_frame (r, type, 0, 0, len, json, len, XXH3_64bits (json, len), 0);
}

static void G_GNUC_PRINTF (3, 4)
raw_jsonf (raw *r, guint32 type, const char *fmt, ...)
{
  g_autofree char *json = NULL;
  va_list ap;

  va_start (ap, fmt);
  json = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  raw_json (r, type, json);
}

static void
raw_data (raw *r, guint64 offset, const void *buf, guint32 len)
{
  raw_frame (r, STRM_FRAME_DATA, 0, offset, len, buf, len, XXH3_64bits (buf, len), 0);
  r->data += len;
  r->vdata += len;
}

static void
raw_zero (raw *r, guint32 type, guint64 offset, guint64 len)
{
  raw_frame (r, type, 0, offset, len, NULL, 0, 0, 0);
  if (type == STRM_FRAME_ZERO) {
    r->zero += len;
    r->vzero += len;
  }
  else {
    r->hole += len;
    r->vhole += len;
  }
}

static void
hex_of (XXH3_state_t *st, char hex[33])
{
  XXH128_canonical_t c;

  XXH128_canonicalFromHash (&c, XXH3_128bits_digest (st));
  for (int i = 0; i < 16; i++)
    g_snprintf (hex + 2 * i, 3, "%02x", c.digest[i]);
}

static void
raw_begin (raw *r, const char *uuid, guint index, guint64 size)
{
  raw_jsonf (r, STRM_FRAME_BEGIN, "{\"uuid\":\"%s\",\"index\":%u,\"size\":%"
             G_GUINT64_FORMAT "}", uuid, index, size);
  r->vdata = r->vzero = r->vhole = 0;
}

static void
raw_end (raw *r, const char *uuid)
{
  char hex[33];

  hex_of (r->vd, hex);
  raw_jsonf (r, STRM_FRAME_END, "{\"uuid\":\"%s\",\"data_bytes\":%" G_GUINT64_FORMAT
             ",\"zero_bytes\":%" G_GUINT64_FORMAT ",\"hole_bytes\":%" G_GUINT64_FORMAT
             ",\"digest\":\"%s\"}", uuid, r->vdata, r->vzero, r->vhole, hex);
}

static void
raw_stream_end (raw *r, guint volumes)
{
  char hex[33];

  hex_of (r->sd, hex);
  raw_jsonf (r, STRM_FRAME_STREAM_END, "{\"volumes\":%u,\"frames\":%" G_GUINT64_FORMAT
             ",\"bytes\":%u,\"data_bytes\":%" G_GUINT64_FORMAT ",\"zero_bytes\":%"
             G_GUINT64_FORMAT ",\"hole_bytes\":%" G_GUINT64_FORMAT ",\"digest\":\"%s\"}",
             volumes, r->frames, r->b->len, r->data, r->zero, r->hole, hex);
}

#define META_AB \
  "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[" \
  "{\"uuid\":\"" UUID_A "\",\"size\":100},{\"uuid\":\"" UUID_B "\",\"size\":0}]}"

/* The hand-made writer and the encoder agree to the byte. */
static void
test_raw_matches_encoder (void)
{
  guint8 buf[60];
  mem_sink *sink = mem_sink_new ();
  g_autoptr(strm_encoder) e = strm_encoder_new (&sink->base, 0);
  g_autoptr(GError) error = NULL;
  raw r;

  fill_random (buf, sizeof buf, 7);
  raw_init (&r);
  raw_header (&r, 1, 0);
  raw_json (&r, STRM_FRAME_META, META_AB);
  raw_begin (&r, UUID_A, 0, 100);
  raw_data (&r, 0, buf, 60);
  raw_zero (&r, STRM_FRAME_ZERO, 60, 30);
  raw_zero (&r, STRM_FRAME_HOLE, 90, 10);
  raw_end (&r, UUID_A);
  raw_begin (&r, UUID_B, 1, 0);
  raw_end (&r, UUID_B);
  raw_stream_end (&r, 2);

  g_assert_true (strm_encoder_meta (e, META_AB, &error));
  g_assert_true (strm_encoder_begin (e, UUID_A, 100, &error));
  g_assert_true (strm_encoder_data (e, 0, buf, 60, &error));
  g_assert_true (strm_encoder_zero (e, 60, 30, &error));
  g_assert_true (strm_encoder_hole (e, 90, 10, &error));
  g_assert_true (strm_encoder_end (e, &error));
  g_assert_true (strm_encoder_begin (e, UUID_B, 0, &error));
  g_assert_true (strm_encoder_end (e, &error));
  g_assert_true (strm_encoder_finish (e, &error));
  g_assert_no_error (error);

  g_assert_cmpmem (sink->bytes->data, sink->bytes->len, r.b->data, r.b->len);
  g_assert_null (decode (r.b->data, r.b->len, SIZE_MAX, NULL));
  strm_sink_free (&sink->base);
  raw_clear (&r);
}

typedef enum {
  LIE_NONE,
  LIE_BEGIN_SIZE,         /* BEGIN's size is not META's */
  LIE_BEGIN_UUID,
  LIE_BEGIN_INDEX,
  LIE_GAP,
  LIE_OVERLAP,
  LIE_OUT_OF_ORDER,
  LIE_PAST_END,
  LIE_END_EARLY,
  LIE_DATA_LEN,           /* payload_len != length */
  LIE_ZERO_PAYLOAD,
  LIE_EMPTY_ZERO,
  LIE_TRAILING,
  LIE_STREAM_DIGEST,
  LIE_VOLUME_DIGEST,
  LIE_END_COUNTS,
  LIE_END_UUID,
  LIE_STREAM_FRAMES,
  LIE_STREAM_VOLUMES,
  LIE_OVERSIZE_DATA,
  LIE_OVERSIZE_JSON,
  LIE_OVERSIZE_ZSTD,
  LIE_UNKNOWN_TYPE,
  LIE_UNKNOWN_FLAG,
  LIE_ZSTD_META,
  LIE_RESERVED,
  LIE_META_OFFSET,
  LIE_NO_META,
  LIE_MISSING_VOLUME,
  LIE_EXTRA_VOLUME,
  LIE_DATA_OUTSIDE,
  LIE_ZSTD_SIZE,          /* compressed payload of another size */
  LIE_ZSTD_GARBAGE,
  LIE_TWO_STREAM_ENDS,
} lie_kind;

static const struct {
  lie_kind lie;
  int code;
  const char *message;      /* part of the error message */
} lies[] = {
  { LIE_NONE, 0, NULL },
  { LIE_BEGIN_SIZE, OVA_ERROR_INTEGRITY, "but META declares volume 0" },
  { LIE_BEGIN_UUID, OVA_ERROR_INTEGRITY, "but META declares volume 0" },
  { LIE_BEGIN_INDEX, OVA_ERROR_INTEGRITY, "but META declares volume 0" },
  { LIE_GAP, OVA_ERROR_INTEGRITY, "which continues at 60" },
  { LIE_OVERLAP, OVA_ERROR_INTEGRITY, "which continues at 60" },
  { LIE_OUT_OF_ORDER, OVA_ERROR_INTEGRITY, "which continues at 0" },
  { LIE_PAST_END, OVA_ERROR_INTEGRITY, "goes past the end" },
  { LIE_END_EARLY, OVA_ERROR_INTEGRITY, "after 90 of its 100 bytes" },
  { LIE_DATA_LEN, OVA_ERROR_INTEGRITY, "payload of 59 bytes for a length of 60" },
  { LIE_ZERO_PAYLOAD, OVA_ERROR_INTEGRITY, "none allowed" },
  { LIE_EMPTY_ZERO, OVA_ERROR_INTEGRITY, "length 0" },
  { LIE_TRAILING, OVA_ERROR_INTEGRITY, "data follows its end" },
  { LIE_STREAM_DIGEST, OVA_ERROR_INTEGRITY, "STREAM_END digest" },
  { LIE_VOLUME_DIGEST, OVA_ERROR_INTEGRITY, "END of volume " UUID_A " digest" },
  { LIE_END_COUNTS, OVA_ERROR_INTEGRITY, "declares 60 data, 31 zero" },
  { LIE_END_UUID, OVA_ERROR_INTEGRITY, "inside volume" },
  { LIE_STREAM_FRAMES, OVA_ERROR_INTEGRITY, "frames" },
  { LIE_STREAM_VOLUMES, OVA_ERROR_INTEGRITY, "declares 3 volumes" },
  { LIE_OVERSIZE_DATA, OVA_ERROR_INTEGRITY, "(1 to 16777216 allowed)" },
  { LIE_OVERSIZE_JSON, OVA_ERROR_INTEGRITY, "record of 4194305 bytes" },
  { LIE_OVERSIZE_ZSTD, OVA_ERROR_INTEGRITY, "compressed payload of 16777217 bytes" },
  { LIE_UNKNOWN_TYPE, OVA_ERROR_INTEGRITY, "unknown frame type 8" },
  { LIE_UNKNOWN_FLAG, OVA_ERROR_INTEGRITY, "unknown flags 0x2" },
  { LIE_ZSTD_META, OVA_ERROR_INTEGRITY, "unknown flags 0x1" },
  { LIE_RESERVED, OVA_ERROR_INTEGRITY, "reserved field" },
  { LIE_META_OFFSET, OVA_ERROR_INTEGRITY, "offset 1 (0 required)" },
  { LIE_NO_META, OVA_ERROR_INTEGRITY, "the first frame must be META" },
  { LIE_MISSING_VOLUME, OVA_ERROR_INTEGRITY, "expected BEGIN of volume 2 of 2" },
  { LIE_EXTRA_VOLUME, OVA_ERROR_INTEGRITY, "expected STREAM_END" },
  { LIE_DATA_OUTSIDE, OVA_ERROR_INTEGRITY, "expected BEGIN of volume 1 of 2" },
  { LIE_ZSTD_SIZE, OVA_ERROR_INTEGRITY, "does not declare 60 bytes" },
  { LIE_ZSTD_GARBAGE, OVA_ERROR_INTEGRITY, "payload" },
  { LIE_TWO_STREAM_ENDS, OVA_ERROR_INTEGRITY, "data follows its end" },
};

static void
build_lie (raw *r, lie_kind lie)
{
  guint8 buf[60];
  guint8 z[256];
  size_t zlen;

  fill_random (buf, sizeof buf, 3);
  raw_header (r, 1, 0);
  if (lie == LIE_NO_META)
    raw_begin (r, UUID_A, 0, 100);
  if (lie == LIE_META_OFFSET) {
    raw_frame (r, STRM_FRAME_META, 0, 1, strlen (META_AB), META_AB,
               strlen (META_AB), XXH3_64bits (META_AB, strlen (META_AB)), 0);
    return;
  }
  if (lie == LIE_ZSTD_META) {
    raw_frame (r, STRM_FRAME_META, STRM_FLAG_ZSTD, 0, strlen (META_AB), META_AB,
               strlen (META_AB), XXH3_64bits (META_AB, strlen (META_AB)), 0);
    return;
  }
  if (lie == LIE_OVERSIZE_JSON) {
    g_autofree char *big = g_malloc0 (STRM_MAX_JSON_PAYLOAD + 1);

    raw_frame (r, STRM_FRAME_META, 0, 0, STRM_MAX_JSON_PAYLOAD + 1, big,
               STRM_MAX_JSON_PAYLOAD + 1, 0, 0);
    return;
  }
  raw_json (r, STRM_FRAME_META, META_AB);
  if (lie == LIE_DATA_OUTSIDE) {
    raw_data (r, 0, buf, 60);
    return;
  }

  raw_jsonf (r, STRM_FRAME_BEGIN, "{\"uuid\":\"%s\",\"index\":%d,\"size\":%d}",
             lie == LIE_BEGIN_UUID ? UUID_C : UUID_A,
             lie == LIE_BEGIN_INDEX ? 1 : 0,
             lie == LIE_BEGIN_SIZE ? 1000 : 100);
  r->vdata = r->vzero = r->vhole = 0;

  switch (lie) {
  case LIE_OUT_OF_ORDER:
    raw_zero (r, STRM_FRAME_ZERO, 60, 40);
    break;
  case LIE_DATA_LEN:
    raw_frame (r, STRM_FRAME_DATA, 0, 0, 60, buf, 59, XXH3_64bits (buf, 59), 0);
    break;
  case LIE_OVERSIZE_DATA:
    raw_frame (r, STRM_FRAME_DATA, 0, 0, STRM_MAX_DATA_PAYLOAD + 1, buf, 60, 0, 0);
    break;
  case LIE_OVERSIZE_ZSTD: {
    g_autofree guint8 *big = g_malloc0 (STRM_MAX_DATA_PAYLOAD + 1);

    raw_frame (r, STRM_FRAME_DATA, STRM_FLAG_ZSTD, 0, 60, big,
               STRM_MAX_DATA_PAYLOAD + 1, XXH3_64bits (buf, 60), 0);
    break;
  }
  case LIE_UNKNOWN_TYPE:
    raw_frame (r, 8, 0, 0, 60, buf, 60, XXH3_64bits (buf, 60), 0);
    break;
  case LIE_UNKNOWN_FLAG:
    raw_frame (r, STRM_FRAME_DATA, 2, 0, 60, buf, 60, XXH3_64bits (buf, 60), 0);
    break;
  case LIE_RESERVED:
    raw_frame (r, STRM_FRAME_DATA, 0, 0, 60, buf, 60, XXH3_64bits (buf, 60), 1);
    break;
  case LIE_ZSTD_SIZE:
    zlen = ZSTD_compress (z, sizeof z, buf, 59, 1);
    raw_frame (r, STRM_FRAME_DATA, STRM_FLAG_ZSTD, 0, 60, z, zlen,
               XXH3_64bits (buf, 60), 0);
    break;
  case LIE_ZSTD_GARBAGE:
    raw_frame (r, STRM_FRAME_DATA, STRM_FLAG_ZSTD, 0, 60, buf, 60,
               XXH3_64bits (buf, 60), 0);
    break;
  default:
    raw_data (r, 0, buf, 60);
    break;
  }

  switch (lie) {
  case LIE_GAP:
    raw_zero (r, STRM_FRAME_ZERO, 61, 39);
    break;
  case LIE_OVERLAP:
    raw_zero (r, STRM_FRAME_ZERO, 59, 41);
    break;
  case LIE_PAST_END:
    raw_zero (r, STRM_FRAME_ZERO, 60, 41);
    break;
  case LIE_ZERO_PAYLOAD:
    raw_frame (r, STRM_FRAME_ZERO, 0, 60, 40, buf, 40, XXH3_64bits (buf, 40), 0);
    break;
  case LIE_EMPTY_ZERO:
    raw_zero (r, STRM_FRAME_ZERO, 60, 0);
    break;
  case LIE_END_EARLY:
    raw_zero (r, STRM_FRAME_ZERO, 60, 30);
    break;
  default:
    raw_zero (r, STRM_FRAME_ZERO, 60, 30);
    raw_zero (r, STRM_FRAME_HOLE, 90, 10);
    break;
  }

  if (lie == LIE_VOLUME_DIGEST)
    XXH3_128bits_update (r->vd, "x", 1);
  if (lie == LIE_END_COUNTS) {
    r->vzero++;
    r->vhole--;
  }
  raw_end (r, lie == LIE_END_UUID ? UUID_B : UUID_A);

  if (lie != LIE_MISSING_VOLUME) {
    raw_begin (r, UUID_B, 1, 0);
    raw_end (r, UUID_B);
  }
  if (lie == LIE_EXTRA_VOLUME) {
    raw_begin (r, UUID_C, 2, 0);
    raw_end (r, UUID_C);
  }

  if (lie == LIE_STREAM_DIGEST)
    XXH3_128bits_update (r->sd, "x", 1);
  if (lie == LIE_STREAM_FRAMES)
    r->frames++;
  raw_stream_end (r, lie == LIE_STREAM_VOLUMES ? 3 : 2);
  if (lie == LIE_TRAILING)
    g_byte_array_append (r->b, (const guint8 *) "\0", 1);
  if (lie == LIE_TWO_STREAM_ENDS)
    raw_stream_end (r, 2);
}

static void
test_lies (void)
{
  for (size_t i = 0; i < G_N_ELEMENTS (lies); i++) {
    g_autoptr(GError) error = NULL;
    raw r;

    raw_init (&r);
    build_lie (&r, lies[i].lie);
    error = decode (r.b->data, r.b->len, i % 2 ? 5 : SIZE_MAX, NULL);
    if (lies[i].code == 0)
      g_assert_no_error (error);
    else {
      if (error == NULL)
        g_error ("lie %d: accepted", lies[i].lie);
      g_assert_error (error, OVA_ERROR, lies[i].code);
      if (strstr (error->message, lies[i].message) == NULL)
        g_error ("lie %d: \"%s\" does not say \"%s\"", lies[i].lie,
                 error->message, lies[i].message);
    }
    raw_clear (&r);
  }
}

/* STREAM_END whose "bytes" is off by one, hashes valid. */
static void
test_lie_bytes (void)
{
  g_autoptr(GError) error = NULL;
  char hex[33];
  raw r;

  raw_init (&r);
  raw_header (&r, 1, 0);
  raw_json (&r, STRM_FRAME_META, META_AB);
  raw_begin (&r, UUID_A, 0, 100);
  raw_zero (&r, STRM_FRAME_HOLE, 0, 100);
  raw_end (&r, UUID_A);
  raw_begin (&r, UUID_B, 1, 0);
  raw_end (&r, UUID_B);
  hex_of (r.sd, hex);
  raw_jsonf (&r, STRM_FRAME_STREAM_END, "{\"volumes\":2,\"frames\":%" G_GUINT64_FORMAT
             ",\"bytes\":%u,\"data_bytes\":0,\"zero_bytes\":0,\"hole_bytes\":100,"
             "\"digest\":\"%s\"}", r.frames, r.b->len - 1, hex);
  error = decode (r.b->data, r.b->len, SIZE_MAX, NULL);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (error->message, "but the stream carried"));
  raw_clear (&r);
}

static void
test_bad_meta (void)
{
  static const char *const metas[] = {
    "",
    "[]",
    "null",
    "{\"format\":\"ovagent-stream\",\"version\":1}",
    "{\"format\":\"ovagent-stream\",\"version\":2,\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":1}]}",
    "{\"format\":\"other\",\"version\":1,\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":1}]}",
    "{\"version\":1,\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":1}]}",
    "{\"format\":\"ovagent-stream\",\"version\":\"1\",\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":1}]}",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[]}",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":{}}",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[1]}",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[{\"uuid\":\"../etc/passwd\",\"size\":1}]}",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[{\"uuid\":\"" UUID_A "\"}]}",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":-1}]}",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":1.5}]}",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":1},"
    "{\"uuid\":\"" UUID_A "\",\"size\":1}]}",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":1}]",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":1}]}\xff",
    /* json-glib quotes a bad string cut in the middle of a character. */
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[{\"uuid\":\""
    "5b8f2d8e-3c1a-4b6e-9f0d-\xcf\x9e\xcd\x9d\xcc\x9c\xcb\xa4" "host\":1}]}",
    "{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[{\"uuid\":\"\\udc00\\ud800x\",\"size\":1}]}",
    "{\"format\":\"ovagent-stream\\ud800\",\"version\":1,\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":1}]}",
  };

  for (size_t i = 0; i < G_N_ELEMENTS (metas) + 2; i++) {
    g_autoptr(GError) error = NULL;
    g_autofree char *json = NULL;
    raw r;

    if (i < G_N_ELEMENTS (metas))
      json = g_strdup (metas[i]);
    else if (i == G_N_ELEMENTS (metas)) {
      /* Deeply nested: refused before the recursive parser sees it. */
      GString *s = g_string_new ("{\"format\":\"ovagent-stream\",\"x\":");

      for (int j = 0; j < 100000; j++)
        g_string_append_c (s, '[');
      json = g_string_free (s, FALSE);
    }
    else {
      /* Too many volumes. */
      GString *s = g_string_new ("{\"format\":\"ovagent-stream\",\"version\":1,\"volumes\":[");

      for (int j = 0; j <= STRM_MAX_VOLUMES; j++)
        g_string_append_printf (s, "%s{\"uuid\":\"00000000-0000-0000-0000-%012x\",\"size\":0}",
                                j > 0 ? "," : "", j);
      g_string_append (s, "]}");
      json = g_string_free (s, FALSE);
    }

    raw_init (&r);
    raw_header (&r, 1, 0);
    if (json[0] == '\0')
      raw_frame (&r, STRM_FRAME_META, 0, 0, 0, NULL, 0, 0, 0);
    else
      raw_json (&r, STRM_FRAME_META, json);
    error = decode (r.b->data, r.b->len, SIZE_MAX, NULL);
    if (error == NULL)
      g_error ("META %zu accepted", i);
    g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
    g_assert_true (g_utf8_validate (error->message, -1, NULL));
    g_assert_cmpuint (strlen (error->message), <, 1000);
    raw_clear (&r);
  }
}

/* What a real META holds passes: escapes, UTF-8, nested records, nulls. */
static void
test_good_meta (void)
{
  static const char meta[] =
    "{\"format\":\"ovagent-stream\",\"version\":1,\"host\":\"n\u0153ud-\u00e9 \xc5\x93\\\"\\n\","
    "\"since\":null,\"volumes\":[{\"uuid\":\"" UUID_A "\",\"size\":0,\"parent\":null,"
    "\"metadata\":{\"DESCRIPTION\":\"{\\\"DiskAlias\\\":\\\"d\\\"}\",\"CAP\":\"1\"}}]}";
  g_autoptr(GArray) volumes = NULL;
  g_autoptr(GError) error = NULL;
  raw r;

  volumes = strm_meta_volumes_parse (meta, strlen (meta), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (volumes->len, ==, 1);
  g_assert_cmpstr (g_array_index (volumes, strm_meta_volume, 0).uuid, ==, UUID_A);

  raw_init (&r);
  raw_header (&r, 1, 0);
  raw_json (&r, STRM_FRAME_META, meta);
  raw_begin (&r, UUID_A, 0, 0);
  raw_end (&r, UUID_A);
  raw_stream_end (&r, 1);
  g_assert_null (decode (r.b->data, r.b->len, SIZE_MAX, NULL));
  raw_clear (&r);
}

static void
test_bad_header (void)
{
  static const guint32 bad[][2] = { { 0, 0 }, { 2, 0 }, { 1, 1 }, { 1, 0x80000000 } };
  static const char *const garbage[] = { "G", "OVSTREAX", "{\"format\":\"ovagent-stream\"}" };

  /* Not a stream at all, however short: not a cut stream either. */
  for (size_t i = 0; i < G_N_ELEMENTS (garbage); i++) {
    g_autoptr(GError) error = decode ((const guint8 *) garbage[i], strlen (garbage[i]),
                                      SIZE_MAX, NULL);

    g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  }

  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr(GError) error = NULL;
    raw r;

    raw_init (&r);
    raw_header (&r, bad[i][0], bad[i][1]);
    raw_json (&r, STRM_FRAME_META, META_AB);
    error = decode (r.b->data, r.b->len, SIZE_MAX, NULL);
    g_assert_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED);
    raw_clear (&r);
  }
}

/* After an error the decoder does not go on. */
static void
test_sticky_error (void)
{
  g_autoptr(GByteArray) s = small_stream (0);
  mem_reader r = { s->data, s->len, 0, SIZE_MAX };
  g_autoptr(strm_decoder) d = NULL;
  g_autoptr(GError) error = NULL;
  strm_frame f;

  s->data[100] ^= 1;
  d = strm_decoder_new (mem_read, &r);
  while (strm_decoder_next (d, &f, &error))
    ;
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_clear_error (&error);
  g_assert_false (strm_decoder_next (d, &f, &error));
  g_assert_nonnull (error);
  g_assert_false (strm_decoder_complete (d));
}

/* ---- the fd sink and decoder, through a pipe ---- */

typedef struct {
  int fd;
  guint64 size;
  GError *error;
} writer_args;

static gpointer
pipe_writer (gpointer data)
{
  writer_args *a = data;
  const char *uuid = UUID_A;
  g_autofree char *meta = meta_json (1, &uuid, &a->size);
  g_autofree guint8 *buf = g_malloc (1 << 20);
  g_autoptr(strm_sink) sink = strm_sink_fd_new (a->fd, "the test pipe");
  g_autoptr(strm_encoder) e = strm_encoder_new (sink, 1);
  guint64 off = 0;

  fill_compressible (buf, 1 << 20, 9);
  if (!strm_encoder_meta (e, meta, &a->error) ||
      !strm_encoder_begin (e, uuid, a->size, &a->error))
    goto out;
  for (guint i = 0; off < a->size; i++) {
    guint64 n = MIN (a->size - off, 1 << 20);
    gboolean ok;

    if (i % 3 == 2)
      ok = strm_encoder_hole (e, off, n, &a->error);
    else
      ok = strm_encoder_data (e, off, buf, n, &a->error);
    if (!ok)
      goto out;
    off += n;
  }
  if (strm_encoder_end (e, &a->error) && strm_encoder_finish (e, &a->error))
    sink->ops->close (sink, &a->error);
 out:
  close (a->fd);
  return NULL;
}

static void
test_pipe (void)
{
  writer_args a = { -1, (10 << 20) + 12345, NULL };
  g_autoptr(strm_decoder) d = NULL;
  g_autoptr(GError) error = NULL;
  GThread *t;
  strm_frame f;
  int fds[2];

  /* Non-blocking ends, as a caller may inherit them: both sides wait. */
  g_assert_cmpint (pipe2 (fds, O_CLOEXEC | O_NONBLOCK), ==, 0);
  a.fd = fds[1];
  t = g_thread_new ("writer", pipe_writer, &a);
  d = strm_decoder_new_fd (fds[0]);
  while (strm_decoder_next (d, &f, &error))
    ;
  g_assert_no_error (error);
  g_assert_true (strm_decoder_complete (d));
  g_assert_cmpuint (strm_decoder_totals (d)->data_bytes +
                    strm_decoder_totals (d)->hole_bytes, ==, a.size);
  g_thread_join (t);
  g_assert_no_error (a.error);
  close (fds[0]);
}

static void
test_sink_fd_errors (void)
{
  g_autoptr(GError) error = NULL;
  char buf[4096] = { 0 };
  int fds[2], full;

  g_assert_cmpint (pipe2 (fds, O_CLOEXEC), ==, 0);
  close (fds[0]);
  {
    g_autoptr(strm_sink) s = strm_sink_fd_new (fds[1], "standard output");

    g_assert_false (s->ops->write (s, buf, sizeof buf, &error));
    g_assert_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT);
    g_assert_cmpstr (error->message, ==, "the reader of standard output went away");
    g_clear_error (&error);
  }
  close (fds[1]);

  full = open ("/dev/full", O_WRONLY | O_CLOEXEC);
  if (full >= 0) {
    g_autoptr(strm_sink) s = strm_sink_fd_new (full, "/dev/full");

    g_assert_false (s->ops->write (s, buf, sizeof buf, &error));
    g_assert_error (error, OVA_ERROR, OVA_ERROR_NO_SPACE);
    g_assert_nonnull (strstr (error->message, "/dev/full"));
    g_clear_error (&error);
    close (full);
  }

  {
    g_autoptr(strm_sink) s = strm_sink_fd_new (-1, "nothing");

    g_assert_false (s->ops->write (s, buf, 1, &error));
    g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERNAL);
    g_assert_nonnull (strstr (error->message, "nothing"));
  }
}

/* A reader that takes nothing: the write fails after io_timeout, naming
 * the reader, through a pipe (whose own flags stay as they were) and a
 * socket. */
static void
test_sink_fd_io_timeout (void)
{
  /* More than a pipe holds, even grown to 1 MiB. */
  gsize len = 4 << 20;
  g_autofree char *buf = g_malloc0 (len);
  int fds[2];

  for (int kind = 0; kind < 2; kind++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(strm_sink) s = NULL;

    if (kind == 0)
      g_assert_cmpint (pipe2 (fds, O_CLOEXEC), ==, 0);
    else
      g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
    s = strm_sink_fd_new (fds[1], "the test pipe");
    strm_sink_set_io_limits (s, 1, NULL);
    g_assert_false (s->ops->write (s, buf, len, &error));
    g_assert_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT);
    g_assert_cmpstr (error->message, ==,
                     "the reader of the test pipe took nothing for 1 s (io_timeout)");
    g_assert_cmpint (fcntl (fds[1], F_GETFL) & O_NONBLOCK, ==, 0);
    close (fds[0]);
    close (fds[1]);
  }
}

static volatile sig_atomic_t alarm_cancel;

static void
on_alarm (int sig G_GNUC_UNUSED)
{
  alarm_cancel = 1;
}

/* No limit: a write waits for the reader until a signal sets the cancel
 * flag, then fails at once; a flag set before it had to wait stops it
 * too. */
static void
test_sink_fd_cancel (void)
{
  struct sigaction sa = { .sa_handler = on_alarm };
  struct sigaction old;
  /* More than a pipe holds, even grown to 1 MiB. */
  g_autofree char *buf = g_malloc0 (4 << 20);
  g_autoptr(GError) error = NULL;
  g_autoptr(strm_sink) s = NULL;
  int fds[2];

  sigemptyset (&sa.sa_mask);
  g_assert_cmpint (sigaction (SIGALRM, &sa, &old), ==, 0);
  g_assert_cmpint (pipe2 (fds, O_CLOEXEC), ==, 0);
  s = strm_sink_fd_new (fds[1], "the test pipe");
  strm_sink_set_io_limits (s, 0, &alarm_cancel);
  alarm (1);
  g_assert_false (s->ops->write (s, buf, 4 << 20, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED);
  g_assert_cmpstr (error->message, ==,
                   "interrupted by a signal while writing the stream to the test pipe");
  g_assert_true (alarm_cancel);
  sigaction (SIGALRM, &old, NULL);
  close (fds[0]);
  close (fds[1]);

  /* A signal that came before the write had to wait (or that another
   * thread took): the flag alone stops it. */
  g_clear_error (&error);
  g_clear_pointer (&s, strm_sink_free);
  g_assert_cmpint (pipe2 (fds, O_CLOEXEC), ==, 0);
  s = strm_sink_fd_new (fds[1], "the test pipe");
  strm_sink_set_io_limits (s, 0, &alarm_cancel);
  g_assert_false (s->ops->write (s, buf, 4 << 20, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED);
  close (fds[0]);
  close (fds[1]);
}

/* Small frames wait in the encoder for more, but not longer than
 * STRM_GATHER_MAX_AGE once more comes. */
static void
test_encoder_gather_age (void)
{
  const char *uuid = UUID_A;
  guint64 size = 1 << 20;
  g_autofree char *meta = meta_json (1, &uuid, &size);
  mem_sink *s = mem_sink_new ();
  g_autoptr(strm_encoder) e = strm_encoder_new (&s->base, 0);
  g_autoptr(GError) error = NULL;

  g_assert_true (strm_encoder_meta (e, meta, &error));
  g_assert_cmpuint (s->writes, ==, 0);
  g_usleep (STRM_GATHER_MAX_AGE + G_USEC_PER_SEC / 10);
  g_assert_true (strm_encoder_begin (e, uuid, size, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (s->writes, ==, 1);
  g_clear_pointer (&e, strm_encoder_free);
  strm_sink_free (&s->base);
}

/* ---- the decode driver ---- */

/* A destination that writes down what it is given: a letter per call. */
typedef struct {
  GString *calls;
  char fail_on;          /* the op (letter) that fails, or 0 */
} log_dest;

static gboolean
log_call (log_dest *d, char op, GError **error)
{
  g_string_append_c (d->calls, op);
  if (op != d->fail_on)
    return TRUE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_NO_SPACE, "op %c fails", op);
  return FALSE;
}

#define LOG_FRAME_OP(name, letter) \
  static gboolean name (void *dest, const strm_frame *f G_GNUC_UNUSED, GError **error) \
  { return log_call (dest, letter, error); }
LOG_FRAME_OP (log_begin, 'B')
LOG_FRAME_OP (log_data, 'D')
LOG_FRAME_OP (log_zero, 'Z')
LOG_FRAME_OP (log_end, 'E')

static gboolean
log_stream_end (void *dest, GError **error)
{
  return log_call (dest, 'S', error);
}

static gboolean
log_commit (void *dest, GError **error)
{
  return log_call (dest, 'C', error);
}

/* No hole op: HOLE frames are taken and nothing is called. */
static const strm_dest_ops log_ops = {
  .kind = "test",
  .begin = log_begin,
  .data = log_data,
  .zero = log_zero,
  .end = log_end,
  .stream_end = log_stream_end,
  .commit = log_commit,
};

static char *
test_say (void *opaque G_GNUC_UNUSED, int err)
{
  return g_strdup_printf ("test input: %s", err == ECANCELED ? "cancelled" : g_strerror (err));
}

/* Drive the stream in bytes (with extra bytes after it) into a log_dest. */
static GError *
drive_bytes (const GByteArray *bytes, const char *extra, volatile sig_atomic_t *cancel,
             char fail_on, GString *calls)
{
  g_autofree char *path = NULL;
  g_autoptr(GError) err = NULL;
  int fd = g_file_open_tmp ("test-stream-XXXXXX", &path, &err);
  strm_input in = { .fd = fd, .cancel = cancel, .say = test_say };
  g_autoptr(strm_decoder) dec = NULL;
  log_dest d = { calls, fail_on };
  GError *error = NULL;

  g_assert_no_error (err);
  g_assert_cmpint (write (fd, bytes->data, bytes->len), ==, bytes->len);
  g_assert_cmpint (write (fd, extra, strlen (extra)), ==, strlen (extra));
  g_assert_cmpint (lseek (fd, 0, SEEK_SET), ==, 0);
  unlink (path);
  dec = strm_input_decoder (&in);
  if (strm_decoder_meta (dec, &in, &error) != NULL &&
      strm_decoder_drive (dec, &in, &log_ops, &d, &error))
    g_assert_cmpuint (in.bytes, ==, bytes->len);
  close (fd);
  return error;
}

static void
test_drive (void)
{
  const volume_plan plans[] = {
    { UUID_A, ext_mixed, G_N_ELEMENTS (ext_mixed), FALSE },
    { UUID_B, NULL, 0, FALSE },
  };
  g_autoptr(GPtrArray) expected = g_ptr_array_new_with_free_func ((GDestroyNotify) g_byte_array_unref);
  strm_totals totals;
  g_autoptr(GByteArray) bytes = encode_plan (plans, G_N_ELEMENTS (plans), 0, expected,
                                             &totals);
  g_autoptr(GString) calls = g_string_new (NULL);
  g_autoptr(GString) want = g_string_new ("B");
  volatile sig_atomic_t cancel = 0;
  GError *error;

  for (guint i = 0; i < G_N_ELEMENTS (ext_mixed); i++)
    if (ext_mixed[i].kind != EXT_HOLE)
      g_string_append_c (want, ext_mixed[i].kind == EXT_DATA ? 'D' : 'Z');
  g_string_append (want, "EBESC");

  /* Every frame in order, the trailer, the end of input, the commit. */
  error = drive_bytes (bytes, "", &cancel, 0, calls);
  g_assert_no_error (error);
  g_assert_cmpstr (calls->str, ==, want->str);

  /* A byte after STREAM_END: no commit. */
  g_string_truncate (calls, 0);
  error = drive_bytes (bytes, "x", &cancel, 0, calls);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (error->message, "data follows its end"));
  g_clear_error (&error);
  g_string_truncate (want, want->len - 1);
  g_assert_cmpstr (calls->str, ==, want->str);

  /* A destination's failure stops the stream, its error as it is. */
  g_string_truncate (calls, 0);
  error = drive_bytes (bytes, "", &cancel, 'E', calls);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_NO_SPACE);
  g_clear_error (&error);
  g_assert_true (strchr (want->str, 'E') != NULL);
  g_assert_cmpint (strncmp (calls->str, want->str, calls->len), ==, 0);
  g_assert_cmpint (calls->str[calls->len - 1], ==, 'E');
  g_assert_cmpuint (calls->len, ==, strchr (want->str, 'E') - want->str + 1);
  g_string_truncate (calls, 0);
  error = drive_bytes (bytes, "", &cancel, 'S', calls);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_NO_SPACE);
  g_clear_error (&error);
  g_assert_cmpstr (calls->str, ==, want->str);

  /* Cancelled: nothing is read, the input's words. */
  g_string_truncate (calls, 0);
  cancel = 1;
  error = drive_bytes (bytes, "", &cancel, 0, calls);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED);
  g_assert_cmpstr (error->message, ==, "test input: cancelled");
  g_clear_error (&error);
  g_assert_cmpstr (calls->str, ==, "");
}

/* A sender that sends nothing for io_timeout seconds. */
static void
test_drive_idle (void)
{
  strm_input in = { .io_timeout = 1, .say = test_say };
  g_autoptr(strm_decoder) dec = NULL;
  g_autoptr(GError) error = NULL;
  int fds[2];

  g_assert_cmpint (pipe2 (fds, O_CLOEXEC), ==, 0);
  in.fd = fds[0];
  dec = strm_input_decoder (&in);
  g_assert_null (strm_decoder_meta (dec, &in, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT);
  g_assert_cmpstr (error->message, ==, "test input: Connection timed out");
  close (fds[0]);
  close (fds[1]);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  /* As the agent does: a reader that goes away is EPIPE, not a signal. */
  signal (SIGPIPE, SIG_IGN);

  g_test_add_func ("/stream/round-trip", test_round_trip);
  g_test_add_func ("/stream/compression", test_compression);
  g_test_add_func ("/stream/large-frame", test_large_frame);
  g_test_add_func ("/stream/encoder/order", test_encoder_order);
  g_test_add_func ("/stream/encoder/sink-fails", test_encoder_sink_fails);
  g_test_add_func ("/stream/raw-matches-encoder", test_raw_matches_encoder);
  g_test_add_func ("/stream/decoder/truncated", test_truncated);
  g_test_add_func ("/stream/decoder/flipped", test_flipped);
  g_test_add_func ("/stream/decoder/lies", test_lies);
  g_test_add_func ("/stream/decoder/lie-bytes", test_lie_bytes);
  g_test_add_func ("/stream/decoder/bad-meta", test_bad_meta);
  g_test_add_func ("/stream/decoder/good-meta", test_good_meta);
  g_test_add_func ("/stream/decoder/bad-header", test_bad_header);
  g_test_add_func ("/stream/decoder/sticky-error", test_sticky_error);
  g_test_add_func ("/stream/pipe", test_pipe);
  g_test_add_func ("/stream/sink-fd/errors", test_sink_fd_errors);
  g_test_add_func ("/stream/sink-fd/io-timeout", test_sink_fd_io_timeout);
  g_test_add_func ("/stream/sink-fd/cancel", test_sink_fd_cancel);
  g_test_add_func ("/stream/encoder/gather-age", test_encoder_gather_age);
  g_test_add_func ("/stream/drive", test_drive);
  g_test_add_func ("/stream/drive/idle", test_drive_idle);
  return g_test_run ();
}
