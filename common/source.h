/* ovagent: the source of a copy: something with a size that yields extents
 * (data, zero, hole) and reads bytes, synchronously or on several
 * connections at once. One file per kind: volume files and LVs
 * (storage/source-file.c), NBD exports (nbd/source-nbd.c). */
#ifndef OVA_SOURCE_H
#define OVA_SOURCE_H

#include <glib.h>

typedef enum {
  OVA_EXTENT_DATA = 0,   /* must be read */
  OVA_EXTENT_ZERO,       /* reads as zeros, allocated or known zero */
  OVA_EXTENT_HOLE,       /* not allocated in the source: reads as zeros,
                          * and for a qcow2 layer means "look below" */
} ova_extent_kind;

typedef struct ova_extent {
  guint64 offset;
  guint64 length;
  ova_extent_kind kind;
} ova_extent;

typedef struct ova_source ova_source;

/* An asynchronous request finished: err is NULL, or the failure (owned by
 * the callee). Called from aio_poll with the connection busy: it must not
 * call the source back. */
typedef void (*ova_aio_done) (void *opaque, GError *err);

struct ova_source_ops {
  const char *name;
  /* The extent starting at offset, at most max_len long (callers ask per
   * work range, never for the whole source at once). offset < size. */
  gboolean (*extent) (ova_source *s, guint64 offset, guint64 max_len,
                      ova_extent *out, GError **error);
  /* Read exactly len bytes at offset (offset + len <= size). May be called
   * from several threads at once. */
  gboolean (*pread) (ova_source *s, void *buf, size_t len, guint64 offset,
                     GError **error);
  void (*free) (ova_source *s);

  /* Optional, all or none: asynchronous requests over s->connections
   * connections, for sources that keep many in flight themselves (NBD).
   * Called from one thread at a time; completions run inside aio_poll. */
  /* Start reading len bytes (at most max_request) at offset into buf on
   * connection conn. */
  gboolean (*aio_pread) (ova_source *s, guint conn, void *buf, size_t len,
                         guint64 offset, ova_aio_done done, void *opaque,
                         GError **error);
  /* Start asking the extents of [offset, offset + len): on success they
   * are appended to out, contiguous from offset, adjacent ones of one
   * kind merged, at least one; they may cover less than len. One at a time. */
  gboolean (*aio_extents) (ova_source *s, guint64 offset, guint64 len,
                           GArray *out, ova_aio_done done, void *opaque,
                           GError **error);
  /* Wait at most timeout_ms for a connection or wake_fd (drained here) to
   * be ready, and handle what is: this runs the completions. */
  gboolean (*aio_poll) (ova_source *s, int wake_fd, int timeout_ms,
                        GError **error);
  /* Requests started and not completed on connections still alive. */
  guint (*aio_in_flight) (ova_source *s);
  /* Drop every connection: nothing in flight lands in a buffer any more,
   * and the source takes no more requests. */
  void (*aio_abort) (ova_source *s);
};

struct ova_source {
  const struct ova_source_ops *ops;
  guint64 size;          /* bytes to copy: [0, size) */
  char *name;            /* for messages: a path or URI */
  guint connections;     /* with aio_*: connections to spread reads over */
  guint32 max_request;   /* the largest read it takes (0: no limit) */
};

static inline void
ova_source_free (ova_source *s)
{
  if (s)
    s->ops->free (s);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ova_source, ova_source_free)

#endif
