/* ovagent tests: volume files as copy sources (storage/source-file.c):
 * extents of sparse files, reads (from several threads too), size bounds,
 * and volumes by kind and format. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "error.h"
#include "storage/source-file.h"

#define MiB (1024u * 1024)
#define FILE_SIZE (10 * MiB)

/* Data at [0, 1 MiB) and [5 MiB, 5 MiB + 64 KiB), holes elsewhere, 10 MiB. */
typedef struct {
  char *dir;
  char *path;
  gboolean fs_has_holes;   /* the file system reports them (tmpfs, ext4, xfs do) */
} fixture;

static void
fill_pattern (guint8 *buf, size_t len, guint8 seed)
{
  for (size_t i = 0; i < len; i++)
    buf[i] = (guint8) (seed + i % 251) | 1;   /* never zero */
}

static void
write_at (int fd, guint64 offset, size_t len, guint8 seed)
{
  g_autofree guint8 *buf = g_malloc (len);

  fill_pattern (buf, len, seed);
  g_assert_cmpint (pwrite (fd, buf, len, offset), ==, (ssize_t) len);
}

static void
fixture_setup (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  off_t hole;
  int fd;

  f->dir = g_dir_make_tmp ("ovagent-test-source.XXXXXX", &err);
  g_assert_no_error (err);
  f->path = g_build_filename (f->dir, "volume", NULL);
  fd = open (f->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  g_assert_cmpint (fd, >=, 0);
  write_at (fd, 0, MiB, 1);
  write_at (fd, 5 * MiB, 64 * 1024, 2);
  g_assert_cmpint (ftruncate (fd, FILE_SIZE), ==, 0);
  g_assert_cmpint (fsync (fd), ==, 0);
  hole = lseek (fd, 0, SEEK_HOLE);
  f->fs_has_holes = hole == MiB;
  close (fd);
}

static void
fixture_teardown (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_unlink (f->path);
  g_rmdir (f->dir);
  g_free (f->path);
  g_free (f->dir);
}

/* Walk the whole source asking at most max_len per call; the extents must
 * cover [0, size) in order without gaps. Returns them. */
static GArray *
walk (ova_source *src, guint64 max_len)
{
  GArray *extents = g_array_new (FALSE, FALSE, sizeof (ova_extent));
  guint64 offset = 0;

  while (offset < src->size) {
    g_autoptr(GError) err = NULL;
    ova_extent e;

    g_assert_true (src->ops->extent (src, offset, max_len, &e, &err));
    g_assert_no_error (err);
    g_assert_cmpuint (e.offset, ==, offset);
    g_assert_cmpuint (e.length, >, 0);
    g_assert_cmpuint (e.length, <=, max_len);
    g_assert_cmpuint (e.offset + e.length, <=, src->size);
    g_array_append_val (extents, e);
    offset += e.length;
  }
  return extents;
}

/* The kind covering byte offset. */
static ova_extent_kind
kind_at (GArray *extents, guint64 offset)
{
  for (guint i = 0; i < extents->len; i++) {
    const ova_extent *e = &g_array_index (extents, ova_extent, i);

    if (offset >= e->offset && offset < e->offset + e->length)
      return e->kind;
  }
  g_assert_not_reached ();
}

static void
test_sparse_extents (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_source) src = stor_source_open_path (f->path, 0, &err);
  g_autoptr(GArray) extents = NULL;

  g_assert_no_error (err);
  g_assert_cmpuint (src->size, ==, FILE_SIZE);
  g_assert_cmpstr (src->name, ==, f->path);

  extents = walk (src, 64 * MiB);
  /* Written data is never reported as a hole, whatever the file system. */
  g_assert_cmpint (kind_at (extents, 0), ==, OVA_EXTENT_DATA);
  g_assert_cmpint (kind_at (extents, MiB - 1), ==, OVA_EXTENT_DATA);
  g_assert_cmpint (kind_at (extents, 5 * MiB), ==, OVA_EXTENT_DATA);
  g_assert_cmpint (kind_at (extents, 5 * MiB + 64 * 1024 - 1), ==, OVA_EXTENT_DATA);

  if (!f->fs_has_holes) {
    g_test_message ("the file system of %s reports no holes", f->path);
    return;
  }
  g_assert_cmpuint (extents->len, ==, 4);
  g_assert_cmpint (kind_at (extents, MiB), ==, OVA_EXTENT_HOLE);
  g_assert_cmpint (kind_at (extents, 5 * MiB - 1), ==, OVA_EXTENT_HOLE);
  g_assert_cmpint (kind_at (extents, FILE_SIZE - 1), ==, OVA_EXTENT_HOLE);
  g_assert_cmpuint (g_array_index (extents, ova_extent, 1).offset, ==, MiB);
  g_assert_cmpuint (g_array_index (extents, ova_extent, 1).length, ==, 4 * MiB);
  /* The hole after the last data: SEEK_DATA fails with ENXIO there. */
  g_assert_cmpuint (g_array_index (extents, ova_extent, 3).offset, ==,
                    5 * MiB + 64 * 1024);
  g_assert_cmpuint (g_array_index (extents, ova_extent, 3).length, ==,
                    FILE_SIZE - 5 * MiB - 64 * 1024);
}

