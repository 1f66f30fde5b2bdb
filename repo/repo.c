/* ovagent: the repository itself: creating and recognising it, its locks,
 * file digests, qcow2 probes and a backup's layers, shared by its users. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>
#include <xxhash.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "repo/repo.h"
#include "storage/probe.h"
#include "storage/qemu-img.h"

/* ovagent-repo.json is a few bytes; anything much larger is not ours. */
#define MARKER_MAX (64 * 1024)

/* Reads of whole files (digests) go in chunks this large. */
#define DIGEST_CHUNK (4 * 1024 * 1024)

/* Holes are hashed as zeros from this buffer. */
#define ZERO_CHUNK (1024 * 1024)
static const guint8 zero_chunk[ZERO_CHUNK];

/* Attempts at a disk lock whose file other runs keep removing. */
#define DISK_LOCK_TRIES 100

/* ---- opening ---- */

/* 0 if dir is empty, 1 if not, -1 with error set. */
static int
dir_has_entries (const char *dir, GError **error)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);

  if (d == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot read directory %s: %s", dir, g_strerror (errno));
    return -1;
  }
  return g_dir_read_name (d) != NULL;
}

static gboolean
check_marker (const char *dir, const char *marker, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  JsonNode *root;
  JsonObject *o;
  gsize len = 0;

  if (!ova_read_file_direct (marker, MARKER_MAX, &text, &len, error))
    return FALSE;
  if (!json_parser_load_from_data (parser, text, len, NULL) ||
      (root = json_parser_get_root (parser)) == NULL ||
      !JSON_NODE_HOLDS_OBJECT (root) ||
      g_strcmp0 (json_object_get_string_member_with_default (
                   (o = json_node_get_object (root)), "format", ""),
                 REPO_MARKER_FORMAT) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "%s is not an ovagent repository: %s does not say "
                 "{\"format\":\"%s\"}", dir, marker, REPO_MARKER_FORMAT);
    return FALSE;
  }
  if (json_object_get_int_member_with_default (o, "version", 0) != REPO_MARKER_VERSION) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "%s: repository version %" G_GINT64_FORMAT " is not supported "
                 "(this ovagent handles version %d)", marker,
                 json_object_get_int_member_with_default (o, "version", 0),
                 REPO_MARKER_VERSION);
    return FALSE;
  }
  return TRUE;
}

static int
errno_code (int e)
{
  return e == ENOSPC || e == EDQUOT ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL;
}

/* mkdir 0700 of name in dir; one that exists is fine. */
static gboolean
make_subdir (const char *dir, const char *name, GError **error)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  int e;

  if (mkdir (path, 0700) == 0)
    return repo_fsync_dir (dir, error);     /* on disk before anything goes in */
  if (errno == EEXIST)
    return TRUE;
  e = errno;
  g_set_error (error, OVA_ERROR, errno_code (e),
               "cannot create %s: %s", path, g_strerror (e));
  return FALSE;
}

/* Make an empty directory a repository: disks/ and locks/ first, the
 * marker last (the marker decides what is a repository). */
static gboolean
init_repo (const char *dir, const char *marker, GError **error)
{
  static const char text[] = "{\"format\":\"" REPO_MARKER_FORMAT "\",\"version\":1}\n";
  gssize n;
  int fd, e;

  if (!make_subdir (dir, REPO_DISKS, error) || !make_subdir (dir, REPO_LOCKS, error))
    return FALSE;
  fd = open (marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0 && errno == EEXIST)
    return TRUE;     /* another receive made it at the same time */
  if (fd < 0) {
    e = errno;
    g_set_error (error, OVA_ERROR, errno_code (e),
                 "cannot create %s: %s", marker, g_strerror (e));
    return FALSE;
  }
  n = write (fd, text, sizeof text - 1);
  if (n < 0 || fsync (fd) < 0)
    e = errno;
  else if (n != (gssize) sizeof text - 1)
    e = EIO;
  else
    e = 0;
  close (fd);
  if (e != 0) {
    unlink (marker);
    g_set_error (error, OVA_ERROR, errno_code (e),
                 "cannot write %s: %s", marker, g_strerror (e));
    return FALSE;
  }
  return repo_fsync_dir (dir, error);
}

