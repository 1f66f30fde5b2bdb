/* ovagent: reading one file storage domain (NFS, GlusterFS, POSIX, LocalFS):
 * dom_md/metadata, images/<img>/<vol>.meta, as VDSM lays them out (§2). */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "log.h"
#include "util.h"

#include "dommeta.h"
#include "chain.h"
#include "model.h"
#include "scan.h"
#include "volmeta.h"

/* A .meta file is one 512-byte record; anything past this is not VDSM's. */
#define META_FILE_MAX 4096
#define META_SUFFIX ".meta"

static void
add_domain_problem (stor_domain *d, const char *code, const char *message)
{
  g_ptr_array_add (d->problems, stor_problem_new (code, "%s", message));
}

static void
read_domain_metadata (stor_domain *d, const char *sd_dir)
{
  g_autofree char *path = g_build_filename (sd_dir, "dom_md", "metadata", NULL);
  g_autoptr (stor_dommeta) md = NULL;
  g_autoptr (GError) err = NULL;
  g_autofree char *buf = NULL;
  gsize len;

  if (!ova_read_file_direct (path, STOR_DOMMETA_MAX_SIZE, &buf, &len, &err)) {
    add_domain_problem (d, "domain-metadata", err->message);
    return;
  }
  md = stor_dommeta_parse_text (buf, len, &err);
  if (md == NULL) {
    g_ptr_array_add (d->problems,
                     stor_problem_new ("domain-metadata",
                                       "invalid domain metadata %s: %s",
                                       path, err->message));
    return;
  }

  stor_domain_set_metadata (d, g_steal_pointer (&md), path);
}

/* One <vol>.meta in images/<img>. */
static void
scan_volume (stor_domain *d, const char *sd_dir, const char *img,
             const char *vol)
{
  g_autofree char *img_dir = g_build_filename (sd_dir, "images", img, NULL);
  g_autofree char *meta_name = g_strconcat (vol, META_SUFFIX, NULL);
  g_autofree char *meta_path = g_build_filename (img_dir, meta_name, NULL);
  g_autoptr (stor_volume) v = stor_volume_new (vol);
  g_autoptr (stor_volmeta) md = NULL;
  g_autoptr (GError) err = NULL;
  g_autofree char *buf = NULL;
  struct stat st;
  gsize len;

  v->slot = -1;
  if (ova_read_file_direct (meta_path, META_FILE_MAX, &buf, &len, &err))
    md = stor_volmeta_parse (buf, len, &err);

  if (md == NULL) {
    v->image = g_strdup (img);
    g_ptr_array_add (v->problems,
                     stor_problem_new ("invalid-metadata",
                                       "invalid volume metadata %s: %s",
                                       meta_path, err->message));
  }
  else if (md->cleared) {
    v->image = g_strdup (img);
  }
  else {
    /* A template hard-linked into a derived image still names its own
     * image; VDSM groups it there. */
    v->image = g_strdup (md->image);
    if (!ova_uuid_is_blank (md->parent))
      v->parent = g_strdup (md->parent);
    if (g_ascii_strcasecmp (md->domain, d->uuid) != 0)
      g_ptr_array_add (v->problems,
                       stor_problem_new ("domain-mismatch",
                                         "%s: DOMAIN %s is not the domain "
                                         "%s holding it", meta_path,
                                         md->domain, d->uuid));
    if (g_ascii_strcasecmp (md->image, img) != 0 &&
        md->voltype != STOR_VOLTYPE_SHARED)
      g_ptr_array_add (v->problems,
                       stor_problem_new ("image-mismatch",
                                         "%s: IMAGE %s is not the image "
                                         "directory %s", meta_path,
                                         md->image, img));
  }

  if (md != NULL && !md->cleared && strcmp (md->image, img) != 0) {
    g_autofree char *own = g_build_filename (sd_dir, "images", md->image,
                                             vol, NULL);
    if (stat (own, &st) == 0)
      v->path = g_steal_pointer (&own);
  }
  if (v->path == NULL)
    v->path = g_build_filename (img_dir, vol, NULL);
  if (lstat (v->path, &st) < 0 && errno == ENOENT)
    g_ptr_array_add (v->problems,
                     stor_problem_new ("missing-volume",
                                       "volume file %s is missing (metadata "
                                       "%s exists)", v->path, meta_path));

  v->md = g_steal_pointer (&md);
  if (!stor_domain_add_volume (d, g_steal_pointer (&v)))
    ova_debug ("volume %s seen again in image directory %s (hard link)",
               vol, img_dir);
}

static void
scan_image (stor_domain *d, const char *sd_dir, const char *img)
{
  g_autofree char *img_dir = g_build_filename (sd_dir, "images", img, NULL);
  g_autoptr (GPtrArray) names = NULL;
  g_autoptr (GError) err = NULL;

  names = ova_list_dir_sorted (img_dir, &err);
  if (names == NULL) {
    g_ptr_array_add (d->problems,
                     stor_problem_new ("unreadable",
                                       "cannot read image directory: %s",
                                       err->message));
    return;
  }
  for (guint i = 0; i < names->len; i++) {
    const char *name = names->pdata[i];
    g_autofree char *vol = NULL;

    if (!g_str_has_suffix (name, META_SUFFIX))
      continue;
    vol = g_strndup (name, strlen (name) - strlen (META_SUFFIX));
    if (!ova_uuid_is_valid (vol))
      continue;
    scan_volume (d, sd_dir, img, vol);
  }
}

static void
scan_images (stor_domain *d, const char *sd_dir)
{
  g_autofree char *images_dir = g_build_filename (sd_dir, "images", NULL);
  g_autoptr (GPtrArray) names = NULL;
  g_autoptr (GError) err = NULL;

  names = ova_list_dir_sorted (images_dir, &err);
  if (names == NULL) {
    /* A domain with no images directory simply has no disks yet. */
    if (g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      ova_debug ("%s: no images directory", sd_dir);
    else
      g_ptr_array_add (d->problems,
                       stor_problem_new ("unreadable",
                                         "cannot read images directory: %s",
                                         err->message));
    return;
  }
  for (guint i = 0; i < names->len; i++) {
    const char *img = names->pdata[i];
    g_autofree char *img_dir = NULL;

    /* Skips _remove_me_* remnants and the like as well. */
    if (!ova_uuid_is_valid (img)) {
      ova_debug ("%s: skipping images/%s", sd_dir, img);
      continue;
    }
    img_dir = g_build_filename (images_dir, img, NULL);
    if (!ova_is_directory (img_dir))
      continue;
    scan_image (d, sd_dir, img);
  }
}

stor_domain *
stor_scan_file_domain (const char *sd_dir, GError **error)
{
  g_autofree char *uuid = g_path_get_basename (sd_dir);
  stor_domain *d;

  if (!ova_uuid_is_valid (uuid)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "%s is not a storage domain directory: its name is not a UUID",
                 sd_dir);
    return NULL;
  }

  d = stor_domain_new (uuid, STOR_KIND_FILE);
  g_free (d->path);
  d->path = g_strdup (sd_dir);
  d->version = -1;
  g_free (d->storage);
  d->storage = g_strdup ("unknown");

  read_domain_metadata (d, sd_dir);
  scan_images (d, sd_dir);
  stor_domain_build_images (d);
  return d;
}
