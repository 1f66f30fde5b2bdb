/* ovagent: the backup repository on the target (docs/repository.md): opening
 * and locking it, receiving a stream into it, verifying it, resolving a backup. */
#ifndef REPO_REPO_H
#define REPO_REPO_H

#include <signal.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "repo/manifest.h"

#define REPO_MARKER "ovagent-repo.json"
#define REPO_MARKER_FORMAT "ovagent-repository"
#define REPO_MARKER_VERSION 1
#define REPO_LOCK "lock"
#define REPO_LOCKS "locks"
#define REPO_DISKS "disks"
#define REPO_INCOMING_PREFIX ".incoming-"
/* R/disks/IMG/.unlisted/TIME/: what receive found in a disk directory that
 * the manifest does not list (docs/repository.md §3). */
#define REPO_UNLISTED ".unlisted"

/* How R/lock is held (docs/repository.md §4). */
typedef enum {
  REPO_LOCK_SHARED = 0,     /* receive (with its disks' locks), verify, restore */
  REPO_LOCK_EXCLUSIVE,      /* commands that rewrite backups (prune, forget):
                             * no receive, verify or restore runs meanwhile */
} repo_lock_mode;

typedef struct repo {
  char *dir;                /* absolute, canonical */
  int lock_fd;
  repo_lock_mode lock;
  char *run_dir;            /* for qemu-nbd sockets (repo_set_run_dir) */
} repo;

/* Open the repository at dir and take R/lock (without waiting: a held
 * lock is OVA_ERROR_BUSY saying who holds it). With create (receive), a
 * missing dir is created (0700, parents too) and an empty dir made a
 * repository. A path that is not a directory, or a non-empty directory
 * without ovagent-repo.json, is OVA_ERROR_USAGE; a missing one without
 * create OVA_ERROR_NOT_FOUND. */
repo *repo_open (const char *dir, gboolean create, repo_lock_mode lock,
                 GError **error);
