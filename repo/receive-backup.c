/* ovagent: receiving a changed-block ("backup" mode) stream: each disk a qcow2
 * backed by its parent backup, written through qemu-nbd; all disks or none. */
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
#include "nbd/nbd.h"
#include "repo/prune.h"
#include "repo/receive-priv.h"
#include "repo/repo.h"
#include "storage/qemu-img.h"
#include "stream/dest.h"
#include "stream/stream.h"

/* The unit of a disk's size. */
#define SECTOR 512
/* Writeback of the new file is started after every WRITEBACK_STEP bytes
 * sent to qemu-nbd, so that the final fsync finds little left to write. */
#define WRITEBACK_STEP (32 * 1024 * 1024)

/* One disk of the stream and where it goes. */
typedef struct bk_disk {
  char *disk;              /* image UUID, lower case */
  char *domain;            /* storage domain UUID, or NULL */
  repo_kind kind;
  char *from_checkpoint;   /* NULL for a full */
  guint64 size;            /* virtual size */
  JsonNode *meta;          /* what its manifest keeps of the stream's META */

  char *disk_dir;
  repo_manifest *m;        /* as loaded; the new entry is added at the commit */
  const repo_backup *parent;  /* in m; NULL for a full */
  char *backing;           /* "../PARENT_ID/IMG.qcow2", or NULL */
  gboolean had_manifest;   /* manifest.json existed before this run */
  gboolean made_disk_dir;  /* disk_dir did not exist before this run */

  char *incoming;          /* disk_dir/.incoming-ID */
  char *final;             /* disk_dir/ID */
  char *path;              /* the qcow2 under incoming */
  gboolean created;        /* incoming exists and is ours */
  gboolean renamed;        /* it is now final */
  gboolean committed;      /* the manifest names it */
  repo_rx_digest_job *job; /* the file's digest, read once it is complete */
  char *digest;            /* what the job gave */
  guint64 file_size;
  repo_volume *vol;        /* what the manifest gets, once checked */
  repo_backup *entry;      /* its manifest entry, until the manifest takes it */
} bk_disk;

