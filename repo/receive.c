/* ovagent: receiving a stream into the repository: META, the steps all modes share,
 * and chain exports (checks first, files under .incoming-ID, commit after the trailer). */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "repo/repo.h"
#include "repo/prune.h"
#include "storage/qcow2.h"
#include "storage/qemu-img.h"
#include "stream/stream.h"

/* Backup directories hold files; anything nested deeper is not ours and
 * is not removed. */
#define REMOVE_DEPTH_MAX 4

#define QUOTE_MAX 80

/* Writeback of a volume file is started after every WRITEBACK_STEP bytes
 * written, and waited for two steps later: dirty pages stay bounded and
 * the final fsync finds little left to write. */
#define WRITEBACK_STEP (32 * 1024 * 1024)

/* A volume as the stream's META declares it. */
typedef struct rx_volume {
  char *uuid;            /* lower case */
  char *format;          /* "qcow2" | "raw" (from "cow" | "raw") */
  guint64 size;          /* bytes that follow in the stream (BEGIN size) */
  guint64 capacity;
  char *path;            /* the file under .incoming-ID */
  repo_digest *digest;   /* blocks 1..n, hashed as they arrive */
} rx_volume;

static void
rx_volume_free (rx_volume *v)
{
  if (v == NULL)
    return;
  g_free (v->uuid);
  g_free (v->format);
  g_free (v->path);
  repo_digest_free (v->digest);
  g_free (v);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (rx_volume, rx_volume_free)

typedef struct rx {
  const char *repo_dir;  /* as given: the repository is opened after META */
  repo *r;               /* once opened (not owned) */
  volatile sig_atomic_t *cancel;
  guint io_timeout;
  int in_fd;
  guint64 bytes_in;

  JsonNode *meta;
  gboolean backup_mode;  /* a "backup" stream: receive-backup.c reads on */
  struct repo_rx_backup *backup;  /* its META, checked */
  char *disk;
  char *since;
  char *host;
  char *domain;
  GPtrArray *vols;       /* rx_volume* */
  guint64 total_size;

  char *disk_dir;
  char *backup_id;
  char *incoming;        /* disk_dir/.incoming-ID while receiving */
  char *final;           /* disk_dir/ID */
  gboolean made_disk_dir;  /* disk_dir did not exist before this run */
  gboolean created;      /* incoming exists and is ours */
  gboolean renamed;      /* it is now final */

  guint next;            /* index of the next volume to begin */
  int cur_fd;            /* the volume being written, or -1 */
  rx_volume *cur;
  guint64 written;       /* bytes written to files so far */
  guint64 data_bytes;

  /* Writeback of the current file: [wb_start, wb_end) was written since
   * the last step (wb_pending bytes of it); wb_prev[0] and wb_prev[1] are
   * the ranges of the last two steps, wb_prev[1] the older. */
  guint64 wb_start;
  guint64 wb_end;
  guint64 wb_pending;
  struct { guint64 off, len; } wb_prev[2];
  gboolean wb_unsupported;
} rx;

static void
rx_free (rx *x)
{
  if (x == NULL)
    return;
  if (x->cur_fd >= 0)
    close (x->cur_fd);
  if (x->meta)
    json_node_unref (x->meta);
  repo_rx_backup_free (x->backup);
  g_free (x->disk);
  g_free (x->since);
  g_free (x->host);
  g_free (x->domain);
  if (x->vols)
    g_ptr_array_unref (x->vols);
  g_free (x->disk_dir);
  g_free (x->backup_id);
  g_free (x->incoming);
  g_free (x->final);
  g_free (x);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (rx, rx_free)

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

gboolean
repo_rx_interrupted (const char *repo_dir, volatile sig_atomic_t *cancel, GError **error)
{
  if (cancel == NULL || !*cancel)
    return FALSE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED,
               "receive interrupted by a signal; nothing was committed to %s", repo_dir);
  return TRUE;
}

/* The repository as messages name it: canonical once opened. */
static const char *
rx_repo_dir (const rx *x)
{
  return x->r != NULL ? x->r->dir : x->repo_dir;
}

static gboolean
interrupted (const rx *x, GError **error)
{
  return repo_rx_interrupted (rx_repo_dir (x), x->cancel, error);
}

/* The decoder's input: a signal (installed without SA_RESTART) ends a
 * read that waits for a slow sender, and so does a sender that sends
 * nothing for io_timeout seconds. */
static gssize
rx_read (void *opaque, void *buf, size_t len, GError **error)
{
  rx *x = opaque;
  gssize n = ova_read_idle (x->in_fd, buf, len, x->io_timeout, x->cancel);
  int e;

  if (n >= 0) {
    x->bytes_in += n;
    return n;
  }
  e = errno;
  if (interrupted (x, error))
    return -1;
  if (e == ETIMEDOUT)
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "the sender sent nothing for %u s (io_timeout); nothing was "
                 "committed to %s", x->io_timeout, rx_repo_dir (x));
  else
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot read the stream: %s", g_strerror (e));
  return -1;
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

/* Undo a failed run: nothing of it stays, the manifest was not touched. */
static void
rx_undo (rx *x)
{
  g_autoptr(GError) err = NULL;
  const char *dir = x->renamed ? x->final : x->incoming;
  g_autofree char *name = dir ? g_path_get_basename (dir) : NULL;

  if (x->cur_fd >= 0) {
    close (x->cur_fd);
    x->cur_fd = -1;
  }
  if (x->created && name && !repo_rx_remove_tree (x->disk_dir, name, &err))
    ova_warn ("%s; the next receive removes it", err->message);
  x->created = FALSE;
  /* A first backup of a disk that failed leaves no trace of the disk. */
  if (x->made_disk_dir && rmdir (x->disk_dir) < 0)
    ova_warn ("cannot remove %s: %s", x->disk_dir, g_strerror (errno));
  x->made_disk_dir = FALSE;
}

/* ---- META ---- */

const char *
repo_rx_member_string (JsonObject *o, const char *name, gboolean *ok)
{
  JsonNode *n = json_object_get_member (o, name);

  *ok = TRUE;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return NULL;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING) {
    *ok = FALSE;
    return NULL;
  }
  return json_node_get_string (n);
}

