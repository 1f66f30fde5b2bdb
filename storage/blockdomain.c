/* ovagent: reading one block storage domain (iSCSI, FCP): MDT_ VG tags, data
 * LVs with IU_/PU_/MD_ tags, and their records in the metadata LV (§3). */
#include <config.h>

#include <string.h>

#include "error.h"
#include "log.h"
#include "util.h"

#include "dommeta.h"
#include "lvm.h"
#include "chain.h"
#include "model.h"
#include "scan.h"
#include "volmeta.h"

/* LVs that are the domain's own, never volumes (SPECIAL_LVS_V4). */
static const char *const special_lvs[] = {
  "metadata", "ids", "leases", "inbox", "outbox", "xleases", "master", NULL
};

#define METADATA_LV "metadata"
#define TAG_IMAGE "IU_"
#define TAG_PARENT "PU_"
#define TAG_SLOT "MD_"
#define TAG_INITIALIZING "OVIRT_VOL_INITIALIZING"
#define REMOVED_PREFIX "_remove_me_"

/* Slots are read in windows of at most this many bytes: one read covers
 * every record of a V4 domain and a few cover a full V5 one (8 KiB per
 * slot), without holding the whole 16 MiB area in memory. */
#define SLOT_WINDOW (4 * 1024 * 1024)

/* What the tags of one data LV say; pointers into the split tag list. */
typedef struct {
  const char *image;   /* first IU_ value */
  const char *parent;  /* first PU_ value */
  const char *slot;    /* first MD_ value */
  gboolean initializing;
} lv_tags;

typedef struct {
  stor_volume *v;      /* owned until added to the domain */
  guint64 offset;      /* of its record in the metadata LV */
  char *error;         /* why the record could not be read, else NULL */
  char *record;        /* STOR_VOLMETA_SIZE bytes once read */
} pending_volume;

static void
pending_volume_free (pending_volume *p)
{
  stor_volume_free (p->v);
  g_free (p->error);
  g_free (p->record);
  g_free (p);
}

static gboolean
is_special_lv (const char *name)
{
  for (size_t i = 0; special_lvs[i]; i++)
    if (strcmp (name, special_lvs[i]) == 0)
      return TRUE;
  return FALSE;
}

static void
parse_lv_tags (char **tags, lv_tags *t)
{
  memset (t, 0, sizeof *t);
  for (char **p = tags; *p; p++) {
    const char *tag = g_strstrip (*p);

    if (strcmp (tag, TAG_INITIALIZING) == 0)
      t->initializing = TRUE;
    else if (t->image == NULL && g_str_has_prefix (tag, TAG_IMAGE))
      t->image = tag + strlen (TAG_IMAGE);
    else if (t->parent == NULL && g_str_has_prefix (tag, TAG_PARENT))
      t->parent = tag + strlen (TAG_PARENT);
    else if (t->slot == NULL && g_str_has_prefix (tag, TAG_SLOT))
      t->slot = tag + strlen (TAG_SLOT);
  }
}

static void
read_domain_metadata (stor_domain *d, const char *const *vg_tags)
{
  g_autoptr (stor_dommeta) md = NULL;
  g_autoptr (GError) err = NULL;
  g_autofree char *where = NULL;

  md = stor_dommeta_parse_vg_tags (vg_tags, &err);
  if (md == NULL) {
    g_ptr_array_add (d->problems,
                     stor_problem_new ("domain-metadata",
                                       "invalid domain metadata in the tags "
                                       "of volume group %s: %s",
                                       d->uuid, err->message));
    return;
  }

  where = g_strdup_printf ("tags of volume group %s", d->uuid);
  stor_domain_set_metadata (d, g_steal_pointer (&md), where);
}

