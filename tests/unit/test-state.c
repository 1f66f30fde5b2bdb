/* ovagent tests: the per-VM backup state file and lock (virt/state.c), and
 * the bitmap helpers for stopped domains' images on real qcow2 files. */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "error.h"
#include "util.h"
#include "fixture.h"
#include "virt/bitmaps.h"
#include "virt/checkpoint.h"
#include "virt/xml-build.h"
#include "virt/state.h"

#define VM "5d3f0a2e-1b4c-4d6e-8f70-a1b2c3d4e5f6"
#define OTHER_VM "6e4f1b3f-2c5d-4e7f-9081-b2c3d4e5f6a7"
#define IMG1 "11111111-2222-4333-8444-555555555555"
#define IMG2 "22222222-3333-4444-8555-666666666666"
#define IMG3 "33333333-4444-4555-8666-777777777777"
#define CP1 "aaaaaaaa-0000-4000-8000-000000000001"
#define CP2 "aaaaaaaa-0000-4000-8000-000000000002"
#define JOB1 "bbbbbbbb-0000-4000-8000-000000000001"
#define JOB2 "bbbbbbbb-0000-4000-8000-000000000002"

typedef struct {
  char *dir;
} fixture;

static void
fixture_setup (fixture *f, gconstpointer data)
{
  g_autoptr (GError) err = NULL;

  f->dir = g_dir_make_tmp ("test-state-XXXXXX", &err);
  g_assert_no_error (err);
}

static void
rm_rf (const char *path)
{
  GDir *d = g_dir_open (path, 0, NULL);
  const char *name;

  if (d == NULL) {
    g_unlink (path);
    return;
  }
  while ((name = g_dir_read_name (d)) != NULL) {
    g_autofree char *p = g_build_filename (path, name, NULL);

    if (g_file_test (p, G_FILE_TEST_IS_DIR) && !g_file_test (p, G_FILE_TEST_IS_SYMLINK))
      rm_rf (p);
    else
      g_unlink (p);
  }
  g_dir_close (d);
  g_rmdir (path);
}

static void
fixture_teardown (fixture *f, gconstpointer data)
{
  rm_rf (f->dir);
  g_free (f->dir);
}

static char *
state_path (const fixture *f)
{
  return g_build_filename (f->dir, "checkpoints", VM, "state.json", NULL);
}

static void
write_state (const fixture *f, const char *text)
{
  g_autofree char *path = state_path (f);
  g_autofree char *dir = g_path_get_dirname (path);
  g_autoptr (GError) err = NULL;

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  g_assert_true (g_file_set_contents (path, text, -1, &err));
}

static void
test_missing (fixture *f, gconstpointer data)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_state) s = virt_state_load (f->dir, VM, &err);
  g_autoptr (GPtrArray) disks = NULL;

  g_assert_no_error (err);
  g_assert_nonnull (s);
  disks = virt_state_disks (s);
  g_assert_cmpuint (disks->len, ==, 0);
  g_assert_null (virt_state_disk_checkpoint (s, IMG1));
  g_assert_false (virt_state_get_pending (s, NULL, NULL, NULL, NULL));
}

static void
test_bad_vm (fixture *f, gconstpointer data)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_state) s = virt_state_load (f->dir, "../../etc", &err);

  g_assert_null (s);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
}

