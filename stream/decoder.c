/* ovagent: the stream decoder: reads untrusted bytes from a hypervisor and
 * returns only frames whose hashes, bounds, order and coverage check out. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>
#include <xxhash.h>
#include <zstd.h>

#include "error.h"
#include "util.h"
#include "stream/record.h"
#include "stream/stream.h"

/* Reads from the peer go through this buffer; payloads larger than it are
 * read straight into the payload buffer. It starts small, so that a short
 * stream (or garbage) costs little, and grows once a stream proves long. */
#define DEC_RBUF_SIZE (1024u * 1024)
#define DEC_RBUF_FIRST_SIZE (64u * 1024)

/* Built for fuzzing only (fuzz/run-fuzzers.sh): hash mismatches are ignored
 * so that mutated inputs reach the checks behind them. Never in a release. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define HASH_MISMATCH(a, b) (FALSE && (a) != (b))
#else
#define HASH_MISMATCH(a, b) ((a) != (b))
#endif

typedef enum {
  DEC_START,      /* stream header and META */
  DEC_BETWEEN,    /* BEGIN of the next volume or STREAM_END */
  DEC_VOLUME,     /* DATA, ZERO, HOLE, then END */
  DEC_DONE,       /* STREAM_END checked; only EOF may follow */
  DEC_EOF,        /* complete, and EOF seen */
  DEC_FAILED,
} dec_state;

struct strm_decoder {
  strm_read_fn read;
  void *opaque;
  int fd;                   /* strm_decoder_new_fd */

  guint8 *rbuf;
  size_t rbuf_cap;
  size_t rpos, rlen;
  gboolean eof;
  guint64 consumed;         /* stream bytes consumed */

  dec_state state;
  guint64 frame_no;         /* frames accepted so far */
  guint64 frame_start;      /* stream byte where the current frame starts */
  guint32 frame_type;

  GArray *volumes;          /* strm_meta_volume, from META */
  guint volume;             /* index of the current or next volume */
  guint64 pos;
  guint64 vol_data, vol_zero, vol_hole;

  XXH3_state_t *stream_digest;
  XXH3_state_t *volume_digest;
  ZSTD_DCtx *dctx;

  guint8 *raw;              /* payload as read, +1 for a NUL */
  size_t raw_cap;
  guint8 *out;              /* decompressed DATA */
  size_t out_cap;

  strm_totals totals;
};

static const char *
frame_name (guint32 type)
{
  static const char *const names[] = {
    [STRM_FRAME_META] = "META",
    [STRM_FRAME_BEGIN] = "BEGIN",
    [STRM_FRAME_DATA] = "DATA",
    [STRM_FRAME_ZERO] = "ZERO",
    [STRM_FRAME_HOLE] = "HOLE",
    [STRM_FRAME_END] = "END",
    [STRM_FRAME_STREAM_END] = "STREAM_END",
  };

  if (type < G_N_ELEMENTS (names) && names[type] != NULL)
    return names[type];
  return "unknown";
}

static guint32
get_u32 (const guint8 *p)
{
  guint32 v;

  memcpy (&v, p, sizeof v);
  return GUINT32_FROM_LE (v);
}

static guint64
get_u64 (const guint8 *p)
{
  guint64 v;

  memcpy (&v, p, sizeof v);
  return GUINT64_FROM_LE (v);
}

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

/* ---- reading ---- */

static gssize
fd_read (void *opaque, void *buf, size_t len, GError **error)
{
  strm_decoder *d = opaque;

  for (;;) {
    ssize_t r = read (d->fd, buf, len);

    if (r >= 0)
      return r;
    /* An inherited non-blocking descriptor: wait for data. */
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      struct pollfd pfd = { .fd = d->fd, .events = POLLIN };

      if (poll (&pfd, 1, -1) >= 0 || errno == EINTR)
        continue;
    }
    if (errno != EINTR) {
      int saved = errno;

      g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                   "reading the stream: %s", g_strerror (saved));
      return -1;
    }
  }
}

