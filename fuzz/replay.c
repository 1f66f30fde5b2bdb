/* ovagent: main() for fuzz targets built without libFuzzer: runs every file
 * named on the command line, or found in a directory named there, once. */
#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Larger than any libFuzzer max_len we use; a bigger file is a mistake. */
#define REPLAY_MAX_INPUT (1024 * 1024)

static gboolean
replay_file (const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  g_autofree char *exact = NULL;
  gsize len;

  if (!g_file_get_contents (path, &contents, &len, &error)) {
    fprintf (stderr, "replay: %s\n", error->message);
    return FALSE;
  }
  if (len > REPLAY_MAX_INPUT) {
    fprintf (stderr, "replay: %s: larger than %d bytes\n", path, REPLAY_MAX_INPUT);
    return FALSE;
  }
  /* A buffer of exactly len bytes, without the NUL g_file_get_contents
   * adds, so sanitizers see a read past the end of the input. */
  exact = g_malloc (len > 0 ? len : 1);
  memcpy (exact, contents, len);
  LLVMFuzzerTestOneInput ((const uint8_t *) exact, len);
  return TRUE;
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* Replay a directory's regular files in name order, for stable logs. */
static gboolean
replay_dir (const char *path, guint *count)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) dir = g_dir_open (path, 0, &error);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  if (dir == NULL) {
    fprintf (stderr, "replay: %s\n", error->message);
    return FALSE;
  }
  while ((name = g_dir_read_name (dir)) != NULL)
    g_ptr_array_add (names, g_build_filename (path, name, NULL));
  g_ptr_array_sort (names, compare_names);

  for (guint i = 0; i < names->len; i++) {
    const char *file = names->pdata[i];

    if (!g_file_test (file, G_FILE_TEST_IS_REGULAR))
      continue;
    if (!replay_file (file))
      return FALSE;
    (*count)++;
  }
  return TRUE;
}

int
main (int argc, char *argv[])
{
  guint count = 0;

  if (argc < 2) {
    fprintf (stderr, "usage: %s FILE|DIR...\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    if (g_file_test (argv[i], G_FILE_TEST_IS_DIR)) {
      if (!replay_dir (argv[i], &count))
        return 1;
    }
    else {
      if (!replay_file (argv[i]))
        return 1;
      count++;
    }
  }
  /* An empty corpus would make `make check` pass without testing. */
  if (count == 0) {
    fprintf (stderr, "replay: no input files found\n");
    return 1;
  }
  printf ("%s: replayed %u inputs\n", argv[0], count);
  return 0;
}