static void
bk_disk_free (bk_disk *d)
{
  if (d == NULL)
    return;
  repo_rx_digest_abandon (d->job);
  g_free (d->digest);
  g_free (d->disk);
  g_free (d->domain);
  g_free (d->from_checkpoint);
  if (d->meta)
    json_node_unref (d->meta);
  g_free (d->disk_dir);
  repo_manifest_free (d->m);
  g_free (d->backing);
  g_free (d->incoming);
  g_free (d->final);
  g_free (d->path);
  repo_volume_free (d->vol);
  repo_backup_free (d->entry);
  g_free (d);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (bk_disk, bk_disk_free)

typedef struct repo_rx_backup {
  repo *r;                 /* not owned; set once the repository is open */
  const strm_input *in;    /* the stream, while it is read (not owned) */
  GDateTime *now;          /* when the run started (not owned) */
  gint64 start;            /* g_get_monotonic_time () then */
  JsonNode *meta;
  char *host;
  char *vm;
  char *checkpoint;
  GPtrArray *disks;        /* bk_disk*, in stream order */
  char *backup_id;
  char *sock_dir;

  guint next;              /* index of the next disk to begin */
  bk_disk *cur;            /* the disk being written, or NULL */
  guint64 pos;             /* where its next frame starts */
  nbdr_server *srv;
  nbdr_dest *dest;
  int wb_fd;               /* the file qemu-nbd writes, for its writeback; or -1 */
  guint64 wb_pending;      /* bytes sent since the last writeback started */
} bk;

static void
bk_close_dest (bk *b)
{
  g_clear_pointer (&b->dest, nbdr_dest_free);
  g_clear_pointer (&b->srv, nbdr_server_stop);
  if (b->wb_fd >= 0)
    close (b->wb_fd);
  b->wb_fd = -1;
  b->cur = NULL;
}

static void
bk_free (bk *b)
{
  if (b == NULL)
    return;
  bk_close_dest (b);
  if (b->meta)
    json_node_unref (b->meta);
  g_free (b->host);
  g_free (b->vm);
  g_free (b->checkpoint);
  if (b->disks)
    g_ptr_array_unref (b->disks);
  g_free (b->backup_id);
  g_free (b->sock_dir);
  g_free (b);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (bk, bk_free)

/* ---- META ---- */

static bk_disk *
parse_disk (JsonNode *node, guint i, GError **error)
{
  g_autofree char *where = g_strdup_printf ("volume %u: ", i);
  g_autofree char *disk = NULL;
  g_autoptr(bk_disk) d = NULL;
  const char *kind, *format;
  guint64 capacity;
  JsonObject *o;

  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    repo_rx_meta_error (error, "volume %u is not an object", i);
    return NULL;
  }
  o = json_node_get_object (node);
  d = g_new0 (bk_disk, 1);
  if (!repo_rx_member_uuid (o, "uuid", FALSE, &d->disk, where, error) ||
      !repo_rx_member_uuid (o, "disk", FALSE, &disk, where, error) ||
      !repo_rx_member_uuid (o, "domain", TRUE, &d->domain, where, error) ||
      !repo_rx_member_uuid (o, "from_checkpoint", TRUE, &d->from_checkpoint, where, error))
    return NULL;
  /* The stream volume is the disk: the repository files it by that name. */
  if (strcmp (d->disk, disk) != 0) {
    repo_rx_meta_error (error, "volume %s is for disk %s; in a backup stream "
                        "a volume is named by its disk", d->disk, disk);
    return NULL;
  }
  kind = ova_json_get_string (o, "kind");
  if (g_strcmp0 (kind, "full") == 0)
    d->kind = REPO_KIND_FULL;
  else if (g_strcmp0 (kind, "incremental") == 0)
    d->kind = REPO_KIND_INCREMENTAL;
  else if (g_strcmp0 (kind, "differential") == 0)
    d->kind = REPO_KIND_DIFFERENTIAL;
  else {
    g_autofree char *q = kind ? ova_quote_untrusted (kind, QUOTE_MAX) : g_strdup ("none");

    repo_rx_meta_error (error, "disk %s: kind %s is not full, incremental or "
                        "differential", d->disk, q);
    return NULL;
  }
  if ((d->kind == REPO_KIND_FULL) != (d->from_checkpoint == NULL)) {
    repo_rx_meta_error (error, "disk %s: a %s backup %s a from_checkpoint", d->disk,
                        repo_kind_name (d->kind),
                        d->kind == REPO_KIND_FULL ? "cannot have" : "needs");
    return NULL;
  }
  format = ova_json_get_string (o, "format");
  if (g_strcmp0 (format, "guest") != 0) {
    g_autofree char *q = format ? ova_quote_untrusted (format, QUOTE_MAX) : g_strdup ("none");

    repo_rx_meta_error (error, "disk %s: format %s is not \"guest\"", d->disk, q);
    return NULL;
  }
  if (!ova_json_get_uint (o, "size", &d->size) || d->size == 0 ||
      d->size % SECTOR != 0 || d->size > STRM_MAX_DISK_SIZE) {
    repo_rx_meta_error (error, "disk %s: size must be a multiple of %d bytes "
                        "from %d bytes to 64 TiB", d->disk, SECTOR, SECTOR);
    return NULL;
  }
  if (json_object_has_member (o, "capacity") &&
      (!ova_json_get_uint (o, "capacity", &capacity) || capacity != d->size)) {
    repo_rx_meta_error (error, "disk %s: capacity differs from its size %" G_GUINT64_FORMAT,
                        d->disk, d->size);
    return NULL;
  }
  return g_steal_pointer (&d);
}

static gboolean
parse_meta (bk *b, GError **error)
{
  JsonObject *o = json_node_get_object (b->meta);
  g_autofree char *job = NULL;
  JsonObject *vm;
  JsonArray *vols;
  guint n;

  vm = ova_json_get_object (o, "vm");
  if (vm == NULL) {
    repo_rx_meta_error (error, "\"vm\" must be an object");
    return FALSE;
  }
  if (!repo_rx_member_uuid (vm, "uuid", FALSE, &b->vm, "vm: ", error) ||
      !repo_rx_member_uuid (o, "job", FALSE, &job, "", error) ||
      !repo_rx_member_uuid (o, "checkpoint", FALSE, &b->checkpoint, "", error))
    return FALSE;
  if (!ova_json_is_null (o, "checkpoint_xml") &&
      ova_json_get_string (o, "checkpoint_xml") == NULL) {
    repo_rx_meta_error (error, "\"checkpoint_xml\" must be a string or null");
    return FALSE;
  }
  vols = ova_json_get_array (o, "volumes");
  if (vols == NULL || (n = json_array_get_length (vols)) == 0 ||
      n > STRM_MAX_BACKUP_DISKS) {
    repo_rx_meta_error (error, "\"volumes\" must be an array of 1 to %d disks",
                        STRM_MAX_BACKUP_DISKS);
    return FALSE;
  }
  b->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) bk_disk_free);
  for (guint i = 0; i < n; i++) {
    bk_disk *d = parse_disk (json_array_get_element (vols, i),
                             i, error);

    if (d == NULL)
      return FALSE;
    g_ptr_array_add (b->disks, d);
    for (guint j = 0; j < i; j++) {
      const bk_disk *other = g_ptr_array_index (b->disks, j);

      if (strcmp (other->disk, d->disk) == 0) {
        repo_rx_meta_error (error, "disk %s is listed twice", d->disk);
        return FALSE;
      }
    }
    if (d->from_checkpoint && strcmp (d->from_checkpoint, b->checkpoint) == 0) {
      repo_rx_meta_error (error, "disk %s continues from checkpoint %s, the one "
                          "this backup creates", d->disk, b->checkpoint);
      return FALSE;
    }
    /* Each disk's manifest keeps the stream's members and its own entry. */
    d->meta = repo_meta_keep (b->meta, d->disk, error);
    if (d->meta == NULL)
      return FALSE;
  }
  /* Bounded by the checks above. */
  b->host = g_strdup (ova_json_get_string (o, "host"));
  return TRUE;
}

