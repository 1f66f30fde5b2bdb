/* ovagent: the stream encoder: frames written in order through a sink, each
 * with its hashes, optional zstd for DATA, per-volume and whole-stream digests. */
#include <config.h>

#include <string.h>

#include <json-glib/json-glib.h>
#include <xxhash.h>
#include <zstd.h>

#include "error.h"
#include "util.h"
#include "stream/stream.h"

/* Bytes of a payload given to both digests in turn (fits in L2). */
#define DIGEST_CHUNK (64u * 1024)

/* Small frames (ZERO, HOLE, JSON, compressed DATA) are gathered here and
 * written together, so that a volume of many small extents does not cost a
 * write per frame; a payload that does not fit goes to the sink directly,
 * and gathered bytes wait at most STRM_GATHER_MAX_AGE for more. */
#define ENC_OUT_SIZE (256u * 1024)

typedef enum {
  ENC_START,      /* nothing written: META comes first */
  ENC_BETWEEN,    /* BEGIN of the next volume or STREAM_END */
  ENC_VOLUME,     /* DATA, ZERO, HOLE, then END */
  ENC_FINISHED,
  ENC_FAILED,     /* the sink failed: the stream is broken */
} enc_state;

struct strm_encoder {
  strm_sink *sink;
  int level;
  ZSTD_CCtx *cctx;
  enc_state state;

  GArray *volumes;          /* strm_meta_volume, from META */
  guint next_volume;        /* index of the next BEGIN */

  /* The volume being sent. */
  guint64 pos;
  guint64 vol_data, vol_zero, vol_hole;

  XXH3_state_t *stream_digest;
  XXH3_state_t *volume_digest;

  guint8 *out;              /* pending bytes, ENC_OUT_SIZE */
  size_t out_len;
  gint64 out_since;         /* when the first of them came (monotonic µs) */
  guint8 *cbuf;             /* zstd output, reused */
  size_t cbuf_cap;

  strm_totals totals;
};

static const char *const frame_names[] = {
  [STRM_FRAME_META] = "META",
  [STRM_FRAME_BEGIN] = "BEGIN",
  [STRM_FRAME_DATA] = "DATA",
  [STRM_FRAME_ZERO] = "ZERO",
  [STRM_FRAME_HOLE] = "HOLE",
  [STRM_FRAME_END] = "END",
  [STRM_FRAME_STREAM_END] = "STREAM_END",
};

static void
put_u32 (guint8 *p, guint32 v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, sizeof v);
}

static void
put_u64 (guint8 *p, guint64 v)
{
  v = GUINT64_TO_LE (v);
  memcpy (p, &v, sizeof v);
}

/* The canonical (big-endian) form of an XXH3-128 digest, lowercase hex. */
static void
digest_hex (XXH3_state_t *st, char hex[33])
{
  static const char digits[] = "0123456789abcdef";
  XXH128_canonical_t c;

  XXH128_canonicalFromHash (&c, XXH3_128bits_digest (st));
  for (size_t i = 0; i < sizeof c.digest; i++) {
    hex[2 * i] = digits[c.digest[i] >> 4];
    hex[2 * i + 1] = digits[c.digest[i] & 0xf];
  }
  hex[32] = '\0';
}

strm_encoder *
strm_encoder_new (strm_sink *sink, int compress_level)
{
  strm_encoder *e = g_new0 (strm_encoder, 1);

  e->sink = sink;
  e->level = CLAMP (compress_level, 0, 19);
  if (e->level > 0) {
    e->cctx = ZSTD_createCCtx ();
    if (e->cctx == NULL)
      g_error ("ZSTD_createCCtx: out of memory");
  }
  e->stream_digest = XXH3_createState ();
  e->volume_digest = XXH3_createState ();
  if (e->stream_digest == NULL || e->volume_digest == NULL)
    g_error ("XXH3_createState: out of memory");
  XXH3_128bits_reset (e->stream_digest);
  e->out = g_malloc (ENC_OUT_SIZE);
  e->state = ENC_START;
  return e;
}

void
strm_encoder_free (strm_encoder *e)
{
  if (e == NULL)
    return;
  ZSTD_freeCCtx (e->cctx);
  XXH3_freeState (e->stream_digest);
  XXH3_freeState (e->volume_digest);
  if (e->volumes != NULL)
    g_array_unref (e->volumes);
  g_free (e->out);
  g_free (e->cbuf);
  g_free (e);
}

const strm_totals *
strm_encoder_totals (const strm_encoder *e)
{
  return &e->totals;
}

/* Every byte of the stream reaches the sink through here. */
static gboolean
enc_write (strm_encoder *e, const void *buf, size_t len, GError **error)
{
  if (!e->sink->ops->write (e->sink, buf, len, error))
    return FALSE;
  ova_io_count_out (len);
  return TRUE;
}

