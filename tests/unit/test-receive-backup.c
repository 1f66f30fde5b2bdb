/* ovagent: unit tests of receiving changed-block ("backup" mode) streams into a
 * repository, checked against reference raw images with the real qemu-img. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "error.h"
#include "util.h"
#include "fixture.h"
#include "repo/receive-priv.h"
#include "repo/repo.h"
#include "storage/qemu-img.h"
#include "stream/stream.h"

#define DISK_A "0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b"
#define DISK_B "5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60"
#define DISK_C "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"
#define VM "11111111-2222-4333-8444-555555555555"
#define JOB "22222222-3333-4444-8555-666666666666"
#define SD "33333333-4444-4555-8666-777777777777"
#define CP1 "c0000001-0000-4000-8000-000000000001"
#define CP2 "c0000002-0000-4000-8000-000000000002"
#define CP3 "c0000003-0000-4000-8000-000000000003"
#define CP4 "c0000004-0000-4000-8000-000000000004"
#define CP5 "c0000005-0000-4000-8000-000000000005"
#define CP_UNKNOWN "c00000ff-0000-4000-8000-0000000000ff"

#define KiB 1024
#define MiB (1024 * 1024)
#define DISK_SIZE (4 * MiB)

/* One frame of a test disk: DATA of bytes `fill`, ZERO or HOLE. */
typedef struct seg {
  guint32 type;
  guint64 len;
  guint8 fill;
} seg;

typedef struct disk_plan {
  const char *disk;
  const char *kind;            /* "full" | "incremental" | "differential" */
  const char *from;            /* from_checkpoint or NULL */
  const seg *segs;
  size_t n;
} disk_plan;

static char *tmp_dir;
static char *repo_dir;

/* The content of a disk as a reference: a DISK_SIZE buffer. */
static guint8 *
ref_new (const guint8 *from)
{
  return from ? g_memdup2 (from, DISK_SIZE) : g_malloc0 (DISK_SIZE);
}

/* What the frames mean for the guest view (contract: HOLE of a full reads
 * as zeros, of an incremental leaves the backing). */
static void
ref_apply (guint8 *ref, const disk_plan *p)
{
  guint64 off = 0;
  gboolean full = strcmp (p->kind, "full") == 0;

  for (size_t i = 0; i < p->n; i++) {
    const seg *s = &p->segs[i];

    if (s->type == STRM_FRAME_DATA)
      memset (ref + off, s->fill, s->len);
    else if (s->type == STRM_FRAME_ZERO || full)
      memset (ref + off, 0, s->len);
    off += s->len;
  }
  g_assert_cmpuint (off, ==, DISK_SIZE);
}