static gboolean
take_lock (repo *r, repo_lock_mode mode, GError **error)
{
  g_autofree char *path = g_build_filename (r->dir, REPO_LOCK, NULL);
  int e;

  /* Readers must work on a read-only copy of a repository, so they only
   * create the lock file when it is missing. */
  if (mode == REPO_LOCK_SHARED) {
    r->lock_fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (r->lock_fd < 0 && errno == ENOENT)
      r->lock_fd = open (path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  }
  else
    r->lock_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (r->lock_fd < 0) {
    e = errno;
    g_set_error (error, OVA_ERROR, errno_code (e),
                 "cannot open the repository lock %s%s: %s", path,
                 mode == REPO_LOCK_EXCLUSIVE ? " for writing" : "", g_strerror (e));
    return FALSE;
  }
  if (flock (r->lock_fd, (mode == REPO_LOCK_EXCLUSIVE ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
    e = errno;
    if (e == EWOULDBLOCK) {
      if (mode == REPO_LOCK_EXCLUSIVE)
        g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                     "another ovagent run (receive, verify, restore, backups, prune "
                     "or forget) is using %s (it holds %s); try again when it has "
                     "finished", r->dir, path);
      else
        g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                     "%s is locked exclusively by another ovagent run (prune or "
                     "forget; it holds %s); try again when it has finished",
                     r->dir, path);
    }
    else
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot lock %s: %s", path, g_strerror (e));
    return FALSE;
  }
  r->lock = mode;
  return TRUE;
}

/* A directory without the marker: made a repository if it is empty and
 * create is set. Creators hold a lock on the directory itself meanwhile
 * (a few file operations), so that two receives into a new repository
 * never take each other's first steps for a foreign directory's files. */
static gboolean
adopt_dir (const char *dir, const char *marker, gboolean create, GError **error)
{
  struct stat st;
  gboolean ok = FALSE;
  int dfd = -1;

  if (create) {
    dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || flock (dfd, LOCK_EX) < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot lock directory %s to make it a repository: %s",
                   dir, g_strerror (errno));
      goto out;
    }
    /* Made meanwhile by the run that held the lock before us. */
    if (lstat (marker, &st) == 0) {
      ok = TRUE;
      goto out;
    }
  }
  /* Never take over a directory holding something else. */
  switch (dir_has_entries (dir, error)) {
  case -1:
    goto out;
  case 1:
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "%s is not an ovagent repository (it has no %s) and is "
                 "not empty; give an empty or new directory", dir, REPO_MARKER);
    goto out;
  default:
    break;
  }
  if (!create) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "%s is empty: no repository there yet", dir);
    goto out;
  }
  ok = init_repo (dir, marker, error);
  if (ok)
    ova_info ("created repository %s", dir);
out:
  if (dfd >= 0)
    close (dfd);
  return ok;
}

repo *
repo_open (const char *dir, gboolean create, repo_lock_mode lock, GError **error)
{
  g_autoptr(repo) r = g_new0 (repo, 1);
  g_autofree char *marker = NULL;
  char *real;
  struct stat st;
  int e;

  r->lock_fd = -1;
  if (dir == NULL || *dir == '\0') {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "the repository path is empty");
    return NULL;
  }
  if (stat (dir, &st) < 0) {
    e = errno;
    if (e != ENOENT) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot access repository %s: %s", dir, g_strerror (e));
      return NULL;
    }
    if (!create) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "no repository at %s", dir);
      return NULL;
    }
    if (g_mkdir_with_parents (dir, 0700) < 0) {
      e = errno;
      g_set_error (error, OVA_ERROR, errno_code (e),
                   "cannot create repository directory %s: %s", dir, g_strerror (e));
      return NULL;
    }
  }
  else if (!S_ISDIR (st.st_mode)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "repository %s exists and is not a directory", dir);
    return NULL;
  }

  real = realpath (dir, NULL);
  if (real == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot resolve repository path %s: %s", dir, g_strerror (errno));
    return NULL;
  }
  r->dir = g_strdup (real);
  free (real);
  marker = g_build_filename (r->dir, REPO_MARKER, NULL);
  if (lstat (marker, &st) < 0) {
    if (errno != ENOENT) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot access %s: %s", marker, g_strerror (errno));
      return NULL;
    }
    if (!adopt_dir (r->dir, marker, create, error))
      return NULL;
  }
  if (!check_marker (r->dir, marker, error))
    return NULL;
  if (!take_lock (r, lock, error))
    return NULL;
  /* Repositories made before a version had them get them now. */
  if (create && (!make_subdir (r->dir, REPO_DISKS, error) ||
                 !make_subdir (r->dir, REPO_LOCKS, error)))
    return NULL;
  return g_steal_pointer (&r);
}

