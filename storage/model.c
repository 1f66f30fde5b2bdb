/* ovagent: life cycle of the storage model (problems, volumes, images,
 * domains) and the domain's metadata. */
#include <config.h>

#include <stdarg.h>
#include <string.h>

#include "model.h"

stor_problem *
stor_problem_new (const char *code, const char *fmt, ...)
{
  stor_problem *p = g_new0 (stor_problem, 1);
  va_list ap;

  p->code = g_strdup (code);
  va_start (ap, fmt);
  p->message = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  return p;
}

void
stor_problem_free (stor_problem *p)
{
  if (p == NULL)
    return;
  g_free (p->code);
  g_free (p->message);
  g_free (p);
}

static GPtrArray *
problems_new (void)
{
  return g_ptr_array_new_with_free_func ((GDestroyNotify) stor_problem_free);
}

stor_volume *
stor_volume_new (const char *uuid)
{
  stor_volume *v = g_new0 (stor_volume, 1);

  v->uuid = g_strdup (uuid);
  v->problems = problems_new ();
  v->slot = -1;
  return v;
}

void
stor_volume_free (stor_volume *v)
{
  if (v == NULL)
    return;
  g_free (v->uuid);
  g_free (v->image);
  g_free (v->parent);
  stor_volmeta_free (v->md);
  g_free (v->path);
  g_ptr_array_unref (v->problems);
  g_free (v->pu_tag);
  g_free (v->lv_attr);
  g_free (v);
}

stor_image *
stor_image_new (const char *uuid)
{
  stor_image *img = g_new0 (stor_image, 1);

  img->uuid = g_strdup (uuid);
  img->volumes = g_ptr_array_new ();
  img->problems = problems_new ();
  return img;
}

void
stor_image_free (stor_image *img)
{
  if (img == NULL)
    return;
  g_free (img->uuid);
  g_ptr_array_unref (img->volumes);
  g_ptr_array_unref (img->problems);
  g_free (img);
}

stor_domain *
stor_domain_new (const char *uuid, stor_kind kind)
{
  stor_domain *d = g_new0 (stor_domain, 1);

  d->uuid = g_strdup (uuid);
  d->kind = kind;
  d->storage = g_strdup ("unknown");
  d->version = -1;
  /* Keys are the volumes' own uuid strings: freed with the volume. */
  d->volumes = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                      (GDestroyNotify) stor_volume_free);
  d->images = g_ptr_array_new_with_free_func ((GDestroyNotify) stor_image_free);
  d->problems = problems_new ();
  return d;
}

void
stor_domain_free (stor_domain *d)
{
  if (d == NULL)
    return;
  /* Images borrow volumes: release them first. */
  g_ptr_array_unref (d->images);
  g_hash_table_unref (d->volumes);
  g_ptr_array_unref (d->problems);
  g_free (d->uuid);
  g_free (d->storage);
  g_free (d->path);
  stor_dommeta_free (d->md);
  g_free (d);
}

gboolean
stor_domain_add_volume (stor_domain *d, stor_volume *v)
{
  if (v == NULL)
    return FALSE;
  /* A template hard-linked into several image directories is one volume;
   * the first copy seen stands for all of them. */
  if (v->uuid == NULL || g_hash_table_contains (d->volumes, v->uuid)) {
    stor_volume_free (v);
    return FALSE;
  }
  g_hash_table_insert (d->volumes, v->uuid, v);
  return TRUE;
}

void
stor_domain_set_metadata (stor_domain *d, stor_dommeta *md, const char *where)
{
  const char *sduuid = stor_dommeta_get (md, "SDUUID");
  gint64 version;

  if (stor_dommeta_get_int (md, "VERSION", &version) &&
      version >= 0 && version <= G_MAXINT)
    d->version = version;
  else
    g_ptr_array_add (d->problems,
                     stor_problem_new ("domain-metadata",
                                       "%s: missing or invalid VERSION", where));

  g_free (d->storage);
  d->storage = g_strdup (stor_storage_from_type (stor_dommeta_get (md, "TYPE")));

  if (sduuid == NULL || g_ascii_strcasecmp (sduuid, d->uuid) != 0)
    g_ptr_array_add (d->problems,
                     stor_problem_new ("domain-metadata",
                                       "%s: SDUUID %s does not match the "
                                       "domain %s", where,
                                       sduuid ? sduuid : "(missing)", d->uuid));

  stor_dommeta_free (d->md);
  d->md = md;
}

stor_image *
stor_domain_find_image (const stor_domain *d, const char *img_uuid)
{
  if (d == NULL || img_uuid == NULL)
    return NULL;
  for (guint i = 0; i < d->images->len; i++) {
    stor_image *img = g_ptr_array_index (d->images, i);

    if (strcmp (img->uuid, img_uuid) == 0)
      return img;
  }
  return NULL;
}

const char *
stor_storage_from_type (const char *type)
{
  /* CIFS domains are long gone from oVirt; they and anything newer are
   * reported as "unknown" rather than guessed. */
  static const struct {
    const char *type;
    const char *storage;
  } types[] = {
    { "NFS", "nfs" },
    { "GLUSTERFS", "glusterfs" },
    { "POSIXFS", "posix" },
    { "LOCALFS", "localfs" },
    { "ISCSI", "iscsi" },
    { "FCP", "fcp" },
  };

  if (type == NULL)
    return "unknown";
  for (size_t i = 0; i < G_N_ELEMENTS (types); i++)
    if (g_ascii_strcasecmp (type, types[i].type) == 0)
      return types[i].storage;
  return "unknown";
}
