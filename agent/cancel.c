/* ovagent: the signal handling shared by export-chain, receive, verify,
 * restore and import (see cancel.h). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "agent/cancel.h"
#include "error.h"

volatile sig_atomic_t ova_cancelled;

static volatile sig_atomic_t redirect_fd = -1;
static int devnull_fd = -1;

static void
on_signal (int sig G_GNUC_UNUSED)
{
  int saved = errno;
  int fd = redirect_fd;

  ova_cancelled = 1;
  if (fd >= 0 && devnull_fd >= 0)
    (void) dup2 (devnull_fd, fd);
  errno = saved;
}

void
ova_cancel_install (void)
{
  struct sigaction sa = { .sa_handler = on_signal };
  struct sigaction ign = { .sa_handler = SIG_IGN };

  if (devnull_fd < 0)
    devnull_fd = open ("/dev/null", O_WRONLY | O_CLOEXEC);
  sigemptyset (&sa.sa_mask);
  sigemptyset (&ign.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  sigaction (SIGPIPE, &ign, NULL);
}

void
ova_cancel_redirect (int fd)
{
  redirect_fd = fd;
}

void
ova_cancel_explain (GError **error)
{
  if (ova_cancelled && error != NULL && *error != NULL &&
      !g_error_matches (*error, OVA_ERROR, OVA_ERROR_INTERRUPTED))
    g_prefix_error (error, "interrupted by a signal: ");
}
