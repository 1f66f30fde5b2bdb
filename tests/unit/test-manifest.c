/* ovagent: unit tests of the repository manifest: round trips, backup ids,
 * the latest-volume lookup, manifests edited into something unsafe (chain and
 * changed-block entries), and the block digest of repository files. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <xxhash.h>

#include "error.h"
#include "util.h"
#include "repo/manifest.h"
#include "repo/repo.h"
#include "stream/stream.h"

#define DISK "0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b"
#define SD "5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60"
#define BASE "11111111-2222-4333-8444-555555555555"
#define MID "22222222-3333-4444-8555-666666666666"
#define TOP "33333333-4444-4555-8666-777777777777"
#define NEW "44444444-5555-4666-8777-888888888888"
#define ID1 "20261122T031000Z-3f2a9c"
#define ID2 "20261123T031000Z-00beef"
#define HEX "0123456789abcdef0123456789abcdef"
#define DIGEST REPO_DIGEST_PREFIX HEX

/* A full backup (raw base, two qcow2) and an incremental on top of it, as
 * receive writes them. */
static const char good[] =
  "{\"format\":\"ovagent-manifest\",\"version\":1,\"disk\":\"" DISK "\",\"backups\":["
  "{\"id\":\"" ID1 "\",\"time\":\"2026-11-22T03:10:00Z\",\"host\":\"node1\","
  "\"domain\":\"" SD "\",\"kind\":\"full\",\"since\":null,\"parent\":null,"
  "\"volumes\":["
  "{\"uuid\":\"" BASE "\",\"file\":\"" ID1 "/" BASE ".raw\",\"format\":\"raw\","
  "\"size\":1073741824,\"virtual_size\":1073741824,\"digest\":\"" DIGEST "\",\"backing\":null},"
  "{\"uuid\":\"" MID "\",\"file\":\"" ID1 "/" MID ".qcow2\",\"format\":\"qcow2\","
  "\"size\":4521984,\"virtual_size\":1073741824,\"digest\":\"" DIGEST "\","
  "\"backing\":\"" BASE ".raw\"},"
  "{\"uuid\":\"" TOP "\",\"file\":\"" ID1 "/" TOP ".qcow2\",\"format\":\"qcow2\","
  "\"size\":3473408,\"virtual_size\":1073741824,\"digest\":\"" DIGEST "\","
  "\"backing\":\"" MID ".qcow2\"}],"
  "\"meta\":{\"mode\":\"chain\",\"disk\":\"" DISK "\"}},"
  "{\"id\":\"" ID2 "\",\"time\":\"2026-11-23T03:10:00Z\",\"host\":\"node1\","
  "\"domain\":\"" SD "\",\"kind\":\"incremental\",\"since\":\"" TOP "\",\"parent\":\"" ID1 "\","
  "\"volumes\":["
  "{\"uuid\":\"" NEW "\",\"file\":\"" ID2 "/" NEW ".qcow2\",\"format\":\"qcow2\","
  "\"size\":2555904,\"virtual_size\":1073741824,\"digest\":\"" DIGEST "\","
  "\"backing\":\"../" ID1 "/" TOP ".qcow2\"}],"
  "\"meta\":null}]}";

static repo_manifest *
parse (const char *text, GError **error)
{
  return repo_manifest_parse (DISK, text, strlen (text), "test manifest", error);
}

static void
test_backup_id (void)
{
  static const struct { const char *id; gboolean ok; } cases[] = {
    { ID1, TRUE },
    { "20261122T031000Z-000000", TRUE },
    { "20261122T031000Z-3F2A9C", FALSE },   /* upper-case hex */
    { "20261122T031000Z-3f2a9", FALSE },
    { "20261122T031000Z-3f2a9cc", FALSE },
    { "20261122 031000Z-3f2a9c", FALSE },
    { "20261122T031000-3f2a9c", FALSE },
    { "2026112XT031000Z-3f2a9c", FALSE },
    { "../../../etc/passwd", FALSE },
    { "20261122T031000Z/3f2a9c", FALSE },
    { "", FALSE },
  };
  g_autoptr(GDateTime) t = g_date_time_new_utc (2026, 11, 22, 3, 10, 0);

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    g_assert_cmpint (repo_backup_id_is_valid (cases[i].id), ==, cases[i].ok);
  g_assert_false (repo_backup_id_is_valid (NULL));

  for (int i = 0; i < 100; i++) {
    g_autofree char *id = repo_backup_id_new (t);

    g_assert_true (repo_backup_id_is_valid (id));
    g_assert_true (g_str_has_prefix (id, "20261122T031000Z-"));
  }
}

static void
test_round_trip (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(repo_manifest) m = parse (good, &err);
  g_autoptr(repo_manifest) m2 = NULL;
  g_autofree char *json = NULL;
  g_autofree char *json2 = NULL;
  const repo_backup *b;
  const repo_volume *v;

  g_assert_no_error (err);
  g_assert_nonnull (m);
  g_assert_cmpuint (m->backups->len, ==, 2);
  b = g_ptr_array_index (m->backups, 0);
  g_assert_cmpstr (b->id, ==, ID1);
  g_assert_cmpint (b->kind, ==, REPO_KIND_FULL);
  g_assert_cmpstr (b->host, ==, "node1");
  g_assert_cmpstr (b->domain, ==, SD);
  g_assert_null (b->since);
  g_assert_nonnull (b->meta);
  g_assert_cmpuint (b->volumes->len, ==, 3);
  v = g_ptr_array_index (b->volumes, 1);
  g_assert_cmpstr (v->uuid, ==, MID);
  g_assert_cmpstr (v->format, ==, "qcow2");
  g_assert_cmpstr (v->backing, ==, BASE ".raw");
  g_assert_cmpuint (v->size, ==, 4521984);
  b = g_ptr_array_index (m->backups, 1);
  g_assert_cmpint (b->kind, ==, REPO_KIND_INCREMENTAL);
  g_assert_cmpstr (b->since, ==, TOP);
  g_assert_cmpstr (b->parent, ==, ID1);
  g_assert_null (b->meta);
  v = g_ptr_array_index (b->volumes, 0);
  g_assert_cmpstr (v->backing, ==, "../" ID1 "/" TOP ".qcow2");

  json = repo_manifest_to_json (m);
  m2 = parse (json, &err);
  g_assert_no_error (err);
  json2 = repo_manifest_to_json (m2);
  g_assert_cmpstr (json, ==, json2);
}

