/* ovagent tests: the checkpoint and backup XML sent to libvirt (golden files
 * in tests/data, rewritten with OVAGENT_REGENERATE_GOLDEN=1), NBD URIs, and
 * the bitmap chain rules on qemu-img info output. */
#include <config.h>

#include <string.h>

#include <glib.h>

#include "error.h"
#include "virt/checkpoint.h"

#define CP "3c1e6d36-6c2b-4f5a-9b0e-7d1f2a3b4c5d"
#define FROM "0b8a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
#define BACKUP "9f1e2d3c-4b5a-4968-8776-655443322110"
#define SOCK "/run/ovagent/backup-" BACKUP "/nbd.sock"
#define SCRATCH "/var/lib/ovagent/scratch/backup-" BACKUP

/* Compare with tests/data/NAME, or write it when regenerating. */
static void
check_golden (const char *name, const char *got)
{
  g_autofree char *path = g_build_filename (SRCDIR, "data", name, NULL);
  g_autofree char *want = NULL;
  g_autoptr (GError) err = NULL;

  if (g_getenv ("OVAGENT_REGENERATE_GOLDEN")) {
    g_assert_true (g_file_set_contents (path, got, -1, &err));
    g_test_message ("rewrote %s: review the diff", path);
    return;
  }
  if (!g_file_get_contents (path, &want, NULL, &err))
    g_error ("%s", err->message);
  g_assert_cmpstr (got, ==, want);
}

static void
test_checkpoint_xml (void)
{
  const char *disks[] = { "sda", "vda", NULL };
  g_autofree char *xml = virt_checkpoint_xml (CP, BACKUP, disks);

  check_golden ("checkpoint-domaincheckpoint.xml", xml);
}

static void
test_checkpoint_xml_no_disks (void)
{
  g_autofree char *xml = virt_checkpoint_xml (CP, BACKUP, NULL);

  g_assert_null (strstr (xml, "<disks>"));
  g_assert_nonnull (strstr (xml, "<name>" CP "</name>"));
}

static void
test_backup_xml_full (void)
{
  const virt_scratch_disk disks[] = {
    { "vda", SCRATCH "/vda.qcow2", FALSE, FALSE },
    { "vdb", SCRATCH "/vdb.qcow2", FALSE, FALSE },
  };
  g_autofree char *xml = virt_backup_xml (NULL, SOCK, disks, G_N_ELEMENTS (disks));

  check_golden ("checkpoint-backup-full.xml", xml);
}

static void
test_backup_xml_incremental (void)
{
  const virt_scratch_disk disks[] = {
    { "sda", "/dev/vg/scratch-sda", TRUE, TRUE },
    { "vda", SCRATCH "/vda.qcow2", FALSE, TRUE },
  };
  g_autofree char *xml = virt_backup_xml (FROM, SOCK, disks, G_N_ELEMENTS (disks));

  check_golden ("checkpoint-backup-incremental.xml", xml);
}

/* --auto: one disk whose bitmap chain broke is read in full. */
static void
test_backup_xml_mixed (void)
{
  const virt_scratch_disk disks[] = {
    { "vda", SCRATCH "/vda.qcow2", FALSE, TRUE },
    { "vdb", SCRATCH "/vdb.qcow2", FALSE, FALSE },
  };
  g_autofree char *xml = virt_backup_xml (FROM, SOCK, disks, G_N_ELEMENTS (disks));

  check_golden ("checkpoint-backup-mixed.xml", xml);
}

static void
test_xml_escaping (void)
{
  const virt_scratch_disk disks[] = {
    { "vda", "/tmp/a\"b<c>&'d.qcow2", FALSE, TRUE },
  };
  const char *cp_disks[] = { "v'a", NULL };
  g_autofree char *bk = virt_backup_xml ("a<b&c", "/tmp/s\"ock", disks, 1);
  g_autofree char *cp = virt_checkpoint_xml (CP, "x'<y>", cp_disks);

  g_assert_nonnull (strstr (bk, "<incremental>a&lt;b&amp;c</incremental>"));
  g_assert_nonnull (strstr (bk, "socket=\"/tmp/s&quot;ock\""));
  g_assert_nonnull (strstr (bk, "file=\"/tmp/a&quot;b&lt;c&gt;&amp;&apos;d.qcow2\""));
  g_assert_nonnull (strstr (bk, "incremental=\"a&lt;b&amp;c\""));
  g_assert_nonnull (strstr (cp, "backup 'x&apos;&lt;y&gt;'"));
  g_assert_nonnull (strstr (cp, "name='v&apos;a'"));
}

static void
test_nbd_uri (void)
{
  static const struct {
    const char *export_name, *socket, *uri;
  } cases[] = {
    { "vda", SOCK, "nbd+unix:///vda?socket=" SOCK },
    { "vdb", "/tmp/with space/s.sock", "nbd+unix:///vdb?socket=/tmp/with%20space/s.sock" },
    { "a?b", "/tmp/x&y=z", "nbd+unix:///a%3Fb?socket=/tmp/x%26y%3Dz" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *uri = virt_nbd_uri (cases[i].export_name, cases[i].socket);

    g_assert_cmpstr (uri, ==, cases[i].uri);
  }
}

static void
test_backup_for_id (void)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_backup) b = virt_backup_for_id ("/run/ovagent", "/var/lib/ovagent/scratch",
                                                  BACKUP, &err);
  g_autoptr (virt_backup) bad = NULL;
  g_autofree char *long_dir = g_strnfill (100, 'x');
  g_autofree char *long_run = g_strconcat ("/", long_dir, NULL);

  g_assert_no_error (err);
  g_assert_cmpstr (b->socket_path, ==, SOCK);
  g_assert_cmpstr (b->scratch_dir, ==, SCRATCH);

  bad = virt_backup_for_id ("/run", "/tmp", "../../etc", &err);
  g_assert_null (bad);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
  g_clear_error (&err);

  bad = virt_backup_for_id ("relative", "/tmp", BACKUP, &err);
  g_assert_null (bad);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
  g_clear_error (&err);

  /* Longer than sun_path. */
  bad = virt_backup_for_id (long_run, "/tmp", BACKUP, &err);
  g_assert_null (bad);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
}