bk *
repo_rx_backup_new (JsonNode *meta, GError **error)
{
  g_autoptr(bk) b = g_new0 (bk, 1);

  b->wb_fd = -1;
  b->meta = json_node_ref (meta);
  if (!parse_meta (b, error))
    return NULL;
  return g_steal_pointer (&b);
}

void
repo_rx_backup_free (bk *b)
{
  bk_free (b);
}

/* ---- before the first write ---- */

/* The backup a disk's new one is backed by: none for a full; the latest
 * for an incremental, which must have created from_checkpoint; for a
 * differential the newest one that created from_checkpoint. */
static gboolean
find_parent (bk_disk *d, const char *checkpoint, GError **error)
{
  const repo_backup *latest = repo_manifest_latest (d->m);
  const repo_backup *again = repo_manifest_find_checkpoint (d->m, checkpoint);
  const repo_volume *top;

  /* Checkpoints name backups: one created twice would make the parent of
   * a later differential ambiguous. */
  if (again != NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "the stream creates checkpoint %s, but backup %s of disk %s "
                 "already created it", checkpoint, again->id, d->disk);
    return FALSE;
  }

  switch (d->kind) {
  case REPO_KIND_FULL:
    return TRUE;
  case REPO_KIND_INCREMENTAL:
    if (latest == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "the stream continues from checkpoint %s but the repository has "
                   "no backup of disk %s; take a full backup", d->from_checkpoint, d->disk);
      return FALSE;
    }
    if (g_strcmp0 (latest->checkpoint, d->from_checkpoint) != 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "the stream continues from checkpoint %s but the repository's "
                   "latest backup of disk %s is %s (%s%s); take a full backup",
                   d->from_checkpoint, d->disk, latest->id,
                   latest->checkpoint ? "checkpoint " : "a chain export, no checkpoint",
                   latest->checkpoint ? latest->checkpoint : "");
      return FALSE;
    }
    d->parent = latest;
    break;
  case REPO_KIND_DIFFERENTIAL:
    d->parent = repo_manifest_find_checkpoint (d->m, d->from_checkpoint);
    if (d->parent != NULL && d->parent->removing) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "the stream is a differential from checkpoint %s but backup %s of "
                   "disk %s that created it is being removed by a prune; take a full "
                   "backup", d->from_checkpoint, d->parent->id, d->disk);
      return FALSE;
    }
    if (d->parent == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "the stream is a differential from checkpoint %s but no backup of "
                   "disk %s in the repository created it; take a full backup",
                   d->from_checkpoint, d->disk);
      return FALSE;
    }
    break;
  default:
    g_assert_not_reached ();
  }
  /* A backup that created a checkpoint is a changed-block one: one qcow2
   * named by the disk (the manifest checks say so). */
  top = g_ptr_array_index (d->parent->volumes, d->parent->volumes->len - 1);
  d->backing = g_strconcat ("../", top->file, NULL);
  return TRUE;
}