void
repo_close (repo *r)
{
  if (r == NULL)
    return;
  if (r->lock_fd >= 0)
    close (r->lock_fd);   /* releases the flock */
  g_free (r->dir);
  g_free (r->run_dir);
  g_free (r);
}

void
repo_set_run_dir (repo *r, const char *run_dir)
{
  g_free (r->run_dir);
  r->run_dir = g_strdup (run_dir);
}

char *
repo_disk_dir (const repo *r, const char *disk)
{
  return g_build_filename (r->dir, REPO_DISKS, disk, NULL);
}

static gboolean
is_disk_name (const char *name)
{
  if (!ova_uuid_is_valid (name))
    return FALSE;
  for (const char *p = name; *p; p++)
    if (g_ascii_isupper (*p))
      return FALSE;
  return TRUE;
}

GPtrArray *
repo_list_disks (const repo *r, GError **error)
{
  g_autofree char *dir = g_build_filename (r->dir, REPO_DISKS, NULL);
  g_autoptr(GPtrArray) names = NULL;
  g_autoptr(GPtrArray) disks = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) err = NULL;

  names = ova_list_dir_sorted (dir, &err);
  if (names == NULL) {
    if (g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      return g_steal_pointer (&disks);
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot list %s: %s", dir, err->message);
    return NULL;
  }
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);

    if (!is_disk_name (name)) {
      ova_debug ("skipping %s/%s: not a disk directory", dir, name);
      continue;
    }
    g_ptr_array_add (disks, g_strdup (name));
  }
  return g_steal_pointer (&disks);
}

/* ---- disk locks ---- */

struct repo_disk_locks {
  GPtrArray *paths;         /* char *, the lock files held */
  GArray *fds;              /* int, the same order */
};

/* R/locks/IMG locked exclusively: its descriptor, or -1 with error set.
 * A holder removes the file as it lets go, so a lock taken on a file that
 * is no longer the one at path locks nothing: then try again. */
static int
lock_disk (const repo *r, const char *disk, char **path_out, GError **error)
{
  g_autofree char *path = g_build_filename (r->dir, REPO_LOCKS, disk, NULL);

  for (guint i = 0; i < DISK_LOCK_TRIES; i++) {
    struct stat held, named;
    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    int e;

    if (fd < 0) {
      e = errno;
      g_set_error (error, OVA_ERROR, errno_code (e),
                   "cannot open the disk lock %s: %s", path, g_strerror (e));
      return -1;
    }
    if (flock (fd, LOCK_EX | LOCK_NB) < 0) {
      e = errno;
      close (fd);
      if (e == EWOULDBLOCK)
        g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                     "another ovagent receive is writing disk %s to %s (it holds "
                     "%s); try again when it has finished", disk, r->dir, path);
      else
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                     "cannot lock %s: %s", path, g_strerror (e));
      return -1;
    }
    if (fstat (fd, &held) == 0 && lstat (path, &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
      *path_out = g_steal_pointer (&path);
      return fd;
    }
    close (fd);
  }
  g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
               "the lock of disk %s in %s (%s) was taken and let go by other "
               "runs %u times in a row; try again", disk, r->dir, path,
               DISK_LOCK_TRIES);
  return -1;
}

