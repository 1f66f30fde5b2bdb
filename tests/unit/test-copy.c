/* ovagent tests: the copy engine (stream/copy.c) with sources read by worker
 * threads: order under jitter, zeros and holes, options, cancel, failures. */
#include <config.h>

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "error.h"
#include "storage/source-file.h"
#include "stream/copy.h"
#include "stream-check.h"

#define MiB (1024u * 1024)
#define KiB 1024u
#define UUID "3f1d2c4b-5a6e-4f70-8192-a3b4c5d6e7f8"

/* ---- a source in memory: all DATA, reads that take a random while (so
 * that workers finish out of order) and may fail from an offset on ---- */

typedef struct {
  ova_source base;
  const guint8 *data;
  guint64 fail_at;        /* reads reaching this fail (G_MAXUINT64: never) */
  gboolean bad_extent;    /* answer extents of length 0 */
} mem_source;

static gboolean
mem_extent (ova_source *s, guint64 offset, guint64 max_len, ova_extent *out,
            GError **error G_GNUC_UNUSED)
{
  mem_source *m = (mem_source *) s;

  *out = (ova_extent) { offset, m->bad_extent ? 0 : MIN (max_len, s->size - offset),
                        OVA_EXTENT_DATA };
  return TRUE;
}

static gboolean
mem_pread (ova_source *s, void *buf, size_t len, guint64 offset, GError **error)
{
  mem_source *m = (mem_source *) s;

  g_assert_cmpuint (offset + len, <=, s->size);
  /* Up to 2 ms, different per offset; no shared random state. */
  g_usleep (g_int64_hash (&offset) % 2000);
  if (offset + len > m->fail_at) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s ended at offset %" G_GUINT64_FORMAT, s->name, m->fail_at);
    return FALSE;
  }
  memcpy (buf, m->data + offset, len);
  return TRUE;
}

static void
mem_free (ova_source *s)
{
  g_free (s->name);
  g_free (s);
}

static const struct ova_source_ops mem_ops = {
  .name = "memory",
  .extent = mem_extent,
  .pread = mem_pread,
  .free = mem_free,
};

static ova_source *
mem_source_new (const guint8 *data, guint64 size)
{
  mem_source *m = g_new0 (mem_source, 1);

  m->base.ops = &mem_ops;
  m->base.size = size;
  m->base.name = g_strdup ("memory");
  m->data = data;
  m->fail_at = G_MAXUINT64;
  return &m->base;
}

/* Bytes that differ in every 4 KiB block and are never zero. */
static void
fill_pattern (guint8 *buf, size_t len, guint64 offset, guint8 seed)
{
  for (size_t i = 0; i < len; i++)
    buf[i] = (guint8) (seed + (offset + i) / 4096 * 7 + i % 251) | 1;
}

/* ---- copying into a stream file, checked as it goes ---- */

typedef struct {
  char *dir;
  char *stream;
} fixture;

static void
setup (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) error = NULL;

  f->dir = g_dir_make_tmp ("test-copy-XXXXXX", &error);
  g_assert_no_error (error);
  f->stream = g_build_filename (f->dir, "stream", NULL);
}

static void
teardown (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GDir) d = g_dir_open (f->dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL) {
    g_autofree char *p = g_build_filename (f->dir, name, NULL);

    g_unlink (p);
  }
  g_rmdir (f->dir);
  g_free (f->stream);
  g_free (f->dir);
}