gboolean
repo_rx_member_size (JsonObject *o, const char *name, guint64 *out)
{
  JsonNode *n = json_object_get_member (o, name);

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) ||
      json_node_get_value_type (n) != G_TYPE_INT64 || json_node_get_int (n) < 0)
    return FALSE;
  *out = json_node_get_int (n);
  return TRUE;
}

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
  gboolean ok;
  const char *s = repo_rx_member_string (o, name, &ok);

  *out = NULL;
  if (ok && s == NULL && nullable)
    return TRUE;
  if (ok && s != NULL && ova_uuid_is_blank (s) && nullable)
    return TRUE;
  if (!ok || s == NULL || !ova_uuid_is_valid (s) || ova_uuid_is_blank (s)) {
    g_autofree char *q = s ? ova_quote_untrusted (s, QUOTE_MAX) : g_strdup ("none");

    repo_rx_meta_error (error, "%s\"%s\" must be a UUID%s, not %s", where, name,
                nullable ? " or null" : "", q);
    return FALSE;
  }
  *out = g_ascii_strdown (s, -1);
  return TRUE;
}

gboolean
repo_rx_stream_end (strm_decoder *dec, gboolean idle, guint done, guint announced,
                    const char *what, GError **error)
{
  strm_frame f;
  g_autoptr(GError) err = NULL;

  if (!strm_decoder_complete (dec)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "the stream ended without a checked trailer");
    return FALSE;
  }
  if (!idle || done != announced) {
    repo_rx_meta_error (error, "the stream ends after %u of the %u %s it announces",
                        done, announced, what);
    return FALSE;
  }
  /* Only the end of the input may follow; the decoder fails on anything
   * else. */
  if (!strm_decoder_next (dec, &f, &err) && err != NULL) {
    g_propagate_error (error, g_steal_pointer (&err));
    return FALSE;
  }
  return TRUE;
}

static rx_volume *
parse_meta_volume (JsonNode *node, guint i, const char *prev, GError **error)
{
  g_autofree char *where = g_strdup_printf ("volume %u: ", i);
  g_autofree char *parent = NULL;
  g_autoptr(rx_volume) v = NULL;
  const char *format;
  JsonObject *o;
  gboolean ok;

  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    repo_rx_meta_error (error, "volume %u is not an object", i);
    return NULL;
  }
  o = json_node_get_object (node);
  v = g_new0 (rx_volume, 1);
  if (!repo_rx_member_uuid (o, "uuid", FALSE, &v->uuid, where, error) ||
      !repo_rx_member_uuid (o, "parent", TRUE, &parent, where, error))
    return NULL;
  format = repo_rx_member_string (o, "format", &ok);
  if (g_strcmp0 (format, "cow") == 0)
    v->format = g_strdup ("qcow2");
  else if (g_strcmp0 (format, "raw") == 0)
    v->format = g_strdup ("raw");
  else {
    g_autofree char *q = format ? ova_quote_untrusted (format, QUOTE_MAX) : g_strdup ("none");

    repo_rx_meta_error (error, "volume %s: format %s is not cow or raw", v->uuid, q);
    return NULL;
  }
  if (!repo_rx_member_size (o, "size", &v->size) ||
      !repo_rx_member_size (o, "capacity", &v->capacity)) {
    repo_rx_meta_error (error, "volume %s: size and capacity must be non-negative integers",
                v->uuid);
    return NULL;
  }
  /* Each volume is backed by the one before it; the first by `since`
   * (or by nothing, for a full chain). */
  if (g_strcmp0 (parent, prev) != 0) {
    repo_rx_meta_error (error, "volume %s has parent %s, but the volume before it in the "
                "stream is %s", v->uuid, parent ? parent : "none", prev ? prev : "none");
    return NULL;
  }
  return g_steal_pointer (&v);
}

