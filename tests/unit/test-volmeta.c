/* ovagent: unit tests of the VDSM volume metadata parser and slot offsets.
 * Records are the layouts of vdsm-storage.md §1.6 and §3.4. */
#include <config.h>

#include <string.h>

#include "error.h"
#include "util.h"
#include "volmeta.h"

#define DOMAIN_V5 "f3f6e278-47a1-4048-b9a5-0cf4d6ba455f"
#define IMAGE_V5 "c9865ca8-f6d2-4363-bec2-af870a87a819"
#define PARENT_V5 "8cae9a0f-f5c6-41c3-a275-25afe6cfa4b2"

/* The complete V5 record, in the key order VDSM writes. */
static const char *const v5_lines[] = {
  "CAP=10737418240",
  "CTIME=1557522135",
  "DESCRIPTION={\"DiskAlias\":\"vm1_Disk1\",\"DiskDescription\":\"\"}",
  "DISKTYPE=DATA",
  "DOMAIN=" DOMAIN_V5,
  "FORMAT=COW",
  "GEN=0",
  "IMAGE=" IMAGE_V5,
  "LEGALITY=LEGAL",
  "PUUID=" PARENT_V5,
  "SEQ=2",
  "TYPE=SPARSE",
  "VOLTYPE=LEAF",
};

#define V5_RECORD \
  "CAP=10737418240\n" \
  "CTIME=1557522135\n" \
  "DESCRIPTION={\"DiskAlias\":\"vm1_Disk1\",\"DiskDescription\":\"\"}\n" \
  "DISKTYPE=DATA\n" \
  "DOMAIN=" DOMAIN_V5 "\n" \
  "FORMAT=COW\n" \
  "GEN=0\n" \
  "IMAGE=" IMAGE_V5 "\n" \
  "LEGALITY=LEGAL\n" \
  "PUUID=" PARENT_V5 "\n" \
  "SEQ=2\n" \
  "TYPE=SPARSE\n" \
  "VOLTYPE=LEAF\n" \
  "EOF\n"

#define V4_RECORD \
  "CTIME=1557522135\n" \
  "DESCRIPTION={\"DiskAlias\":\"vm1_Disk1\",\"DiskDescription\":\"\"}\n" \
  "DISKTYPE=DATA\n" \
  "DOMAIN=c0b55558-5038-4a2b-bc96-47aff28d0218\n" \
  "FORMAT=COW\n" \
  "GEN=0\n" \
  "IMAGE=222d9718-f2d9-4b95-bd7f-e8dfe565cf56\n" \
  "LEGALITY=LEGAL\n" \
  "MTIME=0\n" \
  "PUUID=2939852e-187c-48b4-b57a-1f8ea5bc94f8\n" \
  "SIZE=20971520\n" \
  "TYPE=SPARSE\n" \
  "VOLTYPE=LEAF\n" \
  "EOF\n"

/* A V4 record during V4->V5 conversion: SIZE, MTIME and CAP together.
 * CAP is deliberately not SIZE*512 so the test shows which one wins. */
#define CONVERSION_RECORD \
  "CAP=2147483648\n" \
  "CTIME=1557522135\n" \
  "DESCRIPTION=\n" \
  "DISKTYPE=DATA\n" \
  "DOMAIN=c0b55558-5038-4a2b-bc96-47aff28d0218\n" \
  "FORMAT=RAW\n" \
  "GEN=7\n" \
  "IMAGE=222d9718-f2d9-4b95-bd7f-e8dfe565cf56\n" \
  "LEGALITY=ILLEGAL\n" \
  "MTIME=0\n" \
  "PUUID=00000000-0000-0000-0000-000000000000\n" \
  "SIZE=20971520\n" \
  "TYPE=PREALLOCATED\n" \
  "VOLTYPE=INTERNAL\n" \
  "EOF\n"

