/* ovagent: finding every storage domain of the host, file domains under
 * <data_center>/mnt and block domains in tagged VGs, and resolving a DISK. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "util.h"

#include "lvm.h"
#include "scan.h"

#define SD_VG_TAG "RHAT_storage_domain"
/* Where VDSM mounts GlusterFS volumes: one level deeper. */
#define GLUSTER_DIR "glusterSD"
/* Symlink trees of block domains, not file domains. */
#define BLOCK_DIR "blockSD"
#define MASTER_DIR "master"

typedef struct {
  const stor_env *env;
  const char *only_sd;
  GPtrArray *domains;   /* stor_domain* */
  GHashTable *seen;     /* uuid (lower case) -> path, borrowed from domains */
} scan_state;

static gint
compare_domains (gconstpointer a, gconstpointer b)
{
  const stor_domain *da = *(const stor_domain *const *) a;
  const stor_domain *db = *(const stor_domain *const *) b;

  return g_ascii_strcasecmp (da->uuid, db->uuid);
}

static gint
compare_vgs (gconstpointer a, gconstpointer b)
{
  const stor_vg_info *va = *(const stor_vg_info *const *) a;
  const stor_vg_info *vb = *(const stor_vg_info *const *) b;

  return strcmp (va->name, vb->name);
}

static gboolean
wanted (const scan_state *s, const char *uuid)
{
  return s->only_sd == NULL || g_ascii_strcasecmp (s->only_sd, uuid) == 0;
}

/* Keep d unless a domain with its UUID was already found (the same domain
 * reachable twice, e.g. through two mount points). */
static void
add_domain (scan_state *s, stor_domain *d)
{
  g_autofree char *key = g_ascii_strdown (d->uuid, -1);
  const char *first = g_hash_table_lookup (s->seen, key);

  if (first != NULL) {
    ova_warn ("storage domain %s found at %s and at %s; using the first",
              d->uuid, first, d->path ? d->path : "?");
    stor_domain_free (d);
    return;
  }
  g_hash_table_insert (s->seen, g_steal_pointer (&key), d->path);
  g_ptr_array_add (s->domains, d);
}

/* The domains of one mount point: <mnt>/<SD>/dom_md. */
static void
scan_mount_point (scan_state *s, const char *mnt)
{
  g_autoptr (GPtrArray) names = NULL;
  g_autoptr (GError) err = NULL;

  names = ova_list_dir_sorted (mnt, &err);
  if (names == NULL) {
    /* A stale NFS handle or a permission problem on one mount must not
     * hide the other domains. */
    ova_warn ("cannot read mount point: %s", err->message);
    return;
  }
  for (guint i = 0; i < names->len; i++) {
    const char *name = names->pdata[i];
    g_autofree char *sd_dir = NULL;
    g_autofree char *dom_md = NULL;
    g_autoptr (GError) sd_err = NULL;
    stor_domain *d;

    if (strcmp (name, MASTER_DIR) == 0 || !ova_uuid_is_valid (name))
      continue;
    if (!wanted (s, name))
      continue;
    sd_dir = g_build_filename (mnt, name, NULL);
    dom_md = g_build_filename (sd_dir, "dom_md", NULL);
    if (!ova_is_directory (dom_md))
      continue;
    d = stor_scan_file_domain (sd_dir, &sd_err);
    if (d == NULL) {
      ova_warn ("%s", sd_err->message);
      continue;
    }
    add_domain (s, d);
  }
}

/* errno of opening path as a directory, 0 if it can be read. */
static int
open_dir_errno (const char *path)
{
  int fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0)
    return errno;
  close (fd);
  return 0;
}

static gboolean
scan_file_domains (scan_state *s, GError **error)
{
  const char *dc = s->env->data_center ? s->env->data_center : "";
  g_autofree char *mnt = g_build_filename (dc, "mnt", NULL);
  g_autoptr (GPtrArray) names = NULL;
  g_autoptr (GError) err = NULL;
  int e;

  e = open_dir_errno (dc);
  if (e != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot read data center directory %s: %s", dc,
                 g_strerror (e));
    return FALSE;
  }
  e = open_dir_errno (mnt);
  if (e == ENOENT) {
    ova_debug ("no %s: no file storage domains", mnt);
    return TRUE;
  }
  if (e == 0)
    names = ova_list_dir_sorted (mnt, &err);
  if (names == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot read data center directory %s: %s", mnt,
                 e ? g_strerror (e) : err->message);
    return FALSE;
  }

  for (guint i = 0; i < names->len; i++) {
    const char *name = names->pdata[i];
    g_autofree char *path = g_build_filename (mnt, name, NULL);
    struct stat st;

    if (strcmp (name, BLOCK_DIR) == 0 || strcmp (name, MASTER_DIR) == 0)
      continue;
    if (strcmp (name, GLUSTER_DIR) == 0) {
      g_autoptr (GPtrArray) vols = NULL;
      g_autoptr (GError) gerr = NULL;

      vols = ova_list_dir_sorted (path, &gerr);
      if (vols == NULL) {
        ova_warn ("cannot read GlusterFS mount directory: %s", gerr->message);
        continue;
      }
      for (guint j = 0; j < vols->len; j++) {
        g_autofree char *mp = g_build_filename (path, vols->pdata[j], NULL);
        if (ova_is_directory (mp))
          scan_mount_point (s, mp);
      }
      continue;
    }
    /* stat follows the LocalFS symlink to the real directory. */
    if (stat (path, &st) < 0) {
      ova_warn ("cannot read mount point %s: %s", path, g_strerror (errno));
      continue;
    }
    if (S_ISDIR (st.st_mode))
      scan_mount_point (s, path);
  }
  return TRUE;
}