strm_decoder *
strm_decoder_new (strm_read_fn read_fn, void *opaque)
{
  strm_decoder *d = g_new0 (strm_decoder, 1);

  d->read = read_fn;
  d->opaque = opaque;
  d->fd = -1;
  d->rbuf = g_malloc (DEC_RBUF_FIRST_SIZE);
  d->rbuf_cap = DEC_RBUF_FIRST_SIZE;
  d->stream_digest = XXH3_createState ();
  d->volume_digest = XXH3_createState ();
  if (d->stream_digest == NULL || d->volume_digest == NULL)
    g_error ("stream decoder: out of memory");
  XXH3_128bits_reset (d->stream_digest);
  d->state = DEC_START;
  return d;
}

strm_decoder *
strm_decoder_new_fd (int fd)
{
  strm_decoder *d = strm_decoder_new (fd_read, NULL);

  d->opaque = d;
  d->fd = fd;
  return d;
}

void
strm_decoder_free (strm_decoder *d)
{
  if (d == NULL)
    return;
  g_free (d->rbuf);
  XXH3_freeState (d->stream_digest);
  XXH3_freeState (d->volume_digest);
  ZSTD_freeDCtx (d->dctx);
  if (d->volumes != NULL)
    g_array_unref (d->volumes);
  g_free (d->raw);
  g_free (d->out);
  g_free (d);
}

gboolean
strm_decoder_complete (const strm_decoder *d)
{
  return d->state == DEC_DONE || d->state == DEC_EOF;
}

const strm_totals *
strm_decoder_totals (const strm_decoder *d)
{
  return &d->totals;
}

/* One call of the read function, checked. */
static gssize
dec_fill (strm_decoder *d, void *buf, size_t len, GError **error)
{
  gssize r = d->read (d->opaque, buf, len, error);

  if (r < 0 || (size_t) r > len) {
    if (error != NULL && *error == NULL)
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "stream decoder: read function returned %" G_GSSIZE_FORMAT, r);
    return -1;
  }
  if (r == 0)
    d->eof = TRUE;
  return r;
}

/* Up to len bytes into dst: fewer only at EOF; -1 on a read error. */
static gssize
dec_read (strm_decoder *d, guint8 *dst, size_t len, GError **error)
{
  size_t got = 0;

  while (got < len) {
    gssize r;

    if (d->rpos < d->rlen) {
      size_t n = MIN (len - got, d->rlen - d->rpos);

      memcpy (dst + got, d->rbuf + d->rpos, n);
      d->rpos += n;
      got += n;
      continue;
    }
    if (d->eof)
      break;
    if (len - got >= d->rbuf_cap) {
      r = dec_fill (d, dst + got, len - got, error);
      if (r < 0)
        return -1;
      got += r;
      continue;
    }
    if (d->rbuf_cap < DEC_RBUF_SIZE && d->consumed + got >= DEC_RBUF_SIZE) {
      g_free (d->rbuf);
      d->rbuf = g_malloc (DEC_RBUF_SIZE);
      d->rbuf_cap = DEC_RBUF_SIZE;
    }
    r = dec_fill (d, d->rbuf, d->rbuf_cap, error);
    if (r < 0)
      return -1;
    d->rpos = 0;
    d->rlen = r;
  }
  d->consumed += got;
  return got;
}

static gboolean G_GNUC_PRINTF (3, 4)
dec_fail (strm_decoder *d, GError **error, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
               "invalid stream: frame %" G_GUINT64_FORMAT " (%s) at byte %"
               G_GUINT64_FORMAT ": %s", d->frame_no, frame_name (d->frame_type),
               d->frame_start, msg);
  d->state = DEC_FAILED;
  return FALSE;
}

static void
grow (guint8 **buf, size_t *cap, size_t need, size_t max)
{
  size_t n;

  if (*cap >= need)
    return;
  n = MAX (need, MIN (*cap * 2, max));
  *buf = g_realloc (*buf, n);
  *cap = n;
}

