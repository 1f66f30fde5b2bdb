/* ovagent: qemu-nbd processes serving one image (every layer named) on a Unix
 * socket in a private directory under run_dir: started, waited for, stopped, removed. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "error.h"
#include "log.h"
#include "nbd/nbd.h"
#include "util.h"
#include "storage/qemu-img.h"

/* How long qemu-nbd may take to open the image and listen. */
#define START_TIMEOUT_US (10 * G_USEC_PER_SEC)
/* How long it may take to exit after SIGTERM before it is killed. */
#define STOP_TIMEOUT_US (10 * G_USEC_PER_SEC)
#define POLL_INTERVAL_US (20 * 1000)
/* The most of qemu-nbd's log quoted in an error. */
#define LOG_QUOTE_MAX 2000
/* Connections at once: one per reader or writer thread of a copy. */
#define SHARED_CONNECTIONS "8"
#define MAX_BITMAPS 64

struct nbdr_server {
  GPid pid;             /* 0 once reaped */
  char *dir;            /* private directory, 0700 */
  char *socket;         /* dir/sock */
  char *log;            /* dir/qemu-nbd.log: its stderr */
  char *uri;
  char *image;
};

typedef struct {
  pid_t parent;
  int log_fd;
  int keep_fd;          /* the image as /dev/fd/N, or -1 */
} child_setup_data;

/* Runs in the child between fork and exec: only async-signal-safe calls. */
static void
child_setup (gpointer user_data)
{
  const child_setup_data *data = user_data;

  /* Should we die, qemu-nbd must not be left serving the image. */
  if (prctl (PR_SET_PDEATHSIG, SIGTERM) < 0)
    _exit (127);
  /* We may have died before prctl. */
  if (getppid () != data->parent)
    _exit (127);
  if (dup2 (data->log_fd, STDERR_FILENO) < 0)
    _exit (127);
  if (data->keep_fd >= 0 && fcntl (data->keep_fd, F_SETFD, 0) < 0)
    _exit (127);
}

/* Can the image be opened with O_DIRECT (not tmpfs, not some FUSE mounts)? */
static gboolean
supports_direct_io (const char *image, gboolean writable)
{
  int fd = open (image, (writable ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC);

  if (fd < 0) {
    ova_debug ("no O_DIRECT on %s (%s): qemu-nbd uses the page cache",
               image, g_strerror (errno));
    return FALSE;
  }
  close (fd);
  return TRUE;
}

/* A directory under run_dir only we can enter, for the socket. */
static char *
make_private_dir (const char *run_dir, GError **error)
{
  g_autofree char *template = NULL;

  if (run_dir == NULL || !g_path_is_absolute (run_dir)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "run_dir must be an absolute path, not '%s' (config key run_dir)",
                 run_dir ? run_dir : "");
    return NULL;
  }
  /* 0711: libvirt's QEMU reaches its backup sockets under run_dir too;
   * this server's own directory below is 0700. */
  if (g_mkdir_with_parents (run_dir, 0711) < 0) {
    int saved = errno;

    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot create run_dir %s (config key run_dir): %s",
                 run_dir, g_strerror (saved));
    return NULL;
  }
  template = g_build_filename (run_dir, "nbd-XXXXXX", NULL);
  if (g_mkdtemp_full (template, 0700) == NULL) {
    int saved = errno;

    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot create a directory in run_dir %s (config key run_dir): %s",
                 run_dir, g_strerror (saved));
    return NULL;
  }
  return g_steal_pointer (&template);
}

/* The tail of qemu-nbd's stderr, for an error message. */
static char *
read_log (const char *path)
{
  g_autofree char *text = NULL;
  gsize len = 0;

  if (path == NULL || !g_file_get_contents (path, &text, &len, NULL))
    return g_strdup ("");
  g_strstrip (text);
  len = strlen (text);
  if (len > LOG_QUOTE_MAX)
    return g_strdup_printf ("...%s", text + len - LOG_QUOTE_MAX);
  return g_steal_pointer (&text);
}