static void
test_latest (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(repo_manifest) empty = repo_manifest_new (DISK);
  g_autoptr(repo_manifest) m = parse (good, &err);

  g_assert_null (repo_manifest_latest (empty));
  g_assert_null (repo_manifest_latest_volume (empty));
  g_assert_no_error (err);
  g_assert_cmpstr (repo_manifest_latest (m)->id, ==, ID2);
  g_assert_cmpstr (repo_manifest_latest_volume (m)->uuid, ==, NEW);
  g_ptr_array_remove_index (m->backups, 1);
  g_assert_cmpstr (repo_manifest_latest_volume (m)->uuid, ==, TOP);
  g_assert_nonnull (repo_manifest_find (m, ID1));
  g_assert_null (repo_manifest_find (m, ID2));
}

/* Each case edits the good manifest once; every result must be refused
 * with OVA_ERROR_INTEGRITY before any path is built from it. */
static void
test_malformed (void)
{
  static const struct { const char *what, *from, *to; } cases[] = {
    { "not JSON", "{\"format\"", "{format" },
    { "truncated", "\"meta\":null}]}", "\"meta\":null}]" },
    { "not an object", "{\"format\":\"ovagent-manifest\"", "[{\"format\":\"ovagent-manifest\"" },
    { "other format", "ovagent-manifest", "ovagent-other" },
    { "newer version", "\"version\":1", "\"version\":2" },
    { "version as a string", "\"version\":1", "\"version\":\"1\"" },
    { "another disk", "\"disk\":\"" DISK "\",\"backups\"",
      "\"disk\":\"" NEW "\",\"backups\"" },
    { "backups not an array", "\"backups\":[", "\"backups\":{\"x\":[" },
    { "id with a slash", "\"id\":\"" ID1 "\"", "\"id\":\"20261122T031000Z/3f2a9c\"" },
    { "id going up", "\"id\":\"" ID1 "\"", "\"id\":\"../../../../../tmp\"" },
    { "id listed twice", "\"id\":\"" ID2 "\"", "\"id\":\"" ID1 "\"" },
    { "file with ..", "\"file\":\"" ID1 "/" MID ".qcow2\"",
      "\"file\":\"" ID1 "/../../" MID ".qcow2\"" },
    { "absolute file", "\"file\":\"" ID1 "/" MID ".qcow2\"", "\"file\":\"/etc/shadow\"" },
    { "file in another backup", "\"file\":\"" ID1 "/" MID ".qcow2\"",
      "\"file\":\"" ID2 "/" MID ".qcow2\"" },
    { "file of another volume", "\"file\":\"" ID1 "/" MID ".qcow2\"",
      "\"file\":\"" ID1 "/" TOP ".qcow2\"" },
    { "absolute backing", "\"backing\":\"" BASE ".raw\"", "\"backing\":\"/etc/passwd\"" },
    { "backing going up", "\"backing\":\"" BASE ".raw\"",
      "\"backing\":\"../../../" BASE ".raw\"" },
    { "backing skipping a volume", "\"backing\":\"" MID ".qcow2\"",
      "\"backing\":\"" BASE ".raw\"" },
    { "backing on a full's base", "\"backing\":null}", "\"backing\":\"x.qcow2\"}" },
    { "no backing on an incremental", "\"backing\":\"../" ID1 "/" TOP ".qcow2\"",
      "\"backing\":null" },
    { "bad volume uuid", "\"uuid\":\"" MID "\"", "\"uuid\":\"../" MID "\"" },
    { "blank volume uuid", "\"uuid\":\"" MID "\"",
      "\"uuid\":\"" OVA_BLANK_UUID "\"" },
    { "unknown format", "\"format\":\"raw\"", "\"format\":\"vmdk\"" },
    { "raw after the base", "\"file\":\"" ID1 "/" MID ".qcow2\",\"format\":\"qcow2\"",
      "\"file\":\"" ID1 "/" MID ".raw\",\"format\":\"raw\"" },
    { "short digest", "\"digest\":\"" DIGEST "\",\"backing\":null",
      "\"digest\":\"0123\",\"backing\":null" },
    { "upper-case digest", "\"digest\":\"" DIGEST "\",\"backing\":null",
      "\"digest\":\"" REPO_DIGEST_PREFIX "0123456789ABCDEF0123456789ABCDEF\",\"backing\":null" },
    { "digest without its algorithm", "\"digest\":\"" DIGEST "\",\"backing\":null",
      "\"digest\":\"" HEX "\",\"backing\":null" },
    { "digest of another algorithm", "\"digest\":\"" DIGEST "\",\"backing\":null",
      "\"digest\":\"xxh3-128:" HEX "\",\"backing\":null" },
    { "digest too long", "\"digest\":\"" DIGEST "\",\"backing\":null",
      "\"digest\":\"" DIGEST "0\",\"backing\":null" },
    { "negative size", "\"size\":4521984", "\"size\":-1" },
    { "size as a string", "\"size\":4521984", "\"size\":\"4521984\"" },
    { "fractional size", "\"size\":4521984", "\"size\":4521984.5" },
    { "no volumes", "\"volumes\":[{\"uuid\":\"" NEW "\"", "\"volumes\":[],\"x\":[{\"uuid\":\"" NEW "\"" },
    { "unknown kind", "\"kind\":\"full\"", "\"kind\":\"differential\"" },
    { "full with a parent", "\"kind\":\"full\",\"since\":null,\"parent\":null",
      "\"kind\":\"full\",\"since\":null,\"parent\":\"" ID1 "\"" },
    { "incremental without parent", "\"parent\":\"" ID1 "\"", "\"parent\":null" },
    { "parent unknown", "\"parent\":\"" ID1 "\"", "\"parent\":\"20200101T000000Z-000000\"" },
    { "since not the parent's last volume", "\"since\":\"" TOP "\"", "\"since\":\"" MID "\"" },
    { "bad time", "\"time\":\"2026-11-22T03:10:00Z\"", "\"time\":\"yesterday\"" },
    { "bad domain", "\"domain\":\"" SD "\",\"kind\":\"full\"",
      "\"domain\":\"../x\",\"kind\":\"full\"" },
    { "meta not an object", "\"meta\":null", "\"meta\":[1]" },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr(GString) s = g_string_new (good);
    g_autoptr(GError) err = NULL;
    g_autoptr(repo_manifest) m = NULL;

    if (g_string_replace (s, cases[i].from, cases[i].to, 1) != 1)
      g_error ("case '%s': '%s' is not in the manifest", cases[i].what, cases[i].from);
    m = parse (s->str, &err);
    if (m != NULL)
      g_error ("case '%s': accepted", cases[i].what);
    g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
    g_test_message ("%s: %s", cases[i].what, err->message);
  }
}

static void
test_bytes (void)
{
  static const char nul[] = "{\"format\":\0\"x\"}";
  static const char latin1[] = "{\"format\":\"\xe9\"}";
  g_autoptr(GError) err = NULL;
  g_autoptr(repo_manifest) m = NULL;

  m = repo_manifest_parse (DISK, nul, sizeof nul - 1, "nul", &err);
  g_assert_null (m);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_clear_error (&err);
  m = repo_manifest_parse (DISK, latin1, sizeof latin1 - 1, "latin1", &err);
  g_assert_null (m);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
}

