/* ovagent tests: qcow2/raw header probing on real images made by qemu-img,
 * backing-string parsing, and the checks of a probe against metadata. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "error.h"
#include "model.h"
#include "probe.h"
#include "util.h"
#include "fixture.h"

#define IMG "a1b2c3d4-0000-4000-8000-000000000001"
#define IMG2 "a1b2c3d4-0000-4000-8000-000000000002"
#define IMG3 "a1b2c3d4-0000-4000-8000-000000000003"
#define VOL "f0e1d2c3-1111-4111-8111-000000000001"
#define PARENT "f0e1d2c3-1111-4111-8111-000000000002"
#define OTHER "f0e1d2c3-1111-4111-8111-000000000003"
#define SD "5d5d5d5d-2222-4222-8222-000000000001"

#define MiB (1024 * 1024ULL)
#define GiB (1024 * MiB)

static char *tmpdir;
static gboolean have_qemu_img;

/* ---- stor_backing_volume ---- */

static void
test_backing_volume (void)
{
  static const struct {
    const char *backing;
    const char *vol;  /* NULL: rejected */
    const char *img;
  } cases[] = {
    { VOL, VOL, NULL },
    { "F0E1D2C3-1111-4111-8111-000000000001", VOL, NULL },
    { "../" IMG "/" VOL, VOL, IMG },
    { "/rhev/data-center/mnt/server:_export/" SD "/images/" IMG "/" VOL, VOL, IMG },
    { "/rhev/data-center/mnt/blockSD/" SD "/images/" IMG "/" VOL, VOL, IMG },
    { "/dev/" SD "/" VOL, VOL, NULL },
    { "/var/tmp/" VOL, VOL, NULL },
    { "", NULL, NULL },
    { "..", NULL, NULL },
    { "../", NULL, NULL },
    { "../x/y", NULL, NULL },
    { "../" IMG "/x", NULL, NULL },
    { "../x/" VOL, NULL, NULL },
    { "../../" IMG "/" VOL, NULL, NULL },
    { "./" VOL, NULL, NULL },
    { IMG "/" VOL, NULL, NULL },
    { VOL "/", NULL, NULL },
    { "/rhev/" IMG "/../" VOL, NULL, NULL },
    { "not-a-uuid", NULL, NULL },
    { "f0e1d2c3-1111-4111-8111-00000000000", NULL, NULL },
    { "f0e1d2c3-1111-4111-8111-0000000000011", NULL, NULL },
    { "g0e1d2c3-1111-4111-8111-000000000001", NULL, NULL },
    { "json:{\"driver\":\"raw\"}", NULL, NULL },
    { "nbd://host/" VOL "x", NULL, NULL },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *img = NULL;
    g_autofree char *vol = stor_backing_volume (cases[i].backing, &img);

    g_test_message ("backing '%s'", cases[i].backing);
    g_assert_cmpstr (vol, ==, cases[i].vol);
    g_assert_cmpstr (img, ==, cases[i].img);
  }

  /* Longer than qemu allows, though it ends with a UUID. */
  {
    g_autoptr (GString) s = g_string_new ("/");
    g_autofree char *vol = NULL;

    while (s->len < 2000)
      g_string_append (s, "aaaaaaaa/");
    g_string_append (s, IMG "/" VOL);
    vol = stor_backing_volume (s->str, NULL);
    g_assert_null (vol);
  }

  g_assert_null (stor_backing_volume (NULL, NULL));
}

/* ---- stor_probe_volume on real images ---- */

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

static void
run_ok (const char *const *argv)
{
  g_autoptr (GError) err = NULL;

  if (!fixture_run (argv, NULL, &err))
    g_error ("%s", err->message);
}

static gboolean
need_qemu_img (void)
{
  if (!have_qemu_img)
    g_test_skip ("qemu-img is not installed");
  return have_qemu_img;
}

static void
write_file (const char *path, const void *buf, gsize len)
{
  g_autoptr (GError) err = NULL;

  if (!g_file_set_contents (path, buf, len, &err))
    g_error ("%s", err->message);
}