static char *
meta_json (const char *checkpoint, const disk_plan *plans, size_t n)
{
  g_autoptr(GString) s = g_string_new (NULL);

  g_string_append_printf (s, "{\"format\":\"ovagent-stream\",\"version\":1,"
                          "\"tool\":\"test\",\"host\":\"node1\","
                          "\"created\":\"2026-11-22T03:10:00Z\",\"mode\":\"backup\","
                          "\"vm\":{\"uuid\":\"" VM "\",\"name\":\"vm1\",\"running\":true},"
                          "\"job\":\"" JOB "\",\"checkpoint\":\"%s\","
                          "\"checkpoint_xml\":\"<domaincheckpoint/>\",\"volumes\":[",
                          checkpoint);
  for (size_t i = 0; i < n; i++) {
    g_string_append_printf (s, "%s{\"uuid\":\"%s\",\"disk\":\"%s\",\"target\":\"vd%c\","
                            "\"domain\":\"" SD "\",\"volume\":null,\"kind\":\"%s\","
                            "\"from_checkpoint\":%s%s%s,\"format\":\"guest\","
                            "\"size\":%d,\"capacity\":%d}",
                            i ? "," : "", plans[i].disk, plans[i].disk, (char) ('a' + i),
                            plans[i].kind, plans[i].from ? "\"" : "",
                            plans[i].from ? plans[i].from : "null",
                            plans[i].from ? "\"" : "", DISK_SIZE, DISK_SIZE);
  }
  g_string_append (s, "]}");
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/* A stream file of the plans; cut bytes removed from its end. */
static char *
write_stream (const char *name, const char *checkpoint, const disk_plan *plans,
              size_t n, off_t cut)
{
  g_autofree char *path = g_build_filename (tmp_dir, name, NULL);
  g_autofree char *meta = meta_json (checkpoint, plans, n);
  g_autofree guint8 *buf = g_malloc (MiB);
  g_autoptr(GError) err = NULL;
  struct stat st;
  int fd;

  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g_assert_cmpint (fd, >=, 0);
  {
    g_autoptr(strm_sink) sink = strm_sink_fd_new (fd, path);
    g_autoptr(strm_encoder) e = strm_encoder_new (sink, 0);

    g_assert_true (strm_encoder_meta (e, meta, &err));
    for (size_t i = 0; i < n; i++) {
      guint64 off = 0;

      g_assert_true (strm_encoder_begin (e, plans[i].disk, DISK_SIZE, &err));
      for (size_t j = 0; j < plans[i].n; j++) {
        const seg *s = &plans[i].segs[j];

        if (s->type == STRM_FRAME_DATA) {
          for (guint64 done = 0; done < s->len; done += MiB) {
            guint64 len = MIN ((guint64) MiB, s->len - done);

            memset (buf, s->fill, len);
            g_assert_true (strm_encoder_data (e, off + done, buf, len, &err));
          }
        }
        else if (s->type == STRM_FRAME_ZERO)
          g_assert_true (strm_encoder_zero (e, off, s->len, &err));
        else
          g_assert_true (strm_encoder_hole (e, off, s->len, &err));
        off += s->len;
      }
      g_assert_true (strm_encoder_end (e, &err));
    }
    g_assert_true (strm_encoder_finish (e, &err));
    g_assert_no_error (err);
  }
  close (fd);
  if (cut > 0) {
    g_assert_cmpint (stat (path, &st), ==, 0);
    g_assert_cmpint (truncate (path, st.st_size - cut), ==, 0);
  }
  return g_steal_pointer (&path);
}

static gboolean
receive_file (const char *path, repo_receive_result *res, GError **error)
{
  repo_receive_opts opts = { .run_dir = tmp_dir };
  gboolean ok;
  int fd;

  fd = open (path, O_RDONLY | O_CLOEXEC);
  g_assert_cmpint (fd, >=, 0);
  ok = repo_receive (repo_dir, fd, &opts, res, error);
  close (fd);
  return ok;
}

static char *
top_of (const char *disk, const char *id)
{
  return g_build_filename (repo_dir, REPO_DISKS, disk, id, disk, NULL);
}

/* qemu-img compare of a backup's top (with its chain) and a raw image of ref. */
static void
assert_same (const char *disk, const char *id, const guint8 *ref)
{
  g_autofree char *top = top_of (disk, id);
  g_autofree char *qcow2 = g_strconcat (top, ".qcow2", NULL);
  g_autofree char *raw = g_build_filename (tmp_dir, "ref.raw", NULL);
  g_autoptr(GError) err = NULL;
  const char *argv[] = { "qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw",
                         qcow2, raw, NULL };

  g_assert_true (g_file_set_contents (raw, (const char *) ref, DISK_SIZE, &err));
  if (!fixture_run (argv, NULL, &err))
    g_error ("disk %s backup %s differs from the reference: %s", disk, id, err->message);
  g_unlink (raw);
}

/* qemu-img info --backing-chain: the chain's length and the top's backing. */
static void
assert_chain (const char *disk, const char *id, guint length, const char *backing)
{
  g_autofree char *top = top_of (disk, id);
  g_autofree char *qcow2 = g_strconcat (top, ".qcow2", NULL);
  g_autofree char *out = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  const char *argv[] = { "qemu-img", "info", "--backing-chain", "--output=json",
                         qcow2, NULL };
  JsonArray *a;
  JsonObject *o;

  g_assert_true (fixture_run (argv, &out, &err));
  g_assert_true (json_parser_load_from_data (parser, out, -1, &err));
  a = json_node_get_array (json_parser_get_root (parser));
  g_assert_cmpuint (json_array_get_length (a), ==, length);
  o = json_array_get_object_element (a, 0);
  g_assert_cmpstr (json_object_get_string_member_with_default (o, "format", ""), ==, "qcow2");
  g_assert_cmpint (json_object_get_int_member (o, "virtual-size"), ==, DISK_SIZE);
  g_assert_cmpstr (json_object_get_string_member_with_default (o, "backing-filename", NULL),
                   ==, backing);
}

/* The latest backup of disk keeps the stream's members and, of its disks,
 * only its own. */
static void
assert_own_meta (const char *disk)
{
  g_autofree char *dir = g_build_filename (repo_dir, REPO_DISKS, disk, NULL);
  g_autoptr(GError) err = NULL;
  g_autoptr(repo_manifest) m = repo_manifest_load (dir, disk, FALSE, &err);
  JsonObject *meta;
  JsonArray *vols;

  g_assert_no_error (err);
  meta = json_node_get_object (repo_manifest_latest (m)->meta);
  g_assert_cmpstr (json_object_get_string_member (meta, "checkpoint_xml"), ==,
                   "<domaincheckpoint/>");
  g_assert_cmpstr (json_object_get_string_member (meta, "job"), ==, JOB);
  vols = json_object_get_array_member (meta, "volumes");
  g_assert_cmpuint (json_array_get_length (vols), ==, 1);
  g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (vols, 0),
                                                  "uuid"), ==, disk);
}