void repo_close (repo *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (repo, repo_close)

/* The exclusive locks of the disks a receive writes: R/locks/IMG, made
 * (0600, in R/locks, 0700) as needed and removed again on release, taken
 * in sorted order without waiting. disks holds checked lower-case image
 * UUIDs (char *). A disk another run writes is OVA_ERROR_BUSY naming the
 * disk and the repository. r must be open with create. */
typedef struct repo_disk_locks repo_disk_locks;
repo_disk_locks *repo_lock_disks (repo *r, GPtrArray *disks, GError **error);
void repo_disk_locks_release (repo_disk_locks *l);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (repo_disk_locks, repo_disk_locks_release)

/* Where receive puts the sockets of the qemu-nbd it runs to write
 * changed-block backups: run_dir if it is a writable directory, else the
 * temporary directory (also when never set). */
void repo_set_run_dir (repo *r, const char *run_dir);

/* R/disks/IMG for a checked (lower-case) image UUID. */
char *repo_disk_dir (const repo *r, const char *disk);

/* The disks of r: the names in R/disks that are lower-case image UUIDs
 * (receive makes no others; anything else there is skipped), sorted. None
 * (an empty array) when R/disks is missing. */
GPtrArray *repo_list_disks (const repo *r, GError **error);

/* The file digest stored in manifests (docs/repository.md §2): the file
 * in blocks of REPO_DIGEST_BLOCK bytes b0, b1, ... bn (the last may be
 * short, holes read as zeros, an empty file has none), and XXH3-128 over
 * the canonical 16-byte XXH3-128 of b1 ... bn and then of b0. Block 0
 * comes last because it is the one `qemu-img rebase -u` rewrites: receive
 * hashes blocks 1..n as they arrive and reads only block 0 back. */
#define REPO_DIGEST_BLOCK (2 * 1024 * 1024)

typedef struct repo_digest repo_digest;

repo_digest *repo_digest_new (void);
void repo_digest_free (repo_digest *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (repo_digest, repo_digest_free)

/* The next len bytes of the file, in order from offset 0. Bytes of block 0
 * are only counted: repo_digest_finish takes block 0 as it is in the end. */
void repo_digest_data (repo_digest *d, const void *buf, size_t len);
/* The next len bytes are zeros: whole blocks cost one precomputed hash. */
void repo_digest_zeros (repo_digest *d, guint64 len);
/* Bytes fed so far: the offset the next bytes are at. */
guint64 repo_digest_length (const repo_digest *d);
/* The digest ("xxh3-128-blocks-2m:HEX"), given the file's first
 * MIN(length, REPO_DIGEST_BLOCK) bytes as they are now. */
char *repo_digest_finish (repo_digest *d, const void *block0, size_t len);

/* The digest of a whole file, read once (holes found with SEEK_DATA are
 * not read). Also gives the file size. Stops with OVA_ERROR_INTERRUPTED
 * if *cancel becomes set (cancel may be NULL). */
char *repo_file_digest (const char *path, guint64 *size,
                        volatile sig_atomic_t *cancel, GError **error);

/* What `qemu-img info` says about one qcow2 file opened alone (no backing
 * file opened). */
typedef struct repo_qcow2_info {
  guint64 virtual_size;
  char *backing;            /* NULL if none */
  char *backing_format;     /* NULL if none */
  gboolean data_file;       /* has an external data file */
} repo_qcow2_info;
void repo_qcow2_info_clear (repo_qcow2_info *info);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (repo_qcow2_info, repo_qcow2_info_clear)
gboolean repo_qcow2_probe (const char *path, repo_qcow2_info *info, GError **error);

/* ---- receive ---- */

/* One disk of a changed-block ("backup" mode) stream, as committed. */
typedef struct repo_receive_disk {
  char *disk;
  char *backup_id;
  repo_kind kind;
  char *parent;             /* the backup it is backed by, or NULL */
} repo_receive_disk;
void repo_receive_disk_free (repo_receive_disk *d);

typedef struct repo_receive_result {
  char *backup_id;
  char *disk;               /* a backup stream: its first disk */
  repo_kind kind;           /* a backup stream: its first disk's */
  GPtrArray *volumes;       /* char* UUIDs, base first (a backup stream: the disks) */
  GPtrArray *disks;         /* repo_receive_disk*, for a backup stream; else NULL */
  guint64 bytes_received;
  guint64 data_bytes;
  double seconds;
} repo_receive_result;
void repo_receive_result_clear (repo_receive_result *res);

typedef struct repo_receive_opts {
  const char *run_dir;             /* qemu-nbd sockets (repo_set_run_dir); may be NULL */
  guint io_timeout;                /* seconds the sender may send nothing; 0: no limit */
  volatile sig_atomic_t *cancel;   /* set by a signal handler; may be NULL */
} repo_receive_opts;

/* Read a stream from fd and commit it as a new backup to the repository at
 * repo_dir: a chain export (mode "chain") as one backup of its disk, a
 * changed-block backup (mode "backup") as one backup of each of its disks,
 * all under one id. Its META is read and checked first; only then is the
 * repository opened (made if missing) with R/lock shared and the disks it
 * writes locked (repo_lock_disks). On any failure nothing is committed and
 * nothing new is left behind. *cancel set stops the run at the next frame
 * or read; a sender that sends nothing for io_timeout seconds is
 * OVA_ERROR_TRANSPORT naming the limit. */
gboolean repo_receive (const char *repo_dir, int fd, const repo_receive_opts *opts,
                       repo_receive_result *res, GError **error);

/* Check the META of a changed-block ("backup" mode) stream as the stream
 * decoder and receive do before receive looks at the repository: json (len
 * bytes, not NUL-terminated) must pass strm_meta_volumes_parse and be an
 * object whose vm, job, checkpoint and volumes (the disks) are usable.
 * mode is not looked at: receive reads it to choose this check. Touches no
 * file. Fails with OVA_ERROR_INTEGRITY. */
gboolean repo_backup_meta_check (const char *json, gsize len, GError **error);

/* ---- verify ---- */

typedef struct repo_verify_result {
  guint disks;
  guint backups;
  guint files;
  guint64 bytes;
} repo_verify_result;

/* Re-read the files of every backup (of disk, of backup_id of disk; both
 * may be NULL) and compare size, digest and backing string with the
 * manifest. A mismatch or a missing file is OVA_ERROR_INTEGRITY naming
 * the files; an unknown disk or backup OVA_ERROR_NOT_FOUND. */
gboolean repo_verify (repo *r, const char *disk, const char *backup_id,
                      volatile sig_atomic_t *cancel, repo_verify_result *res,
                      GError **error);

/* ---- restore ---- */

/* The files qemu opens for backup b of the disk in disk_dir (m its
 * manifest): b's volumes and those of the backups it is backed by, top
 * first, each as a stor_layer (storage/qemu-img.h) with its absolute path
 * and the format the manifest gives. A file missing or not a regular file
 * is OVA_ERROR_INTEGRITY. */
GPtrArray *repo_backup_layers (const char *disk_dir, const repo_manifest *m,
                               const repo_backup *b, GError **error);

/* A backup of disk (the latest if backup_id is NULL) in the open
 * repository r, for reading: its layers (repo_backup_layers), the
 * guest-visible size and the backup id. Keep r open (its lock held) while
 * the files are read. Unknown disk or backup: OVA_ERROR_NOT_FOUND. */
gboolean repo_resolve (repo *r, const char *disk, const char *backup_id,
                       GPtrArray **layers, guint64 *virtual_size, char **resolved_id,
                       GError **error);

#endif
