/* ovagent: tests of NBD exports copied into a stream (nbd/source-nbd.c through
 * stream/copy.c) against real qemu-nbd: full and dirty bitmap copies decoded
 * back, options, cancel, a dying server. */
#include <config.h>

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "error.h"
#include "util.h"
#include "fixture.h"
#include "stream-check.h"
#include "nbd/nbd.h"
#include "storage/qemu-img.h"
#include "stream/copy.h"
#include "stream/stream.h"

#define MiB (1024 * 1024)
#define UUID "7c6f58a8-4b1e-4d0e-9d0f-0a8f4e1f2c3d"

typedef struct {
  char *dir;
} fixture;

/* How an export is read: connections of the source, reads of the copy. */
typedef struct {
  guint requests;
  guint request_size;
  guint connections;
} read_opts;

static gboolean
have_qemu (void)
{
  g_autofree char *nbd = g_find_program_in_path ("qemu-nbd");
  g_autofree char *io = g_find_program_in_path ("qemu-io");

  if (nbd != NULL && io != NULL)
    return TRUE;
  if (g_strcmp0 (g_getenv ("CI"), "true") == 0)
    g_error ("qemu-nbd and qemu-io are required in CI");
  g_test_skip ("qemu-nbd or qemu-io not installed");
  return FALSE;
}

static void
setup (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) error = NULL;

  f->dir = g_dir_make_tmp ("test-nbd-reader-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
teardown (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  const char *const argv[] = { "rm", "-rf", "--", f->dir, NULL };

  g_assert_true (ova_run (argv, NULL, NULL, NULL));
  g_free (f->dir);
}

static void
run_ok (const char *const *argv)
{
  g_autoptr(GError) error = NULL;

  if (!fixture_run (argv, NULL, &error))
    g_error ("%s", error->message);
}

/* qemu-io on image with each command in cmds (NULL-terminated). */
static void
qemu_io (const char *image, const char *const *cmds)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();

  g_ptr_array_add (argv, (char *) "qemu-io");
  g_ptr_array_add (argv, (char *) "-f");
  g_ptr_array_add (argv, (char *) "qcow2");
  for (size_t i = 0; cmds[i] != NULL; i++) {
    g_ptr_array_add (argv, (char *) "-c");
    g_ptr_array_add (argv, (char *) cmds[i]);
  }
  g_ptr_array_add (argv, (char *) image);
  g_ptr_array_add (argv, NULL);
  run_ok ((const char *const *) argv->pdata);
}

static char *
make_qcow2 (fixture *f, const char *name, guint64 size)
{
  char *path = g_build_filename (f->dir, name, NULL);
  g_autofree char *sz = g_strdup_printf ("%" G_GUINT64_FORMAT, size);
  const char *const argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", path, sz, NULL };

  run_ok (argv);
  return path;
}

static GBytes *
convert_raw (fixture *f, const char *image)
{
  g_autofree char *raw = g_build_filename (f->dir, "converted.raw", NULL);
  const char *const argv[] = { "qemu-img", "convert", "-f", "qcow2", "-O", "raw",
                               image, raw, NULL };
  g_autoptr(GError) error = NULL;
  char *data = NULL;
  gsize len = 0;

  run_ok (argv);
  g_assert_true (g_file_get_contents (raw, &data, &len, &error));
  g_unlink (raw);
  return g_bytes_new_take (data, len);
}

static char *
meta_json (guint64 size)
{
  return g_strdup_printf ("{\"format\":\"ovagent-stream\",\"version\":1,"
                          "\"mode\":\"test\",\"volumes\":[{\"uuid\":\"" UUID
                          "\",\"size\":%" G_GUINT64_FORMAT "}]}", size);
}

/* The whole stream of one export in a file under f->dir; FALSE and error if
 * the reader failed. */