/* The manifest entry of disk d, without its volume. */
static repo_backup *
new_entry (const bk *b, const bk_disk *d, GDateTime *now)
{
  repo_backup *e = repo_backup_new ();

  e->id = g_strdup (b->backup_id);
  e->time = g_date_time_format (now, "%Y-%m-%dT%H:%M:%SZ");
  e->host = g_strdup (b->host);
  e->domain = g_strdup (d->domain);
  e->kind = d->kind;
  e->parent = d->parent ? g_strdup (d->parent->id) : NULL;
  e->checkpoint = g_strdup (b->checkpoint);
  e->from_checkpoint = g_strdup (d->from_checkpoint);
  e->vm = g_strdup (b->vm);
  e->meta = json_node_ref (d->meta);
  return e;
}

static gboolean
id_is_free (const bk *b, const char *id)
{
  for (guint i = 0; i < b->disks->len; i++) {
    const bk_disk *d = g_ptr_array_index (b->disks, i);
    g_autofree char *dir = g_build_filename (d->disk_dir, id, NULL);

    if (repo_manifest_find (d->m, id) != NULL || g_file_test (dir, G_FILE_TEST_EXISTS))
      return FALSE;
  }
  return TRUE;
}

/* Check every disk against its manifest, then make the directories. */
static gboolean
prepare (bk *b, GDateTime *now, GError **error)
{
  for (guint i = 0; i < b->disks->len; i++) {
    bk_disk *d = g_ptr_array_index (b->disks, i);
    g_autofree char *mpath = NULL;

    d->disk_dir = repo_disk_dir (b->r, d->disk);
    mpath = g_build_filename (d->disk_dir, REPO_MANIFEST_NAME, NULL);
    if (!repo_prune_settle (b->r, d->disk, error))
      return FALSE;
    d->m = repo_manifest_load (d->disk_dir, d->disk, TRUE, error);
    if (d->m == NULL || !find_parent (d, b->checkpoint, error))
      return FALSE;
    d->had_manifest = g_file_test (mpath, G_FILE_TEST_EXISTS);
  }
  for (;;) {
    g_autofree char *id = repo_backup_id_new (now);

    if (!id_is_free (b, id))
      continue;
    b->backup_id = g_steal_pointer (&id);
    break;
  }
  /* Every manifest has room for its new entry (as far as META tells; the
   * commit checks the entries as they are) before anything is written. */
  for (guint i = 0; i < b->disks->len; i++) {
    bk_disk *d = g_ptr_array_index (b->disks, i);
    g_autoptr(repo_backup) draft = new_entry (b, d, now);

    g_ptr_array_add (draft->volumes,
                     repo_volume_new_draft (b->backup_id, d->disk, "qcow2", d->size,
                                            d->size, g_strdup (d->backing)));
    if (!repo_manifest_check_room (d->m, draft, error))
      return FALSE;
  }
  for (guint i = 0; i < b->disks->len; i++) {
    bk_disk *d = g_ptr_array_index (b->disks, i);

    if (!repo_rx_open_disk_dir (d->disk_dir, d->m, &d->made_disk_dir, error))
      return FALSE;
  }
  for (guint i = 0; i < b->disks->len; i++) {
    bk_disk *d = g_ptr_array_index (b->disks, i);
    g_autofree char *inc = g_strconcat (REPO_INCOMING_PREFIX, b->backup_id, NULL);
    g_autofree char *base = repo_volume_basename (d->disk, "qcow2");

    d->incoming = g_build_filename (d->disk_dir, inc, NULL);
    d->final = g_build_filename (d->disk_dir, b->backup_id, NULL);
    d->path = g_build_filename (d->incoming, base, NULL);
    if (!repo_rx_make_dir (d->incoming, error))
      return FALSE;
    d->created = TRUE;
  }
  return TRUE;
}

/* qemu-nbd sockets: the configured run_dir where we may write, else the
 * temporary directory (a backup server need not have run_dir). */
static char *
socket_dir (const repo *r)
{
  if (r->run_dir != NULL && g_path_is_absolute (r->run_dir) &&
      ova_is_directory (r->run_dir) && access (r->run_dir, W_OK | X_OK) == 0)
    return g_strdup (r->run_dir);
  return g_strdup (g_get_tmp_dir ());
}

/* ---- writing ---- */

