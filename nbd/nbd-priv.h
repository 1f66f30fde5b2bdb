/* ovagent: what the NBD source and destination share inside nbd/: connecting
 * a libnbd handle, the server's request size limit, libnbd errors as GErrors. */
#ifndef NBDR_NBD_PRIV_H
#define NBDR_NBD_PRIV_H

#include <glib.h>
#include <libnbd.h>

/* A handle connected to uri, with the meta context requested first (NULL:
 * none). Unaligned requests are left to the server (qemu handles them). */
struct nbd_handle *nbdr_connect (const char *uri, const char *context, GError **error);

/* The largest read or write the server accepts (32 MiB when it does not say). */
guint32 nbdr_max_request (struct nbd_handle *h);

/* Set error from libnbd's last error: "<what>: <libnbd message>";
 * OVA_ERROR_NO_SPACE for ENOSPC/EDQUOT, else OVA_ERROR_INTERNAL. */
void nbdr_set_libnbd_error (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

#endif