/* Read the payload into d->raw, growing it as bytes arrive, so that a lying
 * payload_len costs at most a few MiB more than the bytes really sent. */
static gboolean
dec_read_payload (strm_decoder *d, guint32 len, GError **error)
{
  const size_t max = MAX (STRM_MAX_DATA_PAYLOAD, STRM_MAX_JSON_PAYLOAD) + 1;
  g_autofree char *what = NULL;
  size_t got = 0;

  grow (&d->raw, &d->raw_cap, MIN (len, DEC_RBUF_SIZE) + 1, max);
  while (got < len) {
    size_t chunk = MIN ((size_t) len - got, 4 * DEC_RBUF_SIZE);
    gssize r;

    grow (&d->raw, &d->raw_cap, got + chunk + 1, max);
    r = dec_read (d, d->raw + got, chunk, error);
    if (r < 0) {
      d->state = DEC_FAILED;
      return FALSE;
    }
    got += r;
    if ((size_t) r < chunk) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                   "stream ends before the end of frame %" G_GUINT64_FORMAT
                   " (%s) at byte %" G_GUINT64_FORMAT ": %zu of %u payload bytes",
                   d->frame_no, frame_name (d->frame_type), d->frame_start,
                   got, len);
      d->state = DEC_FAILED;
      return FALSE;
    }
  }
  d->raw[len] = '\0';
  return TRUE;
}

/* ---- frames ---- */

static gboolean
dec_stream_header (strm_decoder *d, GError **error)
{
  guint8 hdr[STRM_HEADER_SIZE];
  guint32 version, flags;
  gssize r = dec_read (d, hdr, sizeof hdr, error);

  if (r < 0) {
    d->state = DEC_FAILED;
    return FALSE;
  }
  /* A few bytes that do not start like a stream are not a cut stream. */
  if (memcmp (hdr, STRM_MAGIC, MIN ((size_t) r, 8)) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "invalid stream: it does not start with \"%s\"", STRM_MAGIC);
    d->state = DEC_FAILED;
    return FALSE;
  }
  if ((size_t) r < sizeof hdr) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "stream ends before the end of its header (at byte %" G_GUINT64_FORMAT ")",
                 d->consumed);
    d->state = DEC_FAILED;
    return FALSE;
  }
  version = get_u32 (hdr + 8);
  flags = get_u32 (hdr + 12);
  if (version != STRM_VERSION || flags != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "stream format version %u with flags 0x%x is not supported "
                 "(this reader reads version %u without flags)",
                 version, flags, STRM_VERSION);
    d->state = DEC_FAILED;
    return FALSE;
  }
  XXH3_128bits_update (d->stream_digest, hdr, sizeof hdr);
  return TRUE;
}

/* Which frame types may come next, and the range a volume frame must have. */
static gboolean
dec_check_order (strm_decoder *d, guint32 type, guint64 offset, guint64 length,
                 GError **error)
{
  guint count = d->volumes != NULL ? d->volumes->len : 0;

  switch (d->state) {
  case DEC_START:
    if (type != STRM_FRAME_META)
      return dec_fail (d, error, "the first frame must be META");
    return TRUE;

  case DEC_BETWEEN:
    if (type == STRM_FRAME_BEGIN && d->volume < count)
      return TRUE;
    if (type == STRM_FRAME_STREAM_END && d->volume == count)
      return TRUE;
    if (d->volume < count)
      return dec_fail (d, error, "expected BEGIN of volume %u of %u",
                       d->volume + 1, count);
    return dec_fail (d, error, "expected STREAM_END after the %u volumes of META",
                     count);

  case DEC_VOLUME: {
    const strm_meta_volume *v = &g_array_index (d->volumes, strm_meta_volume, d->volume);

    if (type == STRM_FRAME_END) {
      if (d->pos != v->size)
        return dec_fail (d, error, "END of volume %s after %" G_GUINT64_FORMAT
                         " of its %" G_GUINT64_FORMAT " bytes",
                         v->uuid, d->pos, v->size);
      return TRUE;
    }
    if (type != STRM_FRAME_DATA && type != STRM_FRAME_ZERO &&
        type != STRM_FRAME_HOLE)
      return dec_fail (d, error, "expected DATA, ZERO, HOLE or END in volume %s",
                       v->uuid);
    if (offset != d->pos)
      return dec_fail (d, error, "offset %" G_GUINT64_FORMAT " in volume %s, "
                       "which continues at %" G_GUINT64_FORMAT,
                       offset, v->uuid, d->pos);
    if (length > v->size - d->pos)
      return dec_fail (d, error, "[%" G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT
                       ") goes past the end of volume %s (%" G_GUINT64_FORMAT " bytes)",
                       offset, length, v->uuid, v->size);
    return TRUE;
  }

  default:
    g_assert_not_reached ();
  }
}