/* Every path, type, mode and content hash under the repository. */
static void
snapshot_dir (GString *out, const char *dir, const char *rel)
{
  g_autoptr(GPtrArray) names = NULL;
  g_autoptr(GError) err = NULL;

  names = ova_list_dir_sorted (dir, &err);
  g_assert_no_error (err);
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    g_autofree char *path = g_build_filename (dir, name, NULL);
    g_autofree char *r = g_build_filename (rel, name, NULL);
    struct stat st;

    g_assert_cmpint (lstat (path, &st), ==, 0);
    if (S_ISDIR (st.st_mode)) {
      g_string_append_printf (out, "%s/ %o\n", r, st.st_mode);
      snapshot_dir (out, path, r);
    }
    else {
      g_autofree char *text = NULL;
      g_autofree char *sum = NULL;
      gsize len = 0;

      g_assert_true (g_file_get_contents (path, &text, &len, &err));
      sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guint8 *) text, len);
      g_string_append_printf (out, "%s %o %zu %s\n", r, st.st_mode, len, sum);
    }
  }
}

static char *
snapshot (void)
{
  GString *s = g_string_new (NULL);

  snapshot_dir (s, repo_dir, "");
  return g_string_free (s, FALSE);
}

static void
assert_refused (const char *name, const char *checkpoint, const disk_plan *plans,
                size_t n, off_t cut, int code)
{
  g_autofree char *before = snapshot ();
  g_autofree char *after = NULL;
  g_autofree char *path = write_stream (name, checkpoint, plans, n, cut);
  g_autoptr(GError) err = NULL;
  repo_receive_result res = { 0 };

  g_assert_false (receive_file (path, &res, &err));
  g_assert_error (err, OVA_ERROR, code);
  g_test_message ("%s: %s", name, err->message);
  after = snapshot ();
  g_assert_cmpstr (before, ==, after);
  g_unlink (path);
}

/* The disk content at each backup, for the comparisons. */
static guint8 *ref_a_full, *ref_a_inc, *ref_a_diff, *ref_b_full;
static char *id_full, *id_inc, *id_diff;

static const seg a_full[] = {
  { STRM_FRAME_DATA, 1 * MiB, 0x11 },
  { STRM_FRAME_ZERO, 1 * MiB, 0 },
  { STRM_FRAME_HOLE, 1 * MiB, 0 },
  { STRM_FRAME_DATA, 1 * MiB, 0x22 },
};
static const seg b_full[] = {
  { STRM_FRAME_DATA, 64 * KiB, 0x5a },
  { STRM_FRAME_HOLE, DISK_SIZE - 64 * KiB, 0 },
};

