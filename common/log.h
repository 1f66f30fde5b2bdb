/* ovagent: logging to stderr (and syslog when enabled), one line per message.
 * Levels follow syslog; the threshold comes from --log-level/--verbose/--quiet. */
#ifndef OVA_LOG_H
#define OVA_LOG_H

#include <glib.h>
#include <syslog.h>

/* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG. */
void ova_log_init (const char *progname, int threshold, gboolean use_syslog);
int ova_log_threshold (void);

/* Parse "error|warning|notice|info|debug"; -1 if unknown. */
int ova_log_level_parse (const char *name);

void ova_log (int level, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

#define ova_error(...) ova_log (LOG_ERR, __VA_ARGS__)
#define ova_warn(...)  ova_log (LOG_WARNING, __VA_ARGS__)
#define ova_info(...)  ova_log (LOG_INFO, __VA_ARGS__)
#define ova_debug(...) ova_log (LOG_DEBUG, __VA_ARGS__)

#endif
