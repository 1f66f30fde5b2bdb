/* ovagent: the sink that writes a stream to a file descriptor (stdout, a pipe
 * or a file): errors mapped to transport and no-space, an idle limit on pipes. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "stream/stream.h"

/* How a write reaches fd without blocking past the idle limit. */
typedef enum {
  FD_WRITE_UNKNOWN = 0,  /* not looked at yet */
  FD_WRITE_PLAIN,        /* a file or a device: never waits for a reader */
  FD_WRITE_NONBLOCK,     /* wfd is non-blocking: EAGAIN, then wait */
  FD_WRITE_SOCKET,       /* send with MSG_DONTWAIT */
  FD_WRITE_SMALL,        /* a blocking pipe: PIPE_BUF bytes after a wait */
} fd_write_mode;

typedef struct {
  strm_sink base;
  int fd;
  char *what;            /* for messages: "standard output", a path */
  fd_write_mode mode;
  int wfd;               /* where writes go: fd, or our own descriptor */
  gboolean own_wfd;
} fd_sink;

static gboolean
fd_error (fd_sink *s, int err, const char *doing, GError **error)
{
  if (err == EPIPE)
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "the reader of %s went away", s->what);
  else if (err == ENOSPC || err == EDQUOT)
    g_set_error (error, OVA_ERROR, OVA_ERROR_NO_SPACE,
                 "%s %s: %s", doing, s->what, g_strerror (err));
  else
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s %s: %s", doing, s->what, g_strerror (err));
  return FALSE;
}

/* A pipe gets a second open file description of its own, made
 * non-blocking: O_NONBLOCK on fd itself would reach every process that
 * shares it (the shell, the reader's side of a FIFO opened twice). */
static void
fd_choose_mode (fd_sink *s)
{
  g_autofree char *path = NULL;
  struct stat st;
  int flags;

  s->wfd = s->fd;
  s->mode = FD_WRITE_PLAIN;
  if (fstat (s->fd, &st) < 0)
    return;     /* the first write reports it */
  if (S_ISSOCK (st.st_mode)) {
    s->mode = FD_WRITE_SOCKET;
    return;
  }
  if (!S_ISFIFO (st.st_mode))
    return;
  ova_pipe_grow (s->fd);
  flags = fcntl (s->fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK)) {
    s->mode = FD_WRITE_NONBLOCK;
    return;
  }
  path = g_strdup_printf ("/proc/self/fd/%d", s->fd);
  s->wfd = open (path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (s->wfd >= 0) {
    s->own_wfd = TRUE;
    s->mode = FD_WRITE_NONBLOCK;
    return;
  }
  ova_debug ("cannot open %s for non-blocking writes to %s (%s); writing "
             "it %d bytes at a time", path, s->what, g_strerror (errno), PIPE_BUF);
  s->wfd = s->fd;
  s->mode = FD_WRITE_SMALL;
}

/* Some of buf, never blocking for long: -1 with EAGAIN when the reader
 * has taken nothing yet. */
static ssize_t
fd_write_some (fd_sink *s, const char *p, size_t len)
{
  struct pollfd pfd = { .fd = s->wfd, .events = POLLOUT };

  switch (s->mode) {
  case FD_WRITE_SOCKET:
    return send (s->wfd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  case FD_WRITE_SMALL:
    /* A blocking pipe write of up to PIPE_BUF bytes does not block once
     * poll said there is room. */
    if (poll (&pfd, 1, 0) == 0) {
      errno = EAGAIN;
      return -1;
    }
    return write (s->wfd, p, MIN (len, (size_t) PIPE_BUF));
  default:
    return write (s->wfd, p, len);
  }
}

static gboolean
fd_cancelled (fd_sink *s, GError **error)
{
  if (s->base.cancel == NULL || !*s->base.cancel)
    return FALSE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED,
               "interrupted by a signal while writing the stream to %s", s->what);
  return TRUE;
}

static gboolean
fd_write (strm_sink *sink, const void *buf, size_t len, GError **error)
{
  fd_sink *s = (fd_sink *) sink;
  const char *p = buf;
  gint64 deadline;

  if (s->mode == FD_WRITE_UNKNOWN)
    fd_choose_mode (s);
  deadline = ova_deadline_in (sink->io_timeout);
  while (len > 0) {
    ssize_t r = fd_write_some (s, p, len);

    if (r > 0) {
      p += r;
      len -= r;
      deadline = ova_deadline_in (sink->io_timeout);
      continue;
    }
    if (r == 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "writing to %s: no progress", s->what);
      return FALSE;
    }
    if (errno == EINTR) {
      if (fd_cancelled (s, error))
        return FALSE;
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return fd_error (s, errno, "writing to", error);

    switch (ova_wait_fd (s->wfd, POLLOUT, deadline, sink->cancel)) {
    case 0:
      g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                   "the reader of %s took nothing for %u s (io_timeout)",
                   s->what, sink->io_timeout);
      return FALSE;
    case -1:
      if (fd_cancelled (s, error))
        return FALSE;
      return fd_error (s, errno, "waiting to write to", error);
    default:
      break;
    }
  }
  return TRUE;
}

/* A stream written to a regular file is only complete once it is on disk;
 * a full NFS or quota may only show here. */
static gboolean
fd_close (strm_sink *sink, GError **error)
{
  fd_sink *s = (fd_sink *) sink;
  struct stat st;

  if (fstat (s->fd, &st) == 0 && S_ISREG (st.st_mode) &&
      fsync (s->fd) < 0 && errno != EINVAL && errno != EROFS)
    return fd_error (s, errno, "flushing", error);
  return TRUE;
}

static void
fd_free (strm_sink *sink)
{
  fd_sink *s = (fd_sink *) sink;

  if (s->own_wfd)
    close (s->wfd);
  g_free (s->what);
  g_free (s);
}

static const struct strm_sink_ops fd_ops = {
  .name = "fd",
  .write = fd_write,
  .close = fd_close,
  .free = fd_free,
};

strm_sink *
strm_sink_fd_new (int fd, const char *what)
{
  fd_sink *s = g_new0 (fd_sink, 1);

  s->base.ops = &fd_ops;
  s->fd = fd;
  s->wfd = fd;
  s->what = g_strdup (what);
  return &s->base;
}

void
strm_sink_set_io_limits (strm_sink *s, guint io_timeout, volatile sig_atomic_t *cancel)
{
  s->io_timeout = io_timeout;
  s->cancel = cancel;
}

void
strm_sink_free (strm_sink *s)
{
  if (s != NULL)
    s->ops->free (s);
}
