/* ovagent: a disk's manifest in the repository (R/disks/IMG/manifest.json):
 * the backups in order, their volumes and digests; parsing it as untrusted input. */
#ifndef REPO_MANIFEST_H
#define REPO_MANIFEST_H

#include <glib.h>
#include <json-glib/json-glib.h>

#define REPO_MANIFEST_NAME "manifest.json"
#define REPO_MANIFEST_FORMAT "ovagent-manifest"
#define REPO_MANIFEST_VERSION 1

/* "20261122T031000Z-3f2a9c": UTC time, '-', 6 lowercase hex digits. */
#define REPO_BACKUP_ID_LEN 23

/* A file digest as the manifest stores it: the algorithm's name, ':', and
 * the XXH3-128 result as 32 lowercase hex digits (docs/repository.md §2). */
#define REPO_DIGEST_ALGORITHM "xxh3-128-blocks-2m"
#define REPO_DIGEST_PREFIX REPO_DIGEST_ALGORITHM ":"
#define REPO_DIGEST_HEX_LEN 32
#define REPO_DIGEST_LEN (sizeof REPO_DIGEST_PREFIX - 1 + REPO_DIGEST_HEX_LEN)

/* A manifest is at most this long, read or written: with a few KiB of
 * stream metadata per backup, thousands of backups. */
#define REPO_MANIFEST_MAX (64 * 1024 * 1024)

/* What a backup's entry keeps of its stream's META (repo_meta_keep), as
 * compact JSON: so a manifest holds at least a hundred backups of the
 * largest kind (docs/repository.md §2.2). */
#define REPO_META_MAX (512 * 1024)

typedef enum {
  REPO_KIND_FULL = 0,
  REPO_KIND_INCREMENTAL,
  REPO_KIND_DIFFERENTIAL,   /* changed-block backups only */
} repo_kind;

/* "full", "incremental", "differential". */
const char *repo_kind_name (repo_kind kind);

typedef struct repo_volume {
  char *uuid;
  char *format;          /* "qcow2" | "raw" */
  char *file;            /* relative to the disk directory: "ID/VOL.qcow2" */
  guint64 size;          /* file length */
  guint64 virtual_size;
  char *digest;          /* "xxh3-128-blocks-2m:HEX" of the file as stored */
  char *backing;         /* backing string written in the file, relative to
                          * its directory; NULL for none (and for raw) */
} repo_volume;

typedef struct repo_backup {
  char *id;
  char *time;            /* ISO 8601 UTC, when it was committed */
  char *host;            /* the sending host (from the stream), may be NULL */
  char *domain;          /* storage domain UUID (from the stream), may be NULL */
  repo_kind kind;
  char *since;           /* chain incremental: the volume the first one is backed by */
  char *parent;          /* chain incremental: the backup holding `since`;
                          * changed-block backup: the backup it is backed by */
  /* Changed-block (CBT) backups only, all NULL for a chain export: the
   * checkpoint the backup created, the one it continues from (NULL for a
   * full) and the VM. Its one volume is the disk itself (uuid = image). */
  char *checkpoint;
  char *from_checkpoint;
  char *vm;
  GPtrArray *volumes;    /* repo_volume*, base first */
  /* Marked by a prune or forget that is removing it (docs/repository.md
   * §7): no longer a point in time, its files kept, and possibly being
   * written, until the backup built on it has taken its data. */
  gboolean removing;
  JsonNode *meta;        /* what is kept of the stream's META (repo_meta_keep);
                          * older manifests may hold it whole */
} repo_backup;

typedef struct repo_manifest {
  char *disk;            /* image UUID, lower case */
  GPtrArray *backups;    /* repo_backup*, in commit order */
} repo_manifest;

/* A changed-block backup (it has a checkpoint), not a chain export. */
#define repo_backup_is_cbt(b) ((b)->checkpoint != NULL)

/* A volume's entry as it will be written once its file is finished, to
 * measure a manifest before the file exists: its digest a placeholder of
 * the same length. Takes backing. */
