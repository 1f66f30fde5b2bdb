/* ovagent tests: make streams a sending host could send, through the real encoder
 * and decoder: another META over the frames of a stream, or volumes of zeros. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "stream/stream.h"

/*
 *   stream-edit meta IN               print the META of stream IN
 *   stream-edit remeta IN META OUT    IN's volumes under the META in file META
 *                                     (which must announce the same volumes)
 *   stream-edit zeros META OUT        META and each volume it announces, all zeros
 *
 * Every hash and digest is computed anew, so the result is a valid stream.
 */

static int
open_out (const char *path)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

  if (fd < 0)
    g_printerr ("cannot create %s: %s\n", path, g_strerror (errno));
  return fd;
}

static char *
read_meta_file (const char *path)
{
  g_autoptr(GError) err = NULL;
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, &err))
    g_printerr ("%s\n", err->message);
  else
    g_strchomp (text);
  return text;
}

/* Copy the frames after META from dec to e. */
static gboolean
copy_frames (strm_decoder *dec, strm_encoder *e, GError **error)
{
  for (;;) {
    strm_frame f;

    if (!strm_decoder_next (dec, &f, error))
      return FALSE;
    switch (f.type) {
    case STRM_FRAME_BEGIN:
      if (!strm_encoder_begin (e, f.uuid, f.size, error))
        return FALSE;
      break;
    case STRM_FRAME_DATA:
      if (!strm_encoder_data (e, f.offset, f.data, f.length, error))
        return FALSE;
      break;
    case STRM_FRAME_ZERO:
      if (!strm_encoder_zero (e, f.offset, f.length, error))
        return FALSE;
      break;
    case STRM_FRAME_HOLE:
      if (!strm_encoder_hole (e, f.offset, f.length, error))
        return FALSE;
      break;
    case STRM_FRAME_END:
      if (!strm_encoder_end (e, error))
        return FALSE;
      break;
    case STRM_FRAME_STREAM_END:
      return strm_encoder_finish (e, error);
    default:
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY, "frame of type %u", f.type);
      return FALSE;
    }
  }
}

static gboolean
remeta (const char *in, const char *meta, int out_fd, GError **error)
{
  g_autoptr(strm_sink) sink = strm_sink_fd_new (out_fd, "output");
  g_autoptr(strm_encoder) e = strm_encoder_new (sink, 0);
  g_autoptr(strm_decoder) dec = NULL;
  int fd = open (in, O_RDONLY | O_CLOEXEC);
  strm_frame f;
  gboolean ok;

  if (fd < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND, "cannot open %s", in);
    return FALSE;
  }
  dec = strm_decoder_new_fd (fd);
  ok = strm_decoder_next (dec, &f, error) && strm_encoder_meta (e, meta, error) &&
    copy_frames (dec, e, error);
  close (fd);
  return ok;
}

static gboolean
zeros (const char *meta, int out_fd, GError **error)
{
  g_autoptr(strm_sink) sink = strm_sink_fd_new (out_fd, "output");
  g_autoptr(strm_encoder) e = strm_encoder_new (sink, 0);
  g_autoptr(GArray) vols = strm_meta_volumes_parse (meta, strlen (meta), error);

  if (vols == NULL || !strm_encoder_meta (e, meta, error))
    return FALSE;
  for (guint i = 0; i < vols->len; i++) {
    const strm_meta_volume *v = &g_array_index (vols, strm_meta_volume, i);

    if (!strm_encoder_begin (e, v->uuid, v->size, error) ||
        (v->size > 0 && !strm_encoder_zero (e, 0, v->size, error)) ||
        !strm_encoder_end (e, error))
      return FALSE;
  }
  return strm_encoder_finish (e, error);
}

static gboolean
print_meta (const char *in, GError **error)
{
  g_autoptr(strm_decoder) dec = NULL;
  int fd = open (in, O_RDONLY | O_CLOEXEC);
  strm_frame f;

  if (fd < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND, "cannot open %s", in);
    return FALSE;
  }
  dec = strm_decoder_new_fd (fd);
  if (!strm_decoder_next (dec, &f, error)) {
    close (fd);
    return FALSE;
  }
  printf ("%s\n", (const char *) f.data);
  close (fd);
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *meta = NULL;
  gboolean ok;
  int fd;

  if (argc == 3 && strcmp (argv[1], "meta") == 0)
    ok = print_meta (argv[2], &err);
  else if ((argc == 5 && strcmp (argv[1], "remeta") == 0) ||
           (argc == 4 && strcmp (argv[1], "zeros") == 0)) {
    meta = read_meta_file (argv[argc - 2]);
    if (meta == NULL || (fd = open_out (argv[argc - 1])) < 0)
      return 1;
    ok = argc == 5 ? remeta (argv[2], meta, fd, &err) : zeros (meta, fd, &err);
    if (close (fd) < 0)
      ok = FALSE;
  }
  else {
    g_printerr ("usage: stream-edit meta IN | remeta IN META OUT | zeros META OUT\n");
    return 2;
  }
  if (!ok) {
    g_printerr ("stream-edit: %s\n", err ? err->message : "failed");
    return 1;
  }
  return 0;
}