/* A stor_volume for one data LV from its tags, or NULL to skip the LV. */
static stor_volume *
volume_from_lv (const stor_domain *d, const stor_lv_info *lv)
{
  g_autoptr (stor_volume) v = NULL;
  g_auto (GStrv) tags = NULL;
  lv_tags t;
  guint64 slot;

  tags = g_strsplit (lv->tags ? lv->tags : "", ",", -1);
  parse_lv_tags (tags, &t);
  if (t.initializing) {
    ova_debug ("%s/%s: skipping LV being created", d->uuid, lv->name);
    return NULL;
  }
  if (!ova_uuid_is_valid (lv->name)) {
    ova_debug ("%s/%s: skipping LV not named by a volume UUID",
               d->uuid, lv->name);
    return NULL;
  }
  if (t.image == NULL) {
    ova_warn ("%s/%s: ignoring LV without an IU_ tag", d->uuid, lv->name);
    return NULL;
  }
  if (g_str_has_prefix (t.image, REMOVED_PREFIX)) {
    ova_debug ("%s/%s: skipping volume of a removed image", d->uuid, lv->name);
    return NULL;
  }
  if (!ova_uuid_is_valid (t.image)) {
    ova_warn ("%s/%s: ignoring LV with an invalid IU_ tag '%.64s'",
              d->uuid, lv->name, t.image);
    return NULL;
  }

  v = stor_volume_new (lv->name);
  v->image = g_strdup (t.image);
  v->path = g_build_filename ("/dev", d->uuid, lv->name, NULL);
  v->lv_size = lv->size;
  v->lv_attr = g_strdup (lv->attr);
  v->slot = -1;

  if (t.parent == NULL)
    g_ptr_array_add (v->problems,
                     stor_problem_new ("parent-tag-mismatch",
                                       "%s/%s: the LV has no PU_ tag",
                                       d->uuid, lv->name));
  else if (!ova_uuid_is_valid (t.parent))
    g_ptr_array_add (v->problems,
                     stor_problem_new ("parent-tag-mismatch",
                                       "%s/%s: invalid PU_ tag '%.64s'",
                                       d->uuid, lv->name, t.parent));
  else
    v->pu_tag = g_strdup (t.parent);

  /* MD_ slots are bounded by the leases LV (2048 - 100 - 1 in VDSM); allow
   * a little more, the metadata LV size is checked on reading. */
  if (t.slot != NULL &&
      g_ascii_string_to_unsigned (t.slot, 10, 0, 65535, &slot, NULL))
    v->slot = slot;

  return g_steal_pointer (&v);
}

/* Fill the parent, md and problems of a volume from its slot record. */
static void
apply_record (const stor_domain *d, pending_volume *p)
{
  stor_volume *v = p->v;
  g_autoptr (stor_volmeta) md = NULL;
  g_autoptr (GError) err = NULL;

  if (p->record != NULL)
    md = stor_volmeta_parse (p->record, STOR_VOLMETA_SIZE, &err);

  if (md == NULL) {
    if (v->pu_tag != NULL && !ova_uuid_is_blank (v->pu_tag))
      v->parent = g_strdup (v->pu_tag);
    if (p->error != NULL)
      g_ptr_array_add (v->problems,
                       stor_problem_new ("invalid-metadata", "%s", p->error));
    else
      g_ptr_array_add (v->problems,
                       stor_problem_new ("invalid-metadata",
                                         "invalid volume metadata in slot %"
                                         G_GINT64_FORMAT " of /dev/%s/%s: %s",
                                         v->slot, d->uuid, METADATA_LV,
                                         err->message));
    return;
  }

  if (md->cleared) {
    if (v->pu_tag != NULL && !ova_uuid_is_blank (v->pu_tag))
      v->parent = g_strdup (v->pu_tag);
    v->md = g_steal_pointer (&md);
    return;
  }

  /* The record's PUUID is what VDSM follows; the PU_ tag can lag behind
   * it after a live merge until the SPM rewrites the tags. */
  if (!ova_uuid_is_blank (md->parent))
    v->parent = g_strdup (md->parent);
  if (v->pu_tag != NULL && g_ascii_strcasecmp (v->pu_tag, md->parent) != 0)
    g_ptr_array_add (v->problems,
                     stor_problem_new ("parent-tag-mismatch",
                                       "%s/%s: PU_ tag %s but metadata PUUID %s",
                                       d->uuid, v->uuid, v->pu_tag,
                                       md->parent));
  if (g_ascii_strcasecmp (md->image, v->image) != 0)
    g_ptr_array_add (v->problems,
                     stor_problem_new ("image-tag-mismatch",
                                       "%s/%s: IU_ tag %s but metadata IMAGE %s",
                                       d->uuid, v->uuid, v->image, md->image));
  if (g_ascii_strcasecmp (md->domain, d->uuid) != 0)
    g_ptr_array_add (v->problems,
                     stor_problem_new ("domain-mismatch",
                                       "%s/%s: metadata DOMAIN %s is not the "
                                       "domain holding it", d->uuid, v->uuid,
                                       md->domain));
  v->md = g_steal_pointer (&md);
}