static gboolean
parse_meta (rx *x, const char *json, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) err = NULL;
  const char *format, *mode;
  JsonNode *root, *vols, *domain;
  JsonObject *o;
  guint64 version = 0;
  gboolean ok;
  guint n;

  if (!json_parser_load_from_data (parser, json, -1, &err)) {
    repo_rx_meta_error (error, "not JSON: %s", err->message);
    return FALSE;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    repo_rx_meta_error (error, "not a JSON object");
    return FALSE;
  }
  o = json_node_get_object (root);
  format = repo_rx_member_string (o, "format", &ok);
  if (g_strcmp0 (format, "ovagent-stream") != 0) {
    repo_rx_meta_error (error, "\"format\" is not \"ovagent-stream\"");
    return FALSE;
  }
  if (!repo_rx_member_size (o, "version", &version) || version != STRM_VERSION) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "stream metadata version %" G_GUINT64_FORMAT " is not supported "
                 "(this ovagent reads version %d)", version, STRM_VERSION);
    return FALSE;
  }
  mode = repo_rx_member_string (o, "mode", &ok);
  if (g_strcmp0 (mode, "restore") == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "this is a restore stream; use ovagent import to write it to a volume");
    return FALSE;
  }
  if (g_strcmp0 (mode, "backup") == 0) {
    /* Read on by receive-backup.c. */
    x->meta = json_node_copy (root);
    x->backup_mode = TRUE;
    return TRUE;
  }
  if (g_strcmp0 (mode, "chain") != 0) {
    g_autofree char *q = mode ? ova_quote_untrusted (mode, QUOTE_MAX) : g_strdup ("none");

    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "stream mode %s cannot be received (only chain exports and "
                 "changed-block backups can)", q);
    return FALSE;
  }
  /* What the manifest will keep, within its bounds; the rest is dropped. */
  x->meta = repo_meta_keep (root, NULL, error);
  if (x->meta == NULL)
    return FALSE;
  if (!repo_rx_member_uuid (o, "disk", FALSE, &x->disk, "", error) ||
      !repo_rx_member_uuid (o, "since", TRUE, &x->since, "", error))
    return FALSE;

  x->host = g_strdup (repo_rx_member_string (o, "host", &ok));
  domain = json_object_get_member (o, "domain");
  if (domain && JSON_NODE_HOLDS_OBJECT (domain) &&
      !repo_rx_member_uuid (json_node_get_object (domain), "uuid", TRUE, &x->domain,
                    "domain: ", error))
    return FALSE;

  vols = json_object_get_member (o, "volumes");
  if (vols == NULL || !JSON_NODE_HOLDS_ARRAY (vols) ||
      (n = json_array_get_length (json_node_get_array (vols))) == 0 ||
      n > STRM_MAX_CHAIN_VOLUMES) {
    repo_rx_meta_error (error, "\"volumes\" must be an array of 1 to %d volumes",
                        STRM_MAX_CHAIN_VOLUMES);
    return FALSE;
  }
  x->vols = g_ptr_array_new_with_free_func ((GDestroyNotify) rx_volume_free);
  for (guint i = 0; i < n; i++) {
    const rx_volume *prev = i ? g_ptr_array_index (x->vols, i - 1) : NULL;
    rx_volume *v = parse_meta_volume (json_array_get_element (json_node_get_array (vols), i),
                                      i, prev ? prev->uuid : x->since, error);

    if (v == NULL)
      return FALSE;
    g_ptr_array_add (x->vols, v);
    for (guint j = 0; j < i; j++) {
      const rx_volume *other = g_ptr_array_index (x->vols, j);

      if (strcmp (other->uuid, v->uuid) == 0) {
        repo_rx_meta_error (error, "volume %s is listed twice", v->uuid);
        return FALSE;
      }
    }
    /* A raw file has no backing string, so it can only start a chain. */
    if (strcmp (v->format, "raw") == 0 && (i > 0 || x->since != NULL)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                   "volume %s is raw but is not the base of the chain; only "
                   "a base volume can be raw", v->uuid);
      return FALSE;
    }
    if (x->total_size > G_MAXUINT64 - v->size) {
      repo_rx_meta_error (error, "the volume sizes add up to more than 2^64 bytes");
      return FALSE;
    }
    x->total_size += v->size;
  }
  return TRUE;
}

/* ---- writing ---- */

