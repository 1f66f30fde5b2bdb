/* ovagent: one answer to SIGINT, SIGTERM and SIGHUP for the commands that
 * move data: a flag their copy loops check, so that they clean up and exit. */
#ifndef OVA_CANCEL_H
#define OVA_CANCEL_H

#include <glib.h>
#include <signal.h>

/* Set by the handler; passed as the cancel flag of the copy functions. */
extern volatile sig_atomic_t ova_cancelled;

/* Catch SIGINT/SIGTERM/SIGHUP without SA_RESTART (a blocked read or write
 * returns and the loop sees the flag), and ignore SIGPIPE (a reader that
 * went away is an EPIPE error naming the sink, not a silent death). */
void ova_cancel_install (void);

/* A descriptor this run writes a stream to, or -1. The handler points it
 * at /dev/null, so that a write blocked on a reader that stopped reading
 * returns instead of retrying; the reader then sees the stream cut, which
 * it rejects. (A sink given ova_cancelled with strm_sink_set_io_limits
 * also stops waiting by itself: it writes a pipe through a descriptor of
 * its own, which this does not reach.) */
void ova_cancel_redirect (int fd);

/* After a command failed: when a signal came, say so before the error (a
 * failure it caused, EINTR or a cut pipe, reads oddly alone), unless the
 * error is already OVA_ERROR_INTERRUPTED. */
void ova_cancel_explain (GError **error);

#endif