static void
test_saved_path (void)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *p = virt_checkpoint_saved_path ("/var/lib/ovagent", BACKUP, CP, &err);
  g_autofree char *bad = NULL;

  g_assert_no_error (err);
  g_assert_cmpstr (p, ==, "/var/lib/ovagent/checkpoints/" BACKUP "/" CP ".xml");
  bad = virt_checkpoint_saved_path ("/var/lib/ovagent", BACKUP, "../x", &err);
  g_assert_null (bad);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
}

/* One node of `qemu-img info --backing-chain --output=json`. */
#define NODE(file, fmt, bitmaps)                                        \
  "{\"filename\": \"" file "\", \"format\": \"" fmt "\", "              \
  "\"format-specific\": {\"type\": \"qcow2\", \"data\": {\"compat\": \"1.1\"" \
  bitmaps "}}}"
#define BMS(...) ", \"bitmaps\": [" __VA_ARGS__ "]"
#define BM(name, flags) "{\"name\": \"" name "\", \"granularity\": 65536, \"flags\": [" flags "]}"

static void
test_bitmap_chain (void)
{
  static const struct {
    const char *what;
    const char *json;
    gboolean running;
    const char *problem;        /* substring of the reason; NULL = good */
  } cases[] = {
    { "top only", "[" NODE ("top", "qcow2", BMS (BM ("cp1", "\"auto\""))) "]",
      FALSE, NULL },
    { "contiguous down to a raw base",
      "[" NODE ("top", "qcow2", BMS (BM ("x", "\"auto\"") "," BM ("cp1", "\"auto\"")))
      "," NODE ("mid", "qcow2", BMS (BM ("cp1", "\"auto\"")))
      "," NODE ("base", "raw", "") "]", FALSE, NULL },
    { "top half of the chain",
      "[" NODE ("top", "qcow2", BMS (BM ("cp1", "\"auto\"")))
      "," NODE ("mid", "qcow2", "") "," NODE ("base", "qcow2", "") "]", FALSE, NULL },
    { "missing in the top",
      "[" NODE ("top", "qcow2", BMS (BM ("cp2", "\"auto\"")))
      "," NODE ("mid", "qcow2", BMS (BM ("cp1", "\"auto\""))) "]",
      FALSE, "bitmap cp1 is not in the top volume top" },
    { "gap",
      "[" NODE ("top", "qcow2", BMS (BM ("cp1", "\"auto\"")))
      "," NODE ("mid", "qcow2", "")
      "," NODE ("base", "qcow2", BMS (BM ("cp1", "\"auto\""))) "]",
      FALSE, "bitmap cp1 is in base but missing in a volume above it (below top): the chain has a gap" },
    { "disabled below",
      "[" NODE ("top", "qcow2", BMS (BM ("cp1", "\"auto\"")))
      "," NODE ("mid", "qcow2", BMS (BM ("cp1", ""))) "]",
      FALSE, "bitmap cp1 in mid is disabled" },
    { "in-use offline",
      "[" NODE ("top", "qcow2", BMS (BM ("cp1", "\"in-use\", \"auto\""))) "]",
      FALSE, "bitmap cp1 in top is in-use" },
    { "in-use while QEMU runs",
      "[" NODE ("top", "qcow2", BMS (BM ("cp1", "\"in-use\", \"auto\""))) "]",
      TRUE, NULL },
    { "raw top", "[" NODE ("top", "raw", "") "]", FALSE, "cannot be in the top volume top: it is not qcow2" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) err = NULL;
    g_autofree char *problem =
      virt_bitmap_chain_problem_json (cases[i].json, "cp1", cases[i].running, &err);

    g_test_message ("%s", cases[i].what);
    g_assert_no_error (err);
    if (cases[i].problem == NULL)
      g_assert_null (problem);
    else {
      g_assert_nonnull (problem);
      g_assert_nonnull (strstr (problem, cases[i].problem));
    }
  }
}

static void
test_bitmap_chain_bad_json (void)
{
  static const char *bad[] = { "", "{}", "[]", "[1", "{\"filename\": \"x\"}" };

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) err = NULL;
    g_autofree char *problem = virt_bitmap_chain_problem_json (bad[i], "cp1", FALSE, &err);

    g_assert_null (problem);
    g_assert_error (err, OVA_ERROR, OVA_ERROR_INTERNAL);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/checkpoint/xml", test_checkpoint_xml);
  g_test_add_func ("/checkpoint/xml-no-disks", test_checkpoint_xml_no_disks);
  g_test_add_func ("/backup/xml-full", test_backup_xml_full);
  g_test_add_func ("/backup/xml-incremental", test_backup_xml_incremental);
  g_test_add_func ("/backup/xml-mixed", test_backup_xml_mixed);
  g_test_add_func ("/backup/xml-escaping", test_xml_escaping);
  g_test_add_func ("/backup/nbd-uri", test_nbd_uri);
  g_test_add_func ("/backup/for-id", test_backup_for_id);
  g_test_add_func ("/checkpoint/saved-path", test_saved_path);
  g_test_add_func ("/bitmap/chain", test_bitmap_chain);
  g_test_add_func ("/bitmap/chain-bad-json", test_bitmap_chain_bad_json);
  return g_test_run ();
}