static void
test_round_trip (fixture *f, gconstpointer data)
{
  const char *images[] = { IMG2, IMG1, NULL };
  const char *targets[] = { "vdb", "vda", NULL };
  const char *more[] = { IMG3, NULL };
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_state) s = virt_state_load (f->dir, VM, &err);
  g_autoptr (virt_state) t = NULL;
  g_autoptr (GPtrArray) disks = NULL;
  g_autofree char *path = state_path (f);
  g_autofree char *dir = g_path_get_dirname (path);
  struct stat st;

  g_assert_no_error (err);
  virt_state_commit (s, CP1, JOB1, images, targets);
  virt_state_commit (s, CP2, JOB2, more, NULL);
  g_assert_true (virt_state_save (s, &err));
  g_assert_no_error (err);

  g_assert_cmpint (stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0600);
  g_assert_cmpint (stat (dir, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0700);

  t = virt_state_load (f->dir, VM, &err);
  g_assert_no_error (err);
  disks = virt_state_disks (t);
  g_assert_cmpuint (disks->len, ==, 3);
  g_assert_cmpstr (g_ptr_array_index (disks, 0), ==, IMG1);
  g_assert_cmpstr (g_ptr_array_index (disks, 1), ==, IMG2);
  g_assert_cmpstr (g_ptr_array_index (disks, 2), ==, IMG3);
  g_assert_cmpstr (virt_state_disk_checkpoint (t, IMG1), ==, CP1);
  g_assert_cmpstr (virt_state_disk_target (t, IMG1), ==, "vda");
  g_assert_cmpstr (virt_state_disk_target (t, IMG2), ==, "vdb");
  g_assert_cmpstr (virt_state_disk_checkpoint (t, IMG3), ==, CP2);
  g_assert_null (virt_state_disk_target (t, IMG3));
  g_assert_false (virt_state_get_pending (t, NULL, NULL, NULL, NULL));

  /* Saving again replaces the file. */
  virt_state_forget_disk (t, IMG2);
  g_assert_true (virt_state_save (t, &err));
  g_clear_pointer (&t, virt_state_free);
  t = virt_state_load (f->dir, VM, &err);
  g_assert_no_error (err);
  g_assert_null (virt_state_disk_checkpoint (t, IMG2));
  g_assert_cmpstr (virt_state_disk_checkpoint (t, IMG1), ==, CP1);
}

static void
test_pending (fixture *f, gconstpointer data)
{
  const char *images[] = { IMG1, IMG2, NULL };
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_state) s = virt_state_load (f->dir, VM, &err);
  g_autoptr (virt_state) t = NULL;
  const char *job, *cp;
  const char *const *got;
  gboolean running = FALSE;

  g_assert_no_error (err);
  virt_state_set_pending (s, JOB1, CP1, TRUE, images);
  g_assert_true (virt_state_save (s, &err));
  g_assert_no_error (err);

  t = virt_state_load (f->dir, VM, &err);
  g_assert_no_error (err);
  g_assert_true (virt_state_get_pending (t, &job, &cp, &running, &got));
  g_assert_cmpstr (job, ==, JOB1);
  g_assert_cmpstr (cp, ==, CP1);
  g_assert_true (running);
  g_assert_cmpstr (got[0], ==, IMG1);
  g_assert_cmpstr (got[1], ==, IMG2);
  g_assert_null (got[2]);

  /* Replacing it, with a stopped VM and no disks. */
  virt_state_set_pending (t, JOB2, CP2, FALSE, NULL);
  g_assert_true (virt_state_get_pending (t, &job, &cp, &running, &got));
  g_assert_cmpstr (job, ==, JOB2);
  g_assert_false (running);
  g_assert_null (got[0]);

  virt_state_clear_pending (t);
  g_assert_false (virt_state_get_pending (t, &job, NULL, NULL, NULL));
  g_assert_true (virt_state_save (t, &err));
  g_clear_pointer (&t, virt_state_free);
  t = virt_state_load (f->dir, VM, &err);
  g_assert_no_error (err);
  g_assert_false (virt_state_get_pending (t, NULL, NULL, NULL, NULL));
}

static void
test_commit_clears_pending (fixture *f, gconstpointer data)
{
  const char *images[] = { IMG1, NULL };
  const char *targets[] = { "sda", NULL };
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_state) s = virt_state_load (f->dir, VM, &err);

  virt_state_set_pending (s, JOB1, CP1, TRUE, images);
  virt_state_commit (s, CP1, JOB1, images, targets);
  g_assert_false (virt_state_get_pending (s, NULL, NULL, NULL, NULL));
  g_assert_cmpstr (virt_state_disk_checkpoint (s, IMG1), ==, CP1);
  g_assert_cmpstr (virt_state_disk_target (s, IMG1), ==, "sda");

  /* A later backup of the same disk moves it on. */
  virt_state_commit (s, CP2, JOB2, images, NULL);
  g_assert_cmpstr (virt_state_disk_checkpoint (s, IMG1), ==, CP2);
}