static void
set_write_error (rx *x, int e, const char *what, guint64 offset, GError **error)
{
  struct statvfs sv;
  g_autofree char *written = ova_format_size (x->written);
  g_autofree char *total = ova_format_size (x->total_size);
  g_autofree char *avail = NULL;

  if (e != ENOSPC && e != EDQUOT) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot %s %s at offset %" G_GUINT64_FORMAT ": %s",
                 what, x->cur ? x->cur->path : x->incoming, offset, g_strerror (e));
    return;
  }
  avail = statvfs (x->r->dir, &sv) == 0
    ? ova_format_size ((guint64) sv.f_bavail * sv.f_frsize) : g_strdup ("unknown");
  g_set_error (error, OVA_ERROR, OVA_ERROR_NO_SPACE,
               "no space left on the file system of %s (%s) while writing volume %s "
               "at offset %" G_GUINT64_FORMAT ": %s written of the %s the stream's "
               "volumes hold (holes included), %s free; nothing was committed",
               x->r->dir, e == EDQUOT ? "quota exceeded" : "device full",
               x->cur ? x->cur->uuid : "?", offset, written, total, avail);
}

static gboolean
begin_volume (rx *x, const strm_frame *f, GError **error)
{
  rx_volume *v;
  g_autofree char *base = NULL;

  if (x->cur_fd >= 0 || x->next >= x->vols->len) {
    repo_rx_meta_error (error, "the stream begins a volume %s the metadata does not "
                "announce at that place", f->uuid ? f->uuid : "");
    return FALSE;
  }
  v = g_ptr_array_index (x->vols, x->next);
  if (f->uuid == NULL || g_ascii_strcasecmp (f->uuid, v->uuid) != 0 || f->size != v->size) {
    g_autofree char *q = ova_quote_untrusted (f->uuid ? f->uuid : "", QUOTE_MAX);

    repo_rx_meta_error (error, "volume %u begins as %s of %" G_GUINT64_FORMAT " bytes, but "
                "the metadata announces %s of %" G_GUINT64_FORMAT " bytes",
                x->next, q, f->size, v->uuid, v->size);
    return FALSE;
  }
  base = repo_volume_basename (v->uuid, v->format);
  v->path = g_build_filename (x->incoming, base, NULL);
  x->cur_fd = open (v->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (x->cur_fd < 0) {
    int e = errno;

    x->cur = v;
    set_write_error (x, e, "create", 0, error);
    return FALSE;
  }
  x->cur = v;
  x->next++;
  v->digest = repo_digest_new ();
  x->wb_start = x->wb_end = x->wb_pending = 0;
  memset (x->wb_prev, 0, sizeof x->wb_prev);
  ova_debug ("receiving volume %s (%" G_GUINT64_FORMAT " bytes) into %s",
             v->uuid, v->size, v->path);
  return TRUE;
}

/* The frame must start where the previous one ended: the digest hashes
 * the volume in order. The decoder already checks bounds and coverage;
 * checking again here costs nothing. */
static gboolean
check_frame (rx *x, const strm_frame *f, GError **error)
{
  if (x->cur_fd < 0 || f->offset > x->cur->size || f->length > x->cur->size - f->offset) {
    repo_rx_meta_error (error, "a frame at offset %" G_GUINT64_FORMAT " is outside "
                "the current volume", f->offset);
    return FALSE;
  }
  if (f->offset != repo_digest_length (x->cur->digest)) {
    repo_rx_meta_error (error, "volume %s: a frame at offset %" G_GUINT64_FORMAT " does not "
                "follow the previous one, which ended at %" G_GUINT64_FORMAT,
                x->cur->uuid, f->offset, repo_digest_length (x->cur->digest));
    return FALSE;
  }
  return TRUE;
}

/* Once a step's worth is written: start writing its pages back, and wait
 * for those of the step two before (the pattern of streaming copy tools),
 * so that dirty memory stays bounded and the final fsync is short. Where
 * sync_file_range is refused (EINVAL, ESPIPE, ENOSYS) the final fsync
 * does it all. */
static gboolean
writeback (rx *x, GError **error)
{
  static const unsigned int wait_flags =
    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
  guint64 off = x->wb_start, len = x->wb_end - x->wb_start;
  int r;

  if (x->wb_unsupported || x->wb_pending < WRITEBACK_STEP)
    return TRUE;
  r = sync_file_range (x->cur_fd, off, len, SYNC_FILE_RANGE_WRITE);
  if (r == 0 && x->wb_prev[1].len > 0)
    r = sync_file_range (x->cur_fd, x->wb_prev[1].off, x->wb_prev[1].len, wait_flags);
  if (r < 0) {
    if (errno == EINVAL || errno == ESPIPE || errno == ENOSYS) {
      ova_debug ("%s: no sync_file_range (%s); writeback is left to the final fsync",
                 x->cur->path, g_strerror (errno));
      x->wb_unsupported = TRUE;
      return TRUE;
    }
    set_write_error (x, errno, "write back", off, error);
    return FALSE;
  }
  x->wb_prev[1] = x->wb_prev[0];
  x->wb_prev[0].off = off;
  x->wb_prev[0].len = len;
  x->wb_start = x->wb_end;
  x->wb_pending = 0;
  return TRUE;
}

static gboolean
write_data (rx *x, const strm_frame *f, GError **error)
{
  const guint8 *p = f->data;
  guint64 off = f->offset;
  guint64 left = f->length;

  if (!check_frame (x, f, error))
    return FALSE;
  while (left > 0) {
    gssize n = pwrite (x->cur_fd, p, MIN (left, (guint64) G_MAXSSIZE), off);

    if (n < 0 && errno == EINTR) {
      if (interrupted (x, error))
        return FALSE;
      continue;
    }
    if (n <= 0) {
      set_write_error (x, n < 0 ? errno : ENOSPC, "write", off, error);
      return FALSE;
    }
    p += n;
    off += n;
    left -= n;
    x->written += n;
  }
  repo_digest_data (x->cur->digest, f->data, f->length);
  x->data_bytes += f->length;
  x->wb_end = off;
  x->wb_pending += f->length;
  return writeback (x, error);
}

static gboolean
end_volume (rx *x, const strm_frame *f, GError **error)
{
  if (x->cur_fd < 0 || (f->uuid && g_ascii_strcasecmp (f->uuid, x->cur->uuid) != 0)) {
    repo_rx_meta_error (error, "a volume ends that did not begin");
    return FALSE;
  }
  if (repo_digest_length (x->cur->digest) != x->cur->size) {
    repo_rx_meta_error (error, "volume %s ends at offset %" G_GUINT64_FORMAT " of its %"
                G_GUINT64_FORMAT " bytes", x->cur->uuid,
                repo_digest_length (x->cur->digest), x->cur->size);
    return FALSE;
  }
  /* ZERO and HOLE ranges were never written: the file is sparse there
   * and reads as zeros, up to the size set here. */
  if (ftruncate (x->cur_fd, x->cur->size) < 0) {
    set_write_error (x, errno, "set the size of", x->cur->size, error);
    return FALSE;
  }
  if (close (x->cur_fd) < 0) {
    x->cur_fd = -1;
    set_write_error (x, errno, "write", x->cur->size, error);
    return FALSE;
  }
  x->cur_fd = -1;
  x->cur = NULL;
  return TRUE;
}

/* Read frames until STREAM_END, writing volumes as they come. */
static gboolean
receive_frames (rx *x, strm_decoder *dec, GError **error)
{
  for (;;) {
    strm_frame f;

    if (interrupted (x, error) || !strm_decoder_next (dec, &f, error))
      return FALSE;
    switch (f.type) {
    case STRM_FRAME_BEGIN:
      if (!begin_volume (x, &f, error))
        return FALSE;
      break;
    case STRM_FRAME_DATA:
      if (!write_data (x, &f, error))
        return FALSE;
      break;
    case STRM_FRAME_ZERO:
    case STRM_FRAME_HOLE:
      if (!check_frame (x, &f, error))
        return FALSE;
      repo_digest_zeros (x->cur->digest, f.length);
      break;
    case STRM_FRAME_END:
      if (!end_volume (x, &f, error))
        return FALSE;
      break;
    case STRM_FRAME_STREAM_END:
      return repo_rx_stream_end (dec, x->cur_fd < 0, x->next, x->vols->len,
                                 "volumes", error);
    default:
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "unexpected frame of type %u in a chain stream", f.type);
      return FALSE;
    }
  }
}