/* Field checks that need no payload, made before reading it. */
static gboolean
dec_check_header (strm_decoder *d, guint32 type, guint32 flags, guint64 offset,
                  guint64 length, guint32 payload_len, guint64 payload_hash,
                  guint32 reserved, GError **error)
{
  if (type < STRM_FRAME_META || type > STRM_FRAME_STREAM_END)
    return dec_fail (d, error, "unknown frame type %u", type);
  if ((flags & ~(guint32) STRM_FLAG_ZSTD) != 0 ||
      (flags != 0 && type != STRM_FRAME_DATA))
    return dec_fail (d, error, "unknown flags 0x%x", flags);
  if (reserved != 0)
    return dec_fail (d, error, "reserved field is 0x%x, not 0", reserved);

  switch (type) {
  case STRM_FRAME_DATA:
    if (length < 1 || length > STRM_MAX_DATA_PAYLOAD)
      return dec_fail (d, error, "length %" G_GUINT64_FORMAT " (1 to %u allowed)",
                       length, STRM_MAX_DATA_PAYLOAD);
    if (flags & STRM_FLAG_ZSTD) {
      if (payload_len < 1 || payload_len > STRM_MAX_DATA_PAYLOAD)
        return dec_fail (d, error, "compressed payload of %u bytes (1 to %u allowed)",
                         payload_len, STRM_MAX_DATA_PAYLOAD);
    }
    else if (payload_len != length)
      return dec_fail (d, error, "payload of %u bytes for a length of %"
                       G_GUINT64_FORMAT, payload_len, length);
    break;

  case STRM_FRAME_ZERO:
  case STRM_FRAME_HOLE:
    if (length < 1)
      return dec_fail (d, error, "length 0");
    if (payload_len != 0 || payload_hash != 0)
      return dec_fail (d, error, "payload of %u bytes with hash 0x%016"
                       G_GINT64_MODIFIER "x (none allowed)", payload_len, payload_hash);
    break;

  default:
    if (offset != 0)
      return dec_fail (d, error, "offset %" G_GUINT64_FORMAT " (0 required)", offset);
    if (payload_len < 1 || payload_len > STRM_MAX_JSON_PAYLOAD ||
        length != payload_len)
      return dec_fail (d, error, "record of %u bytes with length %" G_GUINT64_FORMAT
                       " (1 to %u bytes, length equal)",
                       payload_len, length, STRM_MAX_JSON_PAYLOAD);
    break;
  }
  return TRUE;
}

