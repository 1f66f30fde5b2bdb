/* ovagent: unit tests of domain metadata parsing, the _SHA_CKSUM seal and
 * LVM tag escapes, against the vectors of vdsm-storage.md §2.3 and §3.1. */
#include <config.h>

#include <string.h>

#include "dommeta.h"
#include "error.h"

/* filesd_metadata_test.py EXAMPLE_DATA[(512, 1M)]. */
#define LOCALFS_TEXT \
  "ALIGNMENT=1048576\n" \
  "BLOCK_SIZE=512\n" \
  "CLASS=Data\n" \
  "DESCRIPTION=storage domain\n" \
  "IOOPTIMEOUTSEC=10\n" \
  "LEASERETRIES=3\n" \
  "LEASETIMESEC=60\n" \
  "LOCKPOLICY=\n" \
  "LOCKRENEWALINTERVALSEC=5\n" \
  "POOL_UUID=\n" \
  "REMOTE_PATH=server:/path\n" \
  "ROLE=Regular\n" \
  "SDUUID=275766cb-c7d8-43d6-a663-4e52160de620\n" \
  "TYPE=LOCALFS\n" \
  "VERSION=5\n"
#define LOCALFS_SUM "9336f77705ff9e3d5faf65c4d0dc818a29de458d"

#define NFS_MASTER_TEXT \
  "ALIGNMENT=1048576\n" \
  "BLOCK_SIZE=512\n" \
  "CLASS=Data\n" \
  "DESCRIPTION=nfs-data1\n" \
  "IOOPTIMEOUTSEC=10\n" \
  "LEASERETRIES=3\n" \
  "LEASETIMESEC=60\n" \
  "LOCKPOLICY=\n" \
  "LOCKRENEWALINTERVALSEC=5\n" \
  "POOL_UUID=5c80c932-20ef-4c55-9e06-383c6152a0dc\n" \
  "REMOTE_PATH=nfs01.example.com:/exports/data1\n" \
  "ROLE=Master\n" \
  "SDUUID=f3f6e278-47a1-4048-b9a5-0cf4d6ba455f\n" \
  "TYPE=NFS\n" \
  "VERSION=5\n"
#define NFS_MASTER_SUM "44ef7518bb5b95b25524e193495ad6dbd2cea28c"

#define PV0_DECODED \
  "pv:36001405bb1b5071cfb44a4e9576aef7c,uuid:3Hf8Ux-7OEm-7Dxa-Vu1Q-1hcu-" \
  "0LqF-IaeBKa,pestart:0,pecount:797,mapoffset:0"

static const char *const iscsi_tags[] = {
  "RHAT_storage_domain",
  "MDT_ALIGNMENT=1048576",
  "MDT_BLOCK_SIZE=512",
  "MDT_CLASS=Data",
  "MDT_DESCRIPTION=iscsi-data1",
  "MDT_IOOPTIMEOUTSEC=10",
  "MDT_LEASERETRIES=3",
  "MDT_LEASETIMESEC=60",
  "MDT_LOCKPOLICY=",
  "MDT_LOCKRENEWALINTERVALSEC=5",
  "MDT_POOL_UUID=5c80c932-20ef-4c55-9e06-383c6152a0dc",
  "MDT_PV0=pv:36001405bb1b5071cfb44a4e9576aef7c&44&uuid:3Hf8Ux-7OEm-7Dxa-"
  "Vu1Q-1hcu-0LqF-IaeBKa&44&pestart:0&44&pecount:797&44&mapoffset:0",
  "MDT_ROLE=Regular",
  "MDT_SDUUID=c0b55558-5038-4a2b-bc96-47aff28d0218",
  "MDT_TYPE=ISCSI",
  "MDT_VERSION=5",
  "MDT_VGUUID=Ik3Qbd-lmxS-ynxA-1mQ5-yHAi-WY6C-Bh5Ehz",
  "MDT__SHA_CKSUM=d9c1f7678ee56ab00c714568257fa66f70122f31",
  NULL
};

static stor_dommeta *
parse_ok (const char *text, gsize len)
{
  g_autoptr(GError) error = NULL;
  stor_dommeta *md = stor_dommeta_parse_text (text, len, &error);

  g_assert_no_error (error);
  g_assert_nonnull (md);
  return md;
}

