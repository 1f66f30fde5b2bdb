/* ovagent: qemu-nbd processes on private Unix sockets, and NBD exports as
 * sources (read, extents from base:allocation or a dirty bitmap) and as
 * destinations (write, zero) through libnbd. */
#ifndef NBDR_NBD_H
#define NBDR_NBD_H

#include <glib.h>
#include <signal.h>

#include "common/source.h"

struct strm_encoder;   /* stream/stream.h */

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
/* Writes and zeroing are asynchronous (the bytes are copied, up to 8
 * requests stay in flight): a failure is reported by a later call or by
 * close. Flush and disconnect; FALSE if anything failed. */
gboolean nbdr_dest_close (nbdr_dest *d, GError **error);
void nbdr_dest_free (nbdr_dest *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (nbdr_dest, nbdr_dest_free)

/* ---- the fast reader: an export into a stream (nbd/reader.c) ---- */

typedef struct nbdr_read_opts {
  guint requests;       /* reads in flight over all connections (0: default) */
  guint request_size;   /* bytes per read (0: default), at most the
                         * server's limit and one DATA frame */
  guint connections;    /* 0: NBDR_DEFAULT_CONNECTIONS when the export allows
                         * multi-conn, else 1; more than 1 only then */
} nbdr_read_opts;

#define NBDR_DEFAULT_REQUESTS 16
#define NBDR_DEFAULT_REQUEST_SIZE (1u * 1024 * 1024)
#define NBDR_DEFAULT_CONNECTIONS 4
#define NBDR_MAX_REQUESTS 256
#define NBDR_MAX_CONNECTIONS 16

typedef struct nbdr_reader nbdr_reader;

/* Connect to uri (opts may be NULL) with the meta context (NULL:
 * "base:allocation"; or "qemu:dirty-bitmap:NAME", which must be served). */
nbdr_reader *nbdr_reader_open (const char *uri, const char *context,
                               const nbdr_read_opts *opts, GError **error);
guint64 nbdr_reader_size (const nbdr_reader *r);
/* Bytes the send read from the export (data extents, including blocks that
 * turned out to be zeros); valid once nbdr_reader_send returned. */
guint64 nbdr_reader_bytes_read (const nbdr_reader *r);
/* BEGIN(uuid, size), frames covering [0, size) in offset order, END.
 * Extents are asked per work range; holes (clean bitmap ranges) become
 * HOLE frames, zero extents ZERO frames, data is read asynchronously with
 * many requests in flight over all connections and blocks that read as
 * zeros go as ZERO frames. progress (may be NULL; a strm_progress_fn) gets
 * the bytes covered so far after each frame. Memory: requests x request_size. Fails with
 * OVA_ERROR_INTERRUPTED once *cancel (may be NULL) is set; on any failure no
 * request is left pending when it returns. Once only. */
gboolean nbdr_reader_send (nbdr_reader *r, struct strm_encoder *e, const char *uuid,
                           void (*progress) (void *opaque, guint64 done), void *opaque,
                           volatile sig_atomic_t *cancel, GError **error);
/* Disconnect. */
void nbdr_reader_free (nbdr_reader *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (nbdr_reader, nbdr_reader_free)

/* nbdr_reader_open, nbdr_reader_send, nbdr_reader_free. */
gboolean nbdr_send_export (struct strm_encoder *e, const char *uri, const char *context,
                           const char *uuid, const nbdr_read_opts *opts,
                           void (*progress) (void *opaque, guint64 done), void *opaque,
                           volatile sig_atomic_t *cancel, GError **error);

#endif
