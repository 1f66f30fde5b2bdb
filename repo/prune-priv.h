/* ovagent: what repo/prune.c and repo/prune-journal.c share: the journal of
 * a disk's removal, as written step by step and as read back. */
#ifndef REPO_PRUNE_PRIV_H
#define REPO_PRUNE_PRIV_H

#include <glib.h>

/* The journal open for appending (fd -1: not open). */
typedef struct prune_journal {
  char *path;
  int fd;
} prune_journal;

/* A merged file an earlier step put in place of kept backup id's top:
 * its inode tells whether the rename happened; its size, virtual size and
 * digest go into the manifest. A raw full that took the data (raw_digest
 * not NULL) changed too. */
typedef struct prune_merged {
  char *id;
  guint64 ino, size, virtual_size;
  char *digest;
  guint64 raw_size;
  char *raw_digest;
} prune_merged;

/* What the journal on disk says: the merged files, and the names (ID or
 * ID/FILE) a step meant to delete once the manifest no longer lists them. */
typedef struct prune_journal_state {
  GPtrArray *merged;       /* merged*, the last one per id counts */
  GPtrArray *deletes;      /* char* */
} prune_journal_state;


void prune_journal_close (prune_journal *j);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (prune_journal, prune_journal_close)
/* Open (create) disk_dir's journal for appending; a new one is made durable
 * in its directory. */
gboolean prune_journal_open (prune_journal *j, const char *disk_dir, GError **error);
/* One line, on disk before the step it records is taken. */
gboolean prune_journal_step (prune_journal *j, GError **error, const char *fmt, ...)
  G_GNUC_PRINTF (3, 4);

void prune_journal_state_clear (prune_journal_state *js);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (prune_journal_state, prune_journal_state_clear)
/* Read and check the journal at path (a missing one is empty). */
gboolean prune_journal_read (const char *path, prune_journal_state *js, GError **error);
/* The last merged file recorded for kept backup id, or NULL. */
const prune_merged *prune_journal_merged (const prune_journal_state *js, const char *id);

#endif