static void
test_load_save (void)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-manifest.XXXXXX", &err);
  g_autofree char *path = NULL;
  g_autofree char *tmp = NULL;
  g_autofree char *json = NULL;
  g_autofree char *json2 = NULL;
  g_autoptr(repo_manifest) m = NULL;
  g_autoptr(repo_manifest) loaded = NULL;
  g_autoptr(repo_manifest) empty = NULL;

  g_assert_no_error (err);
  path = g_build_filename (dir, REPO_MANIFEST_NAME, NULL);
  tmp = g_build_filename (dir, REPO_MANIFEST_NAME ".tmp", NULL);

  empty = repo_manifest_load (dir, DISK, TRUE, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (empty->backups->len, ==, 0);
  g_assert_null (repo_manifest_load (dir, DISK, FALSE, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_NOT_FOUND);
  g_clear_error (&err);

  m = parse (good, &err);
  g_assert_no_error (err);
  /* A stale temporary file from a crash is replaced. */
  g_assert_true (g_file_set_contents (tmp, "junk", -1, NULL));
  g_assert_true (repo_manifest_save (m, dir, &err));
  g_assert_no_error (err);
  g_assert_false (g_file_test (tmp, G_FILE_TEST_EXISTS));

  loaded = repo_manifest_load (dir, DISK, FALSE, &err);
  g_assert_no_error (err);
  json = repo_manifest_to_json (m);
  json2 = repo_manifest_to_json (loaded);
  g_assert_cmpstr (json, ==, json2);

  /* A manifest for another disk in this directory is refused. */
  g_assert_null (repo_manifest_load (dir, NEW, FALSE, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_clear_error (&err);

  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static void
test_expected_backing (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(repo_manifest) m = parse (good, &err);
  const repo_backup *full, *inc;
  g_autofree char *b0 = NULL;
  g_autofree char *b2 = NULL;
  g_autofree char *i0 = NULL;

  g_assert_no_error (err);
  full = g_ptr_array_index (m->backups, 0);
  inc = g_ptr_array_index (m->backups, 1);
  b0 = repo_expected_backing (full, 0, NULL);
  b2 = repo_expected_backing (full, 2, NULL);
  i0 = repo_expected_backing (inc, 0, full);
  g_assert_null (b0);
  g_assert_cmpstr (b2, ==, MID ".qcow2");
  g_assert_cmpstr (i0, ==, "../" ID1 "/" TOP ".qcow2");
  g_assert_cmpstr (repo_format_ext ("qcow2"), ==, ".qcow2");
  g_assert_cmpstr (repo_format_ext ("raw"), ==, ".raw");
  g_assert_null (repo_format_ext ("vmdk"));
}

/* ---- what a manifest keeps of META ---- */

#define META_VM "11111111-2222-4333-8444-555555555555"
#define META_JOB "22222222-3333-4444-8555-666666666666"
#define CPX "c0000009-0000-4000-8000-000000000009"

/* A chain export's META as export-chain writes it, with members nobody
 * keeps at every level. */
static const char chain_meta[] =
  "{\"format\":\"ovagent-stream\",\"version\":1,\"tool\":\"ovagent 0.1.0\","
  "\"host\":\"node1\",\"created\":\"2026-11-22T03:10:00Z\",\"mode\":\"chain\","
  "\"extra\":[[[[1]]]],"
  "\"domain\":{\"uuid\":\"" SD "\",\"kind\":\"file\",\"storage\":\"nfs\",\"version\":5,"
  "\"extra\":{\"x\":1}},"
  "\"disk\":\"" DISK "\",\"capacity\":1073741824,\"since\":null,"
  "\"volumes\":[{\"uuid\":\"" BASE "\",\"parent\":null,\"format\":\"raw\","
  "\"voltype\":\"internal\",\"legality\":\"legal\",\"capacity\":1073741824,"
  "\"generation\":0,\"size\":1073741824,\"qcow2_compat\":null,\"backing\":null,"
  "\"extra\":\"x\",\"metadata\":{\"CAP\":\"1073741824\",\"DESCRIPTION\":\"{}\","
  "\"NOT_VDSM\":\"x\",\"VOLTYPE\":\"INTERNAL\"}}]}";

static const char chain_kept[] =
  "{\"format\":\"ovagent-stream\",\"version\":1,\"tool\":\"ovagent 0.1.0\","
  "\"host\":\"node1\",\"created\":\"2026-11-22T03:10:00Z\",\"mode\":\"chain\","
  "\"domain\":{\"uuid\":\"" SD "\",\"kind\":\"file\",\"storage\":\"nfs\",\"version\":5},"
  "\"disk\":\"" DISK "\",\"capacity\":1073741824,\"since\":null,"
  "\"volumes\":[{\"uuid\":\"" BASE "\",\"parent\":null,\"format\":\"raw\","
  "\"voltype\":\"internal\",\"legality\":\"legal\",\"capacity\":1073741824,"
  "\"generation\":0,\"size\":1073741824,\"qcow2_compat\":null,\"backing\":null,"
  "\"metadata\":{\"CAP\":\"1073741824\",\"DESCRIPTION\":\"{}\",\"VOLTYPE\":\"INTERNAL\"}}]}";

static const char backup_meta[] =
  "{\"format\":\"ovagent-stream\",\"version\":1,\"tool\":\"ovagent 0.1.0\","
  "\"host\":\"node1\",\"created\":\"2026-11-22T03:10:00Z\",\"mode\":\"backup\","
  "\"vm\":{\"uuid\":\"" META_VM "\",\"name\":\"vm1\",\"running\":true,\"extra\":1},"
  "\"job\":\"" META_JOB "\",\"checkpoint\":\"" CPX "\",\"checkpoint_xml\":\"<domaincheckpoint/>\","
  "\"volumes\":["
  "{\"uuid\":\"" NEW "\",\"disk\":\"" NEW "\",\"target\":\"vda\",\"domain\":null,"
  "\"volume\":null,\"kind\":\"full\",\"from_checkpoint\":null,\"format\":\"guest\","
  "\"size\":1048576,\"capacity\":1048576},"
  "{\"uuid\":\"" DISK "\",\"disk\":\"" DISK "\",\"target\":\"vdb\",\"domain\":\"" SD "\","
  "\"volume\":\"" TOP "\",\"kind\":\"full\",\"from_checkpoint\":null,\"format\":\"guest\","
  "\"size\":2097152,\"capacity\":2097152,\"extra\":[1]}]}";

static const char backup_kept[] =
  "{\"format\":\"ovagent-stream\",\"version\":1,\"tool\":\"ovagent 0.1.0\","
  "\"host\":\"node1\",\"created\":\"2026-11-22T03:10:00Z\",\"mode\":\"backup\","
  "\"vm\":{\"uuid\":\"" META_VM "\",\"name\":\"vm1\",\"running\":true},"
  "\"job\":\"" META_JOB "\",\"checkpoint\":\"" CPX "\",\"checkpoint_xml\":\"<domaincheckpoint/>\","
  "\"volumes\":["
  "{\"uuid\":\"" DISK "\",\"disk\":\"" DISK "\",\"target\":\"vdb\",\"domain\":\"" SD "\","
  "\"volume\":\"" TOP "\",\"kind\":\"full\",\"from_checkpoint\":null,\"format\":\"guest\","
  "\"size\":2097152,\"capacity\":2097152}]}";

static JsonNode *
json_parse (const char *text)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  g_autoptr(GError) err = NULL;

  g_assert_true (json_parser_load_from_data (p, text, -1, &err));
  g_assert_no_error (err);
  return json_parser_steal_root (p);
}

/* repo_meta_keep of text, as compact JSON; NULL with *error if refused. */
static char *
kept (const char *text, const char *disk, GError **error)
{
  g_autoptr(JsonNode) meta = json_parse (text);
  g_autoptr(JsonNode) out = repo_meta_keep (meta, disk, error);

  return out ? json_to_string (out, FALSE) : NULL;
}

static void
test_meta_keep (void)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *chain = kept (chain_meta, NULL, &err);
  g_autofree char *backup = NULL;
  g_autofree char *again = NULL;

  g_assert_no_error (err);
  g_assert_cmpstr (chain, ==, chain_kept);
  /* What is kept is kept again as it is. */
  again = kept (chain, NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (again, ==, chain);

  /* A backup stream's disk keeps the stream's members and its own entry. */
  backup = kept (backup_meta, DISK, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (backup, ==, backup_kept);
}

/* META text with the first `from` replaced by `to`. */
static char *
edited (const char *text, const char *from, const char *to)
{
  g_autoptr(GString) s = g_string_new (text);

  if (g_string_replace (s, from, to, 1) != 1)
    g_error ("'%s' is not in the META", from);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/* Each case edits the chain or backup META once: at the bound it is kept,
 * one past it refused naming the member. */
static void
test_meta_bounds (void)
{
  g_autofree char *s255 = g_strnfill (255, 'h');
  g_autofree char *s256 = g_strnfill (256, 'h');
  g_autofree char *s512 = g_strnfill (512, 'd');
  g_autofree char *s513 = g_strnfill (513, 'd');
  g_autofree char *s1023 = g_strnfill (1023, 'b');
  g_autofree char *s1024 = g_strnfill (1024, 'b');
  g_autofree char *x64k = g_strnfill (64 * 1024, 'x');
  g_autofree char *x64k1 = g_strnfill (64 * 1024 + 1, 'x');
  g_autofree char *host_ok = g_strdup_printf ("\"host\":\"%s\"", s255);
  g_autofree char *host_long = g_strdup_printf ("\"host\":\"%s\"", s256);
  g_autofree char *desc_ok = g_strdup_printf ("\"DESCRIPTION\":\"%s\"", s512);
  g_autofree char *desc_long = g_strdup_printf ("\"DESCRIPTION\":\"%s\"", s513);
  g_autofree char *backing_ok = g_strdup_printf ("\"backing\":\"%s\"", s1023);
  g_autofree char *backing_long = g_strdup_printf ("\"backing\":\"%s\"", s1024);
  g_autofree char *xml_ok = g_strdup_printf ("\"checkpoint_xml\":\"%s\"", x64k);
  g_autofree char *xml_long = g_strdup_printf ("\"checkpoint_xml\":\"%s\"", x64k1);
  const struct {
    const char *what;
    gboolean backup;
    const char *from, *to;
    const char *refusal;   /* NULL: kept */
  } cases[] = {
    { "host of 255 bytes", FALSE, "\"host\":\"node1\"", host_ok, NULL },
    { "host of 256 bytes", FALSE, "\"host\":\"node1\"", host_long,
      "host is 256 bytes long, over the limit of 255" },
    { "DESCRIPTION of 512 bytes", FALSE, "\"DESCRIPTION\":\"{}\"", desc_ok, NULL },
    { "DESCRIPTION of 513 bytes", FALSE, "\"DESCRIPTION\":\"{}\"", desc_long,
      "volumes[0].metadata.DESCRIPTION is 513 bytes long, over the limit of 512" },
    { "backing of 1023 bytes", FALSE, "\"backing\":null", backing_ok, NULL },
    { "backing of 1024 bytes", FALSE, "\"backing\":null", backing_long,
      "volumes[0].backing is 1024 bytes long" },
    { "checkpoint_xml of 64 KiB", TRUE, "\"checkpoint_xml\":\"<domaincheckpoint/>\"",
      xml_ok, NULL },
    { "checkpoint_xml over 64 KiB", TRUE, "\"checkpoint_xml\":\"<domaincheckpoint/>\"",
      xml_long, "checkpoint_xml is 65537 bytes long, over the limit of 65536" },
    { "capacity of 64 TiB", FALSE, "\"capacity\":1073741824,\"since\"",
      "\"capacity\":70368744177664,\"since\"", NULL },
    { "capacity over 64 TiB", FALSE, "\"capacity\":1073741824,\"since\"",
      "\"capacity\":70368744177665,\"since\"", "capacity is 70368744177665, over the limit" },
    { "volume size of 72 TiB", FALSE, "\"size\":1073741824", "\"size\":79164837199872", NULL },
    { "volume size over 72 TiB", FALSE, "\"size\":1073741824", "\"size\":79164837199873",
      "volumes[0].size is 79164837199873, over the limit of 79164837199872" },
    { "disk size over 64 TiB", TRUE, "\"size\":2097152", "\"size\":70368744177665",
      "volumes[1].size is 70368744177665" },
    { "negative generation", FALSE, "\"generation\":0", "\"generation\":-1",
      "volumes[0].generation must be an integer from 0 to 9223372036854775807" },
    { "fractional version", FALSE, "\"version\":1,\"tool\"", "\"version\":1.5,\"tool\"",
      "version must be an integer" },
    { "infinite capacity", FALSE, "\"capacity\":1073741824,\"since\"",
      "\"capacity\":1e400,\"since\"", "capacity must be an integer" },
    { "tool as a number", FALSE, "\"tool\":\"ovagent 0.1.0\"", "\"tool\":7",
      "tool must be a string or null" },
    { "tool as an object", FALSE, "\"tool\":\"ovagent 0.1.0\"", "\"tool\":{\"a\":[1]}",
      "tool must be a string or null" },
    { "parent not a UUID", FALSE, "\"parent\":null", "\"parent\":\"../x\"",
      "volumes[0].parent must be a UUID or null" },
    { "running not a boolean", TRUE, "\"running\":true", "\"running\":\"yes\"",
      "vm.running must be true, false or null" },
    { "domain not an object", FALSE, "\"domain\":{", "\"domain\":\"x\",\"d\":{",
      "domain must be an object" },
    { "a VDSM value null", FALSE, "\"CAP\":\"1073741824\"", "\"CAP\":null", NULL },
    { "a VDSM value not a string", FALSE, "\"CAP\":\"1073741824\"", "\"CAP\":1073741824",
      "volumes[0].metadata.CAP must be a string or null" },
    { "metadata not an object", FALSE, "\"metadata\":{", "\"metadata\":7,\"m\":{",
      "volumes[0].metadata must be an object" },
    { "volume not an object", FALSE, "\"volumes\":[{", "\"volumes\":[1,{",
      "volumes[0] must be an object" },
    { "unknown members of any type", FALSE, "\"extra\":[[[[1]]]]",
      "\"extra\":1e400,\"x\":{\"y\":[\"z\"]}", NULL },
    { "the disk's own entry twice", TRUE, "\"extra\":[1]}]}",
      "\"extra\":[1]},{\"uuid\":\"" DISK "\"}]}", "does not list disk " DISK " once" },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    const char *base = cases[i].backup ? backup_meta : chain_meta;
    g_autofree char *text = edited (base, cases[i].from, cases[i].to);
    g_autoptr(GError) err = NULL;
    g_autofree char *out = kept (text, cases[i].backup ? DISK : NULL, &err);

    if (cases[i].refusal == NULL) {
      if (out == NULL)
        g_error ("case '%s': refused: %s", cases[i].what, err->message);
      continue;
    }
    if (out != NULL)
      g_error ("case '%s': kept", cases[i].what);
    g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
    if (strstr (err->message, cases[i].refusal) == NULL)
      g_error ("case '%s': %s", cases[i].what, err->message);
    g_test_message ("%s: %s", cases[i].what, err->message);
  }
}

/* The counts: 256 volumes or disks at most, and the kept copy at most
 * REPO_META_MAX bytes however the members within their bounds add up. */
static void
test_meta_counts (void)
{
  g_autoptr(GString) vols = g_string_new (NULL);
  g_autoptr(GString) big = g_string_new (NULL);
  g_autoptr(GError) err = NULL;
  g_autofree char *text = NULL;
  g_autofree char *out = NULL;

  for (int i = 0; i < STRM_MAX_CHAIN_VOLUMES; i++)
    g_string_append_printf (vols, "%s{\"uuid\":\"%08x-0000-4000-8000-000000000000\"}",
                            i ? "," : "", i + 1);
  text = g_strdup_printf ("{\"mode\":\"chain\",\"volumes\":[%s]}", vols->str);
  out = kept (text, NULL, &err);
  g_assert_no_error (err);
  g_clear_pointer (&out, g_free);
  g_free (text);
  text = g_strdup_printf ("{\"mode\":\"chain\",\"volumes\":[%s,{}]}", vols->str);
  out = kept (text, NULL, &err);
  g_assert_null (out);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (err->message, "volumes lists 257 entries, over the limit of 256"));
  g_clear_error (&err);

  /* 256 volumes whose VDSM records hold 512 quotes each, escaped on
   * output: within every member's bound, over the whole one. */
  for (int i = 0; i < STRM_MAX_CHAIN_VOLUMES; i++) {
    g_string_append_printf (big, "%s{\"metadata\":{", i ? "," : "");
    for (const char *const *k = (const char *const[]) { "CAP", "CTIME", "DESCRIPTION", NULL };
         *k; k++) {
      g_string_append_printf (big, "%s\"%s\":\"", strcmp (*k, "CAP") ? "," : "", *k);
      for (int j = 0; j < STRM_MAX_VDSM_VALUE; j++)
        g_string_append (big, "\\\"");
      g_string_append_c (big, '"');
    }
    g_string_append (big, "}}");
  }
  g_free (text);
  text = g_strdup_printf ("{\"mode\":\"chain\",\"volumes\":[%s]}", big->str);
  out = kept (text, NULL, &err);
  g_assert_null (out);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (err->message, "over the limit of 524288 bytes per backup"));
  g_test_message ("%s", err->message);
}

/* The manifest is pretty-printed, each meta on one compact line. */
static void
test_compact_meta (void)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *deep = NULL;
  g_autofree char *text = NULL;
  g_autofree char *json = NULL;
  g_autoptr(repo_manifest) m = NULL;
  g_autoptr(repo_manifest) m2 = NULL;
  g_auto(GStrv) lines = NULL;
  guint meta_lines = 0;

  /* An older manifest with a deep META: its meta is written compact. */
  deep = g_strconcat ("\"meta\":{\"a\":[[[[[[[[[[[[[[[[[[[[{\"b\":[1,2,3]}]]]]]]]]]]]]]]]]]]]],",
                      "\"mode\":\"chain\",\"disk\":\"" DISK "\"}}", NULL);
  text = edited (good, "\"meta\":{\"mode\":\"chain\",\"disk\":\"" DISK "\"}}", deep);
  m = parse (text, &err);
  g_assert_no_error (err);
  json = repo_manifest_to_json (m);
  lines = g_strsplit (json, "\n", -1);
  for (size_t i = 0; lines[i] != NULL; i++)
    if (strstr (lines[i], "\"meta\" : ") != NULL) {
      meta_lines++;
      g_assert_true (g_str_has_prefix (lines[i], "      \"meta\" : "));
    }
  g_assert_cmpuint (meta_lines, ==, 2);
  g_assert_nonnull (strstr (json, "      \"meta\" : {\"a\":[[[[[[[[[[[[[[[[[[[[{\"b\":[1,2,3]}]]]]]]]]]]]]]]]]]]]],"
                            "\"mode\":\"chain\",\"disk\":\"" DISK "\"}\n    },\n"));
  g_assert_nonnull (strstr (json, "      \"meta\" : null\n    }\n  ]\n}\n"));
  g_assert_true (g_str_has_prefix (json, "{\n  \"format\" : \"ovagent-manifest\",\n"));
  m2 = parse (json, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (m2->backups->len, ==, 2);
}

/* A manifest over REPO_MANIFEST_MAX is never written, and receive can ask
 * first whether one more backup fits. */
static void
test_size_limit (void)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-manifest.XXXXXX", &err);
  g_autofree char *path = g_build_filename (dir, REPO_MANIFEST_NAME, NULL);
  g_autofree char *tmp = g_build_filename (dir, REPO_MANIFEST_NAME ".tmp", NULL);
  g_autoptr(repo_manifest) m = parse (good, &err);
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;
  g_autofree char *padding = NULL;
  g_autofree char *json = NULL;
  repo_backup *b = g_ptr_array_index (m->backups, 0);
  repo_backup *extra;
  gsize len;

  g_assert_no_error (err);
  g_assert_true (repo_manifest_save (m, dir, &err));
  g_assert_no_error (err);
  g_assert_true (g_file_get_contents (path, &before, NULL, NULL));

  /* Padded to exactly the limit: it fits, and nothing more does. */
  json = repo_manifest_to_json (m);
  len = strlen (json);
  padding = g_strnfill (REPO_MANIFEST_MAX - len - strlen (",\"p\":\"\""), 'p');
  json_object_set_string_member (json_node_get_object (b->meta), "p", padding);
  g_free (json);
  json = repo_manifest_to_json (m);
  g_assert_cmpuint (strlen (json), ==, REPO_MANIFEST_MAX);
  g_assert_true (repo_manifest_check_room (m, NULL, &err));
  g_assert_no_error (err);
  extra = repo_backup_new ();
  extra->id = g_strdup ("20261125T031000Z-000001");
  extra->time = g_strdup ("2026-11-25T03:10:00Z");
  g_ptr_array_add (extra->volumes,
                   repo_volume_new_draft (extra->id, BASE, "raw", 1, 1, NULL));
  g_assert_false (repo_manifest_check_room (m, extra, &err));
  repo_backup_free (extra);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (err->message, "the manifest of disk " DISK " would grow to "));
  g_assert_nonnull (strstr (err->message, "over the limit of 67108864"));
  g_test_message ("%s", err->message);
  g_clear_error (&err);

  /* Over: not written, the manifest on disk as it was. */
  json_object_set_string_member (json_node_get_object (b->meta), "q", "");
  g_assert_false (repo_manifest_save (m, dir, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_test_message ("%s", err->message);
  g_assert_true (g_file_get_contents (path, &after, NULL, NULL));
  g_assert_cmpstr (before, ==, after);
  g_assert_false (g_file_test (tmp, G_FILE_TEST_EXISTS));

  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

/* ---- the block digest ---- */

#define MiB (1024 * 1024)

typedef struct digest_case {
  const char *what;
  gsize size;
  gsize hole_start, hole_end;    /* zeros, left as a hole in the file */
  const char *expected;          /* NULL: only compared with the reference */
} digest_case;

/* Expected values computed with coreutils and xxhsum, independently of
 * ovagent (docs/repository.md §2):
 *   split -b 2M --filter=xxh128sum FILE | cut -c1-32 >h
 *   { sed 1d h; sed -n 1p h; } | xxd -r -p | xxh128sum */
static const digest_case digest_cases[] = {
  { "empty", 0, 0, 0, REPO_DIGEST_PREFIX "99aa06d3014798d86001c324468d497f" },
  { "one short block", 1 * MiB, 0, 0, REPO_DIGEST_PREFIX "eba4beaa9658f4a7833c7b2f9fb59bd9" },
  { "one block", 2 * MiB, 0, 0, REPO_DIGEST_PREFIX "6898c7e6daa9d2e7315ef0421061436d" },
  { "one block and a byte", 2 * MiB + 1, 0, 0,
    REPO_DIGEST_PREFIX "02ef1916d09196729178aeb491a80cf8" },
  { "blocks with a hole", 5 * MiB + 12345, 2 * MiB + 4096, 4 * MiB + 100,
    REPO_DIGEST_PREFIX "399bfe6bc84ddc6ea41715b9baeb6064" },
  { "whole zero blocks", 9 * MiB + 5, 1 * MiB, 8 * MiB, NULL },
  { "a hole at the end", 11 * MiB, 3 * MiB - 3, 11 * MiB, NULL },
  { "all hole", 7 * MiB, 0, 7 * MiB, NULL },
};

static guint8 *
digest_case_bytes (const digest_case *c)
{
  guint8 *b = g_malloc (c->size + 1);

  for (gsize i = 0; i < c->size; i++)
    b[i] = i >= c->hole_start && i < c->hole_end ? 0 : (guint8) (i * 31 + (i >> 12));
  return b;
}

/* The definition, written out plainly. */
static char *
reference_digest (const guint8 *p, gsize len)
{
  XXH3_state_t *st = XXH3_createState ();
  XXH128_canonical_t c;
  GString *s = g_string_new (REPO_DIGEST_PREFIX);

  XXH3_128bits_reset (st);
  for (gsize off = REPO_DIGEST_BLOCK; off < len; off += REPO_DIGEST_BLOCK) {
    XXH128_canonicalFromHash (&c, XXH3_128bits (p + off, MIN (len - off, REPO_DIGEST_BLOCK)));
    XXH3_128bits_update (st, &c, sizeof c);
  }
  if (len > 0) {
    XXH128_canonicalFromHash (&c, XXH3_128bits (p, MIN (len, REPO_DIGEST_BLOCK)));
    XXH3_128bits_update (st, &c, sizeof c);
  }
  XXH128_canonicalFromHash (&c, XXH3_128bits_digest (st));
  XXH3_freeState (st);
  for (gsize i = 0; i < sizeof c.digest; i++)
    g_string_append_printf (s, "%02x", c.digest[i]);
  return g_string_free (s, FALSE);
}

static gboolean
all_zero (const guint8 *p, gsize len)
{
  for (gsize i = 0; i < len; i++)
    if (p[i] != 0)
      return FALSE;
  return TRUE;
}

/* Fed in pieces of `piece` bytes as frames arrive; pieces of zeros as
 * ZERO frames when zero_frames. */
static char *
streamed_digest (const guint8 *p, gsize len, gsize piece, gboolean zero_frames)
{
  g_autoptr(repo_digest) d = repo_digest_new ();

  for (gsize off = 0; off < len; ) {
    gsize n = MIN (piece, len - off);

    if (zero_frames && all_zero (p + off, n))
      repo_digest_zeros (d, n);
    else
      repo_digest_data (d, p + off, n);
    off += n;
    g_assert_cmpuint (repo_digest_length (d), ==, off);
  }
  return repo_digest_finish (d, p, MIN (len, REPO_DIGEST_BLOCK));
}

static void
test_digest_stream (void)
{
  static const gsize pieces[] = {
    1000, 4096, 65536, MiB - 1, MiB, 2 * MiB, 2 * MiB + 1, 3 * MiB - 7, 16 * MiB,
  };

  for (gsize i = 0; i < G_N_ELEMENTS (digest_cases); i++) {
    const digest_case *c = &digest_cases[i];
    g_autofree guint8 *b = digest_case_bytes (c);
    g_autofree char *ref = reference_digest (b, c->size);

    g_test_message ("%s: %s", c->what, ref);
    if (c->expected)
      g_assert_cmpstr (ref, ==, c->expected);
    g_assert_cmpuint (strlen (ref), ==, REPO_DIGEST_LEN);
    for (gsize j = 0; j < G_N_ELEMENTS (pieces); j++) {
      g_autofree char *data = streamed_digest (b, c->size, pieces[j], FALSE);
      g_autofree char *zero = streamed_digest (b, c->size, pieces[j], TRUE);

      g_assert_cmpstr (data, ==, ref);
      g_assert_cmpstr (zero, ==, ref);
    }
    /* The hole as one ZERO frame between two DATA frames. */
    if (c->hole_end > c->hole_start) {
      g_autoptr(repo_digest) d = repo_digest_new ();
      g_autofree char *got = NULL;

      repo_digest_data (d, b, c->hole_start);
      repo_digest_zeros (d, c->hole_end - c->hole_start);
      repo_digest_data (d, b + c->hole_end, c->size - c->hole_end);
      got = repo_digest_finish (d, b, MIN (c->size, REPO_DIGEST_BLOCK));
      g_assert_cmpstr (got, ==, ref);
    }
  }
}

/* repo_file_digest on sparse files: holes skipped, the same digest. */
static void
test_digest_file (void)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-digest.XXXXXX", &err);
  g_autofree char *path = NULL;

  g_assert_no_error (err);
  path = g_build_filename (dir, "file", NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (digest_cases); i++) {
    const digest_case *c = &digest_cases[i];
    g_autofree guint8 *b = digest_case_bytes (c);
    g_autofree char *ref = reference_digest (b, c->size);
    g_autofree char *got = NULL;
    guint64 size = 1;
    int fd;

    fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    g_assert_cmpint (fd, >=, 0);
    g_assert_cmpint (pwrite (fd, b, c->hole_start, 0), ==, (gssize) c->hole_start);
    if (c->hole_end > c->hole_start)
      g_assert_cmpint (pwrite (fd, b + c->hole_end, c->size - c->hole_end, c->hole_end),
                       ==, (gssize) (c->size - c->hole_end));
    else
      g_assert_cmpint (pwrite (fd, b, c->size, 0), ==, (gssize) c->size);
    g_assert_cmpint (ftruncate (fd, c->size), ==, 0);
    g_assert_cmpint (close (fd), ==, 0);

    got = repo_file_digest (path, &size, NULL, &err);
    g_assert_no_error (err);
    g_assert_cmpstr (got, ==, ref);
    g_assert_cmpuint (size, ==, c->size);
  }
  g_assert_null (repo_file_digest (dir, NULL, NULL, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_clear_error (&err);
  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_null (repo_file_digest (path, NULL, NULL, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

/* ---- changed-block backups ---- */

#define VM "66666666-7777-4888-8999-aaaaaaaaaaaa"
#define CP1 "c0000001-0000-4000-8000-000000000001"
#define CP2 "c0000002-0000-4000-8000-000000000002"
#define CP3 "c0000003-0000-4000-8000-000000000003"
#define ID3 "20261124T031000Z-0c0ffe"

/* A full, an incremental on it and a differential backed by the full, as
 * receive writes them for `ovagent backup`. */
static const char good_cbt[] =
  "{\"format\":\"ovagent-manifest\",\"version\":1,\"disk\":\"" DISK "\",\"backups\":["
  "{\"id\":\"" ID1 "\",\"time\":\"2026-11-22T03:10:00Z\",\"host\":\"node1\","
  "\"domain\":\"" SD "\",\"kind\":\"full\",\"since\":null,\"parent\":null,"
  "\"checkpoint\":\"" CP1 "\",\"from_checkpoint\":null,\"vm\":\"" VM "\","
  "\"volumes\":[{\"uuid\":\"" DISK "\",\"file\":\"" ID1 "/" DISK ".qcow2\","
  "\"format\":\"qcow2\",\"size\":1000,\"virtual_size\":1073741824,"
  "\"digest\":\"" DIGEST "\",\"backing\":null}],\"meta\":{\"mode\":\"backup\"}},"
  "{\"id\":\"" ID2 "\",\"time\":\"2026-11-23T03:10:00Z\",\"host\":\"node1\","
  "\"domain\":\"" SD "\",\"kind\":\"incremental\",\"since\":null,\"parent\":\"" ID1 "\","
  "\"checkpoint\":\"" CP2 "\",\"from_checkpoint\":\"" CP1 "\",\"vm\":\"" VM "\","
  "\"volumes\":[{\"uuid\":\"" DISK "\",\"file\":\"" ID2 "/" DISK ".qcow2\","
  "\"format\":\"qcow2\",\"size\":2000,\"virtual_size\":1073741824,"
  "\"digest\":\"" DIGEST "\",\"backing\":\"../" ID1 "/" DISK ".qcow2\"}],\"meta\":null},"
  "{\"id\":\"" ID3 "\",\"time\":\"2026-11-24T03:10:00Z\",\"host\":null,"
  "\"domain\":null,\"kind\":\"differential\",\"since\":null,\"parent\":\"" ID1 "\","
  "\"checkpoint\":\"" CP3 "\",\"from_checkpoint\":\"" CP1 "\",\"vm\":null,"
  "\"volumes\":[{\"uuid\":\"" DISK "\",\"file\":\"" ID3 "/" DISK ".qcow2\","
  "\"format\":\"qcow2\",\"size\":3000,\"virtual_size\":1073741824,"
  "\"digest\":\"" DIGEST "\",\"backing\":\"../" ID1 "/" DISK ".qcow2\"}],\"meta\":null}]}";

static void
test_cbt (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(repo_manifest) m = parse (good_cbt, &err);
  g_autoptr(repo_manifest) m2 = NULL;
  g_autoptr(repo_manifest) chain = NULL;
  g_autofree char *json = NULL;
  g_autofree char *json2 = NULL;
  g_autofree char *chain_json = NULL;
  const repo_backup *b;

  g_assert_no_error (err);
  g_assert_cmpuint (m->backups->len, ==, 3);
  b = g_ptr_array_index (m->backups, 0);
  g_assert_true (repo_backup_is_cbt (b));
  g_assert_cmpint (b->kind, ==, REPO_KIND_FULL);
  g_assert_cmpstr (b->checkpoint, ==, CP1);
  g_assert_null (b->from_checkpoint);
  g_assert_cmpstr (b->vm, ==, VM);
  b = g_ptr_array_index (m->backups, 1);
  g_assert_cmpint (b->kind, ==, REPO_KIND_INCREMENTAL);
  g_assert_cmpstr (b->parent, ==, ID1);
  g_assert_null (b->since);
  b = g_ptr_array_index (m->backups, 2);
  g_assert_cmpint (b->kind, ==, REPO_KIND_DIFFERENTIAL);
  g_assert_cmpstr (b->parent, ==, ID1);
  g_assert_cmpstr (b->from_checkpoint, ==, CP1);
  g_assert_null (b->vm);
  g_assert_cmpstr (repo_kind_name (b->kind), ==, "differential");

  g_assert_true (repo_manifest_find_checkpoint (m, CP1) == g_ptr_array_index (m->backups, 0));
  g_assert_true (repo_manifest_find_checkpoint (m, CP3) == g_ptr_array_index (m->backups, 2));
  g_assert_null (repo_manifest_find_checkpoint (m, "c00000ff-0000-4000-8000-0000000000ff"));

  json = repo_manifest_to_json (m);
  g_assert_nonnull (strstr (json, "\"from_checkpoint\""));
  m2 = parse (json, &err);
  g_assert_no_error (err);
  json2 = repo_manifest_to_json (m2);
  g_assert_cmpstr (json, ==, json2);

  /* Chain exports keep their members and gain none. */
  chain = parse (good, &err);
  g_assert_no_error (err);
  g_assert_false (repo_backup_is_cbt ((repo_backup *) g_ptr_array_index (chain->backups, 0)));
  chain_json = repo_manifest_to_json (chain);
  g_assert_null (strstr (chain_json, "checkpoint"));
  g_assert_null (strstr (chain_json, "\"vm\""));
}

static void
test_cbt_malformed (void)
{
  static const struct { const char *what, *from, *to; } cases[] = {
    { "kind of neither", "\"kind\":\"differential\"", "\"kind\":\"snapshot\"" },
    { "full with from_checkpoint",
      "\"checkpoint\":\"" CP1 "\",\"from_checkpoint\":null",
      "\"checkpoint\":\"" CP1 "\",\"from_checkpoint\":\"" CP2 "\"" },
    { "full with a parent", "\"kind\":\"full\",\"since\":null,\"parent\":null",
      "\"kind\":\"full\",\"since\":null,\"parent\":\"" ID1 "\"" },
    { "full with since", "\"kind\":\"full\",\"since\":null",
      "\"kind\":\"full\",\"since\":\"" TOP "\"" },
    { "incremental without parent", "\"kind\":\"incremental\",\"since\":null,\"parent\":\"" ID1 "\"",
      "\"kind\":\"incremental\",\"since\":null,\"parent\":null" },
    { "incremental without from_checkpoint", "\"checkpoint\":\"" CP2 "\",\"from_checkpoint\":\"" CP1 "\"",
      "\"checkpoint\":\"" CP2 "\",\"from_checkpoint\":null" },
    { "incremental from another checkpoint",
      "\"checkpoint\":\"" CP2 "\",\"from_checkpoint\":\"" CP1 "\"",
      "\"checkpoint\":\"" CP2 "\",\"from_checkpoint\":\"" CP3 "\"" },
    { "incremental not on the latest", "\"kind\":\"differential\"", "\"kind\":\"incremental\"" },
    { "differential from an unknown checkpoint",
      "\"checkpoint\":\"" CP3 "\",\"from_checkpoint\":\"" CP1 "\"",
      "\"checkpoint\":\"" CP3 "\",\"from_checkpoint\":\"c00000ff-0000-4000-8000-0000000000ff\"" },
    { "parent unknown", "\"kind\":\"differential\",\"since\":null,\"parent\":\"" ID1 "\"",
      "\"kind\":\"differential\",\"since\":null,\"parent\":\"20200101T000000Z-000000\"" },
    { "checkpoint created twice", "\"checkpoint\":\"" CP3 "\"", "\"checkpoint\":\"" CP2 "\"" },
    { "checkpoint not a UUID", "\"checkpoint\":\"" CP1 "\"", "\"checkpoint\":\"../x\"" },
    { "vm not a UUID", "\"vm\":\"" VM "\"", "\"vm\":\"vm1\"" },
    { "from_checkpoint without checkpoint",
      "\"checkpoint\":\"" CP3 "\",\"from_checkpoint\"", "\"checkpoint\":null,\"from_checkpoint\"" },
    { "volume not the disk", "\"uuid\":\"" DISK "\",\"file\":\"" ID1 "/" DISK ".qcow2\"",
      "\"uuid\":\"" TOP "\",\"file\":\"" ID1 "/" TOP ".qcow2\"" },
    { "raw volume", "\"file\":\"" ID1 "/" DISK ".qcow2\",\"format\":\"qcow2\"",
      "\"file\":\"" ID1 "/" DISK ".raw\",\"format\":\"raw\"" },
    { "two volumes", "\"backing\":null}]",
      "\"backing\":null},{\"uuid\":\"" TOP "\",\"file\":\"" ID1 "/" TOP ".qcow2\","
      "\"format\":\"qcow2\",\"size\":1,\"virtual_size\":1,\"digest\":\"" DIGEST "\","
      "\"backing\":\"" DISK ".qcow2\"}]" },
    { "differential backed by the incremental",
      "\"digest\":\"" DIGEST "\",\"backing\":\"../" ID1 "/" DISK ".qcow2\"}],\"meta\":null}]}",
      "\"digest\":\"" DIGEST "\",\"backing\":\"../" ID2 "/" DISK ".qcow2\"}],\"meta\":null}]}" },
    { "incremental without backing",
      "\"backing\":\"../" ID1 "/" DISK ".qcow2\"}],\"meta\":null},",
      "\"backing\":null}],\"meta\":null}," },
    { "full with backing", "\"backing\":null}]", "\"backing\":\"x.qcow2\"}]" },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr(GString) s = g_string_new (good_cbt);
    g_autoptr(GError) err = NULL;
    g_autoptr(repo_manifest) m = NULL;

    if (g_string_replace (s, cases[i].from, cases[i].to, 1) != 1)
      g_error ("case '%s': '%s' is not in the manifest", cases[i].what, cases[i].from);
    m = parse (s->str, &err);
    if (m != NULL)
      g_error ("case '%s': accepted", cases[i].what);
    g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
    g_test_message ("%s: %s", cases[i].what, err->message);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/manifest/backup-id", test_backup_id);
  g_test_add_func ("/manifest/round-trip", test_round_trip);
  g_test_add_func ("/manifest/latest", test_latest);
  g_test_add_func ("/manifest/malformed", test_malformed);
  g_test_add_func ("/manifest/bytes", test_bytes);
  g_test_add_func ("/manifest/load-save", test_load_save);
  g_test_add_func ("/manifest/expected-backing", test_expected_backing);
  g_test_add_func ("/manifest/cbt", test_cbt);
  g_test_add_func ("/manifest/cbt-malformed", test_cbt_malformed);
  g_test_add_func ("/manifest/compact-meta", test_compact_meta);
  g_test_add_func ("/manifest/size-limit", test_size_limit);
  g_test_add_func ("/meta/keep", test_meta_keep);
  g_test_add_func ("/meta/bounds", test_meta_bounds);
  g_test_add_func ("/meta/counts", test_meta_counts);
  g_test_add_func ("/digest/stream", test_digest_stream);
  g_test_add_func ("/digest/file", test_digest_file);
  return g_test_run ();
}
