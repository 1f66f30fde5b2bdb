/* ovagent: logging to stderr and, when enabled, syslog.
 * Messages go out whole, in one write, so parallel runs do not interleave. */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