static void
test_full (void)
{
  const disk_plan plans[] = {
    { DISK_A, "full", NULL, a_full, G_N_ELEMENTS (a_full) },
    { DISK_B, "full", NULL, b_full, G_N_ELEMENTS (b_full) },
  };
  g_autofree char *path = write_stream ("full.strm", CP1, plans, 2, 0);
  g_autoptr(GError) err = NULL;
  repo_receive_result res = { 0 };
  const repo_receive_disk *d;

  g_assert_true (receive_file (path, &res, &err));
  g_assert_no_error (err);
  g_assert_nonnull (res.disks);
  g_assert_cmpuint (res.disks->len, ==, 2);
  g_assert_cmpstr (res.disk, ==, DISK_A);
  g_assert_cmpint (res.kind, ==, REPO_KIND_FULL);
  for (guint i = 0; i < 2; i++) {
    d = g_ptr_array_index (res.disks, i);
    g_assert_cmpstr (d->backup_id, ==, res.backup_id);
    g_assert_cmpint (d->kind, ==, REPO_KIND_FULL);
    g_assert_null (d->parent);
  }
  g_assert_cmpstr (((repo_receive_disk *) g_ptr_array_index (res.disks, 1))->disk, ==, DISK_B);
  id_full = g_strdup (res.backup_id);
  repo_receive_result_clear (&res);

  ref_a_full = ref_new (NULL);
  ref_apply (ref_a_full, &plans[0]);
  ref_b_full = ref_new (NULL);
  ref_apply (ref_b_full, &plans[1]);
  assert_same (DISK_A, id_full, ref_a_full);
  assert_same (DISK_B, id_full, ref_b_full);
  assert_chain (DISK_A, id_full, 1, NULL);
  assert_chain (DISK_B, id_full, 1, NULL);
  assert_own_meta (DISK_A);
  assert_own_meta (DISK_B);
  g_unlink (path);
}

static void
test_incremental (void)
{
  static const seg a_inc[] = {
    { STRM_FRAME_HOLE, 512 * KiB, 0 },          /* unchanged: 0x11 stays */
    { STRM_FRAME_DATA, 512 * KiB, 0x33 },
    { STRM_FRAME_HOLE, 2 * MiB, 0 },
    { STRM_FRAME_ZERO, 512 * KiB, 0 },          /* zeros over 0x22 of the full */
    { STRM_FRAME_HOLE, 512 * KiB, 0 },
  };
  const disk_plan plan = { DISK_A, "incremental", CP1, a_inc, G_N_ELEMENTS (a_inc) };
  g_autofree char *path = write_stream ("inc.strm", CP2, &plan, 1, 0);
  g_autofree char *backing = NULL;
  g_autoptr(GError) err = NULL;
  repo_receive_result res = { 0 };
  const repo_receive_disk *d;

  g_assert_nonnull (id_full);
  g_assert_true (receive_file (path, &res, &err));
  g_assert_no_error (err);
  g_assert_cmpuint (res.disks->len, ==, 1);
  d = g_ptr_array_index (res.disks, 0);
  g_assert_cmpint (d->kind, ==, REPO_KIND_INCREMENTAL);
  g_assert_cmpstr (d->parent, ==, id_full);
  g_assert_cmpstr (res.backup_id, !=, id_full);
  id_inc = g_strdup (res.backup_id);
  repo_receive_result_clear (&res);

  ref_a_inc = ref_new (ref_a_full);
  ref_apply (ref_a_inc, &plan);
  /* The reference itself: HOLE kept the full's bytes, ZERO cleared them. */
  g_assert_cmpuint (ref_a_inc[0], ==, 0x11);
  g_assert_cmpuint (ref_a_inc[3 * MiB], ==, 0);
  g_assert_cmpuint (ref_a_inc[3 * MiB + 512 * KiB], ==, 0x22);
  assert_same (DISK_A, id_inc, ref_a_inc);
  /* The full is what it was. */
  assert_same (DISK_A, id_full, ref_a_full);
  backing = g_strdup_printf ("../%s/%s.qcow2", id_full, DISK_A);
  assert_chain (DISK_A, id_inc, 2, backing);
  g_unlink (path);
}

static void
test_differential (void)
{
  static const seg a_diff[] = {
    { STRM_FRAME_DATA, 64 * KiB, 0x44 },
    { STRM_FRAME_HOLE, 960 * KiB, 0 },
    { STRM_FRAME_ZERO, 64 * KiB, 0 },
    { STRM_FRAME_HOLE, DISK_SIZE - 1088 * KiB, 0 },
  };
  const disk_plan plan = { DISK_A, "differential", CP1, a_diff, G_N_ELEMENTS (a_diff) };
  g_autofree char *path = write_stream ("diff.strm", CP3, &plan, 1, 0);
  g_autofree char *backing = NULL;
  g_autoptr(GError) err = NULL;
  repo_receive_result res = { 0 };
  const repo_receive_disk *d;

  g_assert_nonnull (id_inc);
  g_assert_true (receive_file (path, &res, &err));
  g_assert_no_error (err);
  d = g_ptr_array_index (res.disks, 0);
  g_assert_cmpint (d->kind, ==, REPO_KIND_DIFFERENTIAL);
  g_assert_cmpstr (d->parent, ==, id_full);
  id_diff = g_strdup (res.backup_id);
  repo_receive_result_clear (&res);

  /* Relative to the full: the incremental's changes are not in it. */
  ref_a_diff = ref_new (ref_a_full);
  ref_apply (ref_a_diff, &plan);
  assert_same (DISK_A, id_diff, ref_a_diff);
  assert_same (DISK_A, id_inc, ref_a_inc);
  backing = g_strdup_printf ("../%s/%s.qcow2", id_full, DISK_A);
  assert_chain (DISK_A, id_diff, 2, backing);
  g_unlink (path);
}