static gboolean
enc_flush (strm_encoder *e, GError **error)
{
  if (e->out_len == 0)
    return TRUE;
  if (!enc_write (e, e->out, e->out_len, error))
    return FALSE;
  e->out_len = 0;
  return TRUE;
}

/* Queue bytes for the sink, in order. */
static gboolean
enc_output (strm_encoder *e, const void *buf, size_t len, GError **error)
{
  if (len <= ENC_OUT_SIZE - e->out_len) {
    gint64 now = g_get_monotonic_time ();

    if (e->out_len == 0)
      e->out_since = now;
    memcpy (e->out + e->out_len, buf, len);
    e->out_len += len;
    return now - e->out_since < STRM_GATHER_MAX_AGE || enc_flush (e, error);
  }
  if (!enc_flush (e, error))
    return FALSE;
  if (len < ENC_OUT_SIZE) {
    memcpy (e->out, buf, len);
    e->out_len = len;
    e->out_since = g_get_monotonic_time ();
    return TRUE;
  }
  return enc_write (e, buf, len, error);
}

/* Whether the encoder may still write; a programming error otherwise. */
static gboolean
enc_check_state (strm_encoder *e, enc_state want, const char *what, GError **error)
{
  static const char *const state_names[] = {
    [ENC_START] = "before META",
    [ENC_BETWEEN] = "between volumes",
    [ENC_VOLUME] = "inside a volume",
    [ENC_FINISHED] = "after STREAM_END",
    [ENC_FAILED] = "after a write error",
  };

  if (e->state == want)
    return TRUE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
               "stream encoder: %s called %s", what, state_names[e->state]);
  return FALSE;
}

/* Write one frame. The volume digest covers BEGIN and the frames of the
 * volume's bytes; the stream digest every byte before STREAM_END. */
static gboolean
enc_frame (strm_encoder *e, guint32 type, guint32 flags, guint64 offset,
           guint64 length, const void *payload, guint32 payload_len,
           guint64 payload_hash, GError **error)
{
  guint8 hdr[STRM_FRAME_HEADER_SIZE];

  put_u32 (hdr + 0, type);
  put_u32 (hdr + 4, flags);
  put_u64 (hdr + 8, offset);
  put_u64 (hdr + 16, length);
  put_u32 (hdr + 24, payload_len);
  put_u32 (hdr + 28, 0);
  put_u64 (hdr + 32, payload_hash);
  put_u64 (hdr + 40, XXH3_64bits (hdr, 40));

  if (type == STRM_FRAME_BEGIN || type == STRM_FRAME_DATA ||
      type == STRM_FRAME_ZERO || type == STRM_FRAME_HOLE) {
    const guint8 *p = payload;

    XXH3_128bits_update (e->stream_digest, hdr, sizeof hdr);
    XXH3_128bits_update (e->volume_digest, hdr, sizeof hdr);
    /* Both digests in one walk over the payload, a cache-sized piece at
     * a time: the second reads it from the cache. */
    for (guint32 done = 0; done < payload_len; ) {
      guint32 n = MIN (payload_len - done, DIGEST_CHUNK);

      XXH3_128bits_update (e->stream_digest, p + done, n);
      XXH3_128bits_update (e->volume_digest, p + done, n);
      done += n;
    }
  }
  else if (type != STRM_FRAME_STREAM_END) {
    XXH3_128bits_update (e->stream_digest, hdr, sizeof hdr);
    XXH3_128bits_update (e->stream_digest, payload, payload_len);
  }

  if (!enc_output (e, hdr, sizeof hdr, error) ||
      (payload_len > 0 && !enc_output (e, payload, payload_len, error))) {
    e->state = ENC_FAILED;
    return FALSE;
  }
  e->totals.frames++;
  e->totals.bytes_sent += sizeof hdr + payload_len;
  return TRUE;
}

/* A JSON frame; its length field is the payload size. */
static gboolean
enc_json_frame (strm_encoder *e, guint32 type, JsonBuilder *b, GError **error)
{
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  g_autofree char *json = NULL;
  gsize len;

  json_generator_set_root (gen, root);
  json = json_generator_to_data (gen, &len);
  if (len == 0 || len > STRM_MAX_JSON_PAYLOAD) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "stream encoder: %s record of %" G_GSIZE_FORMAT " bytes",
                 frame_names[type], len);
    return FALSE;
  }
  return enc_frame (e, type, 0, 0, len, json, len, XXH3_64bits (json, len), error);
}