repo_volume *repo_volume_new_draft (const char *id, const char *uuid, const char *format,
                                    guint64 size, guint64 virtual_size, char *backing);

void repo_volume_free (repo_volume *v);
void repo_backup_free (repo_backup *b);
void repo_manifest_free (repo_manifest *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (repo_volume, repo_volume_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (repo_backup, repo_backup_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (repo_manifest, repo_manifest_free)

repo_backup *repo_backup_new (void);
repo_manifest *repo_manifest_new (const char *disk);

gboolean repo_backup_id_is_valid (const char *id);
/* REPO_DIGEST_PREFIX and REPO_DIGEST_HEX_LEN lowercase hex digits. */
gboolean repo_digest_text_is_valid (const char *digest);
/* A new backup id for the time now (UTC) with a random suffix. */
char *repo_backup_id_new (GDateTime *now);

/* "qcow2" → ".qcow2", "raw" → ".raw"; NULL for anything else. */
const char *repo_format_ext (const char *format);
/* The file name of a volume inside its backup directory: "VOL.qcow2". */
char *repo_volume_basename (const char *vol, const char *format);
/* The backing string the volume at index i of b must carry, given the
 * backup before it (NULL for a full): NULL for none. */
char *repo_expected_backing (const repo_backup *b, guint i,
                             const repo_backup *parent);

/* Parse and check a manifest. Everything is checked before any path is
 * built from it: ids, UUIDs, file names (exactly "ID/VOL.ext"), backing
 * strings (exactly what the chain implies), digests, the chain of
 * incrementals, and for changed-block backups the checkpoints and the
 * backup each one is backed by. what names the source in messages. OVA_ERROR_INTEGRITY if
 * anything is off. */
repo_manifest *repo_manifest_parse (const char *disk, const char *text, gsize len,
                                    const char *what, GError **error);
char *repo_manifest_to_json (const repo_manifest *m);

/* What a manifest keeps of a stream's META (an object): the members
 * docs/repository.md §2.2 lists for its mode, each checked against its
 * bound; for a changed-block backup (disk not NULL) only the entry of disk
 * in "volumes". Other members are dropped. A kept member of another type
 * or over its bound, or a result longer than REPO_META_MAX as compact
 * JSON, is OVA_ERROR_INTEGRITY naming it. */
JsonNode *repo_meta_keep (JsonNode *meta, const char *disk, GError **error);

/* Load disk_dir/manifest.json; a missing file gives an empty manifest when
 * missing_ok, else OVA_ERROR_NOT_FOUND. */
repo_manifest *repo_manifest_load (const char *disk_dir, const char *disk,
                                   gboolean missing_ok, GError **error);
/* Whether m, with b added when b is not NULL, can be written: its text
 * within REPO_MANIFEST_MAX. Else OVA_ERROR_INTEGRITY: "the manifest of disk
 * IMG would grow to N bytes, over the limit of M; ...". */
gboolean repo_manifest_check_room (const repo_manifest *m, const repo_backup *b,
                                   GError **error);
/* Write manifest.json.tmp, fsync it, rename it over manifest.json, fsync
 * the directory; a text over REPO_MANIFEST_MAX is refused
 * (OVA_ERROR_INTEGRITY) before anything is written. */
gboolean repo_manifest_save (const repo_manifest *m, const char *disk_dir,
                             GError **error);

/* fsync a directory, so that renames in it are on disk. */
gboolean repo_fsync_dir (const char *dir, GError **error);

const repo_backup *repo_manifest_find (const repo_manifest *m, const char *id);
const repo_backup *repo_manifest_latest (const repo_manifest *m);
/* The newest backup that created checkpoint, or NULL. */
const repo_backup *repo_manifest_find_checkpoint (const repo_manifest *m,
                                                  const char *checkpoint);
/* The last volume of the latest backup: what an incremental must continue
 * from; NULL for an empty manifest. */
const repo_volume *repo_manifest_latest_volume (const repo_manifest *m);

#endif