/* VDSM's MD_WITH_PARENT: no SEQ and no EOF line, which is legal. */
#define NO_SEQ_NO_EOF_RECORD \
  "CAP=46137344\n" \
  "CTIME=1557522135\n" \
  "DESCRIPTION=\n" \
  "DISKTYPE=DATA\n" \
  "DOMAIN=696be7a4-fe13-4cca-8023-1a1997080176\n" \
  "FORMAT=COW\n" \
  "GEN=0\n" \
  "IMAGE=4d1b596a-6d55-46ff-aaf3-59888ec5e9a3\n" \
  "LEGALITY=LEGAL\n" \
  "PUUID=8cae9a0f-f5c6-41c3-a275-25afe6cfa4b2\n" \
  "TYPE=SPARSE\n" \
  "VOLTYPE=LEAF\n"

/* Old records: no GEN, no SEQ, a POOL_UUID and a template volume. */
#define NO_GEN_RECORD \
  "DOMAIN=3386c6f2-926f-42c4-839c-38287fac8998\n" \
  "VOLTYPE=SHARED\n" \
  "CTIME=1400000000\n" \
  "FORMAT=RAW\n" \
  "IMAGE=ae863f0d-0f24-41d4-b6ed-333c6634c7dc\n" \
  "DISKTYPE=2\n" \
  "PUUID=00000000-0000-0000-0000-000000000000\n" \
  "LEGALITY=FAKE\n" \
  "MTIME=0\n" \
  "POOL_UUID=\n" \
  "SIZE=4194304\n" \
  "TYPE=PREALLOCATED\n" \
  "DESCRIPTION=\n" \
  "EOF\n"

/* The @8704 slot of vdsm-storage.md §3.4; padded to 512 bytes by the test. */
#define SLOT_RECORD \
  "CTIME=1400000000\n" \
  "DESCRIPTION={\"DiskAlias\":\"vm1_Disk1\",\"DiskDescription\":\"\"}\n" \
  "DISKTYPE=DATA\n" \
  "DOMAIN=3386c6f2-926f-42c4-839c-38287fac8998\n" \
  "FORMAT=RAW\n" \
  "GEN=0\n" \
  "IMAGE=ae863f0d-0f24-41d4-b6ed-333c6634c7dc\n" \
  "LEGALITY=LEGAL\n" \
  "MTIME=0\n" \
  "PUUID=00000000-0000-0000-0000-000000000000\n" \
  "SIZE=4194304\n" \
  "TYPE=PREALLOCATED\n" \
  "VOLTYPE=INTERNAL\n" \
  "EOF\n"

/* Lenient spellings VDSM accepts: CRLF, blank and '='-less lines,
 * whitespace around keys and values, '=' inside a value, a repeated key
 * (the last one counts) and junk after EOF. */
#define LENIENT_RECORD \
  "CAP=1\r\n" \
  "  CTIME = -5 \r\n" \
  "\r\n" \
  "this line has no equals sign\n" \
  "DESCRIPTION=a=b=c\n" \
  "DISKTYPE=DATA\n" \
  "DOMAIN=" DOMAIN_V5 "\n" \
  "FORMAT=RAW\n" \
  "FORMAT=COW\n" \
  "IMAGE=" IMAGE_V5 "\n" \
  "LEGALITY=LEGAL\n" \
  "PUUID=" PARENT_V5 "\n" \
  "GEN=999\n" \
  "SEQ=4294967295\n" \
  "TYPE=SPARSE\n" \
  "VOLTYPE=LEAF\n" \
  "EOF and anything after it\n" \
  "DOMAIN=not-a-uuid\n" \
  "\xff\xfe garbage"

typedef struct {
  const char *name;
  const char *text;
  gsize pad_to;              /* NUL pad the text to this size; 0: none */
  const char *domain;
  const char *parent;
  guint64 capacity;
  stor_format format;
  stor_voltype voltype;
  stor_legality legality;
  const char *type;
  const char *disktype;
  const char *description;
  gint64 ctime;
  guint gen;
  guint64 seq;
} valid_case;