repo_disk_locks *
repo_lock_disks (repo *r, GPtrArray *disks, GError **error)
{
  g_autoptr(repo_disk_locks) l = g_new0 (repo_disk_locks, 1);
  g_autoptr(GPtrArray) sorted = g_ptr_array_copy (disks, NULL, NULL);

  l->paths = g_ptr_array_new_with_free_func (g_free);
  l->fds = g_array_new (FALSE, FALSE, sizeof (int));
  /* One order for every run: two streams sharing disks never each hold
   * a lock the other one wants next. */
  g_ptr_array_sort (sorted, ova_compare_strings);
  for (guint i = 0; i < sorted->len; i++) {
    char *path = NULL;
    int fd = lock_disk (r, g_ptr_array_index (sorted, i), &path, error);

    if (fd < 0)
      return NULL;
    g_ptr_array_add (l->paths, path);
    g_array_append_val (l->fds, fd);
  }
  return g_steal_pointer (&l);
}

void
repo_disk_locks_release (repo_disk_locks *l)
{
  if (l == NULL)
    return;
  for (guint i = l->paths ? l->paths->len : 0; i > 0; i--) {
    const char *path = g_ptr_array_index (l->paths, i - 1);

    /* Removed while still held: see lock_disk. */
    if (unlink (path) < 0 && errno != ENOENT)
      ova_warn ("cannot remove the disk lock %s: %s", path, g_strerror (errno));
    close (g_array_index (l->fds, int, i - 1));
  }
  if (l->paths)
    g_ptr_array_unref (l->paths);
  if (l->fds)
    g_array_unref (l->fds);
  g_free (l);
}

/* ---- digests ---- */

struct repo_digest {
  XXH3_state_t *outer;      /* over the canonical hashes of blocks 1..n */
  XXH3_state_t *inner;      /* the block being fed while it is partial */
  guint64 length;
};

static XXH3_state_t *
new_state (void)
{
  XXH3_state_t *st = XXH3_createState ();

  /* As g_malloc does: running out of memory here is fatal. */
  if (st == NULL)
    g_error ("out of memory for an XXH3 state");
  XXH3_128bits_reset (st);
  return st;
}

/* The canonical XXH3-128 of REPO_DIGEST_BLOCK zeros, computed once: a
 * long hole costs one 16-byte update per block. */
static const XXH128_canonical_t *
zero_block_hash (void)
{
  static XXH128_canonical_t hash;
  static gsize done = 0;

  if (g_once_init_enter (&done)) {
    g_autofree guint8 *zeros = g_malloc0 (REPO_DIGEST_BLOCK);

    XXH128_canonicalFromHash (&hash, XXH3_128bits (zeros, REPO_DIGEST_BLOCK));
    g_once_init_leave (&done, 1);
  }
  return &hash;
}

repo_digest *
repo_digest_new (void)
{
  repo_digest *d = g_new0 (repo_digest, 1);

  d->outer = new_state ();
  d->inner = new_state ();
  return d;
}

void
repo_digest_free (repo_digest *d)
{
  if (d == NULL)
    return;
  XXH3_freeState (d->outer);
  XXH3_freeState (d->inner);
  g_free (d);
}

guint64
repo_digest_length (const repo_digest *d)
{
  return d->length;
}

static void
add_block_hash (repo_digest *d, XXH128_hash_t h)
{
  XXH128_canonical_t c;

  XXH128_canonicalFromHash (&c, h);
  XXH3_128bits_update (d->outer, &c, sizeof c);
}

void
repo_digest_data (repo_digest *d, const void *buf, size_t len)
{
  const guint8 *p = buf;

  while (len > 0) {
    size_t in_block = d->length % REPO_DIGEST_BLOCK;
    size_t n = MIN (len, REPO_DIGEST_BLOCK - in_block);

    /* Block 0 is only counted: repo_digest_finish hashes it as it ends up. */
    if (d->length >= REPO_DIGEST_BLOCK) {
      if (n == REPO_DIGEST_BLOCK)
        add_block_hash (d, XXH3_128bits (p, n));
      else {
        XXH3_128bits_update (d->inner, p, n);
        if (in_block + n == REPO_DIGEST_BLOCK) {
          add_block_hash (d, XXH3_128bits_digest (d->inner));
          XXH3_128bits_reset (d->inner);
        }
      }
    }
    p += n;
    len -= n;
    d->length += n;
  }
}

