/* ovagent: UUID checks, bounded O_DIRECT reads and the command runner.
 * Everything here is free of oVirt knowledge; storage/ builds on it. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "util.h"

gboolean
ova_uuid_is_valid (const char *s)
{
  static const int dashes[] = { 8, 13, 18, 23 };
  size_t d = 0;

  if (s == NULL || strlen (s) != OVA_UUID_LEN)
    return FALSE;
  for (int i = 0; i < OVA_UUID_LEN; i++) {
    if (d < G_N_ELEMENTS (dashes) && i == dashes[d]) {
      if (s[i] != '-')
        return FALSE;
      d++;
    }
    else if (!g_ascii_isxdigit (s[i]))
      return FALSE;
  }
  return TRUE;
}

gboolean
ova_uuid_is_blank (const char *s)
{
  return s != NULL && strcmp (s, OVA_BLANK_UUID) == 0;
}

#define DIRECT_ALIGN 4096

static int
open_direct (const char *path, gboolean *direct)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_DIRECT);

  *direct = fd >= 0;
  if (fd < 0 && errno == EINVAL)  /* tmpfs and some FUSE mounts */
    fd = open (path, O_RDONLY | O_CLOEXEC);
  return fd;
}

static void
set_open_error (GError **error, const char *path, int err)
{
  g_set_error (error, OVA_ERROR,
               err == ENOENT ? OVA_ERROR_NOT_FOUND : OVA_ERROR_INTERNAL,
               "cannot open %s: %s", path, g_strerror (err));
}

/* Read up to len bytes at offset into an aligned buffer; returns bytes read. */
static gssize
read_at (int fd, gboolean direct, guint64 offset, char *buf, gsize len)
{
  gsize done = 0;

  while (done < len) {
    gsize want = len - done;
    ssize_t r;

    if (direct)
      want = (want + DIRECT_ALIGN - 1) & ~(gsize) (DIRECT_ALIGN - 1);
    r = pread (fd, buf + done, want, offset + done);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0)
      break;
    done += r;
    if (direct && (r % DIRECT_ALIGN) != 0)
      break;  /* short read at end of file */
  }
  return MIN (done, len);
}

static char *
alloc_aligned (gsize len)
{
  void *p = NULL;

  if (posix_memalign (&p, DIRECT_ALIGN, len + DIRECT_ALIGN + 1) != 0)
    g_error ("out of memory");
  return p;
}

gboolean
ova_read_file_direct (const char *path, gsize max_len,
                      char **contents, gsize *len, GError **error)
{
  gboolean direct;
  struct stat st = { 0 };
  gsize cap;
  char *buf;
  gssize r;
  int fd;

  fd = open_direct (path, &direct);
  if (fd < 0) {
    set_open_error (error, path, errno);
    return FALSE;
  }
  if (fstat (fd, &st) < 0)
    st.st_mode = 0;
  if (S_ISREG (st.st_mode) && (guint64) st.st_size > max_len) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s is %lld bytes, larger than the %zu bytes allowed",
                 path, (long long) st.st_size, max_len);
    close (fd);
    return FALSE;
  }

  /* A buffer for the file's size (not for the most it may hold: a
   * manifest's limit is 64 MiB), and once more for the limit should the
   * file have grown past it meanwhile. */
  cap = max_len;
  if (S_ISREG (st.st_mode))
    cap = MIN (max_len, ((gsize) st.st_size + DIRECT_ALIGN) & ~(gsize) (DIRECT_ALIGN - 1));
  for (;;) {
    buf = alloc_aligned (cap);
    r = read_at (fd, direct, 0, buf, cap + 1);
    if (r < 0) {
      int err = errno;
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot read %s: %s", path, g_strerror (err));
      free (buf);
      close (fd);
      return FALSE;
    }
    if ((gsize) r <= cap || cap == max_len)
      break;
    free (buf);
    cap = max_len;
  }
  close (fd);
  if ((gsize) r > max_len) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s is larger than the %zu bytes allowed", path, max_len);
    free (buf);
    return FALSE;
  }

  buf[r] = '\0';
  *contents = g_memdup2 (buf, r + 1);
  if (len)
    *len = r;
  free (buf);
  return TRUE;
}