static void
assert_text_error (const char *text, gsize len, const char *needle)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_dommeta) md = stor_dommeta_parse_text (text, len, &error);

  g_assert_null (md);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  if (strstr (error->message, needle) == NULL)
    g_error ("message \"%s\" does not contain \"%s\"", error->message, needle);
}

typedef struct {
  const char *name;
  const char *text;           /* without the _SHA_CKSUM line */
  const char *sum;
  const char *sduuid;
  const char *role;
} sealed_case;

static const sealed_case sealed_cases[] = {
  { "localfs", LOCALFS_TEXT, LOCALFS_SUM,
    "275766cb-c7d8-43d6-a663-4e52160de620", "Regular" },
  { "nfs-master", NFS_MASTER_TEXT, NFS_MASTER_SUM,
    "f3f6e278-47a1-4048-b9a5-0cf4d6ba455f", "Master" },
};

static void
test_sealed_text (gconstpointer data)
{
  const sealed_case *c = data;
  g_autofree char *text =
    g_strdup_printf ("%s_SHA_CKSUM=%s\n", c->text, c->sum);
  g_autoptr(stor_dommeta) md = parse_ok (text, strlen (text));
  gint64 n;

  g_assert_true (stor_dommeta_sealed (md));
  g_assert_cmpstr (stor_dommeta_get (md, "SDUUID"), ==, c->sduuid);
  g_assert_cmpstr (stor_dommeta_get (md, "ROLE"), ==, c->role);
  g_assert_cmpstr (stor_dommeta_get (md, "LOCKPOLICY"), ==, "");
  g_assert_null (stor_dommeta_get (md, "_SHA_CKSUM"));
  g_assert_null (stor_dommeta_get (md, "MISSING"));
  g_assert_true (stor_dommeta_get_int (md, "VERSION", &n));
  g_assert_cmpint (n, ==, 5);
  g_assert_true (stor_dommeta_get_int (md, "ALIGNMENT", &n));
  g_assert_cmpint (n, ==, 1048576);
  g_assert_false (stor_dommeta_get_int (md, "CLASS", &n));
  g_assert_false (stor_dommeta_get_int (md, "LOCKPOLICY", &n));
  g_assert_false (stor_dommeta_get_int (md, "MISSING", &n));
}

/* The seal does not depend on line order or on NUL padding. */
static void
test_sealed_unsorted_padded (void)
{
  static const char text[] =
    "_SHA_CKSUM=" LOCALFS_SUM "\n"
    "VERSION=5\n"
    "TYPE=LOCALFS\n"
    "SDUUID=275766cb-c7d8-43d6-a663-4e52160de620\n"
    "ROLE=Regular\n"
    "REMOTE_PATH=server:/path\n"
    "POOL_UUID=\n"
    "LOCKRENEWALINTERVALSEC=5\n"
    "LOCKPOLICY=\n"
    "LEASETIMESEC=60\n"
    "LEASERETRIES=3\n"
    "IOOPTIMEOUTSEC=10\n"
    "DESCRIPTION=storage domain\n"
    "CLASS=Data\n"
    "BLOCK_SIZE=512\n"
    "ALIGNMENT=1048576\n"
    "\0\0\0\0\0\0\0\0";
  g_autoptr(stor_dommeta) md = parse_ok (text, sizeof text);

  g_assert_true (stor_dommeta_sealed (md));
  g_assert_cmpstr (stor_dommeta_get (md, "DESCRIPTION"), ==, "storage domain");
}