/* DATA payload: decompressed if needed, into frame->data. */
static gboolean
dec_data_payload (strm_decoder *d, guint32 flags, guint64 length,
                  guint32 payload_len, const guint8 **data, GError **error)
{
  unsigned long long content;
  size_t r;

  if (!(flags & STRM_FLAG_ZSTD)) {
    *data = d->raw;
    return TRUE;
  }
  content = ZSTD_getFrameContentSize (d->raw, payload_len);
  if (content != length)
    return dec_fail (d, error, "compressed payload does not declare %"
                     G_GUINT64_FORMAT " bytes", length);
  r = ZSTD_findFrameCompressedSize (d->raw, payload_len);
  if (ZSTD_isError (r) || r != payload_len)
    return dec_fail (d, error, "compressed payload is not one zstd frame");
  grow (&d->out, &d->out_cap, length, STRM_MAX_DATA_PAYLOAD);
  if (d->dctx == NULL) {
    d->dctx = ZSTD_createDCtx ();
    if (d->dctx == NULL)
      g_error ("ZSTD_createDCtx: out of memory");
  }
  r = ZSTD_decompressDCtx (d->dctx, d->out, length, d->raw, payload_len);
  if (ZSTD_isError (r))
    return dec_fail (d, error, "cannot decompress the payload: %s",
                     ZSTD_getErrorName (r));
  if (r != length)
    return dec_fail (d, error, "payload decompresses to %zu bytes, not %"
                     G_GUINT64_FORMAT, r, length);
  *data = d->out;
  return TRUE;
}

static gboolean
dec_check_counts (strm_decoder *d, JsonObject *o, const char *what,
                  guint64 data, guint64 zero, guint64 hole,
                  XXH3_state_t *digest_state, GError **error)
{
  g_autoptr(GError) err = NULL;
  const char *digest;
  guint64 got_data, got_zero, got_hole;
  char hex[33];

  if (!strm_json_need_uint (o, "data_bytes", what, &got_data, &err) ||
      !strm_json_need_uint (o, "zero_bytes", what, &got_zero, &err) ||
      !strm_json_need_uint (o, "hole_bytes", what, &got_hole, &err) ||
      !strm_json_need_string (o, "digest", what, &digest, &err))
    return dec_fail (d, error, "%s", err->message);
  if (got_data != data || got_zero != zero || got_hole != hole)
    return dec_fail (d, error, "%s declares %" G_GUINT64_FORMAT " data, %"
                     G_GUINT64_FORMAT " zero, %" G_GUINT64_FORMAT
                     " hole bytes, but the stream carried %" G_GUINT64_FORMAT
                     ", %" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT,
                     what, got_data, got_zero, got_hole, data, zero, hole);
  digest_hex (digest_state, hex);
  if (HASH_MISMATCH (strcmp (digest, hex), 0)) {
    g_autofree char *quoted = strm_quote_untrusted (digest, 40);

    return dec_fail (d, error, "%s digest %s does not match the stream (%s)",
                     what, quoted, hex);
  }
  return TRUE;
}

