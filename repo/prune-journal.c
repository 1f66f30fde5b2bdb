/* ovagent: the prune journal of a disk (docs/repository.md §7.3): each step
 * written and synced before it is taken, and read back, untrusted, to finish. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "repo/manifest.h"
#include "repo/prune.h"
#include "repo/prune-priv.h"

/* A journal is a few lines per removed backup. */
#define JOURNAL_MAX (4 * 1024 * 1024)

void
prune_journal_close (prune_journal *j)
{
  if (j->fd >= 0)
    close (j->fd);
  g_free (j->path);
  j->fd = -1;
  j->path = NULL;
}

gboolean
prune_journal_open (prune_journal *j, const char *disk_dir, GError **error)
{
  gboolean existed;

  j->path = g_build_filename (disk_dir, REPO_PRUNE_JOURNAL, NULL);
  existed = g_file_test (j->path, G_FILE_TEST_EXISTS);
  j->fd = open (j->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (j->fd < 0) {
    int saved = errno;

    g_set_error (error, OVA_ERROR,
                 saved == ENOSPC || saved == EDQUOT ? OVA_ERROR_NO_SPACE
                 : OVA_ERROR_INTERNAL,
                 "cannot open the prune journal %s: %s", j->path, g_strerror (saved));
    return FALSE;
  }
  return existed || repo_fsync_dir (disk_dir, error);
}

/* One line, on disk before the step it records is taken. */
gboolean
prune_journal_step (prune_journal *j, GError **error, const char *fmt, ...)
{
  g_autofree char *line = NULL;
  va_list ap;
  gsize len, done = 0;

  va_start (ap, fmt);
  line = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  ova_debug ("prune journal: %s", line);
  len = strlen (line);
  line[len++] = '\n';
  while (done < len) {
    ssize_t n = write (j->fd, line + done, len - done);

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int saved = errno;

      g_set_error (error, OVA_ERROR,
                   saved == ENOSPC || saved == EDQUOT ? OVA_ERROR_NO_SPACE
                   : OVA_ERROR_INTERNAL,
                   "cannot write the prune journal %s: %s", j->path, g_strerror (saved));
      return FALSE;
    }
    done += (gsize) n;
  }
  if (fdatasync (j->fd) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot sync the prune journal %s: %s", j->path, g_strerror (errno));
    return FALSE;
  }
  return TRUE;
}


static void
prune_merged_free (prune_merged *mg)
{
  g_free (mg->id);
  g_free (mg->digest);
  g_free (mg->raw_digest);
  g_free (mg);
}


void
prune_journal_state_clear (prune_journal_state *js)
{
  g_clear_pointer (&js->merged, g_ptr_array_unref);
  g_clear_pointer (&js->deletes, g_ptr_array_unref);
}

static gboolean
is_digest (const char *s)
{
  if (!g_str_has_prefix (s, REPO_DIGEST_PREFIX) || strlen (s) != REPO_DIGEST_LEN)
    return FALSE;
  for (s += strlen (REPO_DIGEST_PREFIX); *s; s++)
    if (!g_ascii_isxdigit (*s) || g_ascii_isupper (*s))
      return FALSE;
  return TRUE;
}

static gboolean
is_number (const char *s, guint64 *out)
{
  return g_ascii_string_to_unsigned (s, 10, 0, G_MAXUINT64, out, NULL);
}

/* "ID" or "ID/VOL.qcow2" / "ID/VOL.raw". */
static gboolean
is_delete_name (const char *name)
{
  const char *slash = strchr (name, '/');
  g_autofree char *id = NULL;
  g_autofree char *vol = NULL;
  const char *dot;

  if (slash == NULL)
    return repo_backup_id_is_valid (name);
  id = g_strndup (name, (gsize) (slash - name));
  dot = strrchr (slash + 1, '.');
  if (!repo_backup_id_is_valid (id) || dot == NULL)
    return FALSE;
  vol = g_strndup (slash + 1, (gsize) (dot - slash - 1));
  return ova_uuid_is_valid (vol) &&
    (strcmp (dot, ".qcow2") == 0 || strcmp (dot, ".raw") == 0);
}

static prune_merged *
parse_merged (char **w)
{
  prune_merged *mg;
  guint n = g_strv_length (w);

  if ((n != 6 && n != 8) || !repo_backup_id_is_valid (w[1]) || !is_digest (w[5]) ||
      (n == 8 && !is_digest (w[7])))
    return NULL;
  mg = g_new0 (prune_merged, 1);
  if (!is_number (w[2], &mg->ino) || !is_number (w[3], &mg->size) ||
      !is_number (w[4], &mg->virtual_size) ||
      (n == 8 && !is_number (w[6], &mg->raw_size))) {
    prune_merged_free (mg);
    return NULL;
  }
  mg->id = g_strdup (w[1]);
  mg->digest = g_strdup (w[5]);
  mg->raw_digest = n == 8 ? g_strdup (w[7]) : NULL;
  return mg;
}

/* The journal may have been edited: a line that is not one of ours is
 * an integrity error rather than a guess. what names it in messages. */
static gboolean
journal_parse (const char *text, gsize len, const char *what, prune_journal_state *js,
               GError **error)
{
  g_auto(GStrv) lines = NULL;
  g_autofree char *copy = NULL;

  if (len > JOURNAL_MAX || memchr (text, '\0', len) != NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s is not a prune journal: remove it if no prune is unfinished", what);
    return FALSE;
  }
  copy = g_strndup (text, len);
  lines = g_strsplit (copy, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++) {
    g_auto(GStrv) w = g_strsplit (lines[i], " ", -1);
    gboolean ok = TRUE;

    if (w[0] == NULL || *w[0] == '\0')
      continue;
    if (strcmp (w[0], "merged") == 0) {
      prune_merged *mg = parse_merged (w);

      if ((ok = mg != NULL))
        g_ptr_array_add (js->merged, mg);
    }
    else if (strcmp (w[0], "delete") == 0) {
      if ((ok = g_strv_length (w) == 2 && is_delete_name (w[1])))
        g_ptr_array_add (js->deletes, g_strdup (w[1]));
    }
    if (!ok) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: line %u is not one ovagent writes; the repository was edited",
                   what, i + 1);
      return FALSE;
    }
  }
  return TRUE;
}

static void
prune_journal_state_init (prune_journal_state *js)
{
  js->merged = g_ptr_array_new_with_free_func ((GDestroyNotify) prune_merged_free);
  js->deletes = g_ptr_array_new_with_free_func (g_free);
}

gboolean
prune_journal_read (const char *path, prune_journal_state *js, GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0;

  prune_journal_state_init (js);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return TRUE;
  return ova_read_file_direct (path, JOURNAL_MAX, &text, &len, error) &&
    journal_parse (text, len, path, js, error);
}

gboolean
repo_prune_journal_check (const char *text, gsize len, GError **error)
{
  g_auto(prune_journal_state) js = { 0 };

  prune_journal_state_init (&js);
  return journal_parse (text, len, "the prune journal", &js, error);
}

const prune_merged *
prune_journal_merged (const prune_journal_state *js, const char *id)
{
  for (guint i = js->merged->len; i-- > 0;) {
    const prune_merged *mg = g_ptr_array_index (js->merged, i);

    if (strcmp (mg->id, id) == 0)
      return mg;
  }
  return NULL;
}