static void
test_checksum_function (void)
{
  g_autoptr(GHashTable) keys =
    g_hash_table_new (g_str_hash, g_str_equal);
  g_autofree char *empty = NULL;
  g_autofree char *two = NULL;
  g_autofree char *localfs = NULL;
  g_autofree char *broken = NULL;

  empty = stor_dommeta_checksum (keys);
  g_assert_cmpstr (empty, ==, "da39a3ee5e6b4b0d3255bfef95601890afd80709");

  g_hash_table_insert (keys, (gpointer) "B", (gpointer) "");
  g_hash_table_insert (keys, (gpointer) "A", (gpointer) "1");
  /* The seal itself is never part of the sum. */
  g_hash_table_insert (keys, (gpointer) "_SHA_CKSUM", (gpointer) "whatever");
  two = stor_dommeta_checksum (keys);
  g_assert_cmpstr (two, ==, "a94881fabd37e9310b62a340b98810b5de5ee26e");

  g_hash_table_remove_all (keys);
  g_hash_table_insert (keys, (gpointer) "VERSION", (gpointer) "5");
  g_hash_table_insert (keys, (gpointer) "TYPE", (gpointer) "LOCALFS");
  g_hash_table_insert (keys, (gpointer) "SDUUID",
                       (gpointer) "275766cb-c7d8-43d6-a663-4e52160de620");
  g_hash_table_insert (keys, (gpointer) "ROLE", (gpointer) "Regular");
  g_hash_table_insert (keys, (gpointer) "REMOTE_PATH",
                       (gpointer) "server:/path");
  g_hash_table_insert (keys, (gpointer) "POOL_UUID", (gpointer) "");
  g_hash_table_insert (keys, (gpointer) "LOCKRENEWALINTERVALSEC", (gpointer) "5");
  g_hash_table_insert (keys, (gpointer) "LOCKPOLICY", (gpointer) "");
  g_hash_table_insert (keys, (gpointer) "LEASETIMESEC", (gpointer) "60");
  g_hash_table_insert (keys, (gpointer) "LEASERETRIES", (gpointer) "3");
  g_hash_table_insert (keys, (gpointer) "IOOPTIMEOUTSEC", (gpointer) "10");
  g_hash_table_insert (keys, (gpointer) "DESCRIPTION",
                       (gpointer) "storage domain");
  g_hash_table_insert (keys, (gpointer) "CLASS", (gpointer) "Data");
  g_hash_table_insert (keys, (gpointer) "BLOCK_SIZE", (gpointer) "512");
  g_hash_table_insert (keys, (gpointer) "ALIGNMENT", (gpointer) "1048576");
  localfs = stor_dommeta_checksum (keys);
  g_assert_cmpstr (localfs, ==, LOCALFS_SUM);

  /* A truncated UTF-8 sequence is hashed as the bytes it is, and the
   * walk must not run past the end of the string. */
  g_hash_table_remove_all (keys);
  g_hash_table_insert (keys, (gpointer) "A", (gpointer) "\xf0");
  broken = stor_dommeta_checksum (keys);
  g_assert_cmpstr (broken, ==, "793de01d7d0fafac27e7a2d6a8a4d98f87f5c9d9");
}

/* Characters beyond ASCII enter the sum as XML character references,
 * as Python's encode("ascii", "xmlcharrefreplace") writes them. */
static void
test_checksum_non_ascii (void)
{
  static const char text[] =
    "DESCRIPTION=donn\xc3\xa9" "es-\xd7\x99\xd7\x93\n"
    "VERSION=5\n"
    "_SHA_CKSUM=bdb41243daa0005ed12aa60b7bb0fa3dc7ec36fd\n";
  g_autoptr(stor_dommeta) md = parse_ok (text, strlen (text));

  g_assert_true (stor_dommeta_sealed (md));
  g_assert_cmpstr (stor_dommeta_get (md, "DESCRIPTION"), ==,
                   "donn\xc3\xa9" "es-\xd7\x99\xd7\x93");
}

static void
test_tampered_text (void)
{
  g_autofree char *good = g_strdup_printf ("%s_SHA_CKSUM=%s\n", NFS_MASTER_TEXT,
                                           NFS_MASTER_SUM);
  g_autofree char *bad = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_dommeta) md = NULL;
  char *role = strstr (good, "ROLE=Master");

  g_assert_nonnull (role);
  memcpy (role, "ROLE=Mister", strlen ("ROLE=Mister"));
  md = stor_dommeta_parse_text (good, strlen (good), &error);
  g_assert_null (md);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (error->message, "seal is broken"));
  g_assert_nonnull (strstr (error->message, NFS_MASTER_SUM));
  g_assert_nonnull (strstr (error->message,
                            "c6608a10155736c8a0422c0d94408893f62835fc"));

  /* A forged declared sum is quoted escaped and cut short. */
  bad = g_strdup_printf ("%s_SHA_CKSUM=%s\x1b%s\n", NFS_MASTER_TEXT,
                         NFS_MASTER_SUM, NFS_MASTER_SUM);
  assert_text_error (bad, strlen (bad), "\\033");
}

static void
test_unsealed (void)
{
  g_autoptr(stor_dommeta) md = parse_ok (LOCALFS_TEXT, strlen (LOCALFS_TEXT));
  g_autoptr(stor_dommeta) empty = parse_ok ("", 0);

  g_assert_false (stor_dommeta_sealed (md));
  g_assert_cmpstr (stor_dommeta_get (md, "TYPE"), ==, "LOCALFS");
  g_assert_false (stor_dommeta_sealed (empty));
  g_assert_null (stor_dommeta_get (empty, "TYPE"));
}