static const valid_case valid_cases[] = {
  { "v5", V5_RECORD, 0, DOMAIN_V5, PARENT_V5, G_GUINT64_CONSTANT (10737418240),
    STOR_FORMAT_COW, STOR_VOLTYPE_LEAF, STOR_LEGALITY_LEGAL, "SPARSE", "DATA",
    "{\"DiskAlias\":\"vm1_Disk1\",\"DiskDescription\":\"\"}",
    1557522135, 0, 2 },
  { "v4", V4_RECORD, 0, "c0b55558-5038-4a2b-bc96-47aff28d0218",
    "2939852e-187c-48b4-b57a-1f8ea5bc94f8", G_GUINT64_CONSTANT (10737418240),
    STOR_FORMAT_COW, STOR_VOLTYPE_LEAF, STOR_LEGALITY_LEGAL, "SPARSE", "DATA",
    "{\"DiskAlias\":\"vm1_Disk1\",\"DiskDescription\":\"\"}",
    1557522135, 0, 0 },
  { "conversion-cap-wins", CONVERSION_RECORD, 0,
    "c0b55558-5038-4a2b-bc96-47aff28d0218", OVA_BLANK_UUID,
    G_GUINT64_CONSTANT (2147483648), STOR_FORMAT_RAW, STOR_VOLTYPE_INTERNAL,
    STOR_LEGALITY_ILLEGAL, "PREALLOCATED", "DATA", "", 1557522135, 7, 0 },
  { "no-seq-no-eof", NO_SEQ_NO_EOF_RECORD, 0,
    "696be7a4-fe13-4cca-8023-1a1997080176",
    "8cae9a0f-f5c6-41c3-a275-25afe6cfa4b2", 46137344,
    STOR_FORMAT_COW, STOR_VOLTYPE_LEAF, STOR_LEGALITY_LEGAL, "SPARSE", "DATA",
    "", 1557522135, 0, 0 },
  { "no-gen-unsorted", NO_GEN_RECORD, 0,
    "3386c6f2-926f-42c4-839c-38287fac8998", OVA_BLANK_UUID,
    G_GUINT64_CONSTANT (2147483648), STOR_FORMAT_RAW, STOR_VOLTYPE_SHARED,
    STOR_LEGALITY_FAKE, "PREALLOCATED", "2", "", 1400000000, 0, 0 },
  { "slot-nul-padded", SLOT_RECORD, STOR_VOLMETA_SIZE,
    "3386c6f2-926f-42c4-839c-38287fac8998", OVA_BLANK_UUID,
    G_GUINT64_CONSTANT (2147483648), STOR_FORMAT_RAW, STOR_VOLTYPE_INTERNAL,
    STOR_LEGALITY_LEGAL, "PREALLOCATED", "DATA",
    "{\"DiskAlias\":\"vm1_Disk1\",\"DiskDescription\":\"\"}",
    1400000000, 0, 0 },
  { "v5-slot-8k", V5_RECORD, 8192, DOMAIN_V5, PARENT_V5,
    G_GUINT64_CONSTANT (10737418240),
    STOR_FORMAT_COW, STOR_VOLTYPE_LEAF, STOR_LEGALITY_LEGAL, "SPARSE", "DATA",
    "{\"DiskAlias\":\"vm1_Disk1\",\"DiskDescription\":\"\"}",
    1557522135, 0, 2 },
  { "lenient", LENIENT_RECORD, 0, DOMAIN_V5, PARENT_V5, 1,
    STOR_FORMAT_COW, STOR_VOLTYPE_LEAF, STOR_LEGALITY_LEGAL, "SPARSE", "DATA",
    "a=b=c", -5, 999, G_MAXUINT32 },
};

static GBytes *
padded (const char *text, gsize pad_to)
{
  gsize len = strlen (text);
  gsize size = MAX (len, pad_to);
  char *buf = g_malloc0 (size);

  memcpy (buf, text, len);
  return g_bytes_new_take (buf, size);
}

static void
test_valid (gconstpointer data)
{
  const valid_case *c = data;
  g_autoptr(GBytes) bytes = padded (c->text, c->pad_to);
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md = NULL;
  gsize len;
  const char *buf = g_bytes_get_data (bytes, &len);

  md = stor_volmeta_parse (buf, len, &error);
  g_assert_no_error (error);
  g_assert_nonnull (md);
  g_assert_false (md->cleared);
  g_assert_cmpstr (md->domain, ==, c->domain);
  g_assert_true (ova_uuid_is_valid (md->image));
  g_assert_cmpstr (md->parent, ==, c->parent);
  g_assert_cmpuint (md->capacity, ==, c->capacity);
  g_assert_cmpint (md->format, ==, c->format);
  g_assert_cmpint (md->voltype, ==, c->voltype);
  g_assert_cmpint (md->legality, ==, c->legality);
  g_assert_cmpstr (md->type, ==, c->type);
  g_assert_cmpstr (md->disktype, ==, c->disktype);
  g_assert_cmpstr (md->description, ==, c->description);
  g_assert_cmpint (md->ctime, ==, c->ctime);
  g_assert_cmpuint (md->gen, ==, c->gen);
  g_assert_cmpuint (md->seq, ==, c->seq);
}

