/* ovagent test bed: an LD_PRELOAD library for the sanlock daemon where root
 * lacks CAP_SYS_RESOURCE: setrlimit refused with EPERM is taken as done. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/resource.h>

/* sanlock raises RLIMIT_MEMLOCK and RLIMIT_RTPRIO at start and exits when
 * it cannot; the test bed runs it without mlockall or real-time priority. */
int
setrlimit (__rlimit_resource_t resource, const struct rlimit *rlim)
{
  int (*real) (__rlimit_resource_t, const struct rlimit *) =
    (int (*) (__rlimit_resource_t, const struct rlimit *)) dlsym (RTLD_NEXT, "setrlimit");

  if (real == NULL) {
    errno = ENOSYS;
    return -1;
  }
  if (real (resource, rlim) == 0)
    return 0;
  return errno == EPERM ? 0 : -1;
}
