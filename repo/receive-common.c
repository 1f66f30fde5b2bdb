/* ovagent: what receiving a chain export and a changed-block backup share: a
 * disk directory made ready, removing a run's files, META members, the result. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "repo/prune.h"
#include "repo/receive-priv.h"
#include "repo/repo.h"

/* Backup directories hold files; anything nested deeper is not ours and
 * is not removed. */
#define REMOVE_DEPTH_MAX 4

void
repo_receive_disk_free (repo_receive_disk *d)
{
  if (d == NULL)
    return;
  g_free (d->disk);
  g_free (d->backup_id);
  g_free (d->parent);
  g_free (d);
}

void
repo_receive_result_clear (repo_receive_result *res)
{
  g_clear_pointer (&res->backup_id, g_free);
  g_clear_pointer (&res->disk, g_free);
  g_clear_pointer (&res->volumes, g_ptr_array_unref);
  g_clear_pointer (&res->disks, g_ptr_array_unref);
}

/* ---- removing what a run leaves ---- */

static gboolean
remove_at (int parent_fd, const char *name, const char *shown, int depth, GError **error)
{
  struct dirent *de;
  DIR *d;
  int fd;

  fd = openat (parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && (errno == ENOTDIR || errno == ELOOP)) {
    if (unlinkat (parent_fd, name, 0) == 0 || errno == ENOENT)
      return TRUE;
  }
  if (fd < 0) {
    if (errno == ENOENT)
      return TRUE;
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot remove %s: %s", shown, g_strerror (errno));
    return FALSE;
  }
  if (depth >= REMOVE_DEPTH_MAX) {
    close (fd);
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "not removing %s: directories nested deeper than a backup's", shown);
    return FALSE;
  }
  d = fdopendir (fd);
  if (d == NULL) {
    close (fd);
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot read %s: %s", shown, g_strerror (errno));
    return FALSE;
  }
  while ((de = readdir (d)) != NULL) {
    g_autofree char *sub = NULL;

    if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
      continue;
    sub = g_build_filename (shown, de->d_name, NULL);
    if (!remove_at (dirfd (d), de->d_name, sub, depth + 1, error)) {
      closedir (d);
      return FALSE;
    }
  }
  closedir (d);
  if (unlinkat (parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot remove %s: %s", shown, g_strerror (errno));
    return FALSE;
  }
  return TRUE;
}

gboolean
repo_rx_remove_tree (const char *dir, const char *name, GError **error)
{
  g_autofree char *shown = g_build_filename (dir, name, NULL);
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  gboolean ok;

  if (fd < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot open %s: %s", dir, g_strerror (errno));
    return FALSE;
  }
  ok = remove_at (fd, name, shown, 0, error);
  close (fd);
  return ok;
}

/* What an interrupted run of ovagent leaves and only that run could have
 * made: .incoming-ID directories and the next manifest. */
static gboolean
is_own_debris (const char *name)
{
  return (g_str_has_prefix (name, REPO_INCOMING_PREFIX) &&
          repo_backup_id_is_valid (name + strlen (REPO_INCOMING_PREFIX))) ||
    strcmp (name, REPO_MANIFEST_NAME ".tmp") == 0;
}

static gboolean
is_listed (const char *name, const repo_manifest *m)
{
  return strcmp (name, REPO_MANIFEST_NAME) == 0 || strcmp (name, REPO_UNLISTED) == 0 ||
    strcmp (name, REPO_PRUNE_JOURNAL) == 0 ||
    (repo_backup_id_is_valid (name) && repo_manifest_find (m, name) != NULL);
}

/* A new directory in parent (synced into it). */
static gboolean
make_dir_synced (const char *parent, const char *dir, GError **error)
{
  return repo_rx_make_dir (dir, error) && repo_fsync_dir (parent, error);
}

/* A new directory under disk_dir/.unlisted named by the time now (UTC),
 * for what this run moves aside. Runs under the disk's lock: nothing else
 * makes directories there meanwhile. */
static char *
aside_dir (const char *disk_dir, GError **error)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%dT%H%M%SZ");
  g_autofree char *top = g_build_filename (disk_dir, REPO_UNLISTED, NULL);
  struct stat st;

  if (lstat (top, &st) < 0 && !make_dir_synced (disk_dir, top, error))
    return NULL;
  if (!ova_is_directory (top) || g_file_test (top, G_FILE_TEST_IS_SYMLINK)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s is not a directory; move it away: receive moves there what "
                 "the manifest does not list", top);
    return NULL;
  }
  for (guint i = 1; i < 100; i++) {
    g_autofree char *name = i == 1 ? g_strdup (stamp) : g_strdup_printf ("%s-%u", stamp, i);
    g_autofree char *dir = g_build_filename (top, name, NULL);

    if (lstat (dir, &st) == 0)
      continue;
    if (!make_dir_synced (top, dir, error))
      return NULL;
    return g_steal_pointer (&dir);
  }
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
               "cannot make a directory for %s in %s: too many of that second", stamp, top);
  return NULL;
}