static gint
compare_offsets (gconstpointer a, gconstpointer b)
{
  const pending_volume *pa = *(const pending_volume *const *) a;
  const pending_volume *pb = *(const pending_volume *const *) b;

  return pa->offset < pb->offset ? -1 : pa->offset > pb->offset;
}

/* Read the records of the volumes in 'slotted' (sorted by offset) from the
 * metadata LV, a window of neighbouring slots per read. */
static void
read_slots (const char *md_path, GPtrArray *slotted)
{
  guint i = 0;

  while (i < slotted->len) {
    pending_volume *first = slotted->pdata[i];
    g_autoptr (GError) err = NULL;
    g_autofree char *buf = NULL;
    guint64 start = first->offset;
    guint64 end = start + STOR_VOLMETA_SIZE;
    guint j = i + 1;

    while (j < slotted->len) {
      pending_volume *p = slotted->pdata[j];
      if (p->offset + STOR_VOLMETA_SIZE - start > SLOT_WINDOW)
        break;
      end = MAX (end, p->offset + STOR_VOLMETA_SIZE);
      j++;
    }

    if (!ova_pread_direct (md_path, start, end - start, &buf, &err)) {
      for (guint k = i; k < j; k++) {
        pending_volume *p = slotted->pdata[k];
        p->error = g_strdup_printf ("cannot read metadata slot %"
                                    G_GINT64_FORMAT ": %s",
                                    p->v->slot, err->message);
      }
    }
    else {
      for (guint k = i; k < j; k++) {
        pending_volume *p = slotted->pdata[k];
        p->record = g_memdup2 (buf + (p->offset - start), STOR_VOLMETA_SIZE);
      }
    }
    i = j;
  }
}