void
repo_digest_zeros (repo_digest *d, guint64 len)
{
  while (len > 0) {
    guint64 in_block = d->length % REPO_DIGEST_BLOCK;
    guint64 n = MIN (len, REPO_DIGEST_BLOCK - in_block);

    if (d->length < REPO_DIGEST_BLOCK)
      d->length += n;
    else if (n == REPO_DIGEST_BLOCK) {
      XXH3_128bits_update (d->outer, zero_block_hash (), sizeof (XXH128_canonical_t));
      d->length += n;
    }
    else {
      n = MIN (n, ZERO_CHUNK);
      repo_digest_data (d, zero_chunk, n);
    }
    len -= n;
  }
}

char *
repo_digest_finish (repo_digest *d, const void *block0, size_t len)
{
  XXH128_canonical_t c;
  GString *s;

  g_return_val_if_fail (len == MIN (d->length, REPO_DIGEST_BLOCK), NULL);

  if (d->length > REPO_DIGEST_BLOCK && d->length % REPO_DIGEST_BLOCK != 0)
    add_block_hash (d, XXH3_128bits_digest (d->inner));
  if (d->length > 0)
    add_block_hash (d, XXH3_128bits (block0, len));
  XXH128_canonicalFromHash (&c, XXH3_128bits_digest (d->outer));
  s = g_string_sized_new (REPO_DIGEST_LEN + 1);
  g_string_append (s, REPO_DIGEST_PREFIX);
  for (size_t i = 0; i < sizeof c.digest; i++)
    g_string_append_printf (s, "%02x", c.digest[i]);
  return g_string_free (s, FALSE);
}

/* Read [off, end) into the digest, in chunks that end on multiples of
 * DIGEST_CHUNK so that whole blocks are hashed straight from the buffer. */
static gboolean
hash_data (int fd, repo_digest *d, guint8 *buf, guint64 off, guint64 end,
           volatile sig_atomic_t *cancel, const char *path, GError **error)
{
  while (off < end) {
    size_t want = MIN (end, (off / DIGEST_CHUNK + 1) * DIGEST_CHUNK) - off;
    gssize n;

    if (cancel && *cancel) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED,
                   "interrupted while reading %s", path);
      return FALSE;
    }
    n = pread (fd, buf, want, off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot read %s at offset %" G_GUINT64_FORMAT ": %s",
                   path, off, g_strerror (errno));
      return FALSE;
    }
    if (n == 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s shrank while being read (end of file at %" G_GUINT64_FORMAT ")",
                   path, off);
      return FALSE;
    }
    repo_digest_data (d, buf, n);
    off += n;
  }
  return TRUE;
}

/* Blocks 1..n in order, holes from the zero-block hash, then block 0
 * (read whole: it is at most REPO_DIGEST_BLOCK bytes). */