/* TRUE once something accepts connections on path. */
static gboolean
socket_accepts (const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int fd;
  int r;

  g_strlcpy (addr.sun_path, path, sizeof addr.sun_path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return FALSE;
  r = connect (fd, (struct sockaddr *) &addr, sizeof addr);
  close (fd);
  return r == 0;
}

/* Reap the child if it has exited; TRUE if it has. */
static gboolean
reap (nbdr_server *srv, int *status)
{
  pid_t r;

  if (srv->pid == 0)
    return TRUE;
  do
    r = waitpid (srv->pid, status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0)
    return FALSE;
  srv->pid = 0;
  return TRUE;
}

static char *
describe_status (int status)
{
  if (WIFEXITED (status))
    return g_strdup_printf ("exited with status %d", WEXITSTATUS (status));
  if (WIFSIGNALED (status))
    return g_strdup_printf ("was killed by signal %d", WTERMSIG (status));
  return g_strdup ("stopped");
}

static GPtrArray *
build_argv (const nbdr_server *srv, GPtrArray *layers, unsigned flags,
            const char *const *bitmaps)
{
  GPtrArray *argv = g_ptr_array_new_with_free_func (g_free);
  gboolean writable = (flags & NBDR_SERVER_WRITABLE) != 0;
  gboolean direct = !(flags & NBDR_SERVER_CACHED) &&
    supports_direct_io (srv->image, writable);

  g_ptr_array_add (argv, g_strdup ("qemu-nbd"));
  g_ptr_array_add (argv, g_strdup_printf ("--socket=%s", srv->socket));
  g_ptr_array_add (argv, g_strdup ("--persistent"));
  g_ptr_array_add (argv, g_strdup ("--shared=" SHARED_CONNECTIONS));
  g_ptr_array_add (argv, g_strdup (direct ? "--cache=none" : "--cache=writeback"));
  g_ptr_array_add (argv, g_strdup ("--aio=threads"));
  if (writable && !(flags & NBDR_SERVER_CACHED)) {
    /* Zeroed ranges become holes: restored volumes stay sparse. */
    g_ptr_array_add (argv, g_strdup ("--discard=unmap"));
    g_ptr_array_add (argv, g_strdup ("--detect-zeroes=unmap"));
  }
  else if (writable)
    g_ptr_array_add (argv, g_strdup ("--discard=unmap"));
  else
    g_ptr_array_add (argv, g_strdup ("--read-only"));
  for (size_t i = 0; bitmaps != NULL && bitmaps[i] != NULL; i++)
    g_ptr_array_add (argv, g_strdup_printf ("--bitmap=%s", bitmaps[i]));
  /* The image: every layer with its driver, so nothing is probed. */
  g_ptr_array_add (argv, g_strdup ("--"));
  g_ptr_array_add (argv, stor_image_spec (layers));
  g_ptr_array_add (argv, NULL);
  return argv;
}

static gboolean
check_args (GPtrArray *layers, gboolean writable, const char *const *bitmaps,
            GError **error)
{
  const stor_layer *top = g_ptr_array_index (layers, 0);
  size_t n = 0;

  for (guint i = 0; i < layers->len; i++) {
    const stor_layer *l = g_ptr_array_index (layers, i);

    if (g_strcmp0 (l->format, "qcow2") != 0 &&
        (g_strcmp0 (l->format, "raw") != 0 || i + 1 < layers->len)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot serve %s: layer %s has format '%s' (qcow2, or raw "
                   "for the base)", top->path, l->path, l->format ? l->format : "");
      return FALSE;
    }
  }
  for (; bitmaps != NULL && bitmaps[n] != NULL; n++) {
    if (!stor_bitmap_name_is_valid (bitmaps[n])) {
      g_autofree char *q = ova_quote_untrusted (bitmaps[n], 64);

      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "cannot export bitmap %s of %s: invalid bitmap name", q, top->path);
      return FALSE;
    }
  }
  if (n > 0 && writable) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "bitmaps are exported read-only only (%s)", top->path);
    return FALSE;
  }
  if (n > MAX_BITMAPS) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "cannot export %zu bitmaps of %s (at most %d)", n, top->path, MAX_BITMAPS);
    return FALSE;
  }
  return TRUE;
}

/* Wait until the socket accepts connections, or qemu-nbd dies, or time is up. */
static gboolean
wait_ready (nbdr_server *srv, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + START_TIMEOUT_US;
  int status = 0;

  for (;;) {
    if (reap (srv, &status)) {
      g_autofree char *how = describe_status (status);
      g_autofree char *log = read_log (srv->log);

      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "qemu-nbd serving %s %s: %s", srv->image, how,
                   *log ? log : "(no message)");
      return FALSE;
    }
    if (socket_accepts (srv->socket))
      return TRUE;
    if (g_get_monotonic_time () > deadline) {
      g_autofree char *log = read_log (srv->log);

      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "qemu-nbd serving %s did not listen on %s within %d s%s%s",
                   srv->image, srv->socket,
                   (int) (START_TIMEOUT_US / G_USEC_PER_SEC),
                   *log ? ": " : "", log);
      return FALSE;
    }
    g_usleep (POLL_INTERVAL_US);
  }
}