gboolean
strm_encoder_meta (strm_encoder *e, const char *json, GError **error)
{
  g_autoptr(GError) err = NULL;
  guint8 hdr[STRM_HEADER_SIZE];
  size_t len;

  if (!enc_check_state (e, ENC_START, "META", error))
    return FALSE;
  len = strlen (json);
  if (len > STRM_MAX_JSON_PAYLOAD) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "stream encoder: META of %zu bytes is larger than %u",
                 len, STRM_MAX_JSON_PAYLOAD);
    return FALSE;
  }
  e->volumes = strm_meta_volumes_parse (json, len, &err);
  if (e->volumes == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "stream encoder: META that a reader would reject: %s",
                 err->message);
    return FALSE;
  }

  memcpy (hdr, STRM_MAGIC, 8);
  put_u32 (hdr + 8, STRM_VERSION);
  put_u32 (hdr + 12, 0);
  XXH3_128bits_update (e->stream_digest, hdr, sizeof hdr);
  if (!enc_output (e, hdr, sizeof hdr, error)) {
    e->state = ENC_FAILED;
    return FALSE;
  }
  e->totals.bytes_sent += sizeof hdr;

  if (!enc_frame (e, STRM_FRAME_META, 0, 0, len, json, len,
                  XXH3_64bits (json, len), error))
    return FALSE;
  e->state = ENC_BETWEEN;
  return TRUE;
}

gboolean
strm_encoder_begin (strm_encoder *e, const char *uuid, guint64 size,
                    GError **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  const strm_meta_volume *v;

  if (!enc_check_state (e, ENC_BETWEEN, "BEGIN", error))
    return FALSE;
  if (e->next_volume >= e->volumes->len) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "stream encoder: BEGIN of volume %s, but META declares only %u volumes",
                 uuid, e->volumes->len);
    return FALSE;
  }
  v = &g_array_index (e->volumes, strm_meta_volume, e->next_volume);
  if (strcmp (uuid, v->uuid) != 0 || size != v->size) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "stream encoder: BEGIN of volume %s (%" G_GUINT64_FORMAT
                 " bytes), but META declares volume %u as %s (%" G_GUINT64_FORMAT " bytes)",
                 uuid, size, e->next_volume, v->uuid, v->size);
    return FALSE;
  }

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "uuid");
  json_builder_add_string_value (b, uuid);
  json_builder_set_member_name (b, "index");
  json_builder_add_int_value (b, e->next_volume);
  json_builder_set_member_name (b, "size");
  json_builder_add_int_value (b, (gint64) size);
  json_builder_end_object (b);

  XXH3_128bits_reset (e->volume_digest);
  if (!enc_json_frame (e, STRM_FRAME_BEGIN, b, error))
    return FALSE;
  e->pos = 0;
  e->vol_data = e->vol_zero = e->vol_hole = 0;
  e->state = ENC_VOLUME;
  return TRUE;
}

/* A frame of the volume's bytes must continue it exactly. */
static gboolean
enc_check_range (strm_encoder *e, const char *what, guint64 offset,
                 guint64 len, GError **error)
{
  const strm_meta_volume *v;

  if (!enc_check_state (e, ENC_VOLUME, what, error))
    return FALSE;
  v = &g_array_index (e->volumes, strm_meta_volume, e->next_volume);
  if (offset != e->pos || len == 0 || len > v->size - e->pos) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "stream encoder: %s of [%" G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT
                 ") in volume %s of %" G_GUINT64_FORMAT " bytes, which continues at %"
                 G_GUINT64_FORMAT, what, offset, len, v->uuid, v->size, e->pos);
    return FALSE;
  }
  return TRUE;
}

gboolean
strm_encoder_data (strm_encoder *e, guint64 offset, const void *buf,
                   size_t len, GError **error)
{
  const void *payload = buf;
  guint32 payload_len = len;
  guint32 flags = 0;
  guint64 hash;

  if (!enc_check_range (e, "DATA", offset, len, error))
    return FALSE;
  if (len > STRM_MAX_DATA_PAYLOAD) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "stream encoder: DATA frame of %zu bytes is larger than %u",
                 len, STRM_MAX_DATA_PAYLOAD);
    return FALSE;
  }

  hash = XXH3_64bits (buf, len);
  if (e->cctx != NULL) {
    size_t bound = ZSTD_compressBound (len);
    size_t r;

    if (e->cbuf_cap < bound) {
      g_free (e->cbuf);
      e->cbuf = g_malloc (bound);
      e->cbuf_cap = bound;
    }
    r = ZSTD_compressCCtx (e->cctx, e->cbuf, e->cbuf_cap, buf, len, e->level);
    if (ZSTD_isError (r)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "stream encoder: compressing %zu bytes at offset %" G_GUINT64_FORMAT
                   ": %s", len, offset, ZSTD_getErrorName (r));
      return FALSE;
    }
    if (r < len) {
      payload = e->cbuf;
      payload_len = r;
      flags = STRM_FLAG_ZSTD;
    }
  }

  if (!enc_frame (e, STRM_FRAME_DATA, flags, offset, len, payload, payload_len,
                  hash, error))
    return FALSE;
  e->pos += len;
  e->vol_data += len;
  e->totals.data_bytes += len;
  e->totals.payload_bytes += payload_len;
  return TRUE;
}