gboolean
ova_pread_direct (const char *path, guint64 offset, gsize len,
                  char **contents, GError **error)
{
  gboolean direct;
  char *buf;
  gssize r;
  int fd;

  fd = open_direct (path, &direct);
  if (fd < 0) {
    set_open_error (error, path, errno);
    return FALSE;
  }
  if (direct && (offset % DIRECT_ALIGN) != 0) {
    /* Aligned window around the record. */
    guint64 start = offset & ~(guint64) (DIRECT_ALIGN - 1);
    gsize skip = offset - start;

    buf = alloc_aligned (len + skip);
    r = read_at (fd, direct, start, buf, len + skip);
    if (r >= 0) {
      r = r > (gssize) skip ? r - (gssize) skip : 0;
      memmove (buf, buf + skip, r);
    }
  }
  else {
    buf = alloc_aligned (len);
    r = read_at (fd, direct, offset, buf, len);
  }
  if (r < 0) {
    int err = errno;
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot read %zu bytes at offset %" G_GUINT64_FORMAT " of %s: %s",
                 len, offset, path, g_strerror (err));
    free (buf);
    close (fd);
    return FALSE;
  }
  close (fd);
  if ((gsize) r < len) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s ends before offset %" G_GUINT64_FORMAT " + %zu",
                 path, offset, len);
    free (buf);
    return FALSE;
  }
  *contents = g_memdup2 (buf, len);
  free (buf);
  return TRUE;
}

char *
ova_format_size (guint64 bytes)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
  char num[G_ASCII_DTOSTR_BUF_SIZE];
  double v = bytes;
  size_t u = 0;

  /* 1023.95 and up would print as "1024.0": use the next unit. */
  while (v >= (u == 0 ? 1024 : 1023.95) && u + 1 < G_N_ELEMENTS (units)) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " B", bytes);
  /* Output is parsed by scripts: a '.' whatever the locale. */
  return g_strdup_printf ("%s %s", g_ascii_formatd (num, sizeof num, "%.1f", v), units[u]);
}

gint
ova_compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

GPtrArray *
ova_list_dir_sorted (const char *path, GError **error)
{
  g_autoptr (GPtrArray) names = NULL;
  g_autoptr (GDir) dir = NULL;
  const char *name;

  dir = g_dir_open (path, 0, error);
  if (dir == NULL)
    return NULL;
  names = g_ptr_array_new_with_free_func (g_free);
  while ((name = g_dir_read_name (dir)) != NULL)
    g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, ova_compare_strings);
  return g_steal_pointer (&names);
}

gboolean
ova_is_directory (const char *path)
{
  struct stat st;

  return stat (path, &st) == 0 && S_ISDIR (st.st_mode);
}

char *
ova_quote_untrusted (const char *value, gsize max)
{
  gsize len = strlen (value);
  g_autofree char *head = g_strndup (value, MIN (len, max));
  g_autofree char *escaped = g_strescape (head, NULL);

  return g_strdup_printf ("\"%s\"%s", escaped, len > max ? "..." : "");
}

/* Runs in the child between fork and exec: keeps the one descriptor the
 * command names as /dev/fd/N (GLib marked every other one close-on-exec). */
static void
keep_fd_in_child (gpointer data)
{
  int fd = GPOINTER_TO_INT (data);

  if (fd >= 0)
    fcntl (fd, F_SETFD, 0);
}

