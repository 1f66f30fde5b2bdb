/* ovagent tests: for the tests of copies into a stream: a progress callback
 * that checks, cancels or kills, and a stream file decoded back. */
#ifndef TEST_STREAM_CHECK_H
#define TEST_STREAM_CHECK_H

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "stream/stream.h"

typedef struct {
  GByteArray *content;
  GArray *frames;         /* strm_frame without data */
  strm_totals totals;
} decoded;

static inline void
decoded_clear (decoded *d)
{
  g_byte_array_unref (d->content);
  g_array_unref (d->frames);
}

static inline void
decode_file (const char *path, decoded *out)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  g_autoptr(strm_decoder) d = NULL;
  g_autoptr(GError) error = NULL;
  strm_frame fr;

  g_assert_cmpint (fd, >=, 0);
  d = strm_decoder_new_fd (fd);
  out->content = g_byte_array_new ();
  out->frames = g_array_new (FALSE, FALSE, sizeof (strm_frame));
  while (strm_decoder_next (d, &fr, &error)) {
    strm_frame copy = fr;

    copy.data = NULL;
    copy.uuid = NULL;
    g_array_append_val (out->frames, copy);
    if (fr.type == STRM_FRAME_BEGIN) {
      g_byte_array_set_size (out->content, fr.size);
      memset (out->content->data, 0, fr.size);
    }
    else if (fr.type == STRM_FRAME_DATA)
      memcpy (out->content->data + fr.offset, fr.data, fr.length);
    if (fr.type == STRM_FRAME_STREAM_END)
      break;
  }
  g_assert_no_error (error);
  g_assert_true (strm_decoder_complete (d));
  out->totals = *strm_decoder_totals (d);
  close (fd);
}

static inline void
assert_same (const decoded *d, const guint8 *want, gsize len)
{
  g_assert_cmpuint (d->content->len, ==, len);
  for (gsize i = 0; i < len; i += 4096)
    if (memcmp (d->content->data + i, want + i, MIN (4096, len - i)) != 0)
      g_error ("decoded content differs at block %" G_GSIZE_FORMAT, i);
}

/* What a test's progress callback saw, and what it does on the way. */
typedef struct {
  volatile sig_atomic_t *cancel;
  guint64 cancel_at;      /* set *cancel once this much is done (0: never) */
  GPid kill_pid;          /* SIGKILL it at the first progress (0: never) */
  guint64 last;
  guint calls;
} progress_state;

static inline void
on_progress (void *opaque, guint64 done)
{
  progress_state *s = opaque;

  g_assert_cmpuint (done, >, s->last);
  s->last = done;
  s->calls++;
  if (s->cancel_at > 0 && done >= s->cancel_at)
    *s->cancel = 1;
  if (s->kill_pid > 0) {
    kill (s->kill_pid, SIGKILL);
    s->kill_pid = 0;
    g_usleep (100 * 1000);
  }
}

#endif