static gboolean
encode_export (fixture *f, const char *uri, const char *context,
               const read_opts *opts, progress_state *ps,
               volatile sig_atomic_t *cancel, char **path_out, GError **error)
{
  g_autofree char *path = g_build_filename (f->dir, "stream", NULL);
  g_autoptr(ova_source) r = NULL;
  g_autoptr(strm_sink) sink = NULL;
  g_autoptr(strm_encoder) e = NULL;
  g_autofree char *meta = NULL;
  int fd;
  strm_copy_opts co = { 0 };
  guint64 bytes_read = 0;
  gboolean ok;

  r = nbdr_source_open (uri, context, opts != NULL ? opts->connections : 0, error);
  if (r == NULL)
    return FALSE;
  g_assert_cmpuint (r->connections, >=, 1);
  g_assert_cmpuint (r->connections, <=, NBDR_MAX_CONNECTIONS);
  if (opts != NULL && opts->connections > 0)
    g_assert_cmpuint (r->connections, <=, opts->connections);
  if (opts != NULL)
    co = (strm_copy_opts) { .requests = opts->requests,
                            .request_size = opts->request_size };
  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g_assert_cmpint (fd, >=, 0);
  sink = strm_sink_fd_new (fd, path);
  e = strm_encoder_new (sink, 0);
  meta = meta_json (r->size);
  g_assert_true (strm_encoder_meta (e, meta, NULL));
  ok = strm_copy_source (e, r, UUID, &co, on_progress, ps, cancel, &bytes_read,
                         error) &&
       strm_encoder_finish (e, error) && sink->ops->close (sink, error);
  close (fd);
  if (ok) {
    /* Every DATA byte was read, and nothing outside the export. */
    g_assert_cmpuint (bytes_read, >=, strm_encoder_totals (e)->data_bytes);
    g_assert_cmpuint (bytes_read, <=, r->size);
    *path_out = g_steal_pointer (&path);
  }
  return ok;
}

static void
assert_same_bytes (const decoded *d, GBytes *expected)
{
  gsize len;
  const guint8 *want = g_bytes_get_data (expected, &len);

  assert_same (d, want, len);
}

/* A qcow2 with data, zero clusters, data that reads as zeros, unallocated
 * ranges, and a size that is no multiple of any request size. */
#define MIXED_SIZE ((guint64) 67 * MiB + 3 * 512)

static char *
make_mixed (fixture *f)
{
  char *img = make_qcow2 (f, "mixed.qcow2", MIXED_SIZE);
  g_autofree char *tail = g_strdup_printf ("write -P 0x33 %" G_GUINT64_FORMAT " 1536",
                                           MIXED_SIZE - 1536);
  const char *const cmds[] = {
    "write -P 0xaa 0 3M",
    "write -z 8M 2M",
    "write -P 0x11 12M 64k",
    "write -P 0 14M 1M",
    "write -P 0x22 20M 5M",
    "write -P 0x44 40M 4k",
    tail, NULL,
  };

  qemu_io (img, cmds);
  return img;
}

/* What must go as DATA in the mixed image: the non-zero writes. */
#define MIXED_DATA ((guint64) 3 * MiB + 64 * 1024 + 5 * MiB + 64 * 1024 + 64 * 1024)

/* qemu-nbd on one qcow2 image alone. */
static nbdr_server *
start_server (const char *img, const char *const *bitmaps, const char *dir,
              GError **error)
{
  g_autoptr(GPtrArray) layers = stor_layers_new ();

  stor_layers_add (layers, img, "qcow2");
  return nbdr_server_start (layers, 0, bitmaps, -1, dir, error);
}

