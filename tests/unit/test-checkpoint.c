/* ovagent tests: the checkpoint and backup XML sent to libvirt (golden files
 * in tests/data, rewritten with OVAGENT_REGENERATE_GOLDEN=1), NBD URIs, the
 * domain and checkpoint XML parsers, and the bitmap chain rules. */
#include <config.h>

#include <string.h>

#include <glib.h>

#include "error.h"
#include "qemu-img.h"
#include "virt/backup-job.h"
#include "virt/bitmaps.h"
#include "virt/checkpoint.h"
#include "virt/checkpoint-xml.h"
#include "virt/domain-xml.h"
#include "virt/xml-build.h"

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

/* ------------------------------------------------------------------ */
/* The domain XML parser */

#define DOMAIN_XML \
  "<domain type='kvm'>\n" \
  "  <name>vm1</name>\n" \
  "  <devices>\n" \
  "    <disk type='file' device='disk'>\n" \
  "      <driver name='qemu' type='qcow2'/>\n" \
  "      <source file='/rhev/top.qcow2' index='3'/>\n" \
  "      <backingStore type='file' index='2'>\n" \
  "        <format type='qcow2'/>\n" \
  "        <source file='/rhev/mid.qcow2'/>\n" \
  "        <backingStore type='block' index='1'>\n" \
  "          <format type='raw'/>\n" \
  "          <source dev='/dev/vg/base'/>\n" \
  "          <backingStore/>\n" \
  "        </backingStore>\n" \
  "      </backingStore>\n" \
  "      <target dev='vda' bus='virtio'/>\n" \
  "      <serial>  6e2c1d1a-0b6a-4f2e-9c3d-2a1b0c9d8e7f \n</serial>\n" \
  "    </disk>\n" \
  "    <disk type='block' device='disk'>\n" \
  "      <driver name='qemu' type='raw'/>\n" \
  "      <source dev='/dev/vg/lv1'/>\n" \
  "      <mirror type='file' job='copy'><source file='/rhev/copy.raw'/></mirror>\n" \
  "      <target dev='vdb'/>\n" \
  "      <transient/>\n" \
  "    </disk>\n" \
  "    <disk type='file' device='cdrom'>\n" \
  "      <source file='/iso/install.iso'/>\n" \
  "      <target dev='sda'/>\n" \
  "      <readonly/>\n" \
  "    </disk>\n" \
  "    <disk type='network' device='disk'>\n" \
  "      <source protocol='gluster' name='vol/img'/>\n" \
  "      <target dev='vdc'/>\n" \
  "    </disk>\n" \
  "    <interface type='network'><source network='default'/></interface>\n" \
  "  </devices>\n" \
  "  <seclabel type='dynamic' model='selinux'><label>x:y</label></seclabel>\n" \
  "  <seclabel type='static' model='dac' relabel='yes'>\n" \
  "    <label>+107:+107</label>\n" \
  "  </seclabel>\n" \
  "</domain>\n"

static const virt_xml_disk *
disk_at (const virt_domain_xml *x, guint i)
{
  g_assert_cmpuint (i, <, x->disks->len);
  return g_ptr_array_index (x->disks, i);
}

static void
check_layer (GPtrArray *layers, guint i, const char *path, const char *format)
{
  const stor_layer *l = g_ptr_array_index (layers, i);

  g_assert_cmpstr (l->path, ==, path);
  g_assert_cmpstr (l->format, ==, format);
}

