/* ovagent tests: the shared helpers of common/ (UUIDs, direct reads, the
 * command runner, sizes, error codes), on files in a private directory. */
#include <config.h>

#include <string.h>

#include <glib/gstdio.h>

#include "error.h"
#include "util.h"

static void
test_uuid_valid (void)
{
  static const struct {
    const char *s;
    gboolean valid;
  } uuids[] = {
    { "5b8f2d8e-3c1a-4b6e-9f0d-1a2b3c4d5e6f", TRUE },
    { "5B8F2D8E-3C1A-4B6E-9F0D-1A2B3C4D5E6F", TRUE },
    { OVA_BLANK_UUID, TRUE },
    { "", FALSE },
    { "5b8f2d8e-3c1a-4b6e-9f0d-1a2b3c4d5e6", FALSE },     /* short */
    { "5b8f2d8e-3c1a-4b6e-9f0d-1a2b3c4d5e6f0", FALSE },   /* long */
    { "5b8f2d8e-3c1a-4b6e-9f0d-1a2b3c4d5e6g", FALSE },    /* not hex */
    { "5b8f2d8e-3c1a-4b6e-9f0d-1a2b3c4d5e/f", FALSE },
    { "5b8f2d8e-3c1a-4b6e-9f0d 1a2b3c4d5e6f", FALSE },
    { "5b8f2d8e3-c1a-4b6e-9f0d-1a2b3c4d5e6f", FALSE },    /* dash moved */
    { "5b8f2d8e-3c1a-4b6e-9f0d1-a2b3c4d5e6f", FALSE },
    { "5b8f2d8e-3c1a-4b6e-9f0d-1a2b3c4d5e6-", FALSE },
    { "5b8f2d8ec3c1ac4b6ec9f0dc1a2b3c4d5e6f", FALSE },    /* no dashes */
    { "------------------------------------", FALSE },
    { "../../../../../../../../etc/passwd00", FALSE },
    { NULL, FALSE },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (uuids); i++)
    if (ova_uuid_is_valid (uuids[i].s) != uuids[i].valid)
      g_error ("ova_uuid_is_valid (\"%s\") should be %d", uuids[i].s, uuids[i].valid);
}

static void
test_uuid_blank (void)
{
  g_assert_true (ova_uuid_is_blank (OVA_BLANK_UUID));
  g_assert_false (ova_uuid_is_blank ("00000000-0000-0000-0000-000000000001"));
  g_assert_false (ova_uuid_is_blank ("00000000-0000-0000-0000-0000000000000"));
  g_assert_false (ova_uuid_is_blank ("00000000-0000-0000-0000-00000000000"));
  g_assert_false (ova_uuid_is_blank (""));
  g_assert_false (ova_uuid_is_blank (NULL));
}

/* A private directory, removed with its files whatever the test did. */
typedef struct {
  char *dir;
} fixture;

static void
fixture_setup (fixture *f, gconstpointer data)
{
  g_autoptr (GError) err = NULL;

  f->dir = g_dir_make_tmp ("ovagent-util-XXXXXX", &err);
  g_assert_no_error (err);
}

static void
fixture_teardown (fixture *f, gconstpointer data)
{
  g_autoptr (GDir) dir = g_dir_open (f->dir, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = g_build_filename (f->dir, name, NULL);

    g_unlink (path);
  }
  g_rmdir (f->dir);
  g_free (f->dir);
}

static char *
write_file (fixture *f, const char *name, const char *data, gsize len)
{
  g_autoptr (GError) err = NULL;
  char *path = g_build_filename (f->dir, name, NULL);

  g_file_set_contents (path, data, len, &err);
  g_assert_no_error (err);
  return path;
}

static void
test_read_file (fixture *f, gconstpointer data)
{
  static const char meta[] = "CAP=1073741824\nVOLTYPE=LEAF\nEOF\n";
  g_autofree char *path = write_file (f, "vol.meta", meta, strlen (meta));
  g_autoptr (GError) err = NULL;
  g_autofree char *contents = NULL;
  gsize len = 0;

  g_assert_true (ova_read_file_direct (path, 512, &contents, &len, &err));
  g_assert_no_error (err);
  g_assert_cmpuint (len, ==, strlen (meta));
  g_assert_cmpstr (contents, ==, meta);  /* NUL-terminated */
}

static void
test_read_file_exact_and_empty (fixture *f, gconstpointer data)
{
  g_autofree char *buf = g_malloc (8192);
  g_autofree char *exact = NULL;
  g_autofree char *empty = NULL;
  g_autofree char *contents = NULL;
  g_autofree char *nothing = NULL;
  g_autoptr (GError) err = NULL;
  gsize len = 1;

  memset (buf, 'x', 8192);
  exact = write_file (f, "exact", buf, 8192);
  g_assert_true (ova_read_file_direct (exact, 8192, &contents, &len, &err));
  g_assert_no_error (err);
  g_assert_cmpuint (len, ==, 8192);
  g_assert_true (memcmp (contents, buf, 8192) == 0);
  g_assert_cmpint (contents[8192], ==, '\0');

  empty = write_file (f, "empty", "", 0);
  g_assert_true (ova_read_file_direct (empty, 512, &nothing, &len, &err));
  g_assert_no_error (err);
  g_assert_cmpuint (len, ==, 0);
  g_assert_cmpstr (nothing, ==, "");
}

