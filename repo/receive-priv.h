/* ovagent: what the receive files share, not for callers outside repo/:
 * receive.c dispatches by mode to receive-chain.c and receive-backup.c, which
 * (with meta.c and prune.c) use receive-common.c; receive-backup.c also
 * receive-digest.c. */
#ifndef REPO_RECEIVE_PRIV_H
#define REPO_RECEIVE_PRIV_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <signal.h>

#include "repo/repo.h"
#include "stream/dest.h"

/* Untrusted strings are quoted in messages up to this many bytes. */
#define QUOTE_MAX 80

/* ---- receive-common.c ---- */

/* The disk's directory ready for a new backup (under the disk's lock):
 * an interrupted run's .incoming-ID and manifest.json.tmp removed, any
 * other entry m does not list moved to .unlisted/TIME/ with a warning; or
 * the directory made (*made) and R/disks synced. */
gboolean repo_rx_open_disk_dir (const char *disk_dir, const repo_manifest *m,
                                gboolean *made, GError **error);
/* Remove name (a file or a backup directory) inside dir. */
gboolean repo_rx_remove_tree (const char *dir, const char *name, GError **error);
/* mkdir 0700; ENOSPC/EDQUOT are OVA_ERROR_NO_SPACE. */
gboolean repo_rx_make_dir (const char *path, GError **error);
gboolean repo_rx_fsync_path (const char *path, GError **error);
/* A UUID member of META (lower-cased; blank counts as null when nullable);
 * else OVA_ERROR_INTEGRITY saying where. */
gboolean repo_rx_member_uuid (JsonObject *o, const char *name, gboolean nullable,
                              char **out, const char *where, GError **error);
/* OVA_ERROR_INTEGRITY: the stream's metadata is not usable. */
void repo_rx_meta_error (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* ---- receive-digest.c ---- */

/* The digest of a finished file (repo_file_digest), read in a thread of its
 * own (which takes no signal) while the next file is received. */
typedef struct repo_rx_digest_job repo_rx_digest_job;

repo_rx_digest_job *repo_rx_digest_start (const char *path, GError **error);
/* Wait for it (passing on *cancel, which may be NULL): the digest and the
 * file's size, or its error. Frees j. */
char *repo_rx_digest_finish (repo_rx_digest_job *j, volatile sig_atomic_t *cancel,
                             guint64 *size, GError **error);
/* Stop it, wait for it, free it (j may be NULL). */
void repo_rx_digest_abandon (repo_rx_digest_job *j);

/* ---- receive-chain.c: a chain export ---- */

typedef struct repo_rx_chain repo_rx_chain;

/* The META of a "chain" stream (root: the parsed object, format, version
 * and mode checked), checked as receive does before it opens the
 * repository. */
repo_rx_chain *repo_rx_chain_new (JsonNode *meta, GError **error);
void repo_rx_chain_free (repo_rx_chain *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (repo_rx_chain, repo_rx_chain_free)
/* The rest of that stream after its META, from dec (reading in), under
 * its disk's lock: written and committed as one backup, or nothing. start
 * is g_get_monotonic_time () as the run began. */
gboolean repo_rx_chain_run (repo_rx_chain *c, repo *r, strm_decoder *dec,
                            const strm_input *in, GDateTime *now, gint64 start,
                            repo_receive_result *res, GError **error);

/* ---- receive-backup.c: a changed-block backup ---- */

typedef struct repo_rx_backup repo_rx_backup;

/* The META of a "backup" stream (root: the parsed object), checked as
 * receive does before it opens the repository: OVA_ERROR_INTEGRITY if it
 * is not usable. Holds a reference to meta. */
repo_rx_backup *repo_rx_backup_new (JsonNode *meta, GError **error);
void repo_rx_backup_free (repo_rx_backup *b);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (repo_rx_backup, repo_rx_backup_free)
/* The rest of that stream after its META: its disks' locks, then each
 * disk written and all committed, or none. */
gboolean repo_rx_backup_run (repo_rx_backup *b, repo *r, strm_decoder *dec,
                             const strm_input *in, GDateTime *now,
                             repo_receive_result *res, GError **error);

#endif