/* A write error: with the context a full file system needs. */
static void
prefix_write_error (const bk *b, guint64 offset, GError **error)
{
  struct statvfs sv;
  g_autofree char *avail = NULL;

  if (error == NULL || *error == NULL)
    return;
  if (!g_error_matches (*error, OVA_ERROR, OVA_ERROR_NO_SPACE)) {
    g_prefix_error (error, "disk %s at offset %" G_GUINT64_FORMAT ": ",
                    b->cur ? b->cur->disk : "?", offset);
    return;
  }
  avail = statvfs (b->r->dir, &sv) == 0
    ? ova_format_size ((guint64) sv.f_bavail * sv.f_frsize) : g_strdup ("unknown");
  g_prefix_error (error, "no space left on the file system of %s while writing disk "
                  "%s at offset %" G_GUINT64_FORMAT " (%s free); nothing was "
                  "committed: ", b->r->dir, b->cur ? b->cur->disk : "?", offset, avail);
}

static gboolean
create_image (const bk *b, const bk_disk *d, GError **error)
{
  g_autoptr(GError) err = NULL;
  struct statvfs sv;
  gboolean full;

  /* The backing name is relative to the new file's directory, as it will
   * be once renamed: .incoming-ID and ID are siblings of the parent's. */
  if (stor_qemu_img_create (d->path, -1, "qcow2", "compat=1.1", d->size, d->backing,
                            "qcow2", &err))
    return TRUE;
  full = strstr (err->message, g_strerror (ENOSPC)) != NULL ||
    (statvfs (d->incoming, &sv) == 0 && sv.f_bavail == 0);
  g_set_error (error, OVA_ERROR, full ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
               "disk %s%s%s in %s: %s", d->disk, d->backing ? " backed by " : "",
               d->backing ? d->backing : "", b->r->dir, err->message);
  return FALSE;
}

/* What qemu-nbd opens: the new file, then the parent backup's chain. */
static GPtrArray *
image_layers (const bk_disk *d, GError **error)
{
  g_autoptr(GPtrArray) layers = NULL;

  if (d->parent == NULL) {
    layers = stor_layers_new ();
    stor_layers_add (layers, d->path, "qcow2");
    return g_steal_pointer (&layers);
  }
  layers = repo_backup_layers (d->disk_dir, d->m, d->parent, error);
  if (layers == NULL)
    return NULL;
  g_ptr_array_insert (layers, 0, stor_layer_new (d->path, "qcow2"));
  return g_steal_pointer (&layers);
}

static gboolean
begin_disk (void *dest, const strm_frame *f, GError **error)
{
  bk *b = dest;
  g_autoptr(GPtrArray) layers = NULL;
  bk_disk *d;

  if (b->cur != NULL || b->next >= b->disks->len) {
    repo_rx_meta_error (error, "the stream begins a disk the metadata does not "
                        "announce at that place");
    return FALSE;
  }
  d = g_ptr_array_index (b->disks, b->next);
  if (f->uuid == NULL || g_ascii_strcasecmp (f->uuid, d->disk) != 0 || f->size != d->size) {
    g_autofree char *q = ova_quote_untrusted (f->uuid ? f->uuid : "", QUOTE_MAX);

    repo_rx_meta_error (error, "disk %u begins as %s of %" G_GUINT64_FORMAT " bytes, "
                        "but the metadata announces %s of %" G_GUINT64_FORMAT " bytes",
                        b->next, q, f->size, d->disk, d->size);
    return FALSE;
  }
  b->next++;
  if (!create_image (b, d, error) || (layers = image_layers (d, error)) == NULL)
    return FALSE;
  b->cur = d;
  b->pos = 0;
  b->wb_pending = 0;
  /* Any descriptor of the file starts its writeback; where none opens,
   * the final fsync does it all. */
  b->wb_fd = open (d->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  /* The commit fsyncs the file: no O_DIRECT, and the sender already
   * sends zeros as ZERO frames. */
  b->srv = nbdr_server_start (layers, NBDR_SERVER_WRITABLE | NBDR_SERVER_CACHED, NULL,
                              -1, b->sock_dir, error);
  if (b->srv == NULL)
    return FALSE;
  b->dest = nbdr_dest_open (nbdr_server_uri (b->srv), error);
  if (b->dest == NULL)
    return FALSE;
  if (nbdr_dest_size (b->dest) != d->size) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s opens as %" G_GUINT64_FORMAT " bytes, not the %" G_GUINT64_FORMAT
                 " of disk %s", d->path, nbdr_dest_size (b->dest), d->size, d->disk);
    return FALSE;
  }
  ova_debug ("receiving %s backup of disk %s (%" G_GUINT64_FORMAT " bytes) into %s%s%s",
             repo_kind_name (d->kind), d->disk, d->size, d->path,
             d->backing ? " backed by " : "", d->backing ? d->backing : "");
  return TRUE;
}