static void
test_domain_xml (void)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_domain_xml) x = virt_domain_xml_parse (DOMAIN_XML, -1, &err);
  const virt_xml_disk *d;
  g_autofree char *why = NULL;

  g_assert_no_error (err);
  g_assert_cmpstr (x->dac_label, ==, "+107:+107");
  g_assert_cmpuint (x->disks->len, ==, 4);

  d = disk_at (x, 0);
  g_assert_cmpstr (d->type, ==, "file");
  g_assert_cmpstr (d->device, ==, "disk");
  g_assert_cmpstr (d->target, ==, "vda");
  g_assert_cmpstr (d->path, ==, "/rhev/top.qcow2");
  g_assert_cmpstr (d->format, ==, "qcow2");
  g_assert_cmpstr (d->serial, ==, "6e2c1d1a-0b6a-4f2e-9c3d-2a1b0c9d8e7f");
  g_assert_nonnull (d->layers);
  g_assert_cmpuint (d->layers->len, ==, 3);
  check_layer (d->layers, 0, "/rhev/top.qcow2", "qcow2");
  check_layer (d->layers, 1, "/rhev/mid.qcow2", "qcow2");
  check_layer (d->layers, 2, "/dev/vg/base", "raw");
  g_assert_cmpuint (d->writes->len, ==, 1);
  g_assert_cmpstr (g_ptr_array_index (d->writes, 0), ==, "/rhev/top.qcow2");
  g_assert_cmpuint (d->backing->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (d->backing, 0), ==, "/rhev/mid.qcow2");
  g_assert_cmpstr (g_ptr_array_index (d->backing, 1), ==, "/dev/vg/base");
  g_assert_null (virt_xml_disk_unsupported (d));

  /* A block copy writes its mirror; no <backingStore> means no chain. */
  d = disk_at (x, 1);
  g_assert_cmpstr (d->target, ==, "vdb");
  g_assert_true (d->transient);
  g_assert_null (d->layers);
  g_assert_cmpuint (d->writes->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (d->writes, 1), ==, "/rhev/copy.raw");
  g_assert_cmpuint (d->backing->len, ==, 0);
  why = virt_xml_disk_unsupported (d);
  g_assert_cmpstr (why, ==, "transient disk");
  g_clear_pointer (&why, g_free);

  d = disk_at (x, 2);
  g_assert_true (d->readonly);
  why = virt_xml_disk_unsupported (d);
  g_assert_cmpstr (why, ==, "cdrom device");
  g_clear_pointer (&why, g_free);

  d = disk_at (x, 3);
  g_assert_null (d->path);
  g_assert_cmpuint (d->writes->len, ==, 0);
  why = virt_xml_disk_unsupported (d);
  g_assert_cmpstr (why, ==, "network disk");
}

/* Unknown elements, missing attributes and paths that are no local paths
 * leave fields empty, never fail the parse. */
static void
test_domain_xml_hostile (void)
{
  static const char xml[] =
    "<domain><devices>\n"
    "  <disk type='file' device='disk'>\n"
    "    <bogus a='b'><source file='/not/a/disk/source'/></bogus>\n"
    "    <source/>\n"
    "    <source file='relative.qcow2'/>\n"
    "    <backingStore type='file'><source file='/b1'/></backingStore>\n"
    "    <serial>   </serial>\n"
    "  </disk>\n"
    "  <disk><target/><driver/></disk>\n"
    "  <disk type='file' device='disk'><target dev='vdz'/>"
    "    <source file='/top'/><driver type='qcow2'/>"
    "    <backingStore type='network'><format type='qcow2'/><source file='/n'/></backingStore>"
    "  </disk>\n"
    "</devices>\n"
    "<disk type='file'><target dev='vdq'/></disk>\n"
    "<seclabel model='selinux'><label>no</label></seclabel>\n"
    "</domain>";
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_domain_xml) x = virt_domain_xml_parse (xml, -1, &err);
  g_autoptr (virt_domain_xml) other = NULL;
  g_autofree char *why = NULL;
  const virt_xml_disk *d;

  g_assert_no_error (err);
  g_assert_null (x->dac_label);
  /* The <disk> outside <devices> is no disk. */
  g_assert_cmpuint (x->disks->len, ==, 3);

  d = disk_at (x, 0);
  g_assert_null (d->target);
  g_assert_null (d->path);
  g_assert_null (d->format);
  g_assert_null (d->serial);
  g_assert_null (d->layers);            /* the layer has no format */
  g_assert_cmpuint (d->writes->len, ==, 0);
  g_assert_cmpuint (d->backing->len, ==, 1);
  why = virt_xml_disk_unsupported (d);
  g_assert_cmpstr (why, ==, "disk without a target device");
  g_clear_pointer (&why, g_free);

  d = disk_at (x, 1);
  g_assert_null (d->target);
  g_assert_null (d->type);
  g_assert_null (d->format);

  /* A network layer in the chain: no chain to read. */
  d = disk_at (x, 2);
  g_assert_cmpstr (d->path, ==, "/top");
  g_assert_null (d->layers);

  /* Another root element holds no domain's disks. */
  other = virt_domain_xml_parse ("<x><devices><disk type='file'><target dev='vda'/>"
                                 "</disk></devices></x>", -1, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (other->disks->len, ==, 0);
}

