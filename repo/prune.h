/* ovagent: retention in a repository: which backups keep rules keep, and
 * removing backups by merging their data into the backups built on them. */
#ifndef REPO_PRUNE_H
#define REPO_PRUNE_H

#include <signal.h>

#include <glib.h>

#include "repo/repo.h"

/* R/disks/IMG/prune.journal: each step of a removal, written (and synced)
 * before it is taken; it exists only while a removal is unfinished. */
#define REPO_PRUNE_JOURNAL "prune.journal"

/* The text of a prune journal read as a removal reads it (it may have
 * been edited): OVA_ERROR_INTEGRITY naming a line that is not one ovagent
 * writes. */
gboolean repo_prune_journal_check (const char *text, gsize len, GError **error);

/* Keep rules (docs/repository.md §7.1). 0 (or within_seconds 0): the rule
 * is not given. */
typedef struct repo_keep_rules {
  guint last;
  gint64 within_seconds;
  guint hourly, daily, weekly, monthly, yearly;
} repo_keep_rules;

/* "36h", "7d", "2w", "6m" (31 days each), "1y" (365 days): seconds, or
 * FALSE if text is not such a duration (1 to 100000 units). */
gboolean repo_parse_duration (const char *text, gint64 *seconds);

/* What happens to one backup of a disk. */
typedef struct repo_prune_item {
  char *id;
  char *time;
  gboolean keep;
  char *reason;        /* why kept ("latest", "last 3", "daily 2026-11-22",
                        * "within 7d", "needed by A and B", "named") or
                        * removed ("no rule keeps it", "forget"); and, for a
                        * removed one, how ("merged into ID", "deleted") */
  char *merged_into;   /* a removed backup whose data moves into this kept one */
} repo_prune_item;
void repo_prune_item_free (repo_prune_item *it);

/* The plan for one disk: items oldest first (as the manifest lists them). */
typedef struct repo_prune_plan {
  char *disk;
  GPtrArray *items;    /* repo_prune_item* */
  guint removed;
} repo_prune_plan;
void repo_prune_plan_free (repo_prune_plan *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (repo_prune_plan, repo_prune_plan_free)

/* Which backups of m the rules keep (forget: NULL rules and the one id
 * forget_id removed, all others kept). The latest backup is always kept;
 * a backup that two kept backups are built on (a full under several kept
 * differentials), or that is larger than the kept backup built on it, is
 * kept too, with that reason. Backups a removal left marked "removing"
 * stay removed. forget_id naming the latest or an unknown backup is
 * OVA_ERROR_USAGE / OVA_ERROR_NOT_FOUND. */
repo_prune_plan *repo_prune_plan_new (const repo_manifest *m, const repo_keep_rules *rules,
                                      const char *forget_id, GError **error);

typedef struct repo_prune_result {
  guint removed;           /* backups no longer listed */
  guint merges;            /* kept backups that took the data of removed ones */
  guint64 freed;           /* bytes of storage the disk directories no longer use */
  guint64 merged_bytes;    /* bytes of data the merges wrote */
} repo_prune_result;

/* Carry out plan on its disk in r (held exclusively): the removed backups
 * are marked "removing" in the manifest, then each run of removed backups
 * under a kept one is merged into it (qemu-img commit into the oldest
 * removed one's top, which then takes the kept backup's place by rename),
 * the rest deleted, and the manifest committed without them. Every kept
 * backup reads the same bytes throughout. Accumulates into res. */
gboolean repo_prune_apply (repo *r, const repo_prune_plan *plan,
                           volatile sig_atomic_t *cancel, repo_prune_result *res,
                           GError **error);

/* Finish what an interrupted removal left in the disk directory: every
 * merge it started (merges = TRUE, under an exclusive lock), or only the
 * steps after a merged file took its place (merges = FALSE: what a reader
 * needs before it can trust the manifest; a merge not yet in place leaves
 * the disk consistent, its backups marked "removing"). Nothing to do: TRUE
 * at once. */
gboolean repo_prune_finish (repo *r, const char *disk, gboolean merges,
                            volatile sig_atomic_t *cancel, repo_prune_result *res,
                            GError **error);

/* For readers (receive, verify, restore) holding R/lock shared: if disk
 * has an unfinished removal whose merged file is already in place, take
 * R/lock exclusively for a moment and finish its last steps; else nothing.
 * OVA_ERROR_BUSY when R is in use by others meanwhile. */
gboolean repo_prune_settle (repo *r, const char *disk, GError **error);

#endif