static void
check_full (fixture *f, const read_opts *opts)
{
  g_autofree char *img = NULL;
  g_autoptr(nbdr_server) srv = NULL;
  g_autoptr(GBytes) want = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *stream = NULL;
  progress_state ps = { 0 };
  decoded d;

  if (!have_qemu ())
    return;
  img = make_mixed (f);
  want = convert_raw (f, img);
  srv = start_server (img, NULL, f->dir, &error);
  g_assert_no_error (error);
  g_assert_true (encode_export (f, nbdr_server_uri (srv), NULL, opts, &ps, NULL,
                                &stream, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (ps.last, ==, MIXED_SIZE);
  decode_file (stream, &d);
  assert_same_bytes (&d, want);
  /* Only allocated non-zero clusters were read and sent (the qcow2
   * cluster size is the unit of the small writes). */
  g_assert_cmpuint (d.totals.data_bytes, <=, MIXED_DATA);
  g_assert_cmpuint (d.totals.data_bytes, >=, 8 * MiB);
  g_assert_cmpuint (d.totals.hole_bytes, ==, 0);
  decoded_clear (&d);
}

static void
test_full_default (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  check_full (f, NULL);
}

static void
test_full_one_conn (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  const read_opts opts = { .requests = 3, .request_size = 1 * MiB, .connections = 1 };

  check_full (f, &opts);
}

static void
test_full_four_conns (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  const read_opts opts = { .requests = 32, .request_size = 192 * 1024,
                                .connections = 4 };

  check_full (f, &opts);
}

static void
test_full_odd_request (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  /* Not a multiple of 4 KiB: rounded down; one request at a time. */
  const read_opts opts = { .requests = 1, .request_size = 1 * MiB + 1000,
                                .connections = 2 };

  check_full (f, &opts);
}

/* Dirty ranges of a bitmap come as DATA with their content, the rest as HOLE. */
static void
test_dirty_bitmap (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autofree char *img = NULL;
  g_autoptr(nbdr_server) srv = NULL;
  g_autoptr(GBytes) want = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *stream = NULL;
  const char *const bitmaps[] = { "b0", NULL };
  const char *const base[] = { "write -P 0x01 0 8M", NULL };
  const char *const dirty[] = {
    "write -P 0x02 1M 64k", "write -P 0x03 10M 128k", "write -P 0x04 31M 1M", NULL,
  };
  const guint64 ranges[][2] = { { 1 * MiB, 64 * 1024 }, { 10 * MiB, 128 * 1024 },
                                { 31 * MiB, 1 * MiB } };
  guint64 size = 32 * MiB;
  guint nd = 0;
  progress_state ps = { 0 };
  const read_opts opts = { .request_size = 512 * 1024 };
  decoded d;

  if (!have_qemu ())
    return;
  img = make_qcow2 (f, "dirty.qcow2", size);
  qemu_io (img, base);
  {
    const char *const argv[] = { "qemu-img", "bitmap", "--add", img, "b0", NULL };

    run_ok (argv);
  }
  qemu_io (img, dirty);
  want = convert_raw (f, img);
  srv = start_server (img, bitmaps, f->dir, &error);
  g_assert_no_error (error);
  g_assert_true (encode_export (f, nbdr_server_uri (srv), "qemu:dirty-bitmap:b0",
                                &opts, &ps, NULL, &stream, &error));
  g_assert_no_error (error);
  decode_file (stream, &d);

  /* DATA frames, merged, are exactly the dirty ranges; the rest HOLE. */
  for (guint i = 0; i < d.frames->len; i++) {
    const strm_frame *fr = &g_array_index (d.frames, strm_frame, i);
    guint64 end;

    if (fr->type != STRM_FRAME_DATA)
      continue;
    g_assert_cmpuint (nd, <, G_N_ELEMENTS (ranges));
    g_assert_cmpuint (fr->offset, ==, ranges[nd][0]);
    end = fr->offset + fr->length;
    while (i + 1 < d.frames->len) {
      const strm_frame *nx = &g_array_index (d.frames, strm_frame, i + 1);

      if (nx->type != STRM_FRAME_DATA || nx->offset != end)
        break;
      end += nx->length;
      i++;
    }
    g_assert_cmpuint (end, ==, ranges[nd][0] + ranges[nd][1]);
    g_assert_cmpmem (d.content->data + ranges[nd][0], ranges[nd][1],
                     (const guint8 *) g_bytes_get_data (want, NULL) + ranges[nd][0],
                     ranges[nd][1]);
    nd++;
  }
  g_assert_cmpuint (nd, ==, G_N_ELEMENTS (ranges));
  g_assert_cmpuint (d.totals.zero_bytes, ==, 0);
  g_assert_cmpuint (d.totals.data_bytes, ==, 64 * 1024 + 128 * 1024 + MiB);
  g_assert_cmpuint (d.totals.hole_bytes, ==, size - d.totals.data_bytes);
  decoded_clear (&d);
}

static void
test_missing_bitmap (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autofree char *img = NULL;
  g_autoptr(nbdr_server) srv = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(ova_source) r = NULL;

  if (!have_qemu ())
    return;
  img = make_qcow2 (f, "plain.qcow2", 4 * MiB);
  srv = start_server (img, NULL, f->dir, &error);
  g_assert_no_error (error);
  r = nbdr_source_open (nbdr_server_uri (srv), "qemu:dirty-bitmap:nope", 0, &error);
  g_assert_null (r);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND);
}

static char *
make_full (fixture *f, guint64 size)
{
  char *img = make_qcow2 (f, "full.qcow2", size);
  g_autofree char *cmd = g_strdup_printf ("write -P 0x5a 0 %" G_GUINT64_FORMAT, size);
  const char *const cmds[] = { cmd, NULL };

  qemu_io (img, cmds);
  return img;
}

/* Cancelled half-way: an error, and the server still serves a full copy
 * afterwards (nothing was left half-done on it). */
static void
test_cancel (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autofree char *img = NULL;
  g_autoptr(nbdr_server) srv = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *stream = NULL;
  volatile sig_atomic_t cancel = 0;
  progress_state ps = { .cancel = &cancel, .cancel_at = 16 * MiB };
  const read_opts opts = { .requests = 8, .request_size = 256 * 1024 };

  if (!have_qemu ())
    return;
  img = make_full (f, 64 * MiB);
  srv = start_server (img, NULL, f->dir, &error);
  g_assert_no_error (error);
  g_assert_false (encode_export (f, nbdr_server_uri (srv), NULL, &opts, &ps,
                                 &cancel, &stream, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED);
  g_assert_cmpuint (ps.last, <, 64 * MiB);
  g_clear_error (&error);

  cancel = 0;
  ps = (progress_state) { 0 };
  g_assert_true (encode_export (f, nbdr_server_uri (srv), NULL, &opts, &ps,
                                &cancel, &stream, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (ps.last, ==, 64 * MiB);
}

/* Already cancelled: fails before any read. */
static void
test_cancel_before (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autofree char *img = NULL;
  g_autoptr(nbdr_server) srv = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *stream = NULL;
  volatile sig_atomic_t cancel = 1;
  progress_state ps = { 0 };

  if (!have_qemu ())
    return;
  img = make_full (f, 8 * MiB);
  srv = start_server (img, NULL, f->dir, &error);
  g_assert_no_error (error);
  g_assert_false (encode_export (f, nbdr_server_uri (srv), NULL, NULL, &ps,
                                 &cancel, &stream, &error));
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED);
}

/* qemu-nbd killed mid-copy: an error soon, no hang. */
static void
check_killed (fixture *f, guint connections)
{
  g_autofree char *img = NULL;
  g_autofree char *sock = NULL;
  g_autofree char *uri = NULL;
  g_autofree char *stream = NULL;
  g_autoptr(GError) error = NULL;
  progress_state ps = { 0 };
  const read_opts opts = { .requests = 4, .request_size = 256 * 1024,
                                .connections = connections };
  GPid pid;
  gint64 start;
  int status;

  if (!have_qemu ())
    return;
  img = make_full (f, 128 * MiB);
  sock = g_build_filename (f->dir, "sock", NULL);
  uri = g_strdup_printf ("nbd+unix:///?socket=%s", sock);
  {
    /* The test's own server: through env(1) so that the suite's qemu
     * guard lets it run, with the same pid; the image named as ovagent
     * names it (its driver given, no backing file followed). */
    g_autofree char *spec = stor_image_spec_alone (img, "qcow2");
    const char *const argv[] = { "env", "OVAGENT_QEMU_GUARD_FIXTURE=1",
                                 "qemu-nbd", "-r", "-t", "--shared=8",
                                 "-k", sock, "--", spec, NULL };

    g_assert_true (g_spawn_async (NULL, (char **) argv, NULL,
                                  G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                  G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, &pid, &error));
  }
  for (int i = 0; i < 500 && !g_file_test (sock, G_FILE_TEST_EXISTS); i++)
    g_usleep (10 * 1000);
  g_usleep (50 * 1000);

  ps.kill_pid = pid;
  start = g_get_monotonic_time ();
  g_assert_false (encode_export (f, uri, NULL, &opts, &ps, NULL, &stream, &error));
  g_assert_nonnull (error);
  g_test_message ("server killed: %s", error->message);
  /* It failed reading, not connecting: the server was up. */
  g_assert_null (strstr (error->message, "cannot connect"));
  g_assert_cmpint (g_get_monotonic_time () - start, <, 20 * G_USEC_PER_SEC);
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_spawn_close_pid (pid);
}

static void
test_killed_one (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  check_killed (f, 1);
}

static void
test_killed_four (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  check_killed (f, 4);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  signal (SIGPIPE, SIG_IGN);

#define ADD(name, fn) g_test_add (name, fixture, NULL, setup, fn, teardown)
  ADD ("/nbd-reader/full/default", test_full_default);
  ADD ("/nbd-reader/full/one-connection", test_full_one_conn);
  ADD ("/nbd-reader/full/four-connections", test_full_four_conns);
  ADD ("/nbd-reader/full/odd-request-size", test_full_odd_request);
  ADD ("/nbd-reader/dirty-bitmap", test_dirty_bitmap);
  ADD ("/nbd-reader/missing-bitmap", test_missing_bitmap);
  ADD ("/nbd-reader/cancel", test_cancel);
  ADD ("/nbd-reader/cancel-before", test_cancel_before);
  ADD ("/nbd-reader/server-killed/one-connection", test_killed_one);
  ADD ("/nbd-reader/server-killed/four-connections", test_killed_four);
#undef ADD
  return g_test_run ();
}
