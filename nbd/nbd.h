/* ovagent: qemu-nbd processes on private Unix sockets (server.c), NBD exports
 * as copy sources (source-nbd.c: extents from base:allocation or a dirty
 * bitmap, reads on several connections) and as destinations (dest.c). */
#ifndef NBDR_NBD_H
#define NBDR_NBD_H

#include <glib.h>

#include "common/source.h"

typedef struct nbdr_server nbdr_server;

/* How nbdr_server_start serves the image. */
enum {
  NBDR_SERVER_WRITABLE = 1 << 0, /* read-write; zeroed ranges become holes */
  NBDR_SERVER_CACHED = 1 << 1,   /* through the page cache even where O_DIRECT
                                  * works, and no zero detection: for files the
                                  * caller fsyncs itself and whose writer sends
                                  * zeros as zero requests (the repository) */
};

/* Start `qemu-nbd` on an image given as its layers (stor_layer*, top
 * first: the image and its backing chain, each with its format; qemu opens
 * exactly these, see storage/qemu-img.h) with a socket in a private
 * directory under run_dir; flags NBDR_SERVER_*, 0 for read-only with
 * O_DIRECT where the file system has it; bitmaps: NULL-terminated names to
 * export (-B), may be NULL; keep_fd: a descriptor qemu-nbd inherits when a
 * layer is "/dev/fd/N" (the file this process created), else -1. Returns
 * once the socket accepts connections. The process is killed by
 * nbdr_server_stop and, should we die, by PR_SET_PDEATHSIG. */
nbdr_server *nbdr_server_start (GPtrArray *layers, unsigned flags,
                                const char *const *bitmaps, int keep_fd,
                                const char *run_dir, GError **error);
const char *nbdr_server_uri (const nbdr_server *srv);   /* nbd+unix:///?socket=... */
/* Stop the process, wait for it, remove the socket and its directory. */
void nbdr_server_stop (nbdr_server *srv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (nbdr_server, nbdr_server_stop)

#define NBDR_DEFAULT_CONNECTIONS 4
#define NBDR_MAX_CONNECTIONS 16

/* A source over an NBD export: extents from the meta context (NULL:
 * "base:allocation", holes and zeros become ZERO/HOLE extents; or
 * "qemu:dirty-bitmap:NAME", which must be served: clean ranges become
 * HOLE, dirty DATA). With the asynchronous requests of common/source.h on
 * connections connections (0: NBDR_DEFAULT_CONNECTIONS when the export
 * allows multi-conn, else 1; more than 1 only then; at most
 * NBDR_MAX_CONNECTIONS), and max_request the server's limit. */
ova_source *nbdr_source_open (const char *uri, const char *context,
                              guint connections, GError **error);

/* A destination over a writable NBD export. */
typedef struct nbdr_dest nbdr_dest;
nbdr_dest *nbdr_dest_open (const char *uri, GError **error);
guint64 nbdr_dest_size (const nbdr_dest *d);
gboolean nbdr_dest_pwrite (nbdr_dest *d, const void *buf, size_t len,
                           guint64 offset, GError **error);
gboolean nbdr_dest_zero (nbdr_dest *d, guint64 offset, guint64 len, GError **error);
/* Writes and zeroing are asynchronous (the bytes are copied, up to 8
 * requests stay in flight): a failure is reported by a later call or by
 * close. Flush and disconnect; FALSE if anything failed. */
gboolean nbdr_dest_close (nbdr_dest *d, GError **error);
void nbdr_dest_free (nbdr_dest *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (nbdr_dest, nbdr_dest_free)

#endif