static void
test_probe_raw (void)
{
  g_autofree char *path = tmp_path ("raw.img");
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;
  const char *argv[] = { "qemu-img", "create", "-f", "raw", path, "64M", NULL };

  if (!need_qemu_img ())
    return;
  run_ok (argv);
  p = stor_probe_volume (path, STOR_FORMAT_RAW, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (p->format, ==, "raw");
  g_assert_null (p->qcow2_compat);
  g_assert_cmpuint (p->virtual_size, ==, 64 * MiB);
  g_assert_cmpuint (p->actual_size, <, 64 * MiB);  /* sparse */
  g_assert_null (p->backing);
  g_assert_null (p->backing_format);
  g_assert_cmpuint (p->bitmaps->len, ==, 0);
}

static void
test_probe_empty_file (void)
{
  g_autofree char *path = tmp_path ("empty.img");
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;

  write_file (path, "", 0);
  p = stor_probe_volume (path, STOR_FORMAT_RAW, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (p->format, ==, "raw");
  g_assert_cmpuint (p->virtual_size, ==, 0);
}

static void
test_probe_missing (void)
{
  g_autofree char *path = tmp_path ("no-such-volume");
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = stor_probe_volume (path, STOR_FORMAT_RAW, &err);

  g_assert_null (p);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, path));
}