/* src into f->stream with BEGIN, the copy, END and STREAM_END. */
static gboolean
copy_to_file (fixture *f, ova_source *src, const strm_copy_opts *opts,
              progress_state *ps, volatile sig_atomic_t *cancel,
              guint64 *bytes_read, GError **error)
{
  g_autoptr(strm_sink) sink = NULL;
  g_autoptr(strm_encoder) e = NULL;
  g_autofree char *meta = NULL;
  int fd = open (f->stream, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  gboolean ok;

  g_assert_cmpint (fd, >=, 0);
  sink = strm_sink_fd_new (fd, f->stream);
  e = strm_encoder_new (sink, 0);
  meta = g_strdup_printf ("{\"format\":\"ovagent-stream\",\"version\":1,"
                          "\"mode\":\"test\",\"volumes\":[{\"uuid\":\"" UUID
                          "\",\"size\":%" G_GUINT64_FORMAT "}]}", src->size);
  g_assert_true (strm_encoder_meta (e, meta, NULL));
  ok = strm_copy_source (e, src, UUID, opts, on_progress, ps, cancel, bytes_read,
                         error) &&
       strm_encoder_finish (e, error) && sink->ops->close (sink, error);
  close (fd);
  return ok;
}

/* The frames of the volume follow each other without gap or overlap. */
static void
assert_in_order (const decoded *d, guint64 size)
{
  guint64 end = 0;

  for (guint i = 0; i < d->frames->len; i++) {
    const strm_frame *fr = &g_array_index (d->frames, strm_frame, i);

    if (fr->type != STRM_FRAME_DATA && fr->type != STRM_FRAME_ZERO &&
        fr->type != STRM_FRAME_HOLE)
      continue;
    g_assert_cmpuint (fr->offset, ==, end);
    g_assert_cmpuint (fr->length, >, 0);
    end += fr->length;
  }
  g_assert_cmpuint (end, ==, size);
}

/* ---- a sparse file: data, zeros written as data, holes, an odd tail ---- */

#define SPARSE_SIZE ((guint64) 9 * MiB + 1536)
#define SPARSE_DATA ((guint64) 1 * MiB + (1 * MiB - 128 * KiB) + 64 * KiB + 1536)

static const struct {
  guint64 offset, length;
  int seed;               /* -1: zeros written */
} sparse_writes[] = {
  { 0, 1 * MiB, 1 },
  { 1 * MiB, 128 * KiB, -1 },
  { 1 * MiB + 128 * KiB, 1 * MiB - 128 * KiB, 2 },
  { 6 * MiB, 64 * KiB, 3 },
  { 9 * MiB, 1536, 4 },
};

/* The file, its expected content in *want, and whether holes show. */
static char *
make_sparse (fixture *f, guint8 **want, gboolean *holes)
{
  char *path = g_build_filename (f->dir, "volume", NULL);
  int fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

  g_assert_cmpint (fd, >=, 0);
  *want = g_malloc0 (SPARSE_SIZE);
  for (guint i = 0; i < G_N_ELEMENTS (sparse_writes); i++) {
    guint8 *p = *want + sparse_writes[i].offset;

    if (sparse_writes[i].seed >= 0)
      fill_pattern (p, sparse_writes[i].length, sparse_writes[i].offset,
                    sparse_writes[i].seed);
    g_assert_cmpint (pwrite (fd, p, sparse_writes[i].length, sparse_writes[i].offset),
                     ==, (ssize_t) sparse_writes[i].length);
  }
  g_assert_cmpint (ftruncate (fd, SPARSE_SIZE), ==, 0);
  g_assert_cmpint (fsync (fd), ==, 0);
  *holes = lseek (fd, 2 * MiB, SEEK_DATA) == 6 * MiB;
  close (fd);
  return path;
}

static void
check_sparse (fixture *f, const strm_copy_opts *opts)
{
  g_autofree guint8 *want = NULL;
  g_autofree char *path = NULL;
  g_autoptr(ova_source) src = NULL;
  g_autoptr(GError) error = NULL;
  progress_state ps = { 0 };
  guint64 bytes_read = 0;
  gboolean holes;
  decoded d;

  path = make_sparse (f, &want, &holes);
  src = stor_source_open_path (path, 0, &error);
  g_assert_no_error (error);
  g_assert_true (copy_to_file (f, src, opts, &ps, NULL, &bytes_read, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (ps.last, ==, SPARSE_SIZE);

  decode_file (f->stream, &d);
  assert_same (&d, want, SPARSE_SIZE);
  assert_in_order (&d, SPARSE_SIZE);
  /* The zeros written went as ZERO, the holes as HOLE where they show. */
  g_assert_cmpuint (d.totals.data_bytes, ==, SPARSE_DATA);
  if (holes) {
    g_assert_cmpuint (d.totals.zero_bytes, ==, 128 * KiB);
    g_assert_cmpuint (d.totals.hole_bytes, ==, SPARSE_SIZE - SPARSE_DATA - 128 * KiB);
    /* Holes are not read; everything else is. */
    g_assert_cmpuint (bytes_read, ==, SPARSE_SIZE - d.totals.hole_bytes);
  }
  else {
    g_assert_cmpuint (d.totals.zero_bytes + d.totals.hole_bytes, ==,
                      SPARSE_SIZE - SPARSE_DATA);
    g_assert_cmpuint (bytes_read, >=, SPARSE_DATA);
  }
  decoded_clear (&d);
}

static void
test_sparse_default (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  check_sparse (f, NULL);
}

static void
test_sparse_small_requests (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  const strm_copy_opts opts = { .requests = 5, .request_size = 64 * KiB };

  check_sparse (f, &opts);
}

static void
test_sparse_one_request (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  /* Rounded down to 4 KiB: the zero blocks straddle reads. */
  const strm_copy_opts opts = { .requests = 1, .request_size = 4 * KiB + 100 };

  check_sparse (f, &opts);
}

/* ---- order under jitter, a source shorter than a read, failures ---- */

static void
test_order (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  const guint64 size = 8 * MiB + 512;
  g_autofree guint8 *buf = g_malloc (size);
  g_autoptr(ova_source) src = NULL;
  g_autoptr(GError) error = NULL;
  const strm_copy_opts opts = { .requests = 16, .request_size = 64 * KiB };
  progress_state ps = { 0 };
  guint64 bytes_read = 0;
  decoded d;

  fill_pattern (buf, size, 0, 9);
  src = mem_source_new (buf, size);
  g_assert_true (copy_to_file (f, src, &opts, &ps, NULL, &bytes_read, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (bytes_read, ==, size);
  g_assert_cmpuint (ps.last, ==, size);
  decode_file (f->stream, &d);
  assert_same (&d, buf, size);
  assert_in_order (&d, size);
  g_assert_cmpuint (d.totals.data_bytes, ==, size);
  decoded_clear (&d);
}

static void
test_tiny (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  guint8 buf[1000];
  g_autoptr(ova_source) src = NULL;
  g_autoptr(GError) error = NULL;
  progress_state ps = { 0 };
  decoded d;

  fill_pattern (buf, sizeof buf, 0, 5);
  src = mem_source_new (buf, sizeof buf);
  g_assert_true (copy_to_file (f, src, NULL, &ps, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (ps.calls, ==, 1);
  decode_file (f->stream, &d);
  assert_same (&d, buf, sizeof buf);
  decoded_clear (&d);
}

/* A read failing half-way: that error, and nothing sent past it. */
static void
test_read_fails (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  const guint64 size = 16 * MiB;
  g_autofree guint8 *buf = g_malloc (size);
  g_autoptr(ova_source) src = NULL;
  g_autoptr(GError) error = NULL;
  const strm_copy_opts opts = { .requests = 8, .request_size = 256 * KiB };
  progress_state ps = { 0 };

  fill_pattern (buf, size, 0, 7);
  src = mem_source_new (buf, size);
  ((mem_source *) src)->fail_at = 5 * MiB + 4096;
  g_assert_false (copy_to_file (f, src, &opts, &ps, NULL, NULL, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (error->message, "ended at offset"));
  g_assert_cmpuint (ps.last, <=, 5 * MiB);
}

static void
test_bad_extent (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autofree guint8 *buf = g_malloc0 (8192);
  g_autoptr(ova_source) src = mem_source_new (buf, 8192);
  g_autoptr(GError) error = NULL;
  progress_state ps = { 0 };

  ((mem_source *) src)->bad_extent = TRUE;
  g_assert_false (copy_to_file (f, src, NULL, &ps, NULL, NULL, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERNAL);
  g_assert_nonnull (strstr (error->message, "bad extent"));
  g_assert_cmpuint (ps.calls, ==, 0);
}

/* ---- cancel ---- */

static void
test_cancel (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  const guint64 size = 32 * MiB;
  g_autofree guint8 *buf = g_malloc (size);
  g_autoptr(ova_source) src = NULL;
  g_autoptr(GError) error = NULL;
  volatile sig_atomic_t cancel = 0;
  progress_state ps = { .cancel = &cancel, .cancel_at = 8 * MiB };
  const strm_copy_opts opts = { .requests = 4, .request_size = 256 * KiB };

  fill_pattern (buf, size, 0, 3);
  src = mem_source_new (buf, size);
  g_assert_false (copy_to_file (f, src, &opts, &ps, &cancel, NULL, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED);
  g_assert_nonnull (strstr (error->message, "interrupted by a signal while sending"));
  g_assert_cmpuint (ps.last, <, size);
  g_clear_error (&error);

  /* The source is still good for a whole copy. */
  cancel = 0;
  ps = (progress_state) { 0 };
  g_assert_true (copy_to_file (f, src, &opts, &ps, &cancel, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (ps.last, ==, size);
}

static void
test_cancel_before (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  const guint64 size = 65536;
  g_autofree guint8 *buf = g_malloc (size);
  g_autoptr(ova_source) src = NULL;
  g_autoptr(GError) error = NULL;
  volatile sig_atomic_t cancel = 1;
  progress_state ps = { 0 };

  fill_pattern (buf, size, 0, 2);
  src = mem_source_new (buf, size);
  g_assert_false (copy_to_file (f, src, NULL, &ps, &cancel, NULL, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED);
  g_assert_cmpuint (ps.calls, ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  signal (SIGPIPE, SIG_IGN);

#define ADD(name, fn) g_test_add ("/copy/" name, fixture, NULL, setup, fn, teardown)
  ADD ("file/default", test_sparse_default);
  ADD ("file/small-requests", test_sparse_small_requests);
  ADD ("file/one-request", test_sparse_one_request);
  ADD ("order", test_order);
  ADD ("tiny", test_tiny);
  ADD ("read-fails", test_read_fails);
  ADD ("bad-extent", test_bad_extent);
  ADD ("cancel", test_cancel);
  ADD ("cancel-before", test_cancel_before);
#undef ADD
  return g_test_run ();
}
