/* ovagent: qemu-nbd processes on private Unix sockets, and NBD exports as
 * sources (read, extents from base:allocation or a dirty bitmap) and as
 * destinations (write, zero) through libnbd. */
#ifndef NBDR_NBD_H
#define NBDR_NBD_H

#include <glib.h>

#include "common/source.h"

typedef struct nbdr_server nbdr_server;

/* Start `qemu-nbd` on image (format "qcow2" or "raw") with a socket in a
 * private directory under run_dir; read-only unless writable; bitmaps:
 * NULL-terminated names to export (-B), may be NULL. Returns once the
 * socket accepts connections. The process is killed by nbdr_server_stop
 * and, should we die, by PR_SET_PDEATHSIG. */
nbdr_server *nbdr_server_start (const char *image, const char *format,
                                gboolean writable, const char *const *bitmaps,
                                const char *run_dir, GError **error);
const char *nbdr_server_uri (const nbdr_server *srv);   /* nbd+unix:///?socket=... */
/* Stop the process, wait for it, remove the socket and its directory. */
void nbdr_server_stop (nbdr_server *srv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (nbdr_server, nbdr_server_stop)

/* A source over an NBD export: extents from the meta context (NULL:
 * "base:allocation", holes and zeros become ZERO/HOLE extents; or
 * "qemu:dirty-bitmap:NAME": clean ranges become HOLE, dirty DATA). */
ova_source *nbdr_source_open (const char *uri, const char *context, GError **error);

/* A destination over a writable NBD export. */
typedef struct nbdr_dest nbdr_dest;
nbdr_dest *nbdr_dest_open (const char *uri, GError **error);
guint64 nbdr_dest_size (const nbdr_dest *d);
gboolean nbdr_dest_pwrite (nbdr_dest *d, const void *buf, size_t len,
                           guint64 offset, GError **error);
gboolean nbdr_dest_zero (nbdr_dest *d, guint64 offset, guint64 len, GError **error);
/* Flush and disconnect; FALSE if the flush failed. */
gboolean nbdr_dest_close (nbdr_dest *d, GError **error);
void nbdr_dest_free (nbdr_dest *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (nbdr_dest, nbdr_dest_free)

#endif
