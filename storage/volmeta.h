/* ovagent: VDSM volume metadata records (`<vol>.meta` files, metadata-LV slots).
 * Parses the KEY=VALUE...EOF text exactly as VDSM reads it (vdsm-storage.md §1). */
#ifndef STOR_VOLMETA_H
#define STOR_VOLMETA_H

#include <glib.h>

/* Size of one record on storage, and the most a .meta file may hold. */
#define STOR_VOLMETA_SIZE 512

/* Longest record stor_volmeta_parse accepts (text before the EOF line).
 * VDSM never writes more than STOR_VOLMETA_SIZE; the slack tolerates a
 * hand-edited .meta file while still bounding what we hold in memory. */
#define STOR_VOLMETA_MAX_RECORD 4096

typedef enum {
  STOR_FORMAT_UNKNOWN = 0,
  STOR_FORMAT_COW,
  STOR_FORMAT_RAW,
} stor_format;

typedef enum {
  STOR_VOLTYPE_UNKNOWN = 0,
  STOR_VOLTYPE_LEAF,
  STOR_VOLTYPE_INTERNAL,
  STOR_VOLTYPE_SHARED,
} stor_voltype;

typedef enum {
  STOR_LEGALITY_UNKNOWN = 0,
  STOR_LEGALITY_LEGAL,
  STOR_LEGALITY_ILLEGAL,
  STOR_LEGALITY_FAKE,
} stor_legality;

/* Lower-case names used in JSON: "cow", "leaf", "legal", ...; "unknown". */
const char *stor_format_name (stor_format f);
const char *stor_voltype_name (stor_voltype t);
const char *stor_legality_name (stor_legality l);

typedef struct stor_volmeta {
  gboolean cleared;      /* a "NONE=###" record: the volume was being deleted;
                          * no other field is set */
  char *domain;          /* DOMAIN */
  char *image;           /* IMAGE */
  char *parent;          /* PUUID as written (BLANK for a base) */
  guint64 capacity;      /* CAP in bytes, else SIZE * 512 */
  stor_format format;    /* FORMAT */
  stor_voltype voltype;  /* VOLTYPE */
  stor_legality legality;/* LEGALITY */
  char *type;            /* TYPE: PREALLOCATED, SPARSE, UNKNOWN */
  char *disktype;        /* DISKTYPE */
  char *description;     /* DESCRIPTION (may be empty) */
  gint64 ctime;          /* CTIME */
  guint gen;             /* GEN, 0 when missing */
  guint64 seq;           /* SEQ, 0 when missing */
} stor_volmeta;

/* Parse one record. buf need not be NUL-terminated; trailing NULs are ignored
 * and parsing stops at the first line starting with "EOF". Fails with
 * OVA_ERROR_INTEGRITY naming the key when a required key is missing or a
 * value is invalid (bad UUID, bad number, capacity < 1, unknown enum value).
 * A cleared record is returned with ->cleared set, not as an error. */
stor_volmeta *stor_volmeta_parse (const char *buf, gsize len, GError **error);

void stor_volmeta_free (stor_volmeta *md);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_volmeta, stor_volmeta_free)

/* Byte offset of a metadata-LV slot: V4 (and older) slot*512,
 * V5 1 MiB + slot*8 KiB. */
guint64 stor_volmeta_slot_offset (int domain_version, guint64 slot);

#endif
