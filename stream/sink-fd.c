/* ovagent: the sink that writes a stream to a file descriptor (stdout, a pipe
 * or a file), with write errors mapped to transport and no-space errors. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "stream/stream.h"

typedef struct {
  strm_sink base;
  int fd;
  char *what;     /* for messages: "standard output", a path */
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

static gboolean
fd_write (strm_sink *sink, const void *buf, size_t len, GError **error)
{
  fd_sink *s = (fd_sink *) sink;
  const char *p = buf;

  while (len > 0) {
    ssize_t r = write (s->fd, p, len);

    if (r < 0) {
      if (errno == EINTR)
        continue;
      /* An inherited non-blocking descriptor: wait until it drains. */
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        struct pollfd pfd = { .fd = s->fd, .events = POLLOUT };

        if (poll (&pfd, 1, -1) < 0 && errno != EINTR)
          return fd_error (s, errno, "waiting to write to", error);
        continue;
      }
      return fd_error (s, errno, "writing to", error);
    }
    if (r == 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "writing to %s: no progress", s->what);
      return FALSE;
    }
    p += r;
    len -= r;
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
  s->what = g_strdup (what);
  return &s->base;
}

void
strm_sink_free (strm_sink *s)
{
  if (s != NULL)
    s->ops->free (s);
}