static void
test_domain_xml_bad (void)
{
  static const char *bad[] = {
    "", "<domain>", "<domain><devices></domain>", "not xml", "<domain><devices><disk type='file></disk></devices></domain>",
    "<domain><devices><disk type='file'>\xff\xfe</disk></devices></domain>",
  };
  g_autofree char *huge = NULL;
  GString *s = g_string_new ("<domain><devices>");

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) err = NULL;

    g_assert_null (virt_domain_xml_parse (bad[i], -1, &err));
    g_assert_error (err, OVA_ERROR, OVA_ERROR_INTERNAL);
    /* What GMarkup quotes of the bytes is made UTF-8. */
    g_assert_true (g_utf8_validate (err->message, -1, NULL));
  }

  /* Over 16 MiB: refused before any of it is parsed. */
  while (s->len <= 16 * 1024 * 1024)
    g_string_append (s, "<disk type='file'><target dev='vda'/></disk>");
  g_string_append (s, "</devices></domain>");
  huge = g_string_free (s, FALSE);
  {
    g_autoptr (GError) err = NULL;

    g_assert_null (virt_domain_xml_parse (huge, -1, &err));
    g_assert_error (err, OVA_ERROR, OVA_ERROR_INTERNAL);
    g_assert_cmpstr (err->message, ==, "too large");
  }
}

/* ------------------------------------------------------------------ */
/* The checkpoint XML parser */

static const virt_checkpoint_disk *
cp_disk_at (const virt_checkpoint_doc *doc, guint i)
{
  g_assert_cmpuint (i, <, doc->disks->len);
  return g_ptr_array_index (doc->disks, i);
}

static void
test_checkpoint_doc (void)
{
  static const char xml[] =
    "<domaincheckpoint>\n"
    "  <name>" CP "</name>\n"
    "  <description>checkpoint for backup</description>\n"
    "  <parent>\n    <name> " FROM " </name>\n  </parent>\n"
    "  <creationTime>1714557600</creationTime>\n"
    "  <disks>\n"
    "    <disk name='vda' checkpoint='bitmap' bitmap='" CP "'/>\n"
    "    <disk name='vdb' checkpoint='bitmap'/>\n"
    "    <disk name='sda' checkpoint='no'/>\n"
    "  </disks>\n"
    "</domaincheckpoint>\n";
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_checkpoint_doc) doc = virt_checkpoint_doc_parse (xml, -1, "known-as", &err);

  g_assert_no_error (err);
  g_assert_cmpstr (doc->name, ==, CP);
  g_assert_cmpstr (doc->parent, ==, FROM);
  g_assert_cmpint (doc->created, ==, 1714557600);
  g_assert_cmpuint (doc->disks->len, ==, 3);
  g_assert_cmpstr (cp_disk_at (doc, 0)->target, ==, "vda");
  g_assert_cmpstr (cp_disk_at (doc, 0)->bitmap, ==, CP);
  /* No bitmap named: the checkpoint's own name, as libvirt does. */
  g_assert_cmpstr (cp_disk_at (doc, 1)->bitmap, ==, "known-as");
  g_assert_cmpstr (cp_disk_at (doc, 2)->target, ==, "sda");
  g_assert_null (cp_disk_at (doc, 2)->bitmap);
}

