/* ovagent: what the receive files share, not for callers outside repo/:
 * receive.c dispatches by mode to receive-chain.c and receive-backup.c, which
 * (with meta.c and prune.c) use receive-common.c. */
#ifndef REPO_RECEIVE_PRIV_H
#define REPO_RECEIVE_PRIV_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <signal.h>

#include "repo/repo.h"
#include "stream/dest.h"

/* Untrusted strings are quoted in messages up to this many bytes. */
#define QUOTE_MAX 80

/* The writeback of a file being received is started after every this many
 * bytes written: dirty pages stay bounded and the final fsync finds little
 * left to write. */
#define REPO_RX_WRITEBACK_STEP (32 * 1024 * 1024)

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

/* ---- receive-thread.c: work beside the stream, in threads that take no
 * signal ---- */

/* What a failed write means, in the words of the file's receiver: err is
 * an errno, what the step ("write", "write back"), offset where. */
typedef void (*repo_rx_write_error_fn) (void *opaque, int err, const char *what,
                                        guint64 offset, GError **error);

/* A thread that writes a file's data in stream order, feeds its digest and
 * starts its writeback, a few frames behind the decoder. A failure is
 * reported (through say) by the next call; the rest of the queue is then
 * dropped. Freeing it stops and joins the thread. */
typedef struct repo_rx_writer repo_rx_writer;

repo_rx_writer *repo_rx_writer_new (repo_rx_write_error_fn say, void *opaque,
                                    GError **error);
void repo_rx_writer_free (repo_rx_writer *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (repo_rx_writer, repo_rx_writer_free)
/* The file the next data goes to (the queue must be empty: drained). */
void repo_rx_writer_set_file (repo_rx_writer *w, int fd, repo_digest *digest,
                              const char *path);
/* len bytes at off (copied; a frame over the slot size is written here). */
gboolean repo_rx_writer_data (repo_rx_writer *w, const void *data, gsize len,
                              guint64 off, GError **error);
/* The next len bytes of the file are zeros: hashed, not written. */
gboolean repo_rx_writer_zeros (repo_rx_writer *w, guint64 len, GError **error);
/* Everything queued done. */
gboolean repo_rx_writer_drain (repo_rx_writer *w, GError **error);
/* Bytes written to files so far. */
guint64 repo_rx_writer_written (repo_rx_writer *w);

/* The digest of a finished file (repo_file_digest), then the file synced,
 * in a thread of its own while the next file is received. */
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