gboolean
strm_encoder_zero (strm_encoder *e, guint64 offset, guint64 len, GError **error)
{
  if (!enc_check_range (e, "ZERO", offset, len, error) ||
      !enc_frame (e, STRM_FRAME_ZERO, 0, offset, len, NULL, 0, 0, error))
    return FALSE;
  e->pos += len;
  e->vol_zero += len;
  e->totals.zero_bytes += len;
  return TRUE;
}

gboolean
strm_encoder_hole (strm_encoder *e, guint64 offset, guint64 len, GError **error)
{
  if (!enc_check_range (e, "HOLE", offset, len, error) ||
      !enc_frame (e, STRM_FRAME_HOLE, 0, offset, len, NULL, 0, 0, error))
    return FALSE;
  e->pos += len;
  e->vol_hole += len;
  e->totals.hole_bytes += len;
  return TRUE;
}

gboolean
strm_encoder_end (strm_encoder *e, GError **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  const strm_meta_volume *v;
  char hex[33];

  if (!enc_check_state (e, ENC_VOLUME, "END", error))
    return FALSE;
  v = &g_array_index (e->volumes, strm_meta_volume, e->next_volume);
  if (e->pos != v->size) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "stream encoder: END of volume %s after %" G_GUINT64_FORMAT
                 " of its %" G_GUINT64_FORMAT " bytes", v->uuid, e->pos, v->size);
    return FALSE;
  }

  digest_hex (e->volume_digest, hex);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "uuid");
  json_builder_add_string_value (b, v->uuid);
  json_builder_set_member_name (b, "data_bytes");
  json_builder_add_int_value (b, (gint64) e->vol_data);
  json_builder_set_member_name (b, "zero_bytes");
  json_builder_add_int_value (b, (gint64) e->vol_zero);
  json_builder_set_member_name (b, "hole_bytes");
  json_builder_add_int_value (b, (gint64) e->vol_hole);
  json_builder_set_member_name (b, "digest");
  json_builder_add_string_value (b, hex);
  json_builder_end_object (b);

  if (!enc_json_frame (e, STRM_FRAME_END, b, error))
    return FALSE;
  e->next_volume++;
  e->state = ENC_BETWEEN;
  return TRUE;
}

gboolean
strm_encoder_finish (strm_encoder *e, GError **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  char hex[33];

  if (!enc_check_state (e, ENC_BETWEEN, "STREAM_END", error))
    return FALSE;
  if (e->next_volume != e->volumes->len) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "stream encoder: STREAM_END after %u of the %u volumes META declares",
                 e->next_volume, e->volumes->len);
    return FALSE;
  }

  digest_hex (e->stream_digest, hex);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "volumes");
  json_builder_add_int_value (b, e->volumes->len);
  json_builder_set_member_name (b, "frames");
  json_builder_add_int_value (b, (gint64) e->totals.frames);
  json_builder_set_member_name (b, "bytes");
  json_builder_add_int_value (b, (gint64) e->totals.bytes_sent);
  json_builder_set_member_name (b, "data_bytes");
  json_builder_add_int_value (b, (gint64) e->totals.data_bytes);
  json_builder_set_member_name (b, "zero_bytes");
  json_builder_add_int_value (b, (gint64) e->totals.zero_bytes);
  json_builder_set_member_name (b, "hole_bytes");
  json_builder_add_int_value (b, (gint64) e->totals.hole_bytes);
  json_builder_set_member_name (b, "digest");
  json_builder_add_string_value (b, hex);
  json_builder_end_object (b);

  if (!enc_json_frame (e, STRM_FRAME_STREAM_END, b, error))
    return FALSE;
  if (!enc_flush (e, error)) {
    e->state = ENC_FAILED;
    return FALSE;
  }
  e->state = ENC_FINISHED;
  return TRUE;
}

void
strm_meta_begin (JsonBuilder *b, const char *mode)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *created = g_date_time_format (now, "%Y-%m-%dT%H:%M:%SZ");

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_string_value (b, "ovagent-stream");
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, STRM_VERSION);
  json_builder_set_member_name (b, "tool");
  json_builder_add_string_value (b, PACKAGE_NAME " " PACKAGE_VERSION);
  json_builder_set_member_name (b, "host");
  json_builder_add_string_value (b, g_get_host_name ());
  json_builder_set_member_name (b, "created");
  json_builder_add_string_value (b, created);
  json_builder_set_member_name (b, "mode");
  json_builder_add_string_value (b, mode);
}