/* ---- commit ---- */

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

/* The first len bytes of path (len is at most REPO_DIGEST_BLOCK) into buf,
 * and the file's length. */
static gboolean
read_head (const char *path, guint8 *buf, size_t len, guint64 *size, GError **error)
{
  struct stat st;
  size_t got = 0;
  int fd;

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 || fstat (fd, &st) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot open %s: %s", path, g_strerror (errno));
    if (fd >= 0)
      close (fd);
    return FALSE;
  }
  while (got < len) {
    gssize n = pread (fd, buf + got, len - got, got);

    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot read %s at offset %zu: %s", path, got,
                   n < 0 ? g_strerror (errno) : "the file is shorter than received");
      close (fd);
      return FALSE;
    }
    got += n;
  }
  close (fd);
  *size = st.st_size;
  return TRUE;
}

/* Check the header in h (the file's first len bytes: the sender wrote it)
 * before any qemu tool opens the file, and tell whether the rebase may
 * write outside the header cluster: qemu repairs the refcounts of an image
 * marked dirty, and stores persistent bitmaps again when it closes the
 * image (new clusters, a longer file). */
static gboolean
check_qcow2_header (const rx_volume *v, const guint8 *h, size_t len,
                    gboolean *open_may_write, GError **error)
{
  g_auto(stor_qcow2_header) hdr = { 0 };
  g_autofree char *what = g_strdup_printf ("volume %s", v->uuid);

  if (!stor_qcow2_header_parse (h, len, what, &hdr, error))
    return FALSE;
  *open_may_write = (hdr.incompatible & STOR_QCOW2_INCOMPAT_DIRTY) || hdr.bitmaps;
  return TRUE;
}