/* What a stopped-VM backup saves parses back to what it was built from. */
static void
test_checkpoint_doc_round_trip (void)
{
  const char *targets[] = { "vda", "sdb", NULL };
  g_autofree char *xml = virt_checkpoint_redefine_xml (CP, FROM, 1714557600, targets);
  g_autofree char *root_xml = virt_checkpoint_redefine_xml (FROM, NULL, 0, NULL);
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_checkpoint_doc) doc = virt_checkpoint_doc_parse (xml, -1, CP, &err);
  g_autoptr (virt_checkpoint_doc) root = NULL;

  g_assert_no_error (err);
  g_assert_cmpstr (doc->name, ==, CP);
  g_assert_cmpstr (doc->parent, ==, FROM);
  g_assert_cmpint (doc->created, ==, 1714557600);
  g_assert_cmpuint (doc->disks->len, ==, 2);
  g_assert_cmpstr (cp_disk_at (doc, 1)->target, ==, "sdb");
  g_assert_cmpstr (cp_disk_at (doc, 1)->bitmap, ==, CP);

  root = virt_checkpoint_doc_parse (root_xml, -1, FROM, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (root->name, ==, FROM);
  g_assert_null (root->parent);
  g_assert_cmpint (root->created, ==, 0);
  g_assert_cmpuint (root->disks->len, ==, 0);
}

static void
test_checkpoint_doc_hostile (void)
{
  g_autofree char *long_name = g_strnfill (256, 'n');
  g_autofree char *xml =
    g_strconcat ("<domaincheckpoint><unknown><name>inner</name></unknown>"
                 "<name>", long_name, "</name>"
                 "<parent><name>   </name></parent>"
                 "<creationTime>-5</creationTime>"
                 "<disks><disk checkpoint='bitmap'/>"
                 "<disk name='", long_name, "'/>"
                 "<disk name='vda' bitmap='", long_name, "'/>"
                 "<disk name='vdb' extra='x'><child/></disk></disks>"
                 "<domain><devices><disk name='vdc'/></devices></domain>"
                 "</domaincheckpoint>", NULL);
  g_autoptr (GError) err = NULL;
  g_autoptr (virt_checkpoint_doc) doc = virt_checkpoint_doc_parse (xml, -1, "cp", &err);

  g_assert_no_error (err);
  g_assert_null (doc->name);            /* too long */
  g_assert_null (doc->parent);          /* blank */
  g_assert_cmpint (doc->created, ==, -1);
  /* Only the <disk> with a name of a sane length, under <disks>. */
  g_assert_cmpuint (doc->disks->len, ==, 1);
  g_assert_cmpstr (cp_disk_at (doc, 0)->target, ==, "vdb");
  g_assert_cmpstr (cp_disk_at (doc, 0)->bitmap, ==, "cp");
}

static void
test_checkpoint_doc_bad (void)
{
  static const char *bad[] = {
    "", "<domaincheckpoint>", "<a></b>", "<domaincheckpoint><name>x</domaincheckpoint>",
    "<domaincheckpoint>\xc3\x28</domaincheckpoint>",
  };
  g_autofree char *huge = NULL;
  GString *s = g_string_new ("<domaincheckpoint><description>");

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) err = NULL;

    g_assert_null (virt_checkpoint_doc_parse (bad[i], -1, "cp", &err));
    g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
    g_assert_true (g_utf8_validate (err->message, -1, NULL));
  }
  while (s->len <= 16 * 1024 * 1024)
    g_string_append (s, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  g_string_append (s, "</description></domaincheckpoint>");
  huge = g_string_free (s, FALSE);
  {
    g_autoptr (GError) err = NULL;

    g_assert_null (virt_checkpoint_doc_parse (huge, -1, "cp", &err));
    g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
    g_assert_cmpstr (err->message, ==, "too large");
  }
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
  g_test_add_func ("/domain-xml/disks", test_domain_xml);
  g_test_add_func ("/domain-xml/hostile", test_domain_xml_hostile);
  g_test_add_func ("/domain-xml/bad", test_domain_xml_bad);
  g_test_add_func ("/checkpoint-xml/parse", test_checkpoint_doc);
  g_test_add_func ("/checkpoint-xml/round-trip", test_checkpoint_doc_round_trip);
  g_test_add_func ("/checkpoint-xml/hostile", test_checkpoint_doc_hostile);
  g_test_add_func ("/checkpoint-xml/bad", test_checkpoint_doc_bad);
  g_test_add_func ("/bitmap/chain", test_bitmap_chain);
  g_test_add_func ("/bitmap/chain-bad-json", test_bitmap_chain_bad_json);
  return g_test_run ();
}