/* Once a step's worth is sent to qemu-nbd (which writes through the page
 * cache): start writing back what it has written of the file so far,
 * without waiting. Where sync_file_range is refused, the final fsync does
 * it all. */
static void
writeback (bk *b)
{
  if (b->wb_fd < 0 || b->wb_pending < WRITEBACK_STEP)
    return;
  b->wb_pending = 0;
  if (sync_file_range (b->wb_fd, 0, 0, SYNC_FILE_RANGE_WRITE) < 0) {
    ova_debug ("%s: no early writeback (%s); it is left to the final fsync",
               b->cur->path, g_strerror (errno));
    close (b->wb_fd);
    b->wb_fd = -1;
  }
}

/* Frames continue where the previous one ended (the decoder checks it
 * too; here it costs nothing). */
static gboolean
check_frame (const bk *b, const strm_frame *f, GError **error)
{
  if (b->cur == NULL || f->offset != b->pos || f->length > b->cur->size - b->pos) {
    repo_rx_meta_error (error, "a frame at offset %" G_GUINT64_FORMAT " of %"
                        G_GUINT64_FORMAT " bytes does not continue the current disk",
                        f->offset, f->length);
    return FALSE;
  }
  return TRUE;
}

static gboolean
write_frame (void *dest, const strm_frame *f, GError **error)
{
  bk *b = dest;
  gboolean ok = TRUE;

  if (!check_frame (b, f, error))
    return FALSE;
  if (f->type == STRM_FRAME_DATA) {
    ok = nbdr_dest_pwrite (b->dest, f->data, f->length, f->offset, error);
    b->wb_pending += f->length;
  }
  else if (f->type == STRM_FRAME_ZERO && b->cur->kind != REPO_KIND_FULL)
    /* Over a backing file, zeros must be written; a new full reads as
     * zeros wherever nothing was written. A HOLE leaves what is below. */
    ok = nbdr_dest_zero (b->dest, f->offset, f->length, error);
  if (!ok) {
    prefix_write_error (b, f->offset, error);
    return FALSE;
  }
  b->pos += f->length;
  writeback (b);
  return TRUE;
}

/* The digest of the file whose job still runs, waited for. */
static gboolean
collect_digest (bk *b, GError **error)
{
  for (guint i = 0; i < b->disks->len; i++) {
    bk_disk *d = g_ptr_array_index (b->disks, i);
    repo_rx_digest_job *job = g_steal_pointer (&d->job);

    if (job == NULL)
      continue;
    d->digest = repo_rx_digest_finish (job, b->in->cancel, &d->file_size, error);
    if (d->digest == NULL)
      return FALSE;
  }
  return TRUE;
}

static gboolean
end_disk (void *dest, const strm_frame *f G_GNUC_UNUSED, GError **error)
{
  bk *b = dest;
  bk_disk *d;

  if (b->cur == NULL || b->pos != b->cur->size) {
    repo_rx_meta_error (error, "disk %s ends at offset %" G_GUINT64_FORMAT " of its %"
                        G_GUINT64_FORMAT " bytes", b->cur ? b->cur->disk : "?",
                        b->pos, b->cur ? b->cur->size : 0);
    return FALSE;
  }
  /* Flushed and the server gone before the next disk: each file is
   * complete on its own, and one qemu-nbd runs at a time. */
  if (!nbdr_dest_close (b->dest, error)) {
    prefix_write_error (b, b->pos, error);
    return FALSE;
  }
  d = b->cur;
  bk_close_dest (b);
  /* The file is complete: its digest is read while the next disk
   * streams, one file at a time. */
  if (!collect_digest (b, error))
    return FALSE;
  d->job = repo_rx_digest_start (d->path, error);
  return d->job != NULL;
}

static gboolean
all_disks_came (void *dest, GError **error)
{
  bk *b = dest;

  if (b->cur != NULL || b->next != b->disks->len) {
    repo_rx_meta_error (error, "the stream ends after %u of the %u disks it announces",
                        b->next, b->disks->len);
    return FALSE;
  }
  return TRUE;
}

/* ---- commit ---- */