/* VDSM strips values but not keys, skips lines without '=', splits on the
 * first '=' and keeps the last of repeated keys. */
static void
test_text_lenient (void)
{
  static const char text[] =
    "no equals sign here\r\n"
    "\n"
    "DESCRIPTION=  a=b  \r\n"
    "ROLE=Regular\n"
    "ROLE=Master\n"
    " SPACED =x\n"
    "VERSION=4";
  g_autoptr(stor_dommeta) md = parse_ok (text, strlen (text));
  gint64 n;

  g_assert_cmpstr (stor_dommeta_get (md, "DESCRIPTION"), ==, "a=b");
  g_assert_cmpstr (stor_dommeta_get (md, "ROLE"), ==, "Master");
  g_assert_cmpstr (stor_dommeta_get (md, " SPACED "), ==, "x");
  g_assert_null (stor_dommeta_get (md, "SPACED"));
  g_assert_true (stor_dommeta_get_int (md, "VERSION", &n));
  g_assert_cmpint (n, ==, 4);
}

static void
test_text_limits (void)
{
  g_autofree char *big = g_strnfill (STOR_DOMMETA_MAX_SIZE + 1, '\n');
  g_autofree char *long_line = g_strnfill (5000, 'k');
  g_autoptr(GString) many = g_string_new (NULL);
  g_autofree char *padded = g_malloc0 (STOR_DOMMETA_MAX_SIZE + 4096);
  g_autoptr(stor_dommeta) md = NULL;

  assert_text_error (big, strlen (big), "larger than 65536 bytes");
  long_line[0] = 'K';
  long_line[1] = '=';
  assert_text_error (long_line, strlen (long_line),
                     "line 1 is longer than 4096 bytes");

  for (int i = 0; i < 1025; i++)
    g_string_append_printf (many, "K%d=%d\n", i, i);
  assert_text_error (many->str, many->len, "more than 1024 keys");

  /* Padding beyond the size limit is not content. */
  memcpy (padded, "VERSION=3\n", 10);
  md = parse_ok (padded, STOR_DOMMETA_MAX_SIZE + 4096);
  g_assert_cmpstr (stor_dommeta_get (md, "VERSION"), ==, "3");
}

static void
test_text_bad_bytes (void)
{
  static const char nul[] = "VERSION=5\n\0ROLE=Master\n";
  static const char latin1[] = "DESCRIPTION=caf\xe9\n";

  assert_text_error (nul, sizeof nul - 1, "NUL byte at offset 10");
  assert_text_error (latin1, strlen (latin1), "not valid UTF-8");
  assert_text_error ("_SHA_CKSUM=0000\n", 16, "seal is broken");
}

static void
test_vg_tags (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_dommeta) md = stor_dommeta_parse_vg_tags (iscsi_tags, &error);
  gint64 n;

  g_assert_no_error (error);
  g_assert_nonnull (md);
  g_assert_true (stor_dommeta_sealed (md));
  g_assert_cmpstr (stor_dommeta_get (md, "PV0"), ==, PV0_DECODED);
  g_assert_cmpstr (stor_dommeta_get (md, "TYPE"), ==, "ISCSI");
  g_assert_cmpstr (stor_dommeta_get (md, "VGUUID"), ==,
                   "Ik3Qbd-lmxS-ynxA-1mQ5-yHAi-WY6C-Bh5Ehz");
  g_assert_null (stor_dommeta_get (md, "RHAT_storage_domain"));
  g_assert_null (stor_dommeta_get (md, "MDT_TYPE"));
  g_assert_true (stor_dommeta_get_int (md, "BLOCK_SIZE", &n));
  g_assert_cmpint (n, ==, 512);
}

static char **
copy_tags (void)
{
  return g_strdupv ((char **) iscsi_tags);
}

static void
test_vg_tags_tampered (void)
{
  g_auto(GStrv) tags = copy_tags ();
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_dommeta) md = NULL;

  for (char **t = tags; *t != NULL; t++) {
    if (strcmp (*t, "MDT_ROLE=Regular") == 0) {
      g_free (*t);
      *t = g_strdup ("MDT_ROLE=Master");
    }
  }
  md = stor_dommeta_parse_vg_tags ((const char *const *) tags, &error);
  g_assert_null (md);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (error->message,
                            "d9c1f7678ee56ab00c714568257fa66f70122f31"));
}

