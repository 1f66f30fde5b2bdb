/* ovagent tests: hand-made streams with valid hashes, each lying in one way
 * (sizes, order, records, META, headers) that the stream decoder must catch. */
#include <config.h>

#include <signal.h>
#include <stdarg.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "error.h"
#include "stream/stream.h"
#include "stream-fixture.h"

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

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  /* As the agent does: a reader that goes away is EPIPE, not a signal. */
  signal (SIGPIPE, SIG_IGN);

  g_test_add_func ("/stream/raw-matches-encoder", test_raw_matches_encoder);
  g_test_add_func ("/stream/decoder/lies", test_lies);
  g_test_add_func ("/stream/decoder/lie-bytes", test_lie_bytes);
  g_test_add_func ("/stream/decoder/bad-meta", test_bad_meta);
  g_test_add_func ("/stream/decoder/good-meta", test_good_meta);
  g_test_add_func ("/stream/decoder/bad-header", test_bad_header);
  return g_test_run ();
}