/* Locate each volume's record and read them all. */
static void
read_volume_records (const stor_env *env, stor_domain *d,
                     GPtrArray *pending, const stor_lv_info *md_lv)
{
  g_autoptr (GPtrArray) slotted = g_ptr_array_new ();
  g_autofree char *md_path = NULL;
  g_autofree char *why = NULL;

  if (md_lv == NULL) {
    why = g_strdup_printf ("volume group %s has no %s LV", d->uuid,
                           METADATA_LV);
    g_ptr_array_add (d->problems,
                     stor_problem_new ("metadata-lv", "%s", why));
  }
  else if (d->md == NULL || d->version < 0) {
    /* Already reported as a domain problem. */
    why = g_strdup ("the domain metadata is unreadable, so the metadata "
                    "slot layout is unknown");
  }

  for (guint i = 0; i < pending->len; i++) {
    pending_volume *p = pending->pdata[i];

    if (why != NULL) {
      p->error = g_strdup (why);
      continue;
    }
    if (p->v->slot < 0) {
      p->error = g_strdup_printf ("%s/%s: no valid MD_ tag", d->uuid,
                                  p->v->uuid);
      continue;
    }
    p->offset = stor_volmeta_slot_offset (d->version, p->v->slot);
    if (p->offset + STOR_VOLMETA_SIZE > md_lv->size) {
      p->error = g_strdup_printf ("%s/%s: MD_%" G_GINT64_FORMAT " is beyond "
                                  "the end of the %s LV", d->uuid,
                                  p->v->uuid, p->v->slot, METADATA_LV);
      continue;
    }
    g_ptr_array_add (slotted, p);
  }
  if (why != NULL || slotted->len == 0)
    return;

  g_ptr_array_sort (slotted, compare_offsets);
  md_path = g_build_filename ("/dev", d->uuid, METADATA_LV, NULL);

  if (stor_lv_is_active (d->uuid, METADATA_LV)) {
    read_slots (md_path, slotted);
  }
  else {
    g_autoptr (stor_lv_guard) guard = stor_lv_guard_new (env);
    g_autoptr (GError) err = NULL;

    if (!stor_lv_guard_activate (guard, d->uuid, METADATA_LV, &err)) {
      g_ptr_array_add (d->problems,
                       stor_problem_new ("metadata-lv",
                                         "cannot activate the metadata LV: %s",
                                         err->message));
      for (guint i = 0; i < slotted->len; i++) {
        pending_volume *p = slotted->pdata[i];
        p->error = g_strdup_printf ("cannot read metadata slot %"
                                    G_GINT64_FORMAT ": %s/%s could not be "
                                    "activated", p->v->slot, d->uuid,
                                    METADATA_LV);
      }
      return;
    }
    read_slots (md_path, slotted);
    /* guard released here: deactivates only what it activated */
  }
}

stor_domain *
stor_scan_block_domain (const stor_env *env, const char *vg,
                        const char *const *vg_tags, GError **error)
{
  static const char *const no_tags[] = { NULL };
  g_autoptr (stor_domain) d = NULL;
  g_autoptr (GPtrArray) lvs = NULL;
  g_autoptr (GPtrArray) pending = NULL;
  g_autoptr (GError) err = NULL;
  const stor_lv_info *md_lv = NULL;

  if (!ova_uuid_is_valid (vg)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "volume group '%s' is not named by a storage domain UUID",
                 vg ? vg : "");
    return NULL;
  }

  d = stor_domain_new (vg, STOR_KIND_BLOCK);
  g_free (d->path);
  d->path = g_build_filename ("/dev", vg, NULL);
  d->version = -1;
  g_free (d->storage);
  d->storage = g_strdup ("unknown");

  read_domain_metadata (d, vg_tags ? vg_tags : no_tags);

  lvs = stor_lvm_lvs (env, vg, &err);
  if (lvs == NULL) {
    g_ptr_array_add (d->problems,
                     stor_problem_new ("lvm", "cannot list the logical volumes "
                                       "of %s: %s", vg, err->message));
    stor_domain_build_images (d);
    return g_steal_pointer (&d);
  }

  pending = g_ptr_array_new_with_free_func ((GDestroyNotify) pending_volume_free);
  for (guint i = 0; i < lvs->len; i++) {
    const stor_lv_info *lv = lvs->pdata[i];
    pending_volume *p;
    stor_volume *v;

    if (strcmp (lv->vg, vg) != 0)
      continue;
    if (is_special_lv (lv->name)) {
      if (strcmp (lv->name, METADATA_LV) == 0)
        md_lv = lv;
      continue;
    }
    v = volume_from_lv (d, lv);
    if (v == NULL)
      continue;
    p = g_new0 (pending_volume, 1);
    p->v = v;
    g_ptr_array_add (pending, p);
  }

  read_volume_records (env, d, pending, md_lv);

  for (guint i = 0; i < pending->len; i++) {
    pending_volume *p = pending->pdata[i];

    g_autofree char *uuid = NULL;

    apply_record (d, p);
    uuid = g_strdup (p->v->uuid);
    if (!stor_domain_add_volume (d, g_steal_pointer (&p->v)))
      ova_warn ("%s: duplicate logical volume %s", vg, uuid);
  }

  stor_domain_build_images (d);
  return g_steal_pointer (&d);
}