/* The JSON of BEGIN, END and STREAM_END against what was seen. */
static gboolean
dec_check_record (strm_decoder *d, guint32 type, const char *json, gsize len,
                  GError **error)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(JsonNode) root = NULL;
  const strm_meta_volume *v = NULL;
  JsonObject *o;

  if (type == STRM_FRAME_META) {
    d->volumes = strm_meta_volumes_parse (json, len, &err);
    if (d->volumes == NULL)
      return dec_fail (d, error, "%s", err->message);
    return TRUE;
  }

  root = strm_json_parse_object (json, len, frame_name (type), &err);
  if (root == NULL)
    return dec_fail (d, error, "%s", err->message);
  o = json_node_get_object (root);
  if (type != STRM_FRAME_STREAM_END)
    v = &g_array_index (d->volumes, strm_meta_volume, d->volume);

  switch (type) {
  case STRM_FRAME_BEGIN: {
    const char *uuid;
    guint64 index, size;

    if (!strm_json_need_string (o, "uuid", "BEGIN", &uuid, &err) ||
        !strm_json_need_uint (o, "index", "BEGIN", &index, &err) ||
        !strm_json_need_uint (o, "size", "BEGIN", &size, &err))
      return dec_fail (d, error, "%s", err->message);
    if (strcmp (uuid, v->uuid) != 0 || index != d->volume || size != v->size) {
      g_autofree char *quoted = strm_quote_untrusted (uuid, 40);

      return dec_fail (d, error, "BEGIN of volume %s (index %" G_GUINT64_FORMAT
                       ", %" G_GUINT64_FORMAT " bytes), but META declares volume %u as %s (%"
                       G_GUINT64_FORMAT " bytes)",
                       quoted, index, size, d->volume, v->uuid, v->size);
    }
    return TRUE;
  }

  case STRM_FRAME_END: {
    const char *uuid;
    g_autofree char *what = g_strdup_printf ("END of volume %s", v->uuid);

    if (!strm_json_need_string (o, "uuid", "END", &uuid, &err))
      return dec_fail (d, error, "%s", err->message);
    if (strcmp (uuid, v->uuid) != 0) {
      g_autofree char *quoted = strm_quote_untrusted (uuid, 40);

      return dec_fail (d, error, "END of volume %s inside volume %s", quoted, v->uuid);
    }
    return dec_check_counts (d, o, what, d->vol_data, d->vol_zero, d->vol_hole,
                             d->volume_digest, error);
  }

  case STRM_FRAME_STREAM_END: {
    guint64 volumes, frames, bytes;

    if (!strm_json_need_uint (o, "volumes", "STREAM_END", &volumes, &err) ||
        !strm_json_need_uint (o, "frames", "STREAM_END", &frames, &err) ||
        !strm_json_need_uint (o, "bytes", "STREAM_END", &bytes, &err))
      return dec_fail (d, error, "%s", err->message);
    if (volumes != d->volumes->len || frames != d->frame_no || bytes != d->frame_start)
      return dec_fail (d, error, "STREAM_END declares %" G_GUINT64_FORMAT " volumes, %"
                       G_GUINT64_FORMAT " frames, %" G_GUINT64_FORMAT
                       " bytes, but the stream carried %u, %" G_GUINT64_FORMAT
                       ", %" G_GUINT64_FORMAT, volumes, frames, bytes,
                       d->volumes->len, d->frame_no, d->frame_start);
    return dec_check_counts (d, o, "STREAM_END", d->totals.data_bytes,
                             d->totals.zero_bytes, d->totals.hole_bytes,
                             d->stream_digest, error);
  }

  default:
    g_assert_not_reached ();
  }
}

/* After STREAM_END only EOF may come. */
static gboolean
dec_check_eof (strm_decoder *d, GError **error)
{
  guint8 byte;
  gssize r = dec_read (d, &byte, 1, error);

  if (r < 0) {
    d->state = DEC_FAILED;
    return FALSE;
  }
  if (r > 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "invalid stream: data follows its end (STREAM_END) at byte %"
                 G_GUINT64_FORMAT, d->consumed - 1);
    d->state = DEC_FAILED;
    return FALSE;
  }
  d->state = DEC_EOF;
  return FALSE;
}

