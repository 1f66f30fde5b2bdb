/* ovagent: progress reports on stderr: a single-line bar redrawn with \r, or
 * one JSON object per line ({"progress":{…}}), rate-limited either way. */
#include <config.h>

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "json.h"
#include "util.h"
#include "agent/progress.h"

#define BAR_INTERVAL_US (G_USEC_PER_SEC / 10)
#define JSON_INTERVAL_US G_USEC_PER_SEC
#define DEFAULT_WIDTH 80
#define MAX_WIDTH 200
#define MIN_BAR 10
/* A label longer than this is cut in the bar (the JSON keeps it whole). */
#define BAR_LABEL_MAX 36

struct ova_progress_meter {
  ova_progress mode;      /* BAR, JSON or NONE once resolved */
  char *label;
  guint64 total;
  guint64 done;
  guint64 base;           /* bytes of the parts already copied */
  gint64 start_us;
  gint64 last_us;         /* last time drawn, 0 = never */
  gboolean drawn;         /* a bar line is on the screen, not ended */
  gboolean finished;
};

ova_progress_meter *
ova_progress_new (ova_progress mode, const char *label, guint64 total)
{
  ova_progress_meter *p = g_new0 (ova_progress_meter, 1);

  if (mode == OVA_PROGRESS_AUTO)
    mode = isatty (STDERR_FILENO) ? OVA_PROGRESS_BAR : OVA_PROGRESS_NONE;
  p->mode = mode;
  p->label = g_strdup (label ? label : "");
  p->total = total;
  p->start_us = g_get_monotonic_time ();
  return p;
}

static guint64
rate (const ova_progress_meter *p, gint64 now)
{
  gint64 elapsed = now - p->start_us;

  if (elapsed <= 0)
    return 0;
  return (guint64) ((double) p->done * G_USEC_PER_SEC / elapsed);
}

static guint
percent (const ova_progress_meter *p)
{
  if (p->total == 0)
    return 100;
  return (guint) ((double) MIN (p->done, p->total) * 100 / p->total);
}

static int
terminal_width (void)
{
  struct winsize ws;

  if (ioctl (STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return MIN (ws.ws_col, MAX_WIDTH);
  return DEFAULT_WIDTH;
}

/* "label  42% [#######.........] 1.2 GiB / 3.0 GiB  180.4 MiB/s", fitted
 * to the terminal: the bar shrinks first, then the label goes. */
static void
draw_bar (ova_progress_meter *p, gint64 now)
{
  g_autofree char *done = ova_format_size (p->done);
  g_autofree char *total = ova_format_size (p->total);
  g_autofree char *speed = ova_format_size (rate (p, now));
  g_autofree char *tail = NULL;
  g_autofree char *label = NULL;
  g_autoptr (GString) line = g_string_new ("\r");
  guint pct = percent (p);
  int width = terminal_width () - 1;   /* the last column would wrap */
  int bar;

  tail = g_strdup_printf (" %s / %s  %s/s", done, total, speed);
  if (strlen (p->label) > BAR_LABEL_MAX)
    label = g_strdup_printf ("%.*s…", BAR_LABEL_MAX - 1, p->label);
  else
    label = g_strdup (p->label);

  bar = width - (int) (strlen (label) + 1 + 5 + 2 + strlen (tail));
  if (bar < MIN_BAR) {
    g_clear_pointer (&label, g_free);
    label = g_strdup ("");
    bar = width - (int) (5 + 2 + strlen (tail));
  }
  if (*label)
    g_string_append_printf (line, "%s ", label);
  g_string_append_printf (line, "%3u%% ", pct);
  if (bar >= MIN_BAR) {
    int filled = (int) ((guint64) bar * pct / 100);

    g_string_append_c (line, '[');
    for (int i = 0; i < bar; i++)
      g_string_append_c (line, i < filled ? '#' : '.');
    g_string_append_c (line, ']');
  }
  g_string_append (line, tail);
  /* Clear what a longer previous line left behind. */
  g_string_append (line, "\033[K");
  fputs (line->str, stderr);
  fflush (stderr);
  p->drawn = TRUE;
}

static void
draw_json (ova_progress_meter *p, gint64 now)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "progress");
  json_builder_begin_object (b);
  ova_json_add_string (b, "label", p->label);
  ova_json_add_int (b, "done", p->done);
  ova_json_add_int (b, "total", p->total);
  ova_json_add_int (b, "percent", percent (p));
  ova_json_add_int (b, "bytes_per_second", rate (p, now));
  json_builder_end_object (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  text = json_to_string (root, FALSE);
  fprintf (stderr, "%s\n", text);
  fflush (stderr);
}

static void
draw (ova_progress_meter *p, gint64 now)
{
  p->last_us = now;
  if (p->mode == OVA_PROGRESS_BAR)
    draw_bar (p, now);
  else if (p->mode == OVA_PROGRESS_JSON)
    draw_json (p, now);
}

void
ova_progress_update (ova_progress_meter *p, guint64 done)
{
  gint64 now, interval;

  if (p == NULL || p->mode == OVA_PROGRESS_NONE || p->finished)
    return;
  p->done = done;
  now = g_get_monotonic_time ();
  interval = p->mode == OVA_PROGRESS_BAR ? BAR_INTERVAL_US : JSON_INTERVAL_US;
  if (p->last_us != 0 && now - p->last_us < interval)
    return;
  draw (p, now);
}

void
ova_progress_part_done (void *meter, guint64 done)
{
  ova_progress_meter *p = meter;

  if (p != NULL)
    ova_progress_update (p, p->base + done);
}

void
ova_progress_next_part (ova_progress_meter *p, guint64 part_size)
{
  if (p != NULL)
    p->base += part_size;
}

void
ova_progress_finish (ova_progress_meter *p)
{
  if (p == NULL || p->mode == OVA_PROGRESS_NONE || p->finished)
    return;
  p->done = MAX (p->done, p->total);
  draw (p, g_get_monotonic_time ());
  if (p->drawn)
    fputc ('\n', stderr);
  p->drawn = FALSE;
  p->finished = TRUE;
}

void
ova_progress_free (ova_progress_meter *p)
{
  if (p == NULL)
    return;
  if (p->drawn) {
    fputc ('\n', stderr);
    fflush (stderr);
  }
  g_free (p->label);
  g_free (p);
}