/* Point the file's backing string at the previous file of the repository
 * (qemu-img rebase -u rewrites the header cluster), check what qemu now
 * reads, finish the digest with block 0 as it now is, and sync the file.
 * head is a REPO_DIGEST_BLOCK buffer. */
static repo_volume *
finish_volume (rx *x, guint i, const repo_backup *b, const repo_backup *parent,
               guint8 *head, GError **error)
{
  rx_volume *v = g_ptr_array_index (x->vols, i);
  g_autoptr(repo_volume) rv = g_new0 (repo_volume, 1);
  g_autofree char *base = repo_volume_basename (v->uuid, v->format);
  g_autofree char *backing_fmt = NULL;
  g_autoptr(GError) err = NULL;
  size_t head_len = MIN (v->size, (guint64) REPO_DIGEST_BLOCK);
  gboolean reread = FALSE;
  guint64 size = 0;

  rv->uuid = g_strdup (v->uuid);
  rv->format = g_strdup (v->format);
  rv->file = g_build_filename (x->backup_id, base, NULL);
  rv->backing = repo_expected_backing (b, i, parent);

  if (strcmp (v->format, "qcow2") == 0) {
    g_auto(repo_qcow2_info) info = { 0 };
    const repo_volume *prev = NULL;

    if (!read_head (v->path, head, head_len, &size, error) ||
        !check_qcow2_header (v, head, head_len, &reread, error))
      return NULL;

    if (i > 0)
      prev = g_ptr_array_index (b->volumes, i - 1);
    else if (parent)
      prev = g_ptr_array_index (parent->volumes, parent->volumes->len - 1);
    if (prev)
      backing_fmt = g_strdup (prev->format);
    if (!stor_qemu_img_rebase_unsafe (v->path, "qcow2", prev ? rv->backing : "",
                                      backing_fmt, &err)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "volume %s: %s", v->uuid, err->message);
      return NULL;
    }
    if (!repo_qcow2_probe (v->path, &info, error))
      return NULL;
    if (info.data_file) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                   "volume %s uses an external data file, which a repository does "
                   "not hold", v->uuid);
      return NULL;
    }
    if (g_strcmp0 (info.backing, rv->backing) != 0 ||
        g_strcmp0 (info.backing_format, backing_fmt) != 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "volume %s: after qemu-img rebase its backing file is %s (%s), "
                   "not %s (%s)", v->uuid, info.backing ? info.backing : "none",
                   info.backing_format ? info.backing_format : "no format",
                   rv->backing ? rv->backing : "none", backing_fmt ? backing_fmt : "no format");
      return NULL;
    }
    if (info.virtual_size != v->capacity)
      ova_warn ("volume %s: the qcow2 header says %" G_GUINT64_FORMAT " bytes, "
                "the volume metadata %" G_GUINT64_FORMAT "; keeping the header's",
                v->uuid, info.virtual_size, v->capacity);
    rv->virtual_size = info.virtual_size;
  }
  else
    rv->virtual_size = v->size;

  if (!reread) {
    if (!read_head (v->path, head, head_len, &size, error))
      return NULL;
    if (size != v->size) {
      if (strcmp (v->format, "qcow2") != 0) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                     "%s is %" G_GUINT64_FORMAT " bytes after the commit steps, "
                     "expected %" G_GUINT64_FORMAT, v->path, size, v->size);
        return NULL;
      }
      ova_warn ("%s: qemu-img rebase changed its length (%" G_GUINT64_FORMAT " to %"
                G_GUINT64_FORMAT " bytes); reading it again for its digest",
                v->path, v->size, size);
      reread = TRUE;
    }
  }
  if (reread) {
    /* qemu rewrote more than block 0: only a full read gives the digest
     * of the file as stored. */
    ova_debug ("%s: qemu may have written outside the header cluster (persistent "
               "bitmaps or a dirty image); reading it whole for its digest", v->path);
    rv->digest = repo_file_digest (v->path, &size, x->cancel, error);
    if (rv->digest == NULL)
      return NULL;
    if (size != v->size)
      ova_info ("volume %s: %" G_GUINT64_FORMAT " bytes as received, %" G_GUINT64_FORMAT
                " as stored (qemu stored its bitmaps again)", v->uuid, v->size, size);
  }
  else
    rv->digest = repo_digest_finish (v->digest, head, head_len);
  rv->size = size;
  if (!repo_rx_fsync_path (v->path, error))
    return NULL;
  return g_steal_pointer (&rv);
}

