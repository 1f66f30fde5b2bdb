/* ovagent: logging to stderr and, when enabled, syslog; a syslog socket of its
 * own for audit lines. Messages go out whole, in one write, so parallel runs
 * do not interleave. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

static const char *log_prog = "ovagent";
static int log_threshold = LOG_WARNING;
static gboolean log_syslog;

void
ova_log_init (const char *progname, int threshold, gboolean use_syslog)
{
  log_prog = progname;
  log_threshold = threshold;
  log_syslog = use_syslog;
  if (use_syslog)
    openlog (progname, LOG_PID, LOG_DAEMON);
}

int
ova_log_threshold (void)
{
  return log_threshold;
}

int
ova_log_level_parse (const char *name)
{
  static const struct { const char *name; int level; } levels[] = {
    { "error", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
    { "info", LOG_INFO }, { "debug", LOG_DEBUG },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (levels); i++)
    if (g_ascii_strcasecmp (name, levels[i].name) == 0)
      return levels[i].level;
  return -1;
}

void
ova_log (int level, const char *fmt, ...)
{
  static const char *const prefix[] = {
    [LOG_ERR] = "error", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
  };
  g_autofree char *msg = NULL;
  g_autofree char *line = NULL;
  va_list ap;

  if (level > log_threshold && !(log_syslog && level <= LOG_NOTICE))
    return;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);

  if (level <= log_threshold) {
    line = g_strdup_printf ("%s: %s: %s\n", log_prog,
                            level >= LOG_ERR && level <= LOG_DEBUG ? prefix[level] : "log",
                            msg);
    if (write (STDERR_FILENO, line, strlen (line)) < 0) {
      /* Nowhere left to report it. */
    }
  }
  if (log_syslog && level <= LOG_NOTICE)
    syslog (level, "%s", msg);
}

/* ---- a syslog socket of its own ---- */

struct ova_syslog {
  char *path;
  char *ident;
  int facility;
  int fd;
  int type;            /* SOCK_DGRAM, or SOCK_STREAM where the daemon wants it */
};

static int
syslog_connect_type (const char *path, int type)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (path) >= sizeof sa.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy (sa.sun_path, path, strlen (path) + 1);
  fd = socket (AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (connect (fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
    int saved = errno;

    close (fd);
    errno = saved;
    return -1;
  }
  return fd;
}

static gboolean
syslog_connect (ova_syslog *s, GError **error)
{
  if (s->fd >= 0)
    close (s->fd);
  s->type = SOCK_DGRAM;
  s->fd = syslog_connect_type (s->path, SOCK_DGRAM);
  if (s->fd < 0 && errno == EPROTOTYPE) {
    s->type = SOCK_STREAM;
    s->fd = syslog_connect_type (s->path, SOCK_STREAM);
  }
  if (s->fd < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot connect to the system log at %s: %s",
                 s->path, g_strerror (errno));
    return FALSE;
  }
  return TRUE;
}

ova_syslog *
ova_syslog_open (const char *path, const char *ident, int facility,
                 GError **error)
{
  g_autoptr(ova_syslog) s = g_new0 (ova_syslog, 1);

  s->path = g_strdup (path);
  s->ident = g_strdup (ident);
  s->facility = facility;
  s->fd = -1;
  if (!syslog_connect (s, error))
    return NULL;
  return g_steal_pointer (&s);
}

/* All of buf, waiting at most OVA_SYSLOG_WAIT_MS for room; -1 with errno. */
static int
syslog_write (ova_syslog *s, const char *buf, gsize len)
{
  gsize done = 0;

  while (done < len) {
    struct pollfd pfd = { .fd = s->fd, .events = POLLOUT };
    ssize_t n = send (s->fd, buf + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);

    if (n > 0) {
      done += n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      return -1;
    n = poll (&pfd, 1, OVA_SYSLOG_WAIT_MS);
    if (n == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    if (n < 0 && errno != EINTR)
      return -1;
  }
  return 0;
}

gboolean
ova_syslog_send (ova_syslog *s, int level, const char *msg, GError **error)
{
  char stamp[32] = "";
  time_t now = time (NULL);
  struct tm tm;
  g_autofree char *line = NULL;
  gsize len;

  if (localtime_r (&now, &tm) != NULL)
    strftime (stamp, sizeof stamp, "%h %e %T", &tm);
  line = g_strdup_printf ("<%d>%s %s[%d]: %s", s->facility | level, stamp,
                          s->ident, (int) getpid (), msg);
  /* A stream daemon reads NUL-terminated records, as syslog(3) sends them. */
  len = strlen (line) + (s->type == SOCK_STREAM ? 1 : 0);
  if (syslog_write (s, line, len) == 0)
    return TRUE;
  if (errno == ECONNREFUSED || errno == ENOTCONN || errno == EPIPE ||
      errno == ECONNRESET) {
    if (!syslog_connect (s, error))
      return FALSE;
    if (syslog_write (s, line, len) == 0)
      return TRUE;
  }
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
               "cannot send to the system log at %s: %s", s->path,
               g_strerror (errno));
  return FALSE;
}

void
ova_syslog_close (ova_syslog *s)
{
  if (s == NULL)
    return;
  if (s->fd >= 0)
    close (s->fd);
  g_free (s->path);
  g_free (s->ident);
  g_free (s);
}
