/* ovagent: the destination of a restore stream (restore-dest.h): checks that
 * the stream holds the disk its META names, and writes it through NBD. */
#include <config.h>

#include "error.h"
#include "agent/restore-dest.h"

static gboolean
begin_disk (void *dest, const strm_frame *f, GError **error)
{
  restore_dest *rd = dest;

  if (rd->begins++ > 0 || f->uuid == NULL || g_ascii_strcasecmp (f->uuid, rd->disk) != 0 ||
      f->size != rd->capacity) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "the stream does not hold disk %s of %" G_GUINT64_FORMAT
                 " bytes as its metadata says", rd->disk, rd->capacity);
    return FALSE;
  }
  return TRUE;
}

static gboolean
write_data (void *dest, const strm_frame *f, GError **error)
{
  restore_dest *rd = dest;

  rd->wrote = TRUE;
  if (!nbdr_dest_pwrite (rd->nbd, f->data, f->length, f->offset, error))
    return FALSE;
  rd->data_bytes += f->length;
  return TRUE;
}

/* ZERO and HOLE alike: the target may hold old data (a preallocated LV);
 * a file this run created reads as zeros already. */
static gboolean
write_zeros (void *dest, const strm_frame *f, GError **error)
{
  restore_dest *rd = dest;

  if (!rd->fresh) {
    rd->wrote = TRUE;
    if (!nbdr_dest_zero (rd->nbd, f->offset, f->length, error))
      return FALSE;
  }
  rd->zero_bytes += f->length;
  return TRUE;
}

static gboolean
disk_came (void *dest, GError **error)
{
  restore_dest *rd = dest;

  if (rd->begins != 1) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "the stream ended without the disk's data");
    return FALSE;
  }
  return TRUE;
}

static gboolean
flush (void *dest, GError **error)
{
  restore_dest *rd = dest;

  return nbdr_dest_close (rd->nbd, error);
}

const strm_dest_ops restore_dest_ops = {
  .kind = "restore",
  .begin = begin_disk,
  .data = write_data,
  .zero = write_zeros,
  .hole = write_zeros,
  .stream_end = disk_came,
  .commit = flush,
};