static void
test_read_file_missing (fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->dir, "no-such.meta", NULL);
  g_autoptr (GError) err = NULL;
  char *contents = NULL;

  g_assert_false (ova_read_file_direct (path, 512, &contents, NULL, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, path));
  g_assert_null (contents);
}

static void
test_read_file_too_big (fixture *f, gconstpointer data)
{
  g_autofree char *buf = g_malloc0 (513);
  g_autofree char *path = write_file (f, "big.meta", buf, 513);
  g_autoptr (GError) err = NULL;
  char *contents = NULL;

  g_assert_false (ova_read_file_direct (path, 512, &contents, NULL, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (err->message, path));
  g_assert_null (contents);
}

#define PATTERN_SIZE (64 * 1024)

static char
pattern_byte (gsize i)
{
  return (char) ((i * 7 + i / 251) & 0xff);
}

static char *
write_pattern (fixture *f)
{
  g_autofree char *buf = g_malloc (PATTERN_SIZE);

  for (gsize i = 0; i < PATTERN_SIZE; i++)
    buf[i] = pattern_byte (i);
  return write_file (f, "metadata", buf, PATTERN_SIZE);
}

static void
check_pread (const char *path, guint64 offset, gsize len)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *contents = NULL;

  g_assert_true (ova_pread_direct (path, offset, len, &contents, &err));
  g_assert_no_error (err);
  for (gsize i = 0; i < len; i++)
    if (contents[i] != pattern_byte (offset + i))
      g_error ("byte %zu of the read at %" G_GUINT64_FORMAT " differs", i, offset);
}

static void
test_pread (fixture *f, gconstpointer data)
{
  g_autofree char *path = write_pattern (f);

  check_pread (path, 8704, 512);           /* V4 slot 17: not page aligned */
  check_pread (path, 4096, 4096);
  check_pread (path, 0, 512);
  check_pread (path, 1, 100);
  check_pread (path, 4000, 200);           /* across a page boundary */
  check_pread (path, PATTERN_SIZE - 512, 512);
  check_pread (path, 0, PATTERN_SIZE);
}

static void
test_pread_past_eof (fixture *f, gconstpointer data)
{
  static const guint64 offsets[] = { PATTERN_SIZE - 100, PATTERN_SIZE, PATTERN_SIZE + 8704 };
  g_autofree char *path = write_pattern (f);

  for (size_t i = 0; i < G_N_ELEMENTS (offsets); i++) {
    g_autoptr (GError) err = NULL;
    char *contents = NULL;

    g_assert_false (ova_pread_direct (path, offsets[i], 512, &contents, &err));
    g_assert_nonnull (err);
    g_assert_true (err->domain == OVA_ERROR);
    g_assert_nonnull (strstr (err->message, path));
    g_assert_null (contents);
  }
}

static void
test_pread_missing (fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->dir, "missing", NULL);
  g_autoptr (GError) err = NULL;
  char *contents = NULL;

  g_assert_false (ova_pread_direct (path, 0, 512, &contents, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_NOT_FOUND);
}

static void
test_run_true (void)
{
  static const char *const argv[] = { "true", NULL };
  g_autoptr (GError) err = NULL;

  g_assert_true (ova_run (argv, NULL, NULL, &err));
  g_assert_no_error (err);
}