static void
test_forget (fixture *f, gconstpointer data)
{
  const char *first[] = { IMG1, IMG2, NULL };
  const char *second[] = { IMG2, NULL };
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_state) s = virt_state_load (f->dir, VM, &err);
  g_autoptr (GPtrArray) disks = NULL;

  virt_state_commit (s, CP1, JOB1, first, NULL);
  virt_state_commit (s, CP2, JOB2, second, NULL);
  virt_state_forget_checkpoint (s, CP1);
  g_assert_null (virt_state_disk_checkpoint (s, IMG1));
  g_assert_cmpstr (virt_state_disk_checkpoint (s, IMG2), ==, CP2);
  virt_state_forget_checkpoint (s, CP1);     /* nothing left: no-op */
  virt_state_forget_disk (s, IMG2);
  virt_state_forget_disk (s, IMG3);          /* unknown: no-op */
  disks = virt_state_disks (s);
  g_assert_cmpuint (disks->len, ==, 0);
}

#define GOOD_DISK "{\"target\":\"vda\",\"checkpoint\":\"" CP1 "\",\"job\":\"" JOB1 \
  "\",\"time\":\"2024-05-01T10:00:00Z\"}"
#define HEAD "{\"format\":\"ovagent-vm-state\",\"version\":1,\"vm\":\"" VM "\","

static void
test_hand_written (fixture *f, gconstpointer data)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_state) s = NULL;

  write_state (f, HEAD "\"disks\":{\"" IMG1 "\":" GOOD_DISK "},\"pending\":null}");
  s = virt_state_load (f->dir, VM, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (virt_state_disk_checkpoint (s, IMG1), ==, CP1);
}

static void
test_corrupt (fixture *f, gconstpointer data)
{
  static const char *const bad[] = {
    "",
    "not json",
    "[]",
    "{\"format\":\"other\",\"version\":1,\"vm\":\"" VM "\",\"disks\":{},\"pending\":null}",
    "{\"format\":\"ovagent-vm-state\",\"version\":2,\"vm\":\"" VM "\",\"disks\":{},\"pending\":null}",
    "{\"format\":\"ovagent-vm-state\",\"version\":\"1\",\"vm\":\"" VM "\",\"disks\":{},\"pending\":null}",
    "{\"format\":\"ovagent-vm-state\",\"version\":1,\"vm\":\"" OTHER_VM "\",\"disks\":{},\"pending\":null}",
    HEAD "\"disks\":[],\"pending\":null}",
    HEAD "\"disks\":{}}",
    HEAD "\"disks\":{\"../x\":" GOOD_DISK "},\"pending\":null}",
    HEAD "\"disks\":{\"" IMG1 "\":{\"target\":\"../vda\",\"checkpoint\":\"" CP1
      "\",\"job\":\"" JOB1 "\",\"time\":\"2024-05-01T10:00:00Z\"}},\"pending\":null}",
    HEAD "\"disks\":{\"" IMG1 "\":{\"target\":\"VDA\",\"checkpoint\":\"" CP1
      "\",\"job\":\"" JOB1 "\",\"time\":\"2024-05-01T10:00:00Z\"}},\"pending\":null}",
    HEAD "\"disks\":{\"" IMG1 "\":{\"target\":\"vda\",\"checkpoint\":\"x\",\"job\":\""
      JOB1 "\",\"time\":\"2024-05-01T10:00:00Z\"}},\"pending\":null}",
    HEAD "\"disks\":{\"" IMG1 "\":{\"target\":\"vda\",\"checkpoint\":\"" CP1
      "\",\"job\":\"" JOB1 "\",\"time\":\"yesterday\"}},\"pending\":null}",
    HEAD "\"disks\":{\"" IMG1 "\":{\"target\":\"vda\",\"checkpoint\":\"" CP1
      "\",\"job\":\"" JOB1 "\",\"time\":\"2024-05-01T10:00:00+02:00\"}},\"pending\":null}",
    HEAD "\"disks\":{\"" IMG1 "\":{\"target\":\"vda\",\"checkpoint\":\"" CP1
      "\",\"time\":\"2024-05-01T10:00:00Z\"}},\"pending\":null}",
    HEAD "\"disks\":{\"" IMG1 "\":{\"target\":7,\"checkpoint\":\"" CP1
      "\",\"job\":\"" JOB1 "\",\"time\":\"2024-05-01T10:00:00Z\"}},\"pending\":null}",
    HEAD "\"disks\":{},\"pending\":{\"job\":\"" JOB1 "\",\"checkpoint\":\"" CP1
      "\",\"running\":1,\"started\":\"2024-05-01T10:00:00Z\",\"disks\":[]}}",
    HEAD "\"disks\":{},\"pending\":{\"job\":\"" JOB1 "\",\"checkpoint\":\"" CP1
      "\",\"running\":true,\"started\":\"2024-05-01T10:00:00Z\",\"disks\":[\"x\"]}}",
    HEAD "\"disks\":{},\"pending\":{\"job\":\"" JOB1 "\",\"checkpoint\":\"" CP1
      "\",\"running\":true,\"started\":\"2024-05-01T10:00:00Z\"}}",
    HEAD "\"disks\":{},\"pending\":\"yes\"}",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) err = NULL;
    g_autoptr (virt_state) s = NULL;
    g_autofree char *path = state_path (f);

    write_state (f, bad[i]);
    s = virt_state_load (f->dir, VM, &err);
    if (s != NULL)
      g_error ("accepted: %s", bad[i]);
    g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
    g_assert_nonnull (strstr (err->message, path));
  }
}