/* What qemu reads must be what the manifest will say; then the digest
 * of the whole file (qemu chose its layout), and the file on disk. */
static gboolean
finish_disk (bk *b, bk_disk *d, GError **error)
{
  g_auto(repo_qcow2_info) info = { 0 };
  g_autoptr(repo_volume) v = g_new0 (repo_volume, 1);
  g_autofree char *base = repo_volume_basename (d->disk, "qcow2");
  const char *want_fmt = d->backing ? "qcow2" : NULL;

  if (!repo_qcow2_probe (d->path, &info, error))
    return FALSE;
  if (g_strcmp0 (info.backing, d->backing) != 0 ||
      g_strcmp0 (info.backing_format, want_fmt) != 0 ||
      info.virtual_size != d->size || info.data_file) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s is %" G_GUINT64_FORMAT " bytes backed by %s (%s)%s, expected %"
                 G_GUINT64_FORMAT " bytes backed by %s (%s)", d->path, info.virtual_size,
                 info.backing ? info.backing : "nothing",
                 info.backing_format ? info.backing_format : "no format",
                 info.data_file ? " with a data file" : "", d->size,
                 d->backing ? d->backing : "nothing", want_fmt ? want_fmt : "no format");
    return FALSE;
  }
  v->uuid = g_strdup (d->disk);
  v->format = g_strdup ("qcow2");
  v->file = g_build_filename (b->backup_id, base, NULL);
  v->virtual_size = info.virtual_size;
  v->backing = g_strdup (d->backing);
  /* The digest was read once qemu-nbd was gone, while the next disk
   * streamed. */
  if (!collect_digest (b, error) || !repo_rx_fsync_path (d->path, error) ||
      !repo_fsync_dir (d->incoming, error))
    return FALSE;
  v->digest = g_steal_pointer (&d->digest);
  v->size = d->file_size;
  d->vol = g_steal_pointer (&v);
  return TRUE;
}

static gboolean
commit (bk *b, GError **error)
{
  GDateTime *now = b->now;

  for (guint i = 0; i < b->disks->len; i++) {
    if (strm_input_interrupted (b->in, error) ||
        !finish_disk (b, g_ptr_array_index (b->disks, i), error))
      return FALSE;
  }
  /* Every new manifest must be writable before anything is renamed. */
  for (guint i = 0; i < b->disks->len; i++) {
    bk_disk *d = g_ptr_array_index (b->disks, i);

    d->entry = new_entry (b, d, now);
    g_ptr_array_add (d->entry->volumes, g_steal_pointer (&d->vol));
    if (!repo_manifest_check_room (d->m, d->entry, error))
      return FALSE;
  }
  for (guint i = 0; i < b->disks->len; i++) {
    bk_disk *d = g_ptr_array_index (b->disks, i);

    if (strm_input_interrupted (b->in, error))
      return FALSE;
    if (rename (d->incoming, d->final) < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot rename %s to %s: %s", d->incoming, d->final, g_strerror (errno));
      return FALSE;
    }
    d->renamed = TRUE;
    if (!repo_fsync_dir (d->disk_dir, error))
      return FALSE;
  }
  if (strm_input_interrupted (b->in, error))
    return FALSE;
  /* The manifests last: a failure puts back the ones already written. */
  for (guint i = 0; i < b->disks->len; i++) {
    bk_disk *d = g_ptr_array_index (b->disks, i);

    g_ptr_array_add (d->m->backups, g_steal_pointer (&d->entry));
    if (!repo_manifest_save (d->m, d->disk_dir, error)) {
      g_ptr_array_remove_index (d->m->backups, d->m->backups->len - 1);
      return FALSE;
    }
    d->committed = TRUE;
  }
  return TRUE;
}

/* The manifest as it was before this run. */
static gboolean
put_back_manifest (bk_disk *d, GError **error)
{
  g_autofree char *path = g_build_filename (d->disk_dir, REPO_MANIFEST_NAME, NULL);

  g_ptr_array_remove_index (d->m->backups, d->m->backups->len - 1);
  if (d->had_manifest)
    return repo_manifest_save (d->m, d->disk_dir, error);
  if (unlink (path) < 0 && errno != ENOENT) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot remove %s: %s", path, g_strerror (errno));
    return FALSE;
  }
  return repo_fsync_dir (d->disk_dir, error);
}