/* The manifest entry of this backup, without its volumes. */
static repo_backup *
new_entry (const rx *x, const repo_backup *parent, GDateTime *now)
{
  repo_backup *b = repo_backup_new ();

  b->id = g_strdup (x->backup_id);
  b->time = g_date_time_format (now, "%Y-%m-%dT%H:%M:%SZ");
  b->host = g_strdup (x->host);
  b->domain = g_strdup (x->domain);
  b->kind = x->since ? REPO_KIND_INCREMENTAL : REPO_KIND_FULL;
  b->since = g_strdup (x->since);
  b->parent = parent ? g_strdup (parent->id) : NULL;
  b->meta = json_node_ref (x->meta);
  return b;
}

/* Whether the manifest has room for the entry this stream will add, as
 * far as META tells (the commit checks the entry as it is). */
static gboolean
check_room (const rx *x, const repo_manifest *m, GDateTime *now, GError **error)
{
  const repo_backup *parent = x->since ? repo_manifest_latest (m) : NULL;
  g_autoptr(repo_backup) b = new_entry (x, parent, now);

  for (guint i = 0; i < x->vols->len; i++) {
    const rx_volume *v = g_ptr_array_index (x->vols, i);
    gboolean qcow2 = strcmp (v->format, "qcow2") == 0;

    g_ptr_array_add (b->volumes,
                     repo_volume_new_draft (b->id, v->uuid, v->format, v->size,
                                            qcow2 ? v->capacity : v->size,
                                            repo_expected_backing (b, i, parent)));
  }
  return repo_manifest_check_room (m, b, error);
}

static gboolean
commit (rx *x, repo_manifest *m, GDateTime *now, GError **error)
{
  g_autofree guint8 *head = g_malloc (REPO_DIGEST_BLOCK);
  const repo_backup *parent = x->since ? repo_manifest_latest (m) : NULL;
  g_autoptr(repo_backup) b = new_entry (x, parent, now);

  for (guint i = 0; i < x->vols->len; i++) {
    repo_volume *rv;

    if (interrupted (x, error))
      return FALSE;
    rv = finish_volume (x, i, b, parent, head, error);
    if (rv == NULL)
      return FALSE;
    g_ptr_array_add (b->volumes, rv);
    if (rv->virtual_size > STRM_MAX_DISK_SIZE) {
      repo_rx_meta_error (error, "volume %s: its qcow2 header gives a virtual size of %"
                          G_GUINT64_FORMAT " bytes, over the limit of %" G_GUINT64_FORMAT,
                          rv->uuid, rv->virtual_size, STRM_MAX_DISK_SIZE);
      return FALSE;
    }
  }
  /* The new manifest must be writable before anything is renamed. */
  if (!repo_manifest_check_room (m, b, error))
    return FALSE;

  if (interrupted (x, error) || !repo_fsync_dir (x->incoming, error))
    return FALSE;
  if (rename (x->incoming, x->final) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot rename %s to %s: %s", x->incoming, x->final, g_strerror (errno));
    return FALSE;
  }
  x->renamed = TRUE;
  if (!repo_fsync_dir (x->disk_dir, error))
    return FALSE;

  /* The last step that can be undone: from here the manifest names it. */
  if (interrupted (x, error))
    return FALSE;
  g_ptr_array_add (m->backups, g_steal_pointer (&b));
  if (!repo_manifest_save (m, x->disk_dir, error)) {
    g_ptr_array_remove_index (m->backups, m->backups->len - 1);
    return FALSE;
  }
  x->created = FALSE;   /* committed: nothing to undo */
  x->made_disk_dir = FALSE;
  return TRUE;
}

/* ---- the run ---- */

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