static gboolean
has_tag (char **tags, const char *tag)
{
  for (char **t = tags; *t; t++) {
    if (strcmp (g_strstrip (*t), tag) == 0)
      return TRUE;
  }
  return FALSE;
}

static gboolean
scan_block_domains (scan_state *s, GError **error)
{
  g_autoptr (GPtrArray) devices = stor_lvm_devices (s->env);
  g_autoptr (GPtrArray) vgs = NULL;

  if (devices->len == 0) {
    ova_debug ("no block devices for LVM to scan: no block storage domains");
    return TRUE;
  }
  stor_lv_cleanup_stale (s->env);

  vgs = stor_lvm_vgs (s->env, error);
  if (vgs == NULL)
    return FALSE;
  g_ptr_array_sort (vgs, compare_vgs);

  for (guint i = 0; i < vgs->len; i++) {
    const stor_vg_info *vg = vgs->pdata[i];
    g_auto (GStrv) tags = g_strsplit (vg->tags ? vg->tags : "", ",", -1);
    g_autoptr (GError) err = NULL;
    stor_domain *d;

    /* RHAT_storage_domain_UNREADY marks a domain still being created. */
    if (!has_tag (tags, SD_VG_TAG))
      continue;
    if (!ova_uuid_is_valid (vg->name)) {
      ova_warn ("ignoring volume group %s: tagged %s but not named by a UUID",
                vg->name, SD_VG_TAG);
      continue;
    }
    if (!wanted (s, vg->name))
      continue;
    d = stor_scan_block_domain (s->env, vg->name,
                                (const char *const *) tags, &err);
    if (d == NULL) {
      ova_warn ("%s", err->message);
      continue;
    }
    add_domain (s, d);
  }
  return TRUE;
}

GPtrArray *
stor_scan_domains (const stor_env *env, const char *only_sd, GError **error)
{
  g_autoptr (GPtrArray) domains = NULL;
  g_autoptr (GHashTable) seen = NULL;
  scan_state s;

  domains = g_ptr_array_new_with_free_func ((GDestroyNotify) stor_domain_free);
  seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  s.env = env;
  s.only_sd = only_sd;
  s.domains = domains;
  s.seen = seen;

  if (!scan_file_domains (&s, error))
    return NULL;
  if (only_sd == NULL || domains->len == 0) {
    if (!scan_block_domains (&s, error))
      return NULL;
  }

  g_ptr_array_sort (domains, compare_domains);
  return g_steal_pointer (&domains);
}

gboolean
stor_find_disk (GPtrArray *domains, const char *disk,
                stor_domain **dom, stor_image **img, GError **error)
{
  g_auto (GStrv) parts = NULL;
  g_autoptr (GString) where = NULL;
  g_autofree char *sd = NULL;
  g_autofree char *image = NULL;
  stor_domain *found_dom = NULL;
  stor_image *found_img = NULL;
  guint n_found = 0;

  if (disk == NULL || strlen (disk) > 2 * OVA_UUID_LEN + 1) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "invalid disk '%.80s': expected IMG or SD/IMG (UUIDs)",
                 disk ? disk : "");
    return FALSE;
  }
  parts = g_strsplit (disk, "/", -1);
  if (g_strv_length (parts) == 1 && ova_uuid_is_valid (parts[0])) {
    image = g_ascii_strdown (parts[0], -1);
  }
  else if (g_strv_length (parts) == 2 && ova_uuid_is_valid (parts[0]) &&
           ova_uuid_is_valid (parts[1])) {
    sd = g_ascii_strdown (parts[0], -1);
    image = g_ascii_strdown (parts[1], -1);
  }
  else {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "invalid disk '%s': expected IMG or SD/IMG (UUIDs)", disk);
    return FALSE;
  }

  where = g_string_new (NULL);
  for (guint i = 0; i < domains->len; i++) {
    stor_domain *d = domains->pdata[i];
    stor_image *im;

    if (sd != NULL && g_ascii_strcasecmp (d->uuid, sd) != 0)
      continue;
    im = stor_domain_find_image (d, image);
    if (im == NULL)
      continue;
    if (n_found++ == 0) {
      found_dom = d;
      found_img = im;
    }
    g_string_append_printf (where, "%s%s/%s", where->len ? ", " : "",
                            d->uuid, im->uuid);
  }

  if (n_found == 0) {
    if (sd != NULL) {
      gboolean have_sd = FALSE;

      for (guint i = 0; i < domains->len && !have_sd; i++)
        have_sd = g_ascii_strcasecmp (((stor_domain *) domains->pdata[i])->uuid,
                                      sd) == 0;
      if (!have_sd)
        g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                     "storage domain %s not found", sd);
      else
        g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                     "disk %s not found in storage domain %s", image, sd);
    }
    else
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "disk %s not found in any storage domain", image);
    return FALSE;
  }
  if (n_found > 1) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "disk %s is in several storage domains (%s): name it as "
                 "SD/IMG", image, where->str);
    return FALSE;
  }

  if (dom)
    *dom = found_dom;
  if (img)
    *img = found_img;
  return TRUE;
}

