/* ovagent: progress of a long copy on stderr: a bar rewritten in place on a
 * terminal, or JSON lines a controller can parse (--progress). */
#ifndef OVA_PROGRESS_H
#define OVA_PROGRESS_H

#include <glib.h>

#include "agent/command.h"

typedef struct ova_progress_meter ova_progress_meter;

/* mode: OVA_PROGRESS_AUTO is a bar when stderr is a terminal, nothing
 * otherwise. label names what moves (a disk UUID); total in bytes.
 * Never NULL; with nothing to show every call does nothing. */
ova_progress_meter *ova_progress_new (ova_progress mode, const char *label,
                                      guint64 total);

/* done bytes so far; drawn at most ~10 times a second (bar) or once a
 * second (JSON). */
void ova_progress_update (ova_progress_meter *p, guint64 done);

/* A copy of several parts into one meter: each part's progress callback
 * (a strm_progress_fn, opaque the meter) reports the bytes of the part done;
 * ova_progress_next_part adds the finished part's size to what the parts
 * before it covered. */
void ova_progress_part_done (void *meter, guint64 done);
void ova_progress_next_part (ova_progress_meter *p, guint64 part_size);

/* The last state, drawn whatever the time: call once the copy succeeded. */
void ova_progress_finish (ova_progress_meter *p);

/* A bar left unfinished (the copy failed) ends its line, so the error
 * message that follows starts on its own. */
void ova_progress_free (ova_progress_meter *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ova_progress_meter, ova_progress_free)

#endif