static void
test_probe_qcow2_v2 (void)
{
  g_autofree char *path = tmp_path ("v2.qcow2");
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;
  const char *argv[] = { "qemu-img", "create", "-f", "qcow2", "-o", "compat=0.10",
                         path, "1G", NULL };

  if (!need_qemu_img ())
    return;
  run_ok (argv);
  p = stor_probe_volume (path, STOR_FORMAT_COW, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (p->format, ==, "qcow2");
  g_assert_cmpstr (p->qcow2_compat, ==, "0.10");
  g_assert_cmpuint (p->virtual_size, ==, GiB);
  g_assert_cmpuint (p->actual_size, >, 0);
  g_assert_null (p->backing);
  g_assert_cmpuint (p->bitmaps->len, ==, 0);
}

static void
test_probe_qcow2_v3_backing (void)
{
  g_autofree char *path = tmp_path (VOL);
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;
  /* As VDSM creates a snapshot: the backing need not exist (-u). */
  const char *argv[] = { "qemu-img", "create", "-f", "qcow2", "-o", "compat=1.1",
                         "-b", PARENT, "-F", "raw", "-u", path, "10G", NULL };

  if (!need_qemu_img ())
    return;
  run_ok (argv);
  p = stor_probe_volume (path, STOR_FORMAT_COW, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (p->format, ==, "qcow2");
  g_assert_cmpstr (p->qcow2_compat, ==, "1.1");
  g_assert_cmpuint (p->virtual_size, ==, 10 * GiB);
  g_assert_cmpstr (p->backing, ==, PARENT);
  g_assert_cmpstr (p->backing_format, ==, "raw");
  g_assert_cmpuint (p->bitmaps->len, ==, 0);
}

static void
test_probe_qcow2_bitmaps (void)
{
  g_autofree char *path = tmp_path ("bitmaps.qcow2");
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;
  const char *create[] = { "qemu-img", "create", "-f", "qcow2", "-o", "compat=1.1",
                           "-b", "../" IMG "/" PARENT, "-F", "qcow2", "-u",
                           path, "1G", NULL };
  const char *add1[] = { "qemu-img", "bitmap", "--add", "--enable", path,
                         "0c6f1b7e-3333-4333-8333-000000000001", NULL };
  const char *add2[] = { "qemu-img", "bitmap", "--add", "--disable", "-g", "128k",
                         path, "disabled", NULL };
  const stor_bitmap *b1, *b2;

  if (!need_qemu_img ())
    return;
  run_ok (create);
  run_ok (add1);
  run_ok (add2);
  p = stor_probe_volume (path, STOR_FORMAT_COW, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (p->qcow2_compat, ==, "1.1");
  g_assert_cmpstr (p->backing, ==, "../" IMG "/" PARENT);
  g_assert_cmpstr (p->backing_format, ==, "qcow2");
  g_assert_cmpuint (p->bitmaps->len, ==, 2);

  b1 = g_ptr_array_index (p->bitmaps, 0);
  b2 = g_ptr_array_index (p->bitmaps, 1);
  if (strcmp (b1->name, "disabled") == 0) {
    const stor_bitmap *t = b1;

    b1 = b2;
    b2 = t;
  }
  g_assert_cmpstr (b1->name, ==, "0c6f1b7e-3333-4333-8333-000000000001");
  g_assert_true (g_strv_contains ((const char *const *) b1->flags, "auto"));
  g_assert_cmpuint (b1->granularity, ==, 65536);
  g_assert_cmpstr (b2->name, ==, "disabled");
  g_assert_false (g_strv_contains ((const char *const *) b2->flags, "auto"));
  g_assert_cmpuint (b2->granularity, ==, 128 * 1024);
}

/* libqcow refuses the zstd incompatible feature bit; qemu-img answers. */
static void
test_probe_qcow2_zstd (void)
{
  g_autofree char *path = tmp_path ("zstd.qcow2");
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;
  const char *argv[] = { "qemu-img", "create", "-f", "qcow2",
                         "-o", "compat=1.1,compression_type=zstd",
                         "-b", PARENT, "-F", "qcow2", "-u", path, "3G", NULL };

  if (!need_qemu_img ())
    return;
  run_ok (argv);
  p = stor_probe_volume (path, STOR_FORMAT_COW, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (p->format, ==, "qcow2");
  g_assert_cmpstr (p->qcow2_compat, ==, "1.1");
  g_assert_cmpuint (p->virtual_size, ==, 3 * GiB);
  g_assert_cmpstr (p->backing, ==, PARENT);
  g_assert_cmpstr (p->backing_format, ==, "qcow2");
}

static void
test_probe_qcow_v1 (void)
{
  g_autofree char *path = tmp_path ("v1.qcow");
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;
  const char *argv[] = { "qemu-img", "create", "-f", "qcow", path, "1M", NULL };

  if (!need_qemu_img ())
    return;
  run_ok (argv);
  p = stor_probe_volume (path, STOR_FORMAT_COW, &err);
  g_assert_null (p);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_UNSUPPORTED);
}

/* A raw volume is the guest's: a qcow2 header in it is guest data, read
 * as nothing but bytes, never followed to the file it names. */
static void
test_probe_raw_with_header (void)
{
  g_autofree char *hdr = tmp_path ("fake-header.qcow2");
  g_autofree char *path = tmp_path ("raw-fake.img");
  g_autofree char *bytes = NULL;
  g_autofree guint8 *buf = g_malloc0 (MiB);
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;
  gsize len = 0;
  const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b",
                           "/etc/shadow", "-F", "raw", hdr, "64G", NULL };

  if (!need_qemu_img ())
    return;
  run_ok (create);
  g_assert_true (g_file_get_contents (hdr, &bytes, &len, NULL));
  memcpy (buf, bytes, MIN (len, MiB));
  write_file (path, buf, MiB);
  p = stor_probe_volume (path, STOR_FORMAT_RAW, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (p->format, ==, "raw");
  g_assert_cmpuint (p->virtual_size, ==, MiB);
  g_assert_null (p->backing);
  g_assert_null (p->backing_format);
  g_assert_null (p->qcow2_compat);
}

/* Metadata says COW, the bytes say otherwise: refused, never guessed. */
static void
test_probe_cow_without_header (void)
{
  g_autofree char *path = tmp_path ("cow-no-header.img");
  g_autofree guint8 *buf = g_malloc0 (MiB);
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;

  write_file (path, buf, MiB);
  p = stor_probe_volume (path, STOR_FORMAT_COW, &err);
  g_assert_null (p);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (err->message, "does not start with a qcow2 header"));
  g_clear_error (&err);
  p = stor_probe_volume (path, STOR_FORMAT_UNKNOWN, &err);
  g_assert_null (p);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
}

/* An external data file is a second file qemu would open: refused before
 * qemu or libqcow look at the image. */
static void
test_probe_data_file (void)
{
  g_autofree char *path = tmp_path ("data-file.qcow2");
  g_autofree char *data = tmp_path ("data-file.raw");
  g_autofree char *opt = g_strdup_printf ("data_file=%s", data);
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;
  const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-o", opt,
                           path, "1G", NULL };

  if (!need_qemu_img ())
    return;
  run_ok (create);
  p = stor_probe_volume (path, STOR_FORMAT_COW, &err);
  g_assert_null (p);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (err->message, "external data file"));
}