static void
test_refusals (void)
{
  static const seg a_small[] = {
    { STRM_FRAME_DATA, 64 * KiB, 0x77 },
    { STRM_FRAME_HOLE, DISK_SIZE - 64 * KiB, 0 },
  };
  /* The latest backup of A is the differential (CP3): CP2 is not it. */
  const disk_plan stale = { DISK_A, "incremental", CP2, a_small, G_N_ELEMENTS (a_small) };
  const disk_plan unknown = { DISK_A, "differential", CP_UNKNOWN, a_small,
                              G_N_ELEMENTS (a_small) };
  /* A is fine, B is not: neither is written. */
  const disk_plan mixed[] = {
    { DISK_A, "incremental", CP3, a_small, G_N_ELEMENTS (a_small) },
    { DISK_B, "incremental", CP2, a_small, G_N_ELEMENTS (a_small) },
  };
  /* Cut before STREAM_END: A would be an incremental, C a new disk. */
  const disk_plan cut[] = {
    { DISK_A, "incremental", CP3, a_small, G_N_ELEMENTS (a_small) },
    { DISK_C, "full", NULL, a_full, G_N_ELEMENTS (a_full) },
  };
  /* A chain export is no parent for an incremental: an incremental of a
   * disk with no backup at all. */
  const disk_plan nothing = { DISK_C, "incremental", CP1, a_small, G_N_ELEMENTS (a_small) };
  g_autofree char *disk_c = g_build_filename (repo_dir, REPO_DISKS, DISK_C, NULL);

  g_assert_nonnull (id_diff);
  assert_refused ("stale.strm", CP4, &stale, 1, 0, OVA_ERROR_INTEGRITY);
  assert_refused ("unknown.strm", CP4, &unknown, 1, 0, OVA_ERROR_INTEGRITY);
  assert_refused ("mixed.strm", CP4, mixed, 2, 0, OVA_ERROR_INTEGRITY);
  assert_refused ("nothing.strm", CP4, &nothing, 1, 0, OVA_ERROR_INTEGRITY);
  assert_refused ("cut.strm", CP4, cut, 2, 10, OVA_ERROR_TRANSPORT);
  g_assert_false (g_file_test (disk_c, G_FILE_TEST_EXISTS));
  /* The checkpoint this backup creates cannot be the one it continues from. */
  {
    const disk_plan self = { DISK_A, "incremental", CP3, a_small, G_N_ELEMENTS (a_small) };

    assert_refused ("self.strm", CP3, &self, 1, 0, OVA_ERROR_INTEGRITY);
  }
  /* A checkpoint already in the repository cannot be created again. */
  {
    const disk_plan again = { DISK_A, "incremental", CP3, a_small, G_N_ELEMENTS (a_small) };

    assert_refused ("again.strm", CP1, &again, 1, 0, OVA_ERROR_INTEGRITY);
  }
  /* Another receive writes disk B: the whole stream is refused before
   * anything is looked at, and the lock it took of A is let go again. */
  {
    g_autoptr(GError) err = NULL;
    g_autoptr(repo) r = repo_open (repo_dir, TRUE, REPO_LOCK_SHARED, &err);
    g_autoptr(GPtrArray) held = g_ptr_array_new ();
    g_autofree char *lock_b = g_build_filename (repo_dir, REPO_LOCKS, DISK_B, NULL);
    repo_disk_locks *locks;

    g_assert_no_error (err);
    g_ptr_array_add (held, (gpointer) DISK_B);
    locks = repo_lock_disks (r, held, &err);
    g_assert_no_error (err);
    g_assert_true (g_file_test (lock_b, G_FILE_TEST_IS_REGULAR));
    assert_refused ("busy.strm", CP4, mixed, 2, 0, OVA_ERROR_BUSY);
    repo_disk_locks_release (locks);
    g_assert_false (g_file_test (lock_b, G_FILE_TEST_EXISTS));
  }
}