/* The sum covers decoded values, so a PV0 tag written without escapes
 * (decoding leaves its commas alone) still matches the seal. */
static void
test_vg_tags_escaped_sum (void)
{
  g_auto(GStrv) tags = copy_tags ();
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_dommeta) md = NULL;

  for (char **t = tags; *t != NULL; t++) {
    if (g_str_has_prefix (*t, "MDT_PV0=")) {
      g_free (*t);
      *t = g_strdup ("MDT_PV0=" PV0_DECODED);
    }
  }
  md = stor_dommeta_parse_vg_tags ((const char *const *) tags, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (stor_dommeta_get (md, "PV0"), ==, PV0_DECODED);
}

static void
test_vg_tags_bad (void)
{
  static const char *const bad_escape[] = {
    "RHAT_storage_domain", "MDT_DESCRIPTION=a&44", NULL
  };
  static const char *const foreign[] = {
    "RHAT_storage_domain", "OTHER&", "MDT_VERSION=3", NULL
  };
  static const char *const none[] = { NULL };
  g_autoptr(GError) error = NULL;
  g_autoptr(stor_dommeta) md = NULL;
  g_autoptr(stor_dommeta) md_foreign = NULL;
  g_autoptr(stor_dommeta) md_none = NULL;
  g_autoptr(GPtrArray) many = g_ptr_array_new ();

  md = stor_dommeta_parse_vg_tags (bad_escape, &error);
  g_assert_null (md);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (error->message, "MDT_DESCRIPTION=a&44"));
  g_assert_nonnull (strstr (error->message, "unterminated escape"));
  g_clear_error (&error);

  /* Tags other than MDT_ ones are not ours to judge. */
  md_foreign = stor_dommeta_parse_vg_tags (foreign, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (stor_dommeta_get (md_foreign, "VERSION"), ==, "3");
  g_assert_false (stor_dommeta_sealed (md_foreign));

  md_none = stor_dommeta_parse_vg_tags (none, &error);
  g_assert_no_error (error);
  g_assert_null (stor_dommeta_get (md_none, "VERSION"));

  for (int i = 0; i < 5000; i++)
    g_ptr_array_add (many, (gpointer) "RHAT_storage_domain");
  g_ptr_array_add (many, NULL);
  md = stor_dommeta_parse_vg_tags ((const char *const *) many->pdata, &error);
  g_assert_null (md);
  g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (error->message, "more than 4096 tags"));
}

typedef struct {
  const char *plain;
  const char *encoded;
} lvtag_case;

static const lvtag_case lvtag_cases[] = {
  { "&", "&38&" },
  { "\xd7\x99", "&1497&" },                     /* U+05D9, blocksd_test.py */
  { "", "" },
  { "aZ09_+.-/=!:#", "aZ09_+.-/=!:#" },
  { "a b,c", "a&32&b&44&c" },
  { "pv:x,uuid:y", "pv:x&44&uuid:y" },
  { "&38&", "&38&38&38&" },
  { "\xc3\xa9t\xc3\xa9", "&233&t&233&" },
  { "\xf0\x9f\x98\x80", "&128512&" },           /* U+1F600 */
  { "\x7f\x01", "&127&&1&" },
};

static void
test_lvtag_vectors (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (lvtag_cases); i++) {
    const lvtag_case *c = &lvtag_cases[i];
    g_autofree char *encoded = stor_lvtag_encode (c->plain);
    g_autofree char *decoded = NULL;
    g_autofree char *again = NULL;
    g_autoptr(GError) error = NULL;

    g_assert_cmpstr (encoded, ==, c->encoded);
    decoded = stor_lvtag_decode (c->encoded, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (decoded, ==, c->plain);
    again = stor_lvtag_encode (decoded);
    g_assert_cmpstr (again, ==, c->encoded);
  }
}

/* VDSM's decoder maps any &<digits>& back, even for characters that need
 * no escape, so we do too. */
static void
test_lvtag_decode_overescaped (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *decoded = stor_lvtag_decode ("&65&&0066&c", &error);

  g_assert_no_error (error);
  g_assert_cmpstr (decoded, ==, "ABc");
}

typedef struct {
  const char *encoded;
  const char *needle;
} bad_escape_case;

