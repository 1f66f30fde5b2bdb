/* ovagent: a chain export received into the repository (mode "chain"): the
 * destination that writes its volumes under .incoming-ID, then the commit. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "repo/prune.h"
#include "repo/receive-priv.h"
#include "repo/repo.h"
#include "storage/qcow2.h"
#include "storage/qemu-img.h"
#include "stream/dest.h"
#include "stream/stream.h"

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

typedef struct repo_rx_chain {
  repo *r;               /* once opened (not owned) */
  const strm_input *in;  /* the stream, while it is read (not owned) */
  repo_manifest *m;      /* the disk's, as loaded; the commit adds to it */
  GDateTime *now;        /* when the run started (not owned) */
  gint64 start;          /* g_get_monotonic_time () as the run began */

  JsonNode *meta;
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

void
repo_rx_chain_free (rx *x)
{
  if (x == NULL)
    return;
  if (x->cur_fd >= 0)
    close (x->cur_fd);
  if (x->meta)
    json_node_unref (x->meta);
  repo_manifest_free (x->m);
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

static rx_volume *
parse_meta_volume (JsonNode *node, guint i, const char *prev, GError **error)
{
  g_autofree char *where = g_strdup_printf ("volume %u: ", i);
  g_autofree char *parent = NULL;
  g_autoptr(rx_volume) v = NULL;
  const char *format;
  JsonObject *o;

  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    repo_rx_meta_error (error, "volume %u is not an object", i);
    return NULL;
  }
  o = json_node_get_object (node);
  v = g_new0 (rx_volume, 1);
  if (!repo_rx_member_uuid (o, "uuid", FALSE, &v->uuid, where, error) ||
      !repo_rx_member_uuid (o, "parent", TRUE, &parent, where, error))
    return NULL;
  format = ova_json_get_string (o, "format");
  if (g_strcmp0 (format, "cow") == 0)
    v->format = g_strdup ("qcow2");
  else if (g_strcmp0 (format, "raw") == 0)
    v->format = g_strdup ("raw");
  else {
    g_autofree char *q = format ? ova_quote_untrusted (format, QUOTE_MAX) : g_strdup ("none");

    repo_rx_meta_error (error, "volume %s: format %s is not cow or raw", v->uuid, q);
    return NULL;
  }
  if (!ova_json_get_uint (o, "size", &v->size) ||
      !ova_json_get_uint (o, "capacity", &v->capacity)) {
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

/* The members of a chain export's META, checked. */
static gboolean
parse_meta (rx *x, JsonNode *root, GError **error)
{
  JsonObject *o = json_node_get_object (root);
  JsonObject *domain;
  JsonArray *vols;
  guint n;

  /* What the manifest will keep, within its bounds; the rest is dropped. */
  x->meta = repo_meta_keep (root, NULL, error);
  if (x->meta == NULL)
    return FALSE;
  if (!repo_rx_member_uuid (o, "disk", FALSE, &x->disk, "", error) ||
      !repo_rx_member_uuid (o, "since", TRUE, &x->since, "", error))
    return FALSE;

  x->host = g_strdup (ova_json_get_string (o, "host"));
  domain = ova_json_get_object (o, "domain");
  if (domain && !repo_rx_member_uuid (domain, "uuid", TRUE, &x->domain, "domain: ", error))
    return FALSE;

  vols = ova_json_get_array (o, "volumes");
  if (vols == NULL || (n = json_array_get_length (vols)) == 0 ||
      n > STRM_MAX_CHAIN_VOLUMES) {
    repo_rx_meta_error (error, "\"volumes\" must be an array of 1 to %d volumes",
                        STRM_MAX_CHAIN_VOLUMES);
    return FALSE;
  }
  x->vols = g_ptr_array_new_with_free_func ((GDestroyNotify) rx_volume_free);
  for (guint i = 0; i < n; i++) {
    const rx_volume *prev = i ? g_ptr_array_index (x->vols, i - 1) : NULL;
    rx_volume *v = parse_meta_volume (json_array_get_element (vols, i),
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

rx *
repo_rx_chain_new (JsonNode *meta, GError **error)
{
  g_autoptr(repo_rx_chain) x = g_new0 (rx, 1);

  x->cur_fd = -1;
  if (!parse_meta (x, meta, error))
    return NULL;
  return g_steal_pointer (&x);
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
begin_volume (void *dest, const strm_frame *f, GError **error)
{
  rx *x = dest;
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
write_data (void *dest, const strm_frame *f, GError **error)
{
  rx *x = dest;
  const guint8 *p = f->data;
  guint64 off = f->offset;
  guint64 left = f->length;

  if (!check_frame (x, f, error))
    return FALSE;
  while (left > 0) {
    gssize n = pwrite (x->cur_fd, p, MIN (left, (guint64) G_MAXSSIZE), off);

    if (n < 0 && errno == EINTR) {
      if (strm_input_interrupted (x->in, error))
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
end_volume (void *dest, const strm_frame *f, GError **error)
{
  rx *x = dest;
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

/* ZERO and HOLE: nothing written (the file stays sparse there). */
static gboolean
skip_zeros (void *dest, const strm_frame *f, GError **error)
{
  rx *x = dest;

  if (!check_frame (x, f, error))
    return FALSE;
  repo_digest_zeros (x->cur->digest, f->length);
  return TRUE;
}

static gboolean
all_volumes_came (void *dest, GError **error)
{
  rx *x = dest;

  if (x->cur_fd >= 0 || x->next != x->vols->len) {
    repo_rx_meta_error (error, "the stream ends after %u of the %u volumes it announces",
                        x->next, x->vols->len);
    return FALSE;
  }
  return TRUE;
}

/* ---- commit ---- */

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
    rv->digest = repo_file_digest (v->path, &size, x->in->cancel, error);
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
commit (rx *x, GError **error)
{
  g_autofree guint8 *head = g_malloc (REPO_DIGEST_BLOCK);
  repo_manifest *m = x->m;
  const repo_backup *parent = x->since ? repo_manifest_latest (m) : NULL;
  g_autoptr(repo_backup) b = new_entry (x, parent, x->now);

  for (guint i = 0; i < x->vols->len; i++) {
    repo_volume *rv;

    if (strm_input_interrupted (x->in, error))
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

  if (strm_input_interrupted (x->in, error) || !repo_fsync_dir (x->incoming, error))
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
  if (strm_input_interrupted (x->in, error))
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

/* The input ended after STREAM_END: the backup becomes part of the
 * repository. */
static gboolean
commit_backup (void *dest, GError **error)
{
  rx *x = dest;

  ova_debug ("stream received and checked in %.2f s",
             (g_get_monotonic_time () - x->start) / 1e6);
  if (!commit (x, error))
    return FALSE;
  ova_debug ("committed in %.2f s", (g_get_monotonic_time () - x->start) / 1e6);
  return TRUE;
}

static const strm_dest_ops chain_ops = {
  .kind = "chain",
  .begin = begin_volume,
  .data = write_data,
  .zero = skip_zeros,
  .hole = skip_zeros,
  .end = end_volume,
  .stream_end = all_volumes_came,
  .commit = commit_backup,
};

/* ---- the run ---- */

/* Everything that can refuse the stream without writing a byte. */
static gboolean
prepare (rx *x, GError **error)
{
  GDateTime *now = x->now;
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
  if (!repo_rx_make_dir (x->incoming, error))
    return FALSE;
  x->created = TRUE;
  x->m = g_steal_pointer (&m);
  return TRUE;
}

gboolean
repo_rx_chain_run (rx *x, repo *r, strm_decoder *dec, const strm_input *in,
                   GDateTime *now, gint64 start, repo_receive_result *res,
                   GError **error)
{
  g_autoptr(repo_disk_locks) locks = NULL;
  g_autoptr(GPtrArray) disks = g_ptr_array_new ();

  x->r = r;
  x->in = in;
  x->now = now;
  x->start = start;
  g_ptr_array_add (disks, x->disk);
  locks = repo_lock_disks (x->r, disks, error);
  if (locks == NULL)
    return FALSE;
  ova_info ("receiving %s backup of disk %s (%u volumes) into %s",
            x->since ? "an incremental" : "a full", x->disk, x->vols->len, x->r->dir);

  if (!prepare (x, error) || !strm_decoder_drive (dec, in, &chain_ops, x, error)) {
    rx_undo (x);
    return FALSE;
  }
  res->backup_id = g_strdup (x->backup_id);
  res->disk = g_strdup (x->disk);
  res->kind = x->since ? REPO_KIND_INCREMENTAL : REPO_KIND_FULL;
  res->volumes = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < x->vols->len; i++)
    g_ptr_array_add (res->volumes, g_strdup (((rx_volume *) g_ptr_array_index (x->vols, i))->uuid));
  res->disks = NULL;
  res->bytes_received = in->bytes;
  res->data_bytes = x->data_bytes;
  res->seconds = (g_get_monotonic_time () - x->start) / 1e6;
  return TRUE;
}