gboolean
strm_decoder_next (strm_decoder *d, strm_frame *frame, GError **error)
{
  guint8 hdr[STRM_FRAME_HEADER_SIZE];
  guint32 type, flags, payload_len, reserved;
  guint64 offset, length, payload_hash, hash;
  const guint8 *data = NULL;
  gssize r;

  memset (frame, 0, sizeof *frame);
  switch (d->state) {
  case DEC_FAILED:
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "stream decoder: called again after an error");
    return FALSE;
  case DEC_EOF:
    return FALSE;
  case DEC_DONE:
    return dec_check_eof (d, error);
  case DEC_START:
    if (d->consumed == 0 && !dec_stream_header (d, error))
      return FALSE;
    break;
  default:
    break;
  }

  d->frame_start = d->consumed;
  d->frame_type = 0;
  r = dec_read (d, hdr, sizeof hdr, error);
  if (r < 0) {
    d->state = DEC_FAILED;
    return FALSE;
  }
  if ((size_t) r < sizeof hdr) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 r == 0 ? "stream ends before %s (at byte %" G_GUINT64_FORMAT ")"
                 : "stream ends before the end of %s (at byte %" G_GUINT64_FORMAT ")",
                 r == 0 ? (d->state == DEC_START ? "its metadata (META frame)"
                           : "its end frame (STREAM_END)")
                 : "a frame header", d->consumed);
    d->state = DEC_FAILED;
    return FALSE;
  }

  /* Nothing in the header is looked at before its hash matches. */
  hash = get_u64 (hdr + 40);
  if (HASH_MISMATCH (XXH3_64bits (hdr, 40), hash))
    return dec_fail (d, error, "header checksum mismatch");
  type = get_u32 (hdr + 0);
  flags = get_u32 (hdr + 4);
  offset = get_u64 (hdr + 8);
  length = get_u64 (hdr + 16);
  payload_len = get_u32 (hdr + 24);
  reserved = get_u32 (hdr + 28);
  payload_hash = get_u64 (hdr + 32);
  d->frame_type = type;

  if (!dec_check_header (d, type, flags, offset, length, payload_len,
                         payload_hash, reserved, error) ||
      !dec_check_order (d, type, offset, length, error))
    return FALSE;

  if (payload_len > 0) {
    if (!dec_read_payload (d, payload_len, error))
      return FALSE;
    if (type == STRM_FRAME_DATA) {
      if (!dec_data_payload (d, flags, length, payload_len, &data, error))
        return FALSE;
    }
    else
      data = d->raw;
    if (HASH_MISMATCH (XXH3_64bits (data, length), payload_hash))
      return dec_fail (d, error, "payload checksum mismatch");
  }

  if (type != STRM_FRAME_STREAM_END) {
    XXH3_128bits_update (d->stream_digest, hdr, sizeof hdr);
    if (payload_len > 0)
      XXH3_128bits_update (d->stream_digest, d->raw, payload_len);
  }
  if (type == STRM_FRAME_BEGIN)
    XXH3_128bits_reset (d->volume_digest);
  if (type == STRM_FRAME_BEGIN || type == STRM_FRAME_DATA ||
      type == STRM_FRAME_ZERO || type == STRM_FRAME_HOLE) {
    XXH3_128bits_update (d->volume_digest, hdr, sizeof hdr);
    if (payload_len > 0)
      XXH3_128bits_update (d->volume_digest, d->raw, payload_len);
  }

  if (type != STRM_FRAME_DATA && type != STRM_FRAME_ZERO &&
      type != STRM_FRAME_HOLE &&
      !dec_check_record (d, type, (const char *) d->raw, payload_len, error))
    return FALSE;

  frame->type = type;
  frame->offset = offset;
  frame->length = length;
  frame->data = data;

  switch (type) {
  case STRM_FRAME_META:
    d->state = DEC_BETWEEN;
    break;
  case STRM_FRAME_BEGIN:
    frame->uuid = g_array_index (d->volumes, strm_meta_volume, d->volume).uuid;
    frame->size = g_array_index (d->volumes, strm_meta_volume, d->volume).size;
    d->pos = 0;
    d->vol_data = d->vol_zero = d->vol_hole = 0;
    d->state = DEC_VOLUME;
    break;
  case STRM_FRAME_DATA:
    d->pos += length;
    d->vol_data += length;
    d->totals.data_bytes += length;
    d->totals.payload_bytes += payload_len;
    break;
  case STRM_FRAME_ZERO:
    d->pos += length;
    d->vol_zero += length;
    d->totals.zero_bytes += length;
    break;
  case STRM_FRAME_HOLE:
    d->pos += length;
    d->vol_hole += length;
    d->totals.hole_bytes += length;
    break;
  case STRM_FRAME_END:
    frame->uuid = g_array_index (d->volumes, strm_meta_volume, d->volume).uuid;
    d->volume++;
    d->state = DEC_BETWEEN;
    break;
  case STRM_FRAME_STREAM_END:
    d->state = DEC_DONE;
    break;
  default:
    g_assert_not_reached ();
  }
  d->frame_no++;
  d->totals.frames = d->frame_no;
  d->totals.bytes_sent = d->consumed;
  return TRUE;
}