/* Work ranges: no extent is longer than asked, data and holes alike. */
static void
test_bounded_extents (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_source) src = stor_source_open_path (f->path, 0, &err);
  g_autoptr(GArray) extents = NULL;
  ova_extent e;

  g_assert_no_error (err);
  extents = walk (src, 300 * 1024);
  g_assert_cmpuint (extents->len, >=, FILE_SIZE / (300 * 1024));

  g_assert_true (src->ops->extent (src, 4096, 4096, &e, &err));
  g_assert_cmpuint (e.offset, ==, 4096);
  g_assert_cmpuint (e.length, ==, 4096);
  g_assert_cmpint (e.kind, ==, OVA_EXTENT_DATA);
  if (f->fs_has_holes) {
    g_assert_true (src->ops->extent (src, 2 * MiB, MiB, &e, &err));
    g_assert_cmpint (e.kind, ==, OVA_EXTENT_HOLE);
    g_assert_cmpuint (e.length, ==, MiB);
  }
}

static void
test_pread (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_source) src = stor_source_open_path (f->path, 0, &err);
  g_autofree guint8 *want = g_malloc (64 * 1024);
  g_autofree guint8 *got = g_malloc (MiB);

  g_assert_no_error (err);
  fill_pattern (want, 64 * 1024, 2);
  g_assert_true (src->ops->pread (src, got, 64 * 1024, 5 * MiB, &err));
  g_assert_no_error (err);
  g_assert_cmpmem (got, 64 * 1024, want, 64 * 1024);

  /* A hole reads as zeros. */
  g_assert_true (src->ops->pread (src, got, MiB, 2 * MiB, &err));
  for (size_t i = 0; i < MiB; i++)
    g_assert_cmpuint (got[i], ==, 0);

  /* The last byte, then past a file that shrank since it was opened. */
  g_assert_true (src->ops->pread (src, got, 1, FILE_SIZE - 1, &err));
  g_assert_cmpint (truncate (f->path, 3 * MiB), ==, 0);
  g_assert_false (src->ops->pread (src, got, MiB, FILE_SIZE - MiB, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (err->message, f->path));
}

/* The copy engine reads a file from several threads while its I/O thread
 * asks extents (lseek): preads must not depend on the file position. */
typedef struct {
  ova_source *src;
  guint64 offset;
  gboolean ok;
} pread_job;

static gpointer
pread_thread (gpointer opaque)
{
  pread_job *j = opaque;
  g_autofree guint8 *want = g_malloc (MiB);
  g_autofree guint8 *got = g_malloc (64 * 1024);

  fill_pattern (want, MiB, 1);
  j->ok = TRUE;
  for (int round = 0; round < 50 && j->ok; round++) {
    g_autoptr(GError) err = NULL;

    j->ok = j->src->ops->pread (j->src, got, 64 * 1024, j->offset, &err) &&
            memcmp (got, want + j->offset, 64 * 1024) == 0;
  }
  return NULL;
}