static void
test_lock (fixture *f, gconstpointer data)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *run = g_build_filename (f->dir, "run", NULL);
  int fd1, fd2, fd3;

  fd1 = virt_state_lock (run, VM, &err);
  g_assert_no_error (err);
  g_assert_cmpint (fd1, >=, 0);

  fd2 = virt_state_lock (run, VM, &err);
  g_assert_cmpint (fd2, ==, -1);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_BUSY);
  g_assert_nonnull (strstr (err->message, VM));
  g_clear_error (&err);

  /* Another VM is not held up. */
  fd3 = virt_state_lock (run, OTHER_VM, &err);
  g_assert_no_error (err);
  g_assert_cmpint (fd3, >=, 0);
  close (fd3);

  close (fd1);
  fd2 = virt_state_lock (run, VM, &err);
  g_assert_no_error (err);
  g_assert_cmpint (fd2, >=, 0);
  close (fd2);

  g_assert_cmpint (virt_state_lock (run, "not-a-uuid", &err), ==, -1);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
}

/* ------------------------------------------------------------------ */
/* Image bitmaps */

static gboolean
have_qemu_img (void)
{
  g_autofree char *p = g_find_program_in_path ("qemu-img");

  if (p == NULL)
    g_test_skip ("qemu-img not installed");
  return p != NULL;
}

static char *
make_image (const fixture *f, const char *name, const char *backing)
{
  g_autofree char *path = g_build_filename (f->dir, name, NULL);
  g_autoptr (GError) err = NULL;
  const char *plain[] = { "qemu-img", "create", "-q", "-f", "qcow2", path, "1M", NULL };
  const char *over[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                         "-b", backing, path, NULL };

  g_assert_true (fixture_run (backing ? over : plain, NULL, &err));
  g_assert_no_error (err);
  return g_steal_pointer (&path);
}

static const virt_image_bitmap *
find (GPtrArray *bitmaps, const char *name)
{
  for (guint i = 0; i < bitmaps->len; i++) {
    const virt_image_bitmap *b = g_ptr_array_index (bitmaps, i);

    if (strcmp (b->name, name) == 0)
      return b;
  }
  return NULL;
}