static char *
file_digest_fd (int fd, const char *path, guint64 size,
                volatile sig_atomic_t *cancel, GError **error)
{
  g_autofree guint8 *buf = g_malloc (DIGEST_CHUNK);
  g_autoptr(repo_digest) d = repo_digest_new ();
  guint64 head = MIN (size, REPO_DIGEST_BLOCK);
  guint64 off = head;

  G_STATIC_ASSERT (DIGEST_CHUNK % REPO_DIGEST_BLOCK == 0);

  posix_fadvise (fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  repo_digest_zeros (d, head);
  while (off < size) {
    off_t data = lseek (fd, off, SEEK_DATA);
    off_t hole;

    /* No more data (ENXIO), or a file system without SEEK_DATA (read
     * it all). */
    if (data < 0)
      data = errno == ENXIO ? (off_t) size : (off_t) off;
    data = MIN ((guint64) data, size);
    if ((guint64) data > off)
      repo_digest_zeros (d, data - off);
    off = data;
    if (off >= size)
      break;
    hole = lseek (fd, off, SEEK_HOLE);
    if (hole < 0 || (guint64) hole > size || (guint64) hole <= off)
      hole = size;
    if (!hash_data (fd, d, buf, off, hole, cancel, path, error))
      return NULL;
    off = hole;
  }

  for (off = 0; off < head; ) {
    gssize n = pread (fd, buf + off, head - off, off);

    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      g_set_error (error, OVA_ERROR, n < 0 ? OVA_ERROR_INTERNAL : OVA_ERROR_INTEGRITY,
                   "cannot read %s at offset %" G_GUINT64_FORMAT ": %s", path, off,
                   n < 0 ? g_strerror (errno) : "the file shrank while being read");
      return NULL;
    }
    off += n;
  }
  return repo_digest_finish (d, buf, head);
}

char *
repo_file_digest (const char *path, guint64 *size, volatile sig_atomic_t *cancel,
                  GError **error)
{
  struct stat st;
  char *hex;
  int fd;

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
  if (fd < 0) {
    int e = errno;

    g_set_error (error, OVA_ERROR, e == ENOENT ? OVA_ERROR_INTEGRITY : OVA_ERROR_INTERNAL,
                 "cannot open %s: %s", path,
                 e == ELOOP ? "it is a symbolic link" : g_strerror (e));
    return NULL;
  }
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s is not a regular file", path);
    close (fd);
    return NULL;
  }
  hex = file_digest_fd (fd, path, st.st_size, cancel, error);
  close (fd);
  if (hex && size)
    *size = st.st_size;
  return hex;
}

/* ---- qcow2 probes ---- */

void
repo_qcow2_info_clear (repo_qcow2_info *info)
{
  g_clear_pointer (&info->backing, g_free);
  g_clear_pointer (&info->backing_format, g_free);
}

gboolean
repo_qcow2_probe (const char *path, repo_qcow2_info *info, GError **error)
{
  g_autofree char *out = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(stor_img_info) img = NULL;

  memset (info, 0, sizeof *info);
  if (!stor_qemu_img_info (path, "qcow2", &out, &err)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s is not a qcow2 image qemu can open: %s", path, err->message);
    return FALSE;
  }
  img = stor_img_info_parse (path, out, error);
  if (img == NULL)
    return FALSE;
  if (g_strcmp0 (img->format, "qcow2") != 0 || !img->has_virtual_size) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: qemu-img info reports no qcow2 format or virtual size", path);
    return FALSE;
  }
  info->virtual_size = img->virtual_size;
  info->backing = g_steal_pointer (&img->backing);
  info->backing_format = g_steal_pointer (&img->backing_format);
  info->data_file = img->data_file;
  return TRUE;
}

/* ---- restore ---- */

GPtrArray *
repo_backup_layers (const char *disk_dir, const repo_manifest *m, const repo_backup *b,
                    GError **error)
{
  g_autoptr (GPtrArray) layers = stor_layers_new ();
  guint hops = 0;

  /* Each backup's volumes, newest first, then the backup it is backed by;
   * the manifest's checks made every parent an earlier backup. */
  while (b != NULL) {
    for (guint i = b->volumes->len; i-- > 0;) {
      const repo_volume *v = g_ptr_array_index (b->volumes, i);
      g_autofree char *path = g_build_filename (disk_dir, v->file, NULL);
      struct stat st;

      if (lstat (path, &st) < 0 || !S_ISREG (st.st_mode)) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                     "backup %s of disk %s: %s is missing or not a regular file",
                     b->id, m->disk, path);
        return NULL;
      }
      stor_layers_add (layers, path, v->format);
    }
    if (b->parent == NULL)
      break;
    if (++hops > m->backups->len || (b = repo_manifest_find (m, b->parent)) == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "the manifest of disk %s does not lead from a backup to a full one",
                   m->disk);
      return NULL;
    }
  }
  return g_steal_pointer (&layers);
}