/* Move names (in disk_dir) into one new directory under .unlisted, with
 * the names they had: backups moved together still find each other by
 * their relative backing names. Nothing is removed. */
static gboolean
set_aside (const char *disk_dir, GPtrArray *names, gboolean had_manifest, GError **error)
{
  g_autofree char *dest = aside_dir (disk_dir, error);

  if (dest == NULL)
    return FALSE;
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    g_autofree char *from = g_build_filename (disk_dir, name, NULL);
    g_autofree char *to = g_build_filename (dest, name, NULL);
    /* Names not made by ovagent are shown quoted. */
    g_autofree char *shown = repo_backup_id_is_valid (name)
      ? g_strdup (name) : ova_quote_untrusted (name, QUOTE_MAX);

    if (rename (from, to) < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot move %s/%s, which the manifest does not list, to %s: %s",
                   disk_dir, shown, dest, g_strerror (errno));
      return FALSE;
    }
    ova_warn ("%s/%s is not listed in %s%s: moved to %s/; to keep it, put it back "
              "together with a manifest that lists it, else remove it", disk_dir,
              shown, REPO_MANIFEST_NAME, had_manifest ? "" : " (there is none)", dest);
  }
  return repo_fsync_dir (dest, error) && repo_fsync_dir (disk_dir, error);
}

/* Leftovers in a disk directory: an interrupted run's own incomplete work
 * is removed; anything else the manifest does not list (a backup
 * committed in the instant before its manifest, or listed by a manifest
 * that was lost or replaced by an older copy) is moved aside. Runs under
 * the disk's lock only. */
static gboolean
tidy_disk_dir (const char *disk_dir, const repo_manifest *m, GError **error)
{
  g_autofree char *mpath = g_build_filename (disk_dir, REPO_MANIFEST_NAME, NULL);
  g_autoptr(GPtrArray) names = NULL;
  g_autoptr(GPtrArray) unlisted = g_ptr_array_new ();
  g_autoptr(GError) err = NULL;

  names = ova_list_dir_sorted (disk_dir, &err);
  if (names == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot list %s: %s", disk_dir, err->message);
    return FALSE;
  }
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);

    if (is_own_debris (name)) {
      ova_warn ("removing %s/%s, left by a receive that did not finish", disk_dir, name);
      if (!repo_rx_remove_tree (disk_dir, name, error))
        return FALSE;
    }
    else if (!is_listed (name, m))
      g_ptr_array_add (unlisted, (gpointer) name);
  }
  if (unlisted->len == 0)
    return TRUE;
  return set_aside (disk_dir, unlisted, g_file_test (mpath, G_FILE_TEST_EXISTS), error);
}

gboolean
repo_rx_open_disk_dir (const char *disk_dir, const repo_manifest *m, gboolean *made,
                       GError **error)
{
  g_autofree char *disks = g_path_get_dirname (disk_dir);

  if (ova_is_directory (disk_dir))
    return tidy_disk_dir (disk_dir, m, error);
  /* On disk before anything is written into it. */
  if (!repo_rx_make_dir (disk_dir, error))
    return FALSE;
  *made = TRUE;
  return repo_fsync_dir (disks, error);
}

/* ---- META ---- */

void
repo_rx_meta_error (GError **error, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
               "the stream's metadata is not usable: %s", msg);
}

/* A UUID member: required unless nullable; blank counts as null. */
gboolean
repo_rx_member_uuid (JsonObject *o, const char *name, gboolean nullable, char **out,
                     const char *where, GError **error)
{
  const char *s = ova_json_get_string (o, name);

  *out = NULL;
  if (nullable && (s == NULL ? ova_json_is_null (o, name) : ova_uuid_is_blank (s)))
    return TRUE;
  if (s == NULL || !ova_uuid_is_valid (s) || ova_uuid_is_blank (s)) {
    g_autofree char *q = s ? ova_quote_untrusted (s, QUOTE_MAX) : g_strdup ("none");

    repo_rx_meta_error (error, "%s\"%s\" must be a UUID%s, not %s", where, name,
                        nullable ? " or null" : "", q);
    return FALSE;
  }
  *out = g_ascii_strdown (s, -1);
  return TRUE;
}

gboolean
repo_rx_fsync_path (const char *path, GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  int e;

  if (fd < 0 || fsync (fd) < 0) {
    e = errno;
    if (fd >= 0)
      close (fd);
    g_set_error (error, OVA_ERROR,
                 e == ENOSPC || e == EDQUOT ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
                 "cannot sync %s to disk: %s", path, g_strerror (e));
    return FALSE;
  }
  close (fd);
  return TRUE;
}

gboolean
repo_rx_make_dir (const char *path, GError **error)
{
  if (mkdir (path, 0700) == 0)
    return TRUE;
  g_set_error (error, OVA_ERROR,
               errno == ENOSPC || errno == EDQUOT ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
               "cannot create %s: %s", path, g_strerror (errno));
  return FALSE;
}