static void
test_v5_image (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md =
    stor_volmeta_parse (V5_RECORD, strlen (V5_RECORD), &error);

  g_assert_no_error (error);
  g_assert_cmpstr (md->image, ==, IMAGE_V5);
}

/* Exact bytes of VDSM's CLEARED_VOLUME_METADATA. */
static char *
cleared_record (gsize *len)
{
  GString *s = g_string_new ("NONE=");

  for (int i = 0; i < 502; i++)
    g_string_append_c (s, '#');
  g_string_append (s, "\nEOF\n");
  *len = s->len;
  return g_string_free (s, FALSE);
}

static void
test_cleared (void)
{
  gsize len;
  g_autofree char *text = cleared_record (&len);
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md = NULL;

  g_assert_cmpuint (len, ==, STOR_VOLMETA_SIZE);
  md = stor_volmeta_parse (text, len, &error);
  g_assert_no_error (error);
  g_assert_true (md->cleared);
  g_assert_null (md->domain);
  g_assert_null (md->image);
  g_assert_cmpuint (md->capacity, ==, 0);
}

static void
test_cleared_among_keys (void)
{
  static const char text[] = "DOMAIN=" DOMAIN_V5 "\nNONE=\nEOF\n";
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md = stor_volmeta_parse (text, strlen (text), &error);

  g_assert_no_error (error);
  g_assert_true (md->cleared);
  g_assert_null (md->domain);
}

/* A V5 record with KEY's value replaced by value, or KEY dropped when
 * value is NULL, or KEY added when it is not in the record. */
static char *
v5_with (const char *key, const char *value)
{
  GString *s = g_string_new (NULL);
  gsize key_len = strlen (key);
  gboolean seen = FALSE;

  for (gsize i = 0; i < G_N_ELEMENTS (v5_lines); i++) {
    const char *line = v5_lines[i];

    if (strncmp (line, key, key_len) == 0 && line[key_len] == '=') {
      seen = TRUE;
      if (value != NULL)
        g_string_append_printf (s, "%s=%s\n", key, value);
      continue;
    }
    g_string_append_printf (s, "%s\n", line);
  }
  if (!seen && value != NULL)
    g_string_append_printf (s, "%s=%s\n", key, value);
  g_string_append (s, "EOF\n");
  return g_string_free (s, FALSE);
}

static void
assert_integrity_error (const char *buf, gsize len, const char *needle)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md = stor_volmeta_parse (buf, len, &error);

  g_assert_null (md);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  if (strstr (error->message, needle) == NULL)
    g_error ("message \"%s\" does not contain \"%s\"", error->message, needle);
}

static void
test_missing_each_key (void)
{
  static const char *const required[] = {
    "DOMAIN", "IMAGE", "PUUID", "FORMAT", "TYPE", "VOLTYPE", "DISKTYPE",
    "DESCRIPTION", "LEGALITY", "CTIME",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (required); i++) {
    g_autofree char *text = v5_with (required[i], NULL);
    g_autofree char *needle = g_strdup_printf ("missing key %s", required[i]);

    assert_integrity_error (text, strlen (text), needle);
  }
}

