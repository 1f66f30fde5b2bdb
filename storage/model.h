/* ovagent: the in-memory model of what VDSM keeps on a host's storage:
 * domains, their images (disks) and volumes, and problems found on them. */
#ifndef STOR_MODEL_H
#define STOR_MODEL_H

#include <glib.h>

#include "dommeta.h"
#include "volmeta.h"

typedef enum {
  STOR_KIND_FILE,
  STOR_KIND_BLOCK,
} stor_kind;

/* A problem found on a domain, image or volume. Listing continues past it;
 * the code is stable (JSON "code"), the message says what and where. */
typedef struct stor_problem {
  char *code;     /* e.g. "no-base", "invalid-metadata", "checksum" */
  char *message;
} stor_problem;

stor_problem *stor_problem_new (const char *code, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
void stor_problem_free (stor_problem *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_problem, stor_problem_free)

typedef struct stor_volume {
  char *uuid;
  char *image;          /* owning image: metadata IMAGE; else the IU_ tag
                         * (block) or the image directory (file) */
  char *parent;         /* parent volume UUID, NULL for a base. Metadata
                         * PUUID is authoritative; PU_ tag only when the
                         * record is unreadable (block). */
  stor_volmeta *md;     /* NULL when the record is missing or invalid */
  char *path;           /* file path, or /dev/<SD>/<VOL> for an LV */
  GPtrArray *problems;  /* stor_problem*: invalid metadata, PU_ mismatch... */

  /* Block domains only. */
  gint64 slot;          /* MD_ tag, -1 if missing or not a number */
  char *pu_tag;         /* parent from the PU_ tag */
  guint64 lv_size;      /* bytes, from lvs */
  char *lv_attr;        /* lv_attr from lvs */
} stor_volume;

typedef struct stor_image {
  char *uuid;
  /* Borrowed from the domain. Base first, top last when the chain is
   * valid; a template (SHARED, in another image) comes first as the base.
   * When the chain is broken: every volume of the image, in UUID order. */
  GPtrArray *volumes;
  GPtrArray *problems;  /* stor_problem* from chain building */
} stor_image;

typedef struct stor_domain {
  char *uuid;
  stor_kind kind;
  char *storage;        /* nfs|glusterfs|posix|localfs|iscsi|fcp|unknown */
  int version;          /* VERSION, -1 if unknown */
  char *path;           /* domain directory, or /dev/<SD> for block */
  stor_dommeta *md;     /* NULL if unreadable (see problems) */
  GHashTable *volumes;  /* uuid -> stor_volume*, owned */
  GPtrArray *images;    /* stor_image*, owned, sorted by UUID */
  GPtrArray *problems;  /* stor_problem*: metadata checksum, unreadable... */
} stor_domain;

stor_volume *stor_volume_new (const char *uuid);
void stor_volume_free (stor_volume *v);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_volume, stor_volume_free)

stor_image *stor_image_new (const char *uuid);
void stor_image_free (stor_image *img);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_image, stor_image_free)

stor_domain *stor_domain_new (const char *uuid, stor_kind kind);
void stor_domain_free (stor_domain *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_domain, stor_domain_free)

/* Takes ownership of v; replaces nothing: returns FALSE (and frees v) if a
 * volume with that UUID is already there (hard-linked template). */
gboolean stor_domain_add_volume (stor_domain *d, stor_volume *v);

/* Take the domain's metadata (ownership of md passes): VERSION, the
 * storage kind from TYPE, and SDUUID checked against d->uuid; what is wrong
 * is a "domain-metadata" problem naming where the metadata came from. */
void stor_domain_set_metadata (stor_domain *d, stor_dommeta *md, const char *where);

stor_image *stor_domain_find_image (const stor_domain *d, const char *img_uuid);

/* "nfs" etc. from the metadata TYPE (NFS, GLUSTERFS, POSIXFS, LOCALFS,
 * ISCSI, FCP, CIFS...); "unknown" otherwise. */
const char *stor_storage_from_type (const char *type);

#endif