/* Run argv and wait: FALSE only if it could not run or was killed. */
static gboolean
spawn_wait (const char *const *argv, int keep_fd, char **out, char **err,
            int *status, GError **error)
{
  g_autoptr (GError) spawn_err = NULL;

  if (!g_spawn_sync (NULL, (char **) argv, NULL,
                     G_SPAWN_SEARCH_PATH | G_SPAWN_CLOEXEC_PIPES,
                     keep_fd >= 0 ? keep_fd_in_child : NULL, GINT_TO_POINTER (keep_fd),
                     out, err, status, &spawn_err)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot run %s: %s", argv[0], spawn_err->message);
    return FALSE;
  }
  if (!WIFEXITED (*status)) {
    g_autofree char *cmdline = g_strjoinv (" ", (char **) argv);

    g_strstrip (*err);
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s was killed by signal %d: %s", cmdline,
                 WIFSIGNALED (*status) ? WTERMSIG (*status) : 0,
                 **err ? *err : "no message");
    return FALSE;
  }
  return TRUE;
}

gboolean
ova_run_fd (const char *const *argv, int keep_fd, char **stdout_out,
            char **stderr_out, GError **error)
{
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status;

  if (!spawn_wait (argv, keep_fd, &out, &err, &status, error))
    return FALSE;
  /* Decoded by hand: g_spawn_check_wait_status needs GLib 2.70, newer
   * than EL9 ships, and its message does not name the command. */
  if (WEXITSTATUS (status) != 0) {
    g_autofree char *cmdline = g_strjoinv (" ", (char **) argv);

    g_strstrip (err);
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s failed with exit status %d: %s", cmdline,
                 WEXITSTATUS (status), *err ? err : "no message");
    return FALSE;
  }
  if (stdout_out)
    *stdout_out = g_steal_pointer (&out);
  if (stderr_out)
    *stderr_out = g_steal_pointer (&err);
  return TRUE;
}

gboolean
ova_run (const char *const *argv, char **stdout_out, char **stderr_out,
         GError **error)
{
  return ova_run_fd (argv, -1, stdout_out, stderr_out, error);
}

gboolean
ova_run_status (const char *const *argv, char **stdout_out, char **stderr_out,
                int *exit_status, GError **error)
{
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status;

  if (!spawn_wait (argv, -1, &out, &err, &status, error))
    return FALSE;
  *exit_status = WEXITSTATUS (status);
  if (stdout_out)
    *stdout_out = g_steal_pointer (&out);
  if (stderr_out)
    *stderr_out = g_steal_pointer (&err);
  return TRUE;
}

int
ova_create_new_file (const char *path, GError **error)
{
  int fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

  if (fd < 0) {
    int saved = errno;

    if (saved == EEXIST)
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s already exists (a file, or a link to one); it is never "
                   "overwritten: remove it or choose another name", path);
    else
      g_set_error (error, OVA_ERROR,
                   saved == ENOSPC || saved == EDQUOT ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
                   "cannot create %s: %s", path, g_strerror (saved));
    return -1;
  }
  return fd;
}

gboolean
ova_commit_file (const char *part, const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  int fd;

  fd = open (part, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || fsync (fd) < 0) {
    int saved = errno;

    if (fd >= 0)
      close (fd);
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot sync %s: %s",
                 part, g_strerror (saved));
    return FALSE;
  }
  close (fd);
  if (renameat2 (AT_FDCWD, part, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
    int saved = errno;

    /* File systems without RENAME_NOREPLACE: checked just before. */
    if ((saved == EINVAL || saved == ENOSYS) && !g_file_test (path, G_FILE_TEST_EXISTS)
        && rename (part, path) == 0)
      saved = 0;
    if (saved != 0) {
      g_set_error (error, OVA_ERROR, saved == EEXIST ? OVA_ERROR_USAGE : OVA_ERROR_INTERNAL,
                   "cannot rename %s to %s: %s", part, path, g_strerror (saved));
      return FALSE;
    }
  }
  fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    if (fsync (fd) < 0)
      ova_warn ("cannot sync directory %s: %s", dir, g_strerror (errno));
    close (fd);
  }
  return TRUE;
}