static void
test_run_false (void)
{
  static const char *const argv[] = { "false", NULL };
  g_autoptr (GError) err = NULL;
  g_autofree char *out = NULL;

  g_assert_false (ova_run (argv, &out, NULL, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTERNAL);
  g_assert_true (g_str_has_prefix (err->message, "false "));
  g_assert_null (out);
}

static void
test_run_stderr_in_message (void)
{
  static const char *const argv[] = { "ls", "/nonexistent/ovagent-test", NULL };
  g_autoptr (GError) err = NULL;

  g_assert_false (ova_run (argv, NULL, NULL, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTERNAL);
  g_assert_nonnull (strstr (err->message, "ls /nonexistent/ovagent-test"));
  /* ls's own complaint, which starts with its name. */
  g_assert_nonnull (strstr (err->message, ": ls: "));
}

static void
test_run_missing_command (void)
{
  static const char *const argv[] = { "ovagent-no-such-command", NULL };
  g_autoptr (GError) err = NULL;

  g_assert_false (ova_run (argv, NULL, NULL, &err));
  g_assert_error (err, OVA_ERROR, OVA_ERROR_INTERNAL);
  g_assert_nonnull (strstr (err->message, "ovagent-no-such-command"));
}

static void
test_run_stdout (void)
{
  /* Arguments reach the command as they are: no shell in between. */
  static const char *const argv[] = { "printf", "%s|%s\n", "a b", "$HOME;*", NULL };
  g_autoptr (GError) err = NULL;
  g_autofree char *out = NULL;
  g_autofree char *errout = NULL;

  g_assert_true (ova_run (argv, &out, &errout, &err));
  g_assert_no_error (err);
  g_assert_cmpstr (out, ==, "a b|$HOME;*\n");
  g_assert_cmpstr (errout, ==, "");
}

static void
test_format_size (void)
{
  static const struct {
    guint64 bytes;
    const char *text;
  } sizes[] = {
    { 0, "0 B" },
    { 512, "512 B" },
    { 1023, "1023 B" },
    { 1024, "1.0 KiB" },
    { 1536, "1.5 KiB" },
    { 1048575, "1.0 MiB" },
    { G_GUINT64_CONSTANT (3) << 29, "1.5 GiB" },
    { G_GUINT64_CONSTANT (100) << 30, "100.0 GiB" },
    { G_GUINT64_CONSTANT (1) << 40, "1.0 TiB" },
    { G_MAXUINT64, "16.0 EiB" },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (sizes); i++) {
    g_autofree char *text = ova_format_size (sizes[i].bytes);

    g_assert_cmpstr (text, ==, sizes[i].text);
  }
}

static void
test_error_codes (void)
{
  static const struct {
    int code;
    const char *name;
  } codes[] = {
    { OVA_ERROR_INTERNAL, "internal" },
    { OVA_ERROR_USAGE, "usage" },
    { OVA_ERROR_NOT_FOUND, "not-found" },
    { OVA_ERROR_BUSY, "busy" },
    { OVA_ERROR_UNSUPPORTED, "unsupported" },
    { OVA_ERROR_INTEGRITY, "integrity" },
    { OVA_ERROR_TRANSPORT, "transport" },
    { OVA_ERROR_NO_SPACE, "no-space" },
  };

  /* The values are the documented exit codes. */
  g_assert_cmpint (OVA_ERROR_INTERNAL, ==, 1);
  g_assert_cmpint (OVA_ERROR_NO_SPACE, ==, 8);

  for (size_t i = 0; i < G_N_ELEMENTS (codes); i++) {
    g_autoptr (GError) err = g_error_new (OVA_ERROR, codes[i].code, "x");

    g_assert_cmpint (ova_error_exit_code (err), ==, codes[i].code);
    g_assert_cmpstr (ova_error_code_name (err), ==, codes[i].name);
  }

  {
    g_autoptr (GError) foreign = g_error_new (G_FILE_ERROR, G_FILE_ERROR_NOENT, "x");
    g_autoptr (GError) zero = g_error_new (OVA_ERROR, 0, "x");
    g_autoptr (GError) big = g_error_new (OVA_ERROR, 99, "x");
    g_autoptr (GError) negative = g_error_new (OVA_ERROR, -3, "x");

    g_assert_cmpint (ova_error_exit_code (foreign), ==, 1);
    g_assert_cmpstr (ova_error_code_name (foreign), ==, "internal");
    g_assert_cmpint (ova_error_exit_code (zero), ==, 1);
    g_assert_cmpstr (ova_error_code_name (zero), ==, "internal");
    g_assert_cmpint (ova_error_exit_code (big), ==, 1);
    g_assert_cmpstr (ova_error_code_name (big), ==, "internal");
    g_assert_cmpint (ova_error_exit_code (negative), ==, 1);
    g_assert_cmpstr (ova_error_code_name (negative), ==, "internal");
  }
  g_assert_cmpint (ova_error_exit_code (NULL), ==, 0);
}

#define ADD_FS_TEST(path, fn) \
  g_test_add (path, fixture, NULL, fixture_setup, fn, fixture_teardown)

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/util/uuid/valid", test_uuid_valid);
  g_test_add_func ("/util/uuid/blank", test_uuid_blank);
  ADD_FS_TEST ("/util/read-file/normal", test_read_file);
  ADD_FS_TEST ("/util/read-file/exact-and-empty", test_read_file_exact_and_empty);
  ADD_FS_TEST ("/util/read-file/missing", test_read_file_missing);
  ADD_FS_TEST ("/util/read-file/too-big", test_read_file_too_big);
  ADD_FS_TEST ("/util/pread/unaligned", test_pread);
  ADD_FS_TEST ("/util/pread/past-eof", test_pread_past_eof);
  ADD_FS_TEST ("/util/pread/missing", test_pread_missing);
  g_test_add_func ("/util/run/true", test_run_true);
  g_test_add_func ("/util/run/false", test_run_false);
  g_test_add_func ("/util/run/stderr-in-message", test_run_stderr_in_message);
  g_test_add_func ("/util/run/missing-command", test_run_missing_command);
  g_test_add_func ("/util/run/stdout", test_run_stdout);
  g_test_add_func ("/util/format-size", test_format_size);
  g_test_add_func ("/util/error-codes", test_error_codes);
  return g_test_run ();
}
