/* ovagent: the source of a copy: something with a size that yields extents
 * (data, zero, hole) and reads bytes. One file per kind: volume files and
 * LVs (storage/source-file.c), NBD exports (nbd/source-nbd.c). */
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

struct ova_source_ops {
  const char *name;
  /* The extent starting at offset, at most max_len long (callers ask per
   * work range, never for the whole source at once). offset < size. */
  gboolean (*extent) (ova_source *s, guint64 offset, guint64 max_len,
                      ova_extent *out, GError **error);
  /* Read exactly len bytes at offset (offset + len <= size). */
  gboolean (*pread) (ova_source *s, void *buf, size_t len, guint64 offset,
                     GError **error);
  void (*free) (ova_source *s);
};

struct ova_source {
  const struct ova_source_ops *ops;
  guint64 size;          /* bytes to copy: [0, size) */
  char *name;            /* for messages: a path or URI */
};

static inline void
ova_source_free (ova_source *s)
{
  if (s)
    s->ops->free (s);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ova_source, ova_source_free)

#endif