static void
test_preads_in_threads (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_source) src = stor_source_open_path (f->path, 0, &err);
  pread_job jobs[4];
  GThread *threads[4];

  g_assert_no_error (err);
  for (guint i = 0; i < G_N_ELEMENTS (jobs); i++) {
    jobs[i] = (pread_job) { .src = src, .offset = i * 192 * 1024 };
    threads[i] = g_thread_new ("pread", pread_thread, &jobs[i]);
  }
  for (int round = 0; round < 50; round++) {
    g_autoptr(GArray) extents = walk (src, 300 * 1024);

    g_assert_cmpint (kind_at (extents, 0), ==, OVA_EXTENT_DATA);
  }
  for (guint i = 0; i < G_N_ELEMENTS (jobs); i++) {
    g_thread_join (threads[i]);
    g_assert_true (jobs[i].ok);
  }
}

static void
test_size_override (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_source) src = stor_source_open_path (f->path, 5 * MiB + 4096, &err);
  g_autoptr(GArray) extents = NULL;
  const ova_extent *last;

  g_assert_no_error (err);
  g_assert_cmpuint (src->size, ==, 5 * MiB + 4096);
  extents = walk (src, 64 * MiB);
  last = &g_array_index (extents, ova_extent, extents->len - 1);
  g_assert_cmpuint (last->offset + last->length, ==, 5 * MiB + 4096);
  g_assert_cmpint (last->kind, ==, OVA_EXTENT_DATA);

  /* More than the file holds cannot be copied. */
  g_clear_pointer (&src, ova_source_free);
  src = stor_source_open_path (f->path, FILE_SIZE + 1, &err);
  g_assert_null (src);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
}

static void
test_open_errors (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *missing = g_build_filename (f->dir, "missing", NULL);
  ova_source *src;

  src = stor_source_open_path (missing, 0, &err);
  g_assert_null (src);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, missing));
  g_clear_error (&err);

  src = stor_source_open_path (f->dir, 0, &err);
  g_assert_null (src);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_UNSUPPORTED);
}

static stor_volume *
volume_with_md (const char *path, stor_format format, guint64 capacity)
{
  stor_volume *v = stor_volume_new ("6e0c5a3b-1f2d-4c4e-8a9b-0c1d2e3f4a5b");

  v->path = g_strdup (path);
  v->md = g_new0 (stor_volmeta, 1);
  v->md->format = format;
  v->md->capacity = capacity;
  v->md->legality = STOR_LEGALITY_LEGAL;
  return v;
}

static void
test_volume (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(stor_domain) file_dom =
    stor_domain_new ("5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60", STOR_KIND_FILE);
  g_autoptr(stor_domain) block_dom =
    stor_domain_new ("5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f61", STOR_KIND_BLOCK);
  g_autoptr(stor_volume) v = volume_with_md (f->path, STOR_FORMAT_RAW, 4 * MiB);
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_source) src = NULL;

  /* A file volume goes whole, whatever its capacity says. */
  src = stor_source_open_volume (file_dom, v, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (src->size, ==, FILE_SIZE);
  g_clear_pointer (&src, ova_source_free);

  /* A raw LV goes up to its capacity; the path here is a file standing in
   * for the LV. */
  src = stor_source_open_volume (block_dom, v, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (src->size, ==, 4 * MiB);
  g_clear_pointer (&src, ova_source_free);

  /* A capacity the LV cannot hold, and a volume without metadata. */
  v->md->capacity = FILE_SIZE + MiB;
  src = stor_source_open_volume (block_dom, v, &err);
  g_assert_null (src);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_clear_error (&err);

  g_clear_pointer (&v->md, stor_volmeta_free);
  src = stor_source_open_volume (block_dom, v, &err);
  g_assert_null (src);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_clear_error (&err);

  g_clear_pointer (&v->path, g_free);
  src = stor_source_open_volume (file_dom, v, &err);
  g_assert_null (src);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_NOT_FOUND);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(name, fn) \
  g_test_add ("/source-file/" name, fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("sparse-extents", test_sparse_extents);
  ADD ("bounded-extents", test_bounded_extents);
  ADD ("pread", test_pread);
  ADD ("preads-in-threads", test_preads_in_threads);
  ADD ("size-override", test_size_override);
  ADD ("open-errors", test_open_errors);
  ADD ("volume", test_volume);
#undef ADD

  return g_test_run ();
}