int
ova_open_sized (const char *path, struct stat *st, guint64 *size,
                GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  int err;

  if (fd < 0) {
    set_open_error (error, path, errno);
    return -1;
  }
  if (fstat (fd, st) < 0) {
    err = errno;
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot stat %s: %s", path, g_strerror (err));
    close (fd);
    return -1;
  }
  if (S_ISREG (st->st_mode))
    *size = st->st_size;
  else if (S_ISBLK (st->st_mode)) {
    off_t end = lseek (fd, 0, SEEK_END);

    if (end < 0) {
      err = errno;
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot get the size of %s: %s", path, g_strerror (err));
      close (fd);
      return -1;
    }
    *size = end;
  }
  else {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "%s is neither a regular file nor a block device", path);
    close (fd);
    return -1;
  }
  return fd;
}

gboolean
ova_write_private_file (const char *path, const char *contents, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autoptr(GError) err = NULL;

  if (g_mkdir_with_parents (dir, 0711) < 0 || chmod (dir, 0700) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot create %s: %s",
                 dir, g_strerror (errno));
    return FALSE;
  }
  if (!g_file_set_contents_full (path, contents, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                 0600, &err)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot write %s: %s",
                 path, err->message);
    return FALSE;
  }
  return TRUE;
}

gint64
ova_deadline_in (guint seconds)
{
  return seconds == 0 ? 0 : g_get_monotonic_time () + (gint64) seconds * G_USEC_PER_SEC;
}

int
ova_wait_fd (int fd, short events, gint64 deadline, volatile sig_atomic_t *cancel)
{
  for (;;) {
    struct pollfd pfd = { .fd = fd, .events = events };
    int ms = OVA_WAIT_SLICE_MS;
    int r;

    if (cancel != NULL && *cancel) {
      errno = EINTR;
      return -1;
    }
    if (deadline != 0) {
      gint64 left = deadline - g_get_monotonic_time ();

      /* Rounded up: poll must not return just before the deadline. */
      ms = left <= 0 ? 0 : (int) MIN ((left + 999) / 1000, (gint64) OVA_WAIT_SLICE_MS);
    }
    r = poll (&pfd, 1, ms);
    if (r > 0)
      return 1;
    if (r < 0 && errno != EINTR)
      return -1;
    if (r == 0 && deadline != 0 && g_get_monotonic_time () >= deadline)
      return 0;
  }
}

#define PIPE_SIZE (1024 * 1024)

void
ova_pipe_grow (int fd)
{
  struct stat st;

  if (fstat (fd, &st) == 0 && S_ISFIFO (st.st_mode) &&
      fcntl (fd, F_GETPIPE_SZ) < PIPE_SIZE && fcntl (fd, F_SETPIPE_SZ, PIPE_SIZE) < 0)
    ova_debug ("cannot grow the pipe buffer of descriptor %d: %s", fd, g_strerror (errno));
}

gssize
ova_read_idle (int fd, void *buf, size_t len, guint timeout, volatile sig_atomic_t *cancel)
{
  gint64 deadline = ova_deadline_in (timeout);

  for (;;) {
    gssize n;

    switch (ova_wait_fd (fd, POLLIN, deadline, cancel)) {
    case 0:
      errno = ETIMEDOUT;
      return -1;
    case -1:
      return -1;
    default:
      break;
    }
    n = read (fd, buf, len);
    /* A signal, or readiness that went away again (an inherited
     * non-blocking descriptor shared with another reader): wait again. */
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
      continue;
    if (n > 0)
      ova_io_count_in (n);
    return n;
  }
}

static ova_io_totals io_own;
static ova_io_totals *io_totals = &io_own;

void
ova_io_totals_share (ova_io_totals *where)
{
  io_totals = where;
}

/* Atomic: an encoder may run in another thread than the reader. */
void
ova_io_count_in (gsize n)
{
  __atomic_add_fetch (&io_totals->in, n, __ATOMIC_RELAXED);
}

void
ova_io_count_out (gsize n)
{
  __atomic_add_fetch (&io_totals->out, n, __ATOMIC_RELAXED);
}