static void
test_missing_capacity (void)
{
  g_autofree char *text = v5_with ("CAP", NULL);
  g_autofree char *size_text = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md = NULL;

  assert_integrity_error (text, strlen (text), "missing key CAP");

  /* SIZE alone stands in for CAP. */
  size_text = g_strconcat ("SIZE=8\n", text, NULL);
  md = stor_volmeta_parse (size_text, strlen (size_text), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (md->capacity, ==, 4096);
}

static void
test_missing_gen_seq (void)
{
  g_autofree char *no_gen = v5_with ("GEN", NULL);
  g_autofree char *neither = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md = NULL;
  char *seq;

  /* Drop SEQ from the GEN-less text by hand. */
  neither = g_strdup (no_gen);
  seq = strstr (neither, "SEQ=2\n");
  g_assert_nonnull (seq);
  memmove (seq, seq + 6, strlen (seq + 6) + 1);

  md = stor_volmeta_parse (neither, strlen (neither), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (md->gen, ==, 0);
  g_assert_cmpuint (md->seq, ==, 0);
  g_assert_cmpuint (md->capacity, ==, G_GUINT64_CONSTANT (10737418240));
}

/* Like VDSM's INVALID_VOLUME_METADATA: DOMAIN, VOLTYPE and LEGALITY are
 * missing and the slot is NUL padded. */
static void
test_invalid_volume_metadata (void)
{
  static const char text[] =
    "CTIME=1557522135\n"
    "DESCRIPTION=\n"
    "DISKTYPE=DATA\n"
    "FORMAT=COW\n"
    "GEN=0\n"
    "IMAGE=4d1b596a-6d55-46ff-aaf3-59888ec5e9a3\n"
    "MTIME=0\n"
    "PUUID=00000000-0000-0000-0000-000000000000\n"
    "SIZE=2048\n"
    "TYPE=SPARSE\n"
    "EOF\n";
  g_autoptr(GBytes) bytes = padded (text, STOR_VOLMETA_SIZE);
  gsize len;
  const char *buf = g_bytes_get_data (bytes, &len);

  g_assert_cmpuint (len, ==, STOR_VOLMETA_SIZE);
  assert_integrity_error (buf, len, "missing key DOMAIN");
}

typedef struct {
  const char *key;
  const char *value;
  const char *needle;
} bad_value_case;

static const bad_value_case bad_values[] = {
  { "DOMAIN", "not-a-uuid", "invalid DOMAIN value \"not-a-uuid\"" },
  { "IMAGE", "c9865ca8-f6d2-4363-bec2-af870a87a81", "invalid IMAGE value" },
  { "PUUID", "8cae9a0f-f5c6-41c3-a275-25afe6cfa4bg", "invalid PUUID value" },
  { "PUUID", "", "invalid PUUID value \"\"" },
  { "CAP", "abc", "invalid CAP value \"abc\"" },
  { "CAP", "-1", "invalid CAP value \"-1\"" },
  { "CAP", "0", "invalid CAP value \"0\" (expected a capacity of at least 1)" },
  { "CAP", "18446744073709551616", "invalid CAP value" },
  { "CAP", "1.5", "invalid CAP value" },
  { "FORMAT", "QCOW2", "invalid FORMAT value \"QCOW2\"" },
  { "FORMAT", "cow", "invalid FORMAT value \"cow\"" },
  { "VOLTYPE", "BASE", "invalid VOLTYPE value \"BASE\"" },
  { "LEGALITY", "legal", "invalid LEGALITY value \"legal\"" },
  { "CTIME", "yesterday", "invalid CTIME value \"yesterday\"" },
  { "CTIME", "99999999999999999999", "invalid CTIME value" },
  { "GEN", "1000", "invalid GEN value \"1000\"" },
  { "GEN", "-1", "invalid GEN value \"-1\"" },
  { "SEQ", "4294967296", "invalid SEQ value \"4294967296\"" },
  { "SEQ", "x", "invalid SEQ value \"x\"" },
};

static void
test_bad_values (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (bad_values); i++) {
    const bad_value_case *c = &bad_values[i];
    g_autofree char *text = v5_with (c->key, c->value);

    assert_integrity_error (text, strlen (text), c->needle);
  }
}

static void
test_bad_size (void)
{
  /* 2^64 / 512 would overflow once multiplied. */
  static const char *const sizes[] = { "0", "36028797018963968", "ten" };

  for (gsize i = 0; i < G_N_ELEMENTS (sizes); i++) {
    g_autofree char *no_cap = v5_with ("CAP", NULL);
    g_autofree char *text = g_strdup_printf ("SIZE=%s\n%s", sizes[i], no_cap);

    assert_integrity_error (text, strlen (text), "invalid SIZE value");
  }
}

/* Values quoted in messages are escaped and cut short. */
static void
test_value_in_message_escaped (void)
{
  g_autofree char *long_value = g_strnfill (300, 'x');
  g_autofree char *text1 = v5_with ("DOMAIN", "evil\x1b[31m\tvalue");
  g_autofree char *text2 = v5_with ("FORMAT", long_value);
  g_autoptr(GError) error1 = NULL;
  g_autoptr(GError) error2 = NULL;
  g_autoptr(stor_volmeta) md1 = stor_volmeta_parse (text1, strlen (text1),
                                                    &error1);
  g_autoptr(stor_volmeta) md2 = stor_volmeta_parse (text2, strlen (text2),
                                                    &error2);

  g_assert_null (md1);
  g_assert_error (error1, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_null (strchr (error1->message, '\x1b'));
  g_assert_null (strchr (error1->message, '\t'));
  g_assert_nonnull (strstr (error1->message, "evil\\033[31m\\tvalue"));

  g_assert_null (md2);
  g_assert_error (error2, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (error2->message, "\"..."));
  g_assert_cmpuint (strlen (error2->message), <, 200);
}

static void
test_embedded_nul (void)
{
  static const char text[] = "DOMAIN=" DOMAIN_V5 "\n\0CTIME=1\nEOF\n";

  assert_integrity_error (text, sizeof text - 1, "NUL byte at offset 44");
}

static void
test_nul_after_eof_ignored (void)
{
  static const char tail[] = "EOF\n\0\0junk\0";
  g_autofree char *text = v5_with ("SEQ", "3");
  gsize len = strlen (text);
  g_autofree char *buf = g_malloc (len + sizeof tail);
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md = NULL;

  memcpy (buf, text, len);
  memcpy (buf + len, tail, sizeof tail);
  md = stor_volmeta_parse (buf, len + sizeof tail, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (md->seq, ==, 3);
}

static void
test_not_utf8 (void)
{
  g_autofree char *text = v5_with ("DESCRIPTION", "caf\xe9");

  assert_integrity_error (text, strlen (text), "not valid UTF-8");
}

static void
test_utf8_description (void)
{
  g_autofree char *text = v5_with ("DESCRIPTION", "caf\xc3\xa9 \xd7\x99");
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md = stor_volmeta_parse (text, strlen (text), &error);

  g_assert_no_error (error);
  g_assert_cmpstr (md->description, ==, "caf\xc3\xa9 \xd7\x99");
}

static void
test_empty (void)
{
  g_autofree char *zeros = g_malloc0 (STOR_VOLMETA_SIZE);

  assert_integrity_error ("", 0, "empty metadata record");
  assert_integrity_error (zeros, STOR_VOLMETA_SIZE, "empty metadata record");
  assert_integrity_error ("EOF\n", 4, "empty metadata record");
  assert_integrity_error ("\n\n", 2, "missing key DOMAIN");
}

/* A V5 record whose DESCRIPTION makes the text before EOF exactly
 * target bytes long. */
static char *
v5_of_length (gsize target)
{
  g_autofree char *base = v5_with ("DESCRIPTION", "");
  gsize base_len = strlen (base) - strlen ("EOF\n");
  g_autofree char *fill = NULL;
  char *text;

  g_assert_cmpuint (target, >=, base_len);
  fill = g_strnfill (target - base_len, 'd');
  text = v5_with ("DESCRIPTION", fill);
  g_assert_cmpuint (strlen (text), ==, target + strlen ("EOF\n"));
  return text;
}

static void
test_oversize (void)
{
  g_autofree char *at_limit = v5_of_length (STOR_VOLMETA_MAX_RECORD);
  g_autofree char *over = v5_of_length (STOR_VOLMETA_MAX_RECORD + 1);
  g_autofree char *huge = g_strnfill (1024 * 1024, 'A');
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_volmeta) md = NULL;

  md = stor_volmeta_parse (at_limit, strlen (at_limit), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (strlen (md->description), >, 3000);

  assert_integrity_error (over, strlen (over), "longer than 4096 bytes");
  assert_integrity_error (huge, strlen (huge), "longer than 4096 bytes");
}

typedef struct {
  int version;
  guint64 slot;
  guint64 offset;
} slot_case;

static const slot_case slot_cases[] = {
  { 4, 0, 0 },
  { 4, 100, 51200 },
  { 4, 17, 8704 },
  { 3, 18, 9216 },
  { 2, 1, 512 },
  { 5, 0, 1048576 },
  { 5, 100, 1867776 },
  { 5, 17, 1187840 },
  { 5, 18, 1196032 },
  { 6, 1, 1048576 + 8192 },
  { 4, G_MAXUINT64, G_MAXUINT64 },
  { 4, G_MAXUINT64 / 512, (G_MAXUINT64 / 512) * 512 },
  { 5, G_MAXUINT64 / 8192, G_MAXUINT64 },
};

static void
test_slot_offsets (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (slot_cases); i++) {
    const slot_case *c = &slot_cases[i];

    g_assert_cmpuint (stor_volmeta_slot_offset (c->version, c->slot), ==,
                      c->offset);
  }
}

static void
test_names (void)
{
  g_assert_cmpstr (stor_format_name (STOR_FORMAT_COW), ==, "cow");
  g_assert_cmpstr (stor_format_name (STOR_FORMAT_RAW), ==, "raw");
  g_assert_cmpstr (stor_format_name (STOR_FORMAT_UNKNOWN), ==, "unknown");
  g_assert_cmpstr (stor_format_name ((stor_format) 42), ==, "unknown");
  g_assert_cmpstr (stor_voltype_name (STOR_VOLTYPE_LEAF), ==, "leaf");
  g_assert_cmpstr (stor_voltype_name (STOR_VOLTYPE_INTERNAL), ==, "internal");
  g_assert_cmpstr (stor_voltype_name (STOR_VOLTYPE_SHARED), ==, "shared");
  g_assert_cmpstr (stor_voltype_name (STOR_VOLTYPE_UNKNOWN), ==, "unknown");
  g_assert_cmpstr (stor_legality_name (STOR_LEGALITY_LEGAL), ==, "legal");
  g_assert_cmpstr (stor_legality_name (STOR_LEGALITY_ILLEGAL), ==, "illegal");
  g_assert_cmpstr (stor_legality_name (STOR_LEGALITY_FAKE), ==, "fake");
  g_assert_cmpstr (stor_legality_name (STOR_LEGALITY_UNKNOWN), ==, "unknown");
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (valid_cases); i++) {
    g_autofree char *path =
      g_strdup_printf ("/volmeta/valid/%s", valid_cases[i].name);

    g_test_add_data_func (path, &valid_cases[i], test_valid);
  }
  g_test_add_func ("/volmeta/valid/v5-image", test_v5_image);
  g_test_add_func ("/volmeta/cleared", test_cleared);
  g_test_add_func ("/volmeta/cleared-among-keys", test_cleared_among_keys);
  g_test_add_func ("/volmeta/missing/each-key", test_missing_each_key);
  g_test_add_func ("/volmeta/missing/capacity", test_missing_capacity);
  g_test_add_func ("/volmeta/missing/gen-seq", test_missing_gen_seq);
  g_test_add_func ("/volmeta/missing/invalid-volume-metadata",
                   test_invalid_volume_metadata);
  g_test_add_func ("/volmeta/bad/values", test_bad_values);
  g_test_add_func ("/volmeta/bad/size", test_bad_size);
  g_test_add_func ("/volmeta/bad/value-escaped", test_value_in_message_escaped);
  g_test_add_func ("/volmeta/bad/embedded-nul", test_embedded_nul);
  g_test_add_func ("/volmeta/nul-after-eof", test_nul_after_eof_ignored);
  g_test_add_func ("/volmeta/bad/not-utf8", test_not_utf8);
  g_test_add_func ("/volmeta/utf8-description", test_utf8_description);
  g_test_add_func ("/volmeta/bad/empty", test_empty);
  g_test_add_func ("/volmeta/bad/oversize", test_oversize);
  g_test_add_func ("/volmeta/slot-offsets", test_slot_offsets);
  g_test_add_func ("/volmeta/names", test_names);

  return g_test_run ();
}