nbdr_server *
nbdr_server_start (GPtrArray *layers, unsigned flags, const char *const *bitmaps,
                   int keep_fd, const char *run_dir, GError **error)
{
  gboolean writable = (flags & NBDR_SERVER_WRITABLE) != 0;
  g_autoptr(nbdr_server) srv = g_new0 (nbdr_server, 1);
  g_autoptr(GPtrArray) argv = NULL;
  g_autoptr(GError) err = NULL;
  child_setup_data setup = { .parent = getpid (), .log_fd = -1, .keep_fd = keep_fd };
  struct sockaddr_un addr;
  gboolean spawned;

  if (!check_args (layers, writable, bitmaps, error))
    return NULL;
  srv->image = g_strdup (((const stor_layer *) g_ptr_array_index (layers, 0))->path);
  srv->dir = make_private_dir (run_dir, error);
  if (srv->dir == NULL)
    return NULL;
  srv->socket = g_build_filename (srv->dir, "sock", NULL);
  srv->log = g_build_filename (srv->dir, "qemu-nbd.log", NULL);
  if (strlen (srv->socket) >= sizeof addr.sun_path) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "socket path %s is too long for a Unix socket (%zu bytes at most); "
                 "use a shorter run_dir (config key run_dir)",
                 srv->socket, sizeof addr.sun_path - 1);
    return NULL;
  }
  srv->uri = g_strdup_printf ("nbd+unix:///?socket=%s", srv->socket);

  setup.log_fd = open (srv->log, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (setup.log_fd < 0) {
    int saved = errno;

    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot create %s: %s",
                 srv->log, g_strerror (saved));
    return NULL;
  }

  argv = build_argv (srv, layers, flags, bitmaps);
  if (ova_log_threshold () >= LOG_DEBUG) {
    g_autofree char *line = g_strjoinv (" ", (char **) argv->pdata);

    ova_debug ("starting %s", line);
  }
  /* stdin stays ours (the stream may come on it): the child gets /dev/null. */
  spawned = g_spawn_async (NULL, (char **) argv->pdata, NULL,
                           G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                           G_SPAWN_STDOUT_TO_DEV_NULL,
                           child_setup, &setup, &srv->pid, &err);
  close (setup.log_fd);
  if (!spawned) {
    srv->pid = 0;
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot run qemu-nbd to serve %s: %s", srv->image, err->message);
    return NULL;
  }
  if (!wait_ready (srv, error))
    return NULL;
  ova_debug ("qemu-nbd (pid %d) serves %s %s on %s", (int) srv->pid,
             srv->image, writable ? "read-write" : "read-only", srv->socket);
  return g_steal_pointer (&srv);
}

const char *
nbdr_server_uri (const nbdr_server *srv)
{
  return srv->uri;
}

static void
stop_process (nbdr_server *srv)
{
  gint64 deadline;
  int status = 0;

  if (srv->pid == 0)
    return;
  if (kill (srv->pid, SIGTERM) < 0 && errno == ESRCH) {
    reap (srv, &status);
    return;
  }
  deadline = g_get_monotonic_time () + STOP_TIMEOUT_US;
  while (!reap (srv, &status)) {
    if (g_get_monotonic_time () > deadline) {
      ova_warn ("qemu-nbd (pid %d) serving %s did not exit on SIGTERM; killing it",
                (int) srv->pid, srv->image);
      kill (srv->pid, SIGKILL);
      while (waitpid (srv->pid, &status, 0) < 0 && errno == EINTR)
        ;
      srv->pid = 0;
      return;
    }
    g_usleep (POLL_INTERVAL_US);
  }
  /* SIGTERM is how it is told to stop: anything else is worth a word. */
  if (!(WIFEXITED (status) && WEXITSTATUS (status) == 0) &&
      !(WIFSIGNALED (status) && WTERMSIG (status) == SIGTERM)) {
    g_autofree char *how = describe_status (status);
    g_autofree char *log = read_log (srv->log);

    ova_warn ("qemu-nbd serving %s %s: %s", srv->image, how, log);
  }
}

void
nbdr_server_stop (nbdr_server *srv)
{
  if (srv == NULL)
    return;
  stop_process (srv);
  if (srv->socket != NULL && g_unlink (srv->socket) < 0 && errno != ENOENT)
    ova_warn ("cannot remove %s: %s", srv->socket, g_strerror (errno));
  if (srv->log != NULL && g_unlink (srv->log) < 0 && errno != ENOENT)
    ova_warn ("cannot remove %s: %s", srv->log, g_strerror (errno));
  if (srv->dir != NULL && g_rmdir (srv->dir) < 0 && errno != ENOENT)
    ova_warn ("cannot remove %s: %s", srv->dir, g_strerror (errno));
  g_free (srv->dir);
  g_free (srv->socket);
  g_free (srv->log);
  g_free (srv->uri);
  g_free (srv->image);
  g_free (srv);
}