/* What was refused changed nothing; what was committed verifies, resolves
 * and reads back; a further incremental continues the differential. */
static void
test_verify_resolve (void)
{
  static const seg b_inc[] = {
    { STRM_FRAME_HOLE, 32 * KiB, 0 },
    { STRM_FRAME_ZERO, 32 * KiB, 0 },
    { STRM_FRAME_DATA, 1 * MiB, 0x66 },
    { STRM_FRAME_HOLE, DISK_SIZE - 1088 * KiB, 0 },
  };
  static const seg a_inc2[] = {
    { STRM_FRAME_HOLE, 2 * MiB, 0 },
    { STRM_FRAME_DATA, 4 * KiB, 0x99 },
    { STRM_FRAME_HOLE, 2 * MiB - 4 * KiB, 0 },
  };
  const disk_plan plans[] = {
    { DISK_A, "incremental", CP3, a_inc2, G_N_ELEMENTS (a_inc2) },
    { DISK_B, "incremental", CP1, b_inc, G_N_ELEMENTS (b_inc) },
  };
  g_autofree char *path = NULL;
  g_autofree char *backing = NULL;
  g_autoptr(GPtrArray) layers = NULL;
  g_autofree char *resolved = NULL;
  g_autofree guint8 *ref_a = NULL;
  g_autofree guint8 *ref_b = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(repo) r = NULL;
  repo_receive_result res = { 0 };
  repo_verify_result vres = { 0 };
  guint64 vsize = 0;

  g_assert_nonnull (id_diff);
  path = write_stream ("inc2.strm", CP5, plans, 2, 0);
  g_assert_true (receive_file (path, &res, &err));
  g_assert_no_error (err);
  ref_a = ref_new (ref_a_diff);
  ref_apply (ref_a, &plans[0]);
  ref_b = ref_new (ref_b_full);
  ref_apply (ref_b, &plans[1]);
  assert_same (DISK_A, res.backup_id, ref_a);
  assert_same (DISK_B, res.backup_id, ref_b);
  backing = g_strdup_printf ("../%s/%s.qcow2", id_diff, DISK_A);
  assert_chain (DISK_A, res.backup_id, 3, backing);

  r = repo_open (repo_dir, FALSE, REPO_LOCK_SHARED, &err);
  g_assert_no_error (err);
  g_assert_true (repo_verify (r, NULL, NULL, NULL, &vres, &err));
  g_assert_no_error (err);
  g_assert_cmpuint (vres.disks, ==, 2);
  g_assert_cmpuint (vres.backups, ==, 4 + 2);
  g_assert_cmpuint (vres.files, ==, 6);

  g_assert_true (repo_resolve (r, DISK_A, NULL, &layers, &vsize, &resolved, &err));
  g_assert_no_error (err);
  g_assert_cmpstr (resolved, ==, res.backup_id);
  g_assert_cmpuint (vsize, ==, DISK_SIZE);
  /* The latest is backed by the differential, itself backed by the full. */
  g_assert_cmpuint (layers->len, ==, 3);
  for (guint i = 0; i < layers->len; i++) {
    const stor_layer *l = g_ptr_array_index (layers, i);

    g_assert_cmpstr (l->format, ==, "qcow2");
    g_assert_true (g_str_has_suffix (l->path, DISK_A ".qcow2"));
  }
  g_assert_nonnull (strstr (((const stor_layer *) layers->pdata[0])->path, res.backup_id));
  g_assert_nonnull (strstr (((const stor_layer *) layers->pdata[1])->path, id_diff));
  g_assert_nonnull (strstr (((const stor_layer *) layers->pdata[2])->path, id_full));
  g_clear_pointer (&layers, g_ptr_array_unref);
  g_clear_pointer (&resolved, g_free);
  g_assert_true (repo_resolve (r, DISK_A, id_inc, &layers, &vsize, &resolved, &err));
  g_assert_cmpstr (resolved, ==, id_inc);
  g_clear_pointer (&r, repo_close);

  /* A manifest the commit wrote parses again with its CBT members. */
  {
    g_autofree char *dir = g_build_filename (repo_dir, REPO_DISKS, DISK_A, NULL);
    g_autoptr(repo_manifest) m = repo_manifest_load (dir, DISK_A, FALSE, &err);
    const repo_backup *b;

    g_assert_no_error (err);
    g_assert_cmpuint (m->backups->len, ==, 4);
    b = g_ptr_array_index (m->backups, 2);
    g_assert_cmpint (b->kind, ==, REPO_KIND_DIFFERENTIAL);
    g_assert_cmpstr (b->checkpoint, ==, CP3);
    g_assert_cmpstr (b->from_checkpoint, ==, CP1);
    g_assert_cmpstr (b->parent, ==, id_full);
    g_assert_cmpstr (b->vm, ==, VM);
    g_assert_cmpstr (b->domain, ==, SD);
    g_assert_null (b->since);
  }
  repo_receive_result_clear (&res);
  g_unlink (path);
}

