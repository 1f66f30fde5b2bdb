/* ovagent tests: the stream wire format: encoder and decoder round trips,
 * streams cut and flipped, the fd sink, and the decode driver (the lying
 * streams are in test-stream-lies.c). */
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
#include "stream-fixture.h"

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
  g_test_add_func ("/stream/decoder/truncated", test_truncated);
  g_test_add_func ("/stream/decoder/flipped", test_flipped);
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