/* ---- re-reading one record ---- */

/* A .meta file is one 512-byte record (filedomain.c reads at most this). */
#define REREAD_META_FILE_MAX 4096
#define REREAD_METADATA_LV "metadata"

/* The record text before its EOF line, without the NUL padding. */
static char *
record_text (const char *buf, gsize len)
{
  g_autoptr (GString) s = g_string_new (NULL);
  const char *p = buf;
  const char *end = buf + strnlen (buf, len);

  while (p < end) {
    const char *nl = memchr (p, '\n', end - p);
    const char *line_end = nl ? nl : end;

    if (line_end - p >= 3 && memcmp (p, "EOF", 3) == 0)
      break;
    g_string_append_len (s, p, line_end - p);
    g_string_append_c (s, '\n');
    p = nl ? nl + 1 : end;
  }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static gboolean
reread_block_record (const stor_env *env, const stor_domain *d,
                     const stor_volume *v, char **buf, gsize *len,
                     GError **error)
{
  g_autofree char *md_path = NULL;
  g_autoptr (stor_lv_guard) guard = NULL;
  guint64 offset;

  if (v->slot < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s/%s: no valid MD_ tag: its metadata slot is unknown",
                 d->uuid, v->uuid);
    return FALSE;
  }
  if (d->version < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: domain version unknown: the metadata slot layout is "
                 "unknown", d->uuid);
    return FALSE;
  }
  offset = stor_volmeta_slot_offset (d->version, v->slot);
  md_path = g_build_filename ("/dev", d->uuid, REREAD_METADATA_LV, NULL);
  if (!stor_lv_is_active (d->uuid, REREAD_METADATA_LV)) {
    guard = stor_lv_guard_new (env);
    if (!stor_lv_guard_activate (guard, d->uuid, REREAD_METADATA_LV, error))
      return FALSE;
  }
  if (!ova_pread_direct (md_path, offset, STOR_VOLMETA_SIZE, buf, error))
    return FALSE;
  *len = STOR_VOLMETA_SIZE;
  /* The guard goes now: it deactivates only what it activated. */
  return TRUE;
}

stor_volmeta *
stor_reread_volmeta (const stor_env *env, const stor_domain *d,
                     const stor_volume *v, char **raw_out, GError **error)
{
  g_autofree char *buf = NULL;
  g_autofree char *where = NULL;
  g_autoptr (GError) err = NULL;
  stor_volmeta *md;
  gsize len = 0;

  if (d->kind == STOR_KIND_FILE) {
    if (v->path == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "volume %s/%s has no file", d->uuid, v->uuid);
      return NULL;
    }
    where = g_strconcat (v->path, ".meta", NULL);
    if (!ova_read_file_direct (where, REREAD_META_FILE_MAX, &buf, &len, &err)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "cannot read the metadata of volume %s again: %s",
                   v->uuid, err->message);
      return NULL;
    }
  }
  else {
    where = g_strdup_printf ("slot %" G_GINT64_FORMAT " of /dev/%s/%s",
                             v->slot, d->uuid, REREAD_METADATA_LV);
    if (!reread_block_record (env, d, v, &buf, &len, &err)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "cannot read the metadata of volume %s again: %s",
                   v->uuid, err->message);
      return NULL;
    }
  }

  md = stor_volmeta_parse (buf, len, &err);
  if (md == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "invalid metadata of volume %s in %s: %s",
                 v->uuid, where, err->message);
    return NULL;
  }
  if (raw_out)
    *raw_out = record_text (buf, len);
  return md;
}