/* Undo a failed run: no disk keeps anything of it. */
static void
undo (bk *b)
{
  bk_close_dest (b);
  for (guint i = b->disks->len; i > 0; i--) {
    bk_disk *d = g_ptr_array_index (b->disks, i - 1);
    g_autoptr(GError) err = NULL;

    g_clear_pointer (&d->job, repo_rx_digest_abandon);
    if (d->committed) {
      if (!put_back_manifest (d, &err)) {
        ova_warn ("%s; backup %s of disk %s stays committed while the other disks "
                  "of its stream are not", err->message, b->backup_id, d->disk);
        continue;
      }
      d->committed = FALSE;
    }
    if (d->created) {
      const char *dir = d->renamed ? d->final : d->incoming;
      g_autofree char *name = g_path_get_basename (dir);

      if (!repo_rx_remove_tree (d->disk_dir, name, &err))
        ova_warn ("%s; the next receive removes it", err->message);
      d->created = FALSE;
    }
    if (d->made_disk_dir && rmdir (d->disk_dir) < 0)
      ova_warn ("cannot remove %s: %s", d->disk_dir, g_strerror (errno));
    d->made_disk_dir = FALSE;
  }
}

/* A signal also reaches qemu-nbd (same process group), whose death then
 * fails the write: report the signal, not the write. */
static gboolean
fail (bk *b, GError **error)
{
  if (b->in->cancel != NULL && *b->in->cancel && error != NULL && *error != NULL) {
    g_clear_error (error);
    strm_input_interrupted (b->in, error);
  }
  undo (b);
  return FALSE;
}

/* The input ended after STREAM_END: every disk's backup becomes part of
 * the repository. */
static gboolean
commit_backup (void *dest, GError **error)
{
  bk *b = dest;

  ova_debug ("stream received and checked in %.2f s",
             (g_get_monotonic_time () - b->start) / 1e6);
  if (!commit (b, error))
    return FALSE;
  ova_debug ("committed in %.2f s", (g_get_monotonic_time () - b->start) / 1e6);
  return TRUE;
}

static const strm_dest_ops backup_ops = {
  .kind = "backup",
  .begin = begin_disk,
  .data = write_frame,
  .zero = write_frame,
  .hole = write_frame,
  .end = end_disk,
  .stream_end = all_disks_came,
  .commit = commit_backup,
};

gboolean
repo_rx_backup_run (bk *b, repo *r, strm_decoder *dec, const strm_input *in,
                    GDateTime *now, repo_receive_result *res, GError **error)
{
  g_autoptr(repo_disk_locks) locks = NULL;
  g_autoptr(GPtrArray) names = g_ptr_array_new ();
  const strm_totals *t;
  const bk_disk *first;

  b->r = r;
  b->in = in;
  b->now = now;
  b->start = g_get_monotonic_time ();
  for (guint i = 0; i < b->disks->len; i++)
    g_ptr_array_add (names, ((bk_disk *) g_ptr_array_index (b->disks, i))->disk);
  locks = repo_lock_disks (r, names, error);
  if (locks == NULL)
    return FALSE;
  ova_info ("receiving a changed-block backup of %u disk%s (checkpoint %s) into %s",
            b->disks->len, b->disks->len == 1 ? "" : "s", b->checkpoint, r->dir);
  b->sock_dir = socket_dir (r);

  if (!prepare (b, now, error) || !strm_decoder_drive (dec, in, &backup_ops, b, error))
    return fail (b, error);

  t = strm_decoder_totals (dec);
  first = g_ptr_array_index (b->disks, 0);
  res->backup_id = g_strdup (b->backup_id);
  res->disk = g_strdup (first->disk);
  res->kind = first->kind;
  res->volumes = g_ptr_array_new_with_free_func (g_free);
  res->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) repo_receive_disk_free);
  for (guint i = 0; i < b->disks->len; i++) {
    const bk_disk *d = g_ptr_array_index (b->disks, i);
    repo_receive_disk *rd = g_new0 (repo_receive_disk, 1);

    rd->disk = g_strdup (d->disk);
    rd->backup_id = g_strdup (b->backup_id);
    rd->kind = d->kind;
    rd->parent = d->parent ? g_strdup (d->parent->id) : NULL;
    g_ptr_array_add (res->disks, rd);
    g_ptr_array_add (res->volumes, g_strdup (d->disk));
  }
  res->bytes_received = t->bytes_sent;
  res->data_bytes = t->data_bytes;
  res->seconds = (g_get_monotonic_time () - b->start) / 1e6;
  return TRUE;
}
