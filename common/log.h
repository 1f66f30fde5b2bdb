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

/* ---- a syslog socket of its own, for lines that must arrive ---- */

/* serve's audit lines go to a syslog socket it connects itself (default
 * /dev/log, datagram or stream as the daemon offers), so that a line that
 * cannot be sent is an error rather than silently lost as syslog(3) would
 * lose it. */
typedef struct ova_syslog ova_syslog;

/* Connect to the socket at path; lines carry ident[PID] and facility
 * (LOG_AUTH...). Fails with OVA_ERROR_INTERNAL naming path. */
ova_syslog *ova_syslog_open (const char *path, const char *ident, int facility,
                             GError **error);
/* One line at level (LOG_NOTICE...), as syslog(3) formats it; reconnects
 * once to a daemon that restarted; waits at most OVA_SYSLOG_WAIT_MS for a
 * full queue. */
#define OVA_SYSLOG_WAIT_MS 10000
gboolean ova_syslog_send (ova_syslog *s, int level, const char *msg,
                          GError **error);
void ova_syslog_close (ova_syslog *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ova_syslog, ova_syslog_close)

#define ova_error(...) ova_log (LOG_ERR, __VA_ARGS__)
#define ova_warn(...)  ova_log (LOG_WARNING, __VA_ARGS__)
#define ova_info(...)  ova_log (LOG_INFO, __VA_ARGS__)
#define ova_debug(...) ova_log (LOG_DEBUG, __VA_ARGS__)

#endif