/* The digest read in a thread is the file's digest; a job stops when it
 * is abandoned or the signal flag is set while it is waited for. */
static void
test_digest_job (void)
{
  g_autofree char *path = g_build_filename (tmp_dir, "digest-job", NULL);
  g_autofree guint8 *buf = g_malloc (5 * MiB + 3);
  g_autofree char *want = NULL;
  g_autofree char *got = NULL;
  g_autoptr(GError) err = NULL;
  volatile sig_atomic_t cancel = 0;
  guint64 size = 0, want_size = 0;
  repo_rx_digest_job *j;

  for (gsize i = 0; i < 5 * MiB + 3; i++)
    buf[i] = (guint8) (i * 7 + i / 4096);
  g_assert_true (g_file_set_contents (path, (const char *) buf, 5 * MiB + 3, NULL));
  want = repo_file_digest (path, &want_size, NULL, &err);
  g_assert_no_error (err);

  j = repo_rx_digest_start (path, &err);
  g_assert_no_error (err);
  got = repo_rx_digest_finish (j, &cancel, &size, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (got, ==, want);
  g_assert_cmpuint (size, ==, want_size);

  repo_rx_digest_abandon (repo_rx_digest_start (path, &err));
  g_assert_no_error (err);
  repo_rx_digest_abandon (NULL);

  /* Set before the wait: the job may finish first, or stop interrupted. */
  cancel = 1;
  g_clear_pointer (&got, g_free);
  j = repo_rx_digest_start (path, &err);
  g_assert_no_error (err);
  got = repo_rx_digest_finish (j, &cancel, &size, &err);
  if (got == NULL)
    g_assert_error (err, OVA_ERROR, OVA_ERROR_INTERRUPTED);
  else
    g_assert_cmpstr (got, ==, want);
  g_unlink (path);
}

static gboolean
have_qemu (void)
{
  const char *argv[] = { "qemu-nbd", "--version", NULL };
  const char *argv2[] = { "qemu-img", "--version", NULL };

  return ova_run (argv, NULL, NULL, NULL) && ova_run (argv2, NULL, NULL, NULL);
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  int ret;

  g_test_init (&argc, &argv, NULL);
  if (!have_qemu ()) {
    g_printerr ("qemu-img or qemu-nbd is missing\n");
    return 77;
  }
  tmp_dir = g_dir_make_tmp ("test-receive-backup.XXXXXX", &err);
  g_assert_no_error (err);
  repo_dir = g_build_filename (tmp_dir, "repo", NULL);

  g_test_add_func ("/receive-backup/full", test_full);
  g_test_add_func ("/receive-backup/incremental", test_incremental);
  g_test_add_func ("/receive-backup/differential", test_differential);
  g_test_add_func ("/receive-backup/refusals", test_refusals);
  g_test_add_func ("/receive-backup/verify-resolve", test_verify_resolve);
  g_test_add_func ("/receive-backup/digest-job", test_digest_job);
  ret = g_test_run ();

  {
    const char *rm[] = { "rm", "-rf", "--", tmp_dir, NULL };

    ova_run (rm, NULL, NULL, NULL);
  }
  g_free (ref_a_full);
  g_free (ref_a_inc);
  g_free (ref_a_diff);
  g_free (ref_b_full);
  g_free (id_full);
  g_free (id_inc);
  g_free (id_diff);
  g_free (repo_dir);
  g_free (tmp_dir);
  return ret;
}