static const bad_escape_case bad_escapes[] = {
  { "&", "at offset 0: unterminated escape" },
  { "abc&38", "at offset 3: unterminated escape" },
  { "&&", "empty code point" },
  { "&3a8&", "non-digit" },
  { "& 38&", "non-digit" },
  { "&-1&", "non-digit" },
  { "&0&", "&0& is not a valid code point" },
  { "&00&", "is not a valid code point" },
  { "&1114112&", "&1114112& is not a valid code point" },
  { "&55296&", "&55296& is not a valid code point" },   /* a surrogate */
  { "&57343&", "is not a valid code point" },
  { "&12345678&", "more than 7 digits" },
  { "&99999999999999999999999&", "more than 7 digits" },
  { "ok&38&then&", "at offset 10: unterminated escape" },
  { "caf\xe9", "not valid UTF-8" },
};

static void
test_lvtag_decode_bad (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (bad_escapes); i++) {
    const bad_escape_case *c = &bad_escapes[i];
    g_autoptr(GError) error = NULL;
    g_autofree char *decoded = stor_lvtag_decode (c->encoded, &error);

    g_assert_null (decoded);
    g_assert_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY);
    if (strstr (error->message, c->needle) == NULL)
      g_error ("decoding \"%s\": message \"%s\" does not contain \"%s\"",
               c->encoded, error->message, c->needle);
  }
}

static void
test_lvtag_encode_not_utf8 (void)
{
  g_autofree char *encoded = stor_lvtag_encode ("caf\xe9");

  g_assert_null (encoded);
}

/* Every code point from 1 to the end of the BMP survives a round trip. */
static void
test_lvtag_round_trip_all (void)
{
  g_autoptr(GString) plain = g_string_new (NULL);
  g_autofree char *encoded = NULL;
  g_autofree char *decoded = NULL;
  g_autoptr(GError) error = NULL;

  for (gunichar c = 1; c < 0x10000; c++) {
    if (c >= 0xD800 && c <= 0xDFFF)
      continue;
    g_string_append_unichar (plain, c);
  }
  g_string_append_unichar (plain, 0x10FFFF);
  encoded = stor_lvtag_encode (plain->str);
  g_assert_nonnull (encoded);
  for (const char *p = encoded; *p != '\0'; p++)
    g_assert_true (g_ascii_isalnum (*p) || strchr ("_+.-/=!:#&", *p) != NULL);
  decoded = stor_lvtag_decode (encoded, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (decoded, ==, plain->str);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (sealed_cases); i++) {
    g_autofree char *path =
      g_strdup_printf ("/dommeta/text/sealed/%s", sealed_cases[i].name);

    g_test_add_data_func (path, &sealed_cases[i], test_sealed_text);
  }
  g_test_add_func ("/dommeta/text/sealed/unsorted-padded",
                   test_sealed_unsorted_padded);
  g_test_add_func ("/dommeta/checksum/function", test_checksum_function);
  g_test_add_func ("/dommeta/checksum/non-ascii", test_checksum_non_ascii);
  g_test_add_func ("/dommeta/text/tampered", test_tampered_text);
  g_test_add_func ("/dommeta/text/unsealed", test_unsealed);
  g_test_add_func ("/dommeta/text/lenient", test_text_lenient);
  g_test_add_func ("/dommeta/text/limits", test_text_limits);
  g_test_add_func ("/dommeta/text/bad-bytes", test_text_bad_bytes);
  g_test_add_func ("/dommeta/vg-tags/iscsi", test_vg_tags);
  g_test_add_func ("/dommeta/vg-tags/tampered", test_vg_tags_tampered);
  g_test_add_func ("/dommeta/vg-tags/escaped-sum", test_vg_tags_escaped_sum);
  g_test_add_func ("/dommeta/vg-tags/bad", test_vg_tags_bad);
  g_test_add_func ("/dommeta/lvtag/vectors", test_lvtag_vectors);
  g_test_add_func ("/dommeta/lvtag/overescaped", test_lvtag_decode_overescaped);
  g_test_add_func ("/dommeta/lvtag/decode-bad", test_lvtag_decode_bad);
  g_test_add_func ("/dommeta/lvtag/encode-not-utf8", test_lvtag_encode_not_utf8);
  g_test_add_func ("/dommeta/lvtag/round-trip-all", test_lvtag_round_trip_all);

  return g_test_run ();
}