static void
test_image_bitmaps (fixture *f, gconstpointer data)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *base = NULL;
  g_autofree char *top = NULL;
  g_autofree char *gone = NULL;
  g_autoptr (GPtrArray) bms = NULL;
  const virt_image_bitmap *b;

  if (!have_qemu_img ())
    return;
  base = make_image (f, "base.qcow2", NULL);
  top = make_image (f, "top.qcow2", "base.qcow2");
  /* The backing file is never opened: make it unreachable. */
  gone = g_build_filename (f->dir, "moved.qcow2", NULL);
  g_assert_cmpint (g_rename (base, gone), ==, 0);

  bms = virt_image_bitmaps (top, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (bms->len, ==, 0);
  g_clear_pointer (&bms, g_ptr_array_unref);

  g_assert_true (virt_image_bitmap_add (top, CP1, &err));
  g_assert_no_error (err);
  g_assert_true (virt_image_bitmap_disable (top, CP1, &err));
  g_assert_true (virt_image_bitmap_add (top, CP2, &err));
  g_assert_no_error (err);

  bms = virt_image_bitmaps (top, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (bms->len, ==, 2);
  b = find (bms, CP1);
  g_assert_nonnull (b);
  g_assert_false (b->enabled);
  g_assert_false (b->in_use);
  b = find (bms, CP2);
  g_assert_nonnull (b);
  g_assert_true (b->enabled);
  g_clear_pointer (&bms, g_ptr_array_unref);

  /* Adding one that exists fails and names the image. */
  g_assert_false (virt_image_bitmap_add (top, CP1, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTERNAL);
  g_assert_nonnull (strstr (err->message, top));
  g_clear_error (&err);

  /* Deleting CP2 as libvirt does: merge into its parent, then remove. */
  g_assert_true (virt_image_bitmap_merge (top, CP2, CP1, &err));
  g_assert_no_error (err);
  g_assert_true (virt_image_bitmap_remove (top, CP2, &err));
  g_assert_no_error (err);
  g_assert_true (virt_image_bitmap_remove (top, CP2, &err));   /* absent */
  g_assert_no_error (err);

  bms = virt_image_bitmaps (top, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (bms->len, ==, 1);
  g_assert_nonnull (find (bms, CP1));
  g_clear_pointer (&bms, g_ptr_array_unref);

  g_assert_false (virt_image_bitmap_add (top, "", &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
  g_clear_error (&err);

  {
    g_autofree char *missing = g_build_filename (f->dir, "missing.qcow2", NULL);

    g_assert_null (virt_image_bitmaps (missing, &err));
    g_assert_nonnull (err);
    g_assert_nonnull (strstr (err->message, missing));
  }
}

static void
test_redefine_xml (fixture *f, gconstpointer data)
{
  const char *targets[] = { "vda", "vdb", NULL };
  g_autofree char *xml = virt_checkpoint_redefine_xml (CP2, CP1, 1714557600, targets);
  g_autofree char *root = virt_checkpoint_redefine_xml (CP1, NULL, 1, NULL);
  g_autoptr (GError) err = NULL;
  g_autofree char *path = NULL;
  g_autofree char *back = NULL;
  struct stat st;

  g_assert_nonnull (strstr (xml, "<name>" CP2 "</name>"));
  g_assert_nonnull (strstr (xml, "<parent>\n    <name>" CP1 "</name>\n  </parent>"));
  g_assert_nonnull (strstr (xml, "<creationTime>1714557600</creationTime>"));
  g_assert_nonnull (strstr (xml, "<disk name='vda' checkpoint='bitmap' bitmap='" CP2 "'/>"));
  g_assert_nonnull (strstr (xml, "<disk name='vdb' checkpoint='bitmap' bitmap='" CP2 "'/>"));
  g_assert_null (strstr (root, "<parent>"));
  g_assert_null (strstr (root, "<disks>"));

  g_assert_true (virt_checkpoint_save_xml (f->dir, VM, CP2, xml, &err));
  g_assert_no_error (err);
  path = virt_checkpoint_saved_path (f->dir, VM, CP2, &err);
  g_assert_true (g_file_get_contents (path, &back, NULL, &err));
  g_assert_cmpstr (back, ==, xml);
  g_assert_cmpint (stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0600);

  g_assert_false (virt_checkpoint_save_xml (f->dir, VM, "../x", xml, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, fn) \
  g_test_add (path, fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/state/missing", test_missing);
  ADD ("/state/bad-vm", test_bad_vm);
  ADD ("/state/round-trip", test_round_trip);
  ADD ("/state/pending", test_pending);
  ADD ("/state/commit", test_commit_clears_pending);
  ADD ("/state/forget", test_forget);
  ADD ("/state/hand-written", test_hand_written);
  ADD ("/state/corrupt", test_corrupt);
  ADD ("/state/lock", test_lock);
  ADD ("/bitmap/image", test_image_bitmaps);
  ADD ("/checkpoint/redefine-xml", test_redefine_xml);
#undef ADD
  return g_test_run ();
}