static void
put_be32 (guint8 *buf, gsize off, guint32 v)
{
  v = GUINT32_TO_BE (v);
  memcpy (buf + off, &v, sizeof v);
}

static void
put_be64 (guint8 *buf, gsize off, guint64 v)
{
  v = GUINT64_TO_BE (v);
  memcpy (buf + off, &v, sizeof v);
}

/* Fields out of bounds fail in the header check, with what is wrong. */
static void
test_probe_absurd_header (void)
{
  g_autofree char *good = tmp_path ("good-header.qcow2");
  g_autofree char *bytes = NULL;
  gsize len = 0;
  const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b",
                           PARENT, "-F", "qcow2", good, "1G", NULL };
  static const struct {
    const char *what;
    gsize off;
    int width;
    guint64 value;
    gint code;
  } cases[] = {
    { "virtual size 2^60", 24, 64, (guint64) 1 << 60, OVA_ERROR_INTEGRITY },
    { "cluster bits 30", 20, 32, 30, OVA_ERROR_INTEGRITY },
    { "cluster bits 8", 20, 32, 8, OVA_ERROR_INTEGRITY },
    { "backing name past the cluster", 8, 64, 65530, OVA_ERROR_INTEGRITY },
    { "backing name of 4096 bytes", 16, 32, 4096, OVA_ERROR_INTEGRITY },
    { "version 7", 4, 32, 7, OVA_ERROR_INTEGRITY },
    { "encrypted", 32, 32, 1, OVA_ERROR_UNSUPPORTED },
    { "unknown incompatible feature", 72, 64, 1ULL << 40, OVA_ERROR_UNSUPPORTED },
    { "header length 4097", 100, 32, 4097, OVA_ERROR_INTEGRITY },
  };

  if (!need_qemu_img ())
    return;
  run_ok (create);
  g_assert_true (g_file_get_contents (good, &bytes, &len, NULL));
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *name = g_strdup_printf ("absurd-%zu.qcow2", i);
    g_autofree char *path = tmp_path (name);
    g_autofree guint8 *buf = g_memdup2 (bytes, len);
    g_autoptr (GError) err = NULL;
    g_autoptr (stor_probe) p = NULL;

    g_test_message ("case: %s", cases[i].what);
    if (cases[i].width == 64)
      put_be64 (buf, cases[i].off, cases[i].value);
    else
      put_be32 (buf, cases[i].off, (guint32) cases[i].value);
    write_file (path, buf, len);
    p = stor_probe_volume (path, STOR_FORMAT_COW, &err);
    g_assert_null (p);
    g_assert_error (err, OVA_ERROR, cases[i].code);
    g_test_message ("%s", err->message);
  }
}

static void
assert_integrity_error (const char *name, const void *buf, gsize len)
{
  g_autofree char *path = tmp_path (name);
  g_autoptr (GError) err = NULL;
  g_autoptr (stor_probe) p = NULL;

  write_file (path, buf, len);
  p = stor_probe_volume (path, STOR_FORMAT_COW, &err);
  g_assert_null (p);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (err->message, path));
  g_test_message ("%s", err->message);
}

/* Garbage after the magic must fail quickly with the reason, not hang. */
static void
test_probe_corrupt (void)
{
  g_autofree guint8 *buf = g_malloc0 (128 * 1024);
  g_autoptr (GRand) rand = g_rand_new_with_seed (42);

  if (!need_qemu_img ())
    return;

  memcpy (buf, "QFI\xfb", 4);
  assert_integrity_error ("magic-only", buf, 4);

  for (gsize i = 4; i < 128 * 1024; i++)
    buf[i] = g_rand_int_range (rand, 0, 256);
  assert_integrity_error ("magic-random", buf, 128 * 1024);

  /* Plausible version 3 header with impossible fields after it. */
  memcpy (buf + 4, "\0\0\0\3", 4);
  assert_integrity_error ("magic-v3-random", buf, 128 * 1024);

  /* A valid image whose cluster size was overwritten. */
  {
    g_autofree char *path = tmp_path ("badcluster.qcow2");
    g_autofree char *contents = NULL;
    gsize len;
    g_autoptr (GError) err = NULL;
    const char *argv[] = { "qemu-img", "create", "-f", "qcow2", path, "1G", NULL };

    run_ok (argv);
    if (!g_file_get_contents (path, &contents, &len, &err))
      g_error ("%s", err->message);
    g_assert_cmpuint (len, >, 24);
    contents[23] = 40;  /* cluster_bits */
    assert_integrity_error ("badcluster.qcow2", contents, len);
  }
}