/* Everything that can refuse the stream without writing a byte. */
static gboolean
prepare (rx *x, repo_manifest **m_out, GDateTime *now, GError **error)
{
  g_autoptr(repo_manifest) m = NULL;
  const repo_volume *latest;

  x->disk_dir = repo_disk_dir (x->r, x->disk);
  if (!repo_prune_settle (x->r, x->disk, error))
    return FALSE;
  m = repo_manifest_load (x->disk_dir, x->disk, TRUE, error);
  if (m == NULL)
    return FALSE;

  latest = repo_manifest_latest_volume (m);
  if (x->since != NULL && latest == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "the stream continues from volume %s but the repository has no "
                 "backup of disk %s; take a full backup first", x->since, x->disk);
    return FALSE;
  }
  if (x->since != NULL && strcmp (x->since, latest->uuid) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "the stream continues from volume %s but the repository's latest "
                 "volume of disk %s is %s; take a full backup or export --since %s",
                 x->since, x->disk, latest->uuid, latest->uuid);
    return FALSE;
  }
  for (;;) {
    g_autofree char *id = repo_backup_id_new (now);

    if (repo_manifest_find (m, id) != NULL)
      continue;
    x->backup_id = g_steal_pointer (&id);
    break;
  }
  if (!check_room (x, m, now, error) ||
      !repo_rx_open_disk_dir (x->disk_dir, m, &x->made_disk_dir, error))
    return FALSE;
  {
    g_autofree char *inc = g_strconcat (REPO_INCOMING_PREFIX, x->backup_id, NULL);

    x->incoming = g_build_filename (x->disk_dir, inc, NULL);
    x->final = g_build_filename (x->disk_dir, x->backup_id, NULL);
  }
  if (mkdir (x->incoming, 0700) < 0) {
    g_set_error (error, OVA_ERROR,
                 errno == ENOSPC || errno == EDQUOT ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
                 "cannot create %s: %s", x->incoming, g_strerror (errno));
    return FALSE;
  }
  x->created = TRUE;
  *m_out = g_steal_pointer (&m);
  return TRUE;
}

/* The META frame, checked as far as it can be without the repository. */
static gboolean
read_meta (rx *x, strm_decoder *dec, GError **error)
{
  strm_frame f;

  if (!strm_decoder_next (dec, &f, error))
    return FALSE;
  if (f.type != STRM_FRAME_META || f.data == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "the stream does not start with its metadata frame");
    return FALSE;
  }
  if (!parse_meta (x, (const char *) f.data, error))
    return FALSE;
  if (x->backup_mode) {
    x->backup = repo_rx_backup_new (x->meta, error);
    return x->backup != NULL;
  }
  return TRUE;
}

/* A chain export after its META, under the disk's lock. */
static gboolean
receive_chain (rx *x, strm_decoder *dec, GDateTime *now, gint64 start,
               repo_receive_result *res, GError **error)
{
  g_autoptr(repo_manifest) m = NULL;
  g_autoptr(repo_disk_locks) locks = NULL;
  g_autoptr(GPtrArray) disks = g_ptr_array_new ();

  g_ptr_array_add (disks, x->disk);
  locks = repo_lock_disks (x->r, disks, error);
  if (locks == NULL)
    return FALSE;
  ova_info ("receiving %s backup of disk %s (%u volumes) into %s",
            x->since ? "an incremental" : "a full", x->disk, x->vols->len, x->r->dir);

  if (!prepare (x, &m, now, error)) {
    rx_undo (x);
    return FALSE;
  }
  if (!receive_frames (x, dec, error)) {
    rx_undo (x);
    return FALSE;
  }
  ova_debug ("stream received and checked in %.2f s", (g_get_monotonic_time () - start) / 1e6);
  if (!commit (x, m, now, error)) {
    rx_undo (x);
    return FALSE;
  }
  ova_debug ("committed in %.2f s", (g_get_monotonic_time () - start) / 1e6);

  res->backup_id = g_strdup (x->backup_id);
  res->disk = g_strdup (x->disk);
  res->kind = x->since ? REPO_KIND_INCREMENTAL : REPO_KIND_FULL;
  res->volumes = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < x->vols->len; i++)
    g_ptr_array_add (res->volumes, g_strdup (((rx_volume *) g_ptr_array_index (x->vols, i))->uuid));
  res->disks = NULL;
  res->bytes_received = x->bytes_in;
  res->data_bytes = x->data_bytes;
  res->seconds = (g_get_monotonic_time () - start) / 1e6;
  return TRUE;
}

gboolean
repo_receive (const char *repo_dir, int fd, const repo_receive_opts *opts,
              repo_receive_result *res, GError **error)
{
  g_autoptr(rx) x = g_new0 (rx, 1);
  g_autoptr(strm_decoder) dec = NULL;
  g_autoptr(repo) r = NULL;
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  gint64 start = g_get_monotonic_time ();

  x->repo_dir = repo_dir;
  x->cancel = opts->cancel;
  x->io_timeout = opts->io_timeout;
  x->in_fd = fd;
  ova_pipe_grow (fd);
  x->cur_fd = -1;

  /* A sender that stalls or lies before its META is complete never gets
   * the repository made, opened or locked. */
  dec = strm_decoder_new (rx_read, x);
  if (!read_meta (x, dec, error))
    return FALSE;
  r = repo_open (repo_dir, TRUE, REPO_LOCK_SHARED, error);
  if (r == NULL)
    return FALSE;
  repo_set_run_dir (r, opts->run_dir);
  x->r = r;
  if (x->backup != NULL)
    return repo_receive_backup (x->backup, r, dec, now, x->cancel, res, error);
  return receive_chain (x, dec, now, start, res, error);
}