/* ---- stor_probe_check ---- */

static stor_volume *
volume (const char *uuid, const char *image, stor_format fmt, guint64 capacity)
{
  stor_volume *v = stor_volume_new (uuid);

  v->image = g_strdup (image);
  v->md = g_new0 (stor_volmeta, 1);
  v->md->image = g_strdup (image);
  v->md->format = fmt;
  v->md->capacity = capacity;
  return v;
}

static stor_probe *
probe (const char *format, guint64 vsize, const char *backing, const char *backing_format)
{
  stor_probe *p = g_new0 (stor_probe, 1);

  p->format = g_strdup (format);
  p->qcow2_compat = strcmp (format, "qcow2") == 0 ? g_strdup ("1.1") : NULL;
  p->virtual_size = vsize;
  p->backing = g_strdup (backing);
  p->backing_format = g_strdup (backing_format);
  return p;
}

static gint
cmp_str_ptr (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* The problem codes found, sorted and joined by ",". */
static char *
codes (const stor_volume *v)
{
  g_autoptr (GPtrArray) list = g_ptr_array_new ();

  for (guint i = 0; v->problems && i < v->problems->len; i++) {
    const stor_problem *pb = g_ptr_array_index (v->problems, i);

    g_assert_nonnull (strstr (pb->message, v->uuid));
    g_test_message ("%s: %s", pb->code, pb->message);
    g_ptr_array_add (list, pb->code);
  }
  g_ptr_array_sort (list, cmp_str_ptr);
  g_ptr_array_add (list, NULL);
  return g_strjoinv (",", (char **) list->pdata);
}

static void
test_check (void)
{
  static const struct {
    const char *what;
    stor_format md_format;
    const char *format;
    guint64 vsize;
    const char *backing;
    const char *backing_format;
    gboolean has_parent;
    stor_format parent_format;
    const char *parent_image;
    const char *expect;
  } cases[] = {
    { "base raw", STOR_FORMAT_RAW, "raw", GiB, NULL, NULL, FALSE, 0, NULL, "" },
    { "base cow", STOR_FORMAT_COW, "qcow2", GiB, NULL, NULL, FALSE, 0, NULL, "" },
    { "snapshot, bare uuid", STOR_FORMAT_COW, "qcow2", GiB, PARENT, "qcow2",
      TRUE, STOR_FORMAT_COW, IMG, "" },
    { "snapshot over raw", STOR_FORMAT_COW, "qcow2", GiB, PARENT, "raw",
      TRUE, STOR_FORMAT_RAW, IMG, "" },
    { "legacy relative", STOR_FORMAT_COW, "qcow2", GiB, "../" IMG "/" PARENT, NULL,
      TRUE, STOR_FORMAT_COW, IMG, "" },
    { "template in another image", STOR_FORMAT_COW, "qcow2", GiB,
      "../" IMG2 "/" PARENT, "raw", TRUE, STOR_FORMAT_RAW, IMG2, "" },
    { "absolute path", STOR_FORMAT_COW, "qcow2", GiB,
      "/rhev/data-center/mnt/blockSD/" SD "/images/" IMG "/" PARENT, "qcow2",
      TRUE, STOR_FORMAT_COW, IMG, "" },

    { "virtual size differs", STOR_FORMAT_COW, "qcow2", 2 * GiB, NULL, NULL,
      FALSE, 0, NULL, "capacity-mismatch" },
    { "base with backing", STOR_FORMAT_COW, "qcow2", GiB, PARENT, "qcow2",
      FALSE, 0, NULL, "backing-mismatch" },
    { "snapshot without backing", STOR_FORMAT_COW, "qcow2", GiB, NULL, NULL,
      TRUE, STOR_FORMAT_COW, IMG, "backing-mismatch" },
    { "backing names another volume", STOR_FORMAT_COW, "qcow2", GiB, OTHER, "qcow2",
      TRUE, STOR_FORMAT_COW, IMG, "backing-mismatch" },
    { "backing names no volume", STOR_FORMAT_COW, "qcow2", GiB, "base.qcow2", "qcow2",
      TRUE, STOR_FORMAT_COW, IMG, "backing-mismatch" },
    { "backing format differs", STOR_FORMAT_COW, "qcow2", GiB, PARENT, "raw",
      TRUE, STOR_FORMAT_COW, IMG, "backing-mismatch" },
    { "backing in a foreign image", STOR_FORMAT_COW, "qcow2", GiB,
      "../" IMG3 "/" PARENT, "qcow2", TRUE, STOR_FORMAT_COW, IMG,
      "backing-image-mismatch" },
    { "everything wrong", STOR_FORMAT_RAW, "qcow2", 5 * GiB, "../" IMG3 "/" OTHER, NULL,
      TRUE, STOR_FORMAT_COW, IMG,
      "backing-image-mismatch,backing-mismatch,capacity-mismatch" },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (stor_volume) v = volume (VOL, IMG, cases[i].md_format, GiB);
    g_autoptr (stor_volume) parent = NULL;
    g_autoptr (stor_probe) p = probe (cases[i].format, cases[i].vsize,
                                      cases[i].backing, cases[i].backing_format);
    g_autofree char *got = NULL;

    g_test_message ("case: %s", cases[i].what);
    if (cases[i].has_parent)
      parent = volume (PARENT, cases[i].parent_image, cases[i].parent_format, GiB);
    stor_probe_check (p, v, parent);
    got = codes (v);
    g_assert_cmpstr (got, ==, cases[i].expect);
  }
}

/* Without metadata only the backing string can be checked. */
static void
test_check_no_metadata (void)
{
  g_autoptr (stor_volume) v = stor_volume_new (VOL);
  g_autoptr (stor_volume) parent = stor_volume_new (PARENT);
  g_autoptr (stor_probe) p = probe ("qcow2", 7, OTHER, "qcow2");
  g_autofree char *got = NULL;

  stor_probe_check (p, v, parent);
  got = codes (v);
  g_assert_cmpstr (got, ==, "backing-mismatch");
}

static void
remove_tmpdir (void)
{
  g_autoptr (GDir) dir = NULL;
  const char *name;

  if (tmpdir == NULL)
    return;
  dir = g_dir_open (tmpdir, 0, NULL);
  while (dir && (name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = tmp_path (name);

    g_unlink (path);
  }
  g_rmdir (tmpdir);
  g_clear_pointer (&tmpdir, g_free);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *qemu_img = g_find_program_in_path ("qemu-img");
  int ret;

  g_test_init (&argc, &argv, NULL);

  have_qemu_img = qemu_img != NULL;
  if (!have_qemu_img && g_strcmp0 (g_getenv ("CI"), "true") == 0) {
    g_printerr ("qemu-img is required in CI\n");
    return 1;
  }

  tmpdir = g_dir_make_tmp ("test-probe-XXXXXX", &err);
  g_assert_no_error (err);

  g_test_add_func ("/probe/backing-volume", test_backing_volume);
  g_test_add_func ("/probe/raw", test_probe_raw);
  g_test_add_func ("/probe/empty-file", test_probe_empty_file);
  g_test_add_func ("/probe/missing", test_probe_missing);
  g_test_add_func ("/probe/qcow2-v2", test_probe_qcow2_v2);
  g_test_add_func ("/probe/qcow2-v3-backing", test_probe_qcow2_v3_backing);
  g_test_add_func ("/probe/qcow2-bitmaps", test_probe_qcow2_bitmaps);
  g_test_add_func ("/probe/qcow2-zstd", test_probe_qcow2_zstd);
  g_test_add_func ("/probe/qcow-v1", test_probe_qcow_v1);
  g_test_add_func ("/probe/corrupt", test_probe_corrupt);
  g_test_add_func ("/probe/raw-with-header", test_probe_raw_with_header);
  g_test_add_func ("/probe/cow-without-header", test_probe_cow_without_header);
  g_test_add_func ("/probe/data-file", test_probe_data_file);
  g_test_add_func ("/probe/absurd-header", test_probe_absurd_header);
  g_test_add_func ("/probe/check", test_check);
  g_test_add_func ("/probe/check-no-metadata", test_check_no_metadata);

  ret = g_test_run ();
  remove_tmpdir ();
  return ret;
}
