/* ovagent: a disk's manifest: its model, backup ids, lookups, and writing it
 * atomically (docs/repository.md); reading it is manifest-parse.c. */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "repo/manifest.h"
#include "stream/stream.h"

#define MANIFEST_TMP REPO_MANIFEST_NAME ".tmp"


void
repo_volume_free (repo_volume *v)
{
  if (v == NULL)
    return;
  g_free (v->uuid);
  g_free (v->format);
  g_free (v->file);
  g_free (v->digest);
  g_free (v->backing);
  g_free (v);
}

void
repo_backup_free (repo_backup *b)
{
  if (b == NULL)
    return;
  g_free (b->id);
  g_free (b->time);
  g_free (b->host);
  g_free (b->domain);
  g_free (b->since);
  g_free (b->parent);
  g_free (b->checkpoint);
  g_free (b->from_checkpoint);
  g_free (b->vm);
  if (b->volumes)
    g_ptr_array_unref (b->volumes);
  if (b->meta)
    json_node_unref (b->meta);
  g_free (b);
}

void
repo_manifest_free (repo_manifest *m)
{
  if (m == NULL)
    return;
  g_free (m->disk);
  if (m->backups)
    g_ptr_array_unref (m->backups);
  g_free (m);
}

repo_volume *
repo_volume_new_draft (const char *id, const char *uuid, const char *format,
                       guint64 size, guint64 virtual_size, char *backing)
{
  repo_volume *v = g_new0 (repo_volume, 1);
  g_autofree char *base = repo_volume_basename (uuid, format);

  v->uuid = g_strdup (uuid);
  v->format = g_strdup (format);
  v->file = g_build_filename (id, base, NULL);
  v->size = size;
  v->virtual_size = virtual_size;
  v->digest = g_strnfill (REPO_DIGEST_LEN, '0');
  v->backing = backing;
  return v;
}

repo_backup *
repo_backup_new (void)
{
  repo_backup *b = g_new0 (repo_backup, 1);

  b->volumes = g_ptr_array_new_with_free_func ((GDestroyNotify) repo_volume_free);
  return b;
}

repo_manifest *
repo_manifest_new (const char *disk)
{
  repo_manifest *m = g_new0 (repo_manifest, 1);

  m->disk = g_ascii_strdown (disk, -1);
  m->backups = g_ptr_array_new_with_free_func ((GDestroyNotify) repo_backup_free);
  return m;
}

static gboolean
all_of (const char *s, gsize len, gboolean (*pred) (char c))
{
  for (gsize i = 0; i < len; i++)
    if (!pred (s[i]))
      return FALSE;
  return TRUE;
}

static gboolean
is_digit (char c)
{
  return c >= '0' && c <= '9';
}

static gboolean
is_lower_hex (char c)
{
  return is_digit (c) || (c >= 'a' && c <= 'f');
}

gboolean
repo_backup_id_is_valid (const char *id)
{
  /* YYYYMMDD T HHMMSS Z - xxxxxx */
  return id != NULL && strlen (id) == REPO_BACKUP_ID_LEN &&
    all_of (id, 8, is_digit) && id[8] == 'T' &&
    all_of (id + 9, 6, is_digit) && id[15] == 'Z' && id[16] == '-' &&
    all_of (id + 17, 6, is_lower_hex);
}

gboolean
repo_digest_text_is_valid (const char *digest)
{
  return strlen (digest) == REPO_DIGEST_LEN && g_str_has_prefix (digest, REPO_DIGEST_PREFIX) &&
    all_of (digest + strlen (REPO_DIGEST_PREFIX), REPO_DIGEST_HEX_LEN, is_lower_hex);
}

char *
repo_backup_id_new (GDateTime *now)
{
  g_autoptr(GDateTime) utc = g_date_time_to_utc (now);
  g_autofree char *stamp = g_date_time_format (utc, "%Y%m%dT%H%M%SZ");

  return g_strdup_printf ("%s-%06x", stamp, g_random_int () & 0xffffff);
}

const char *
repo_kind_name (repo_kind kind)
{
  switch (kind) {
  case REPO_KIND_FULL:
    return "full";
  case REPO_KIND_INCREMENTAL:
    return "incremental";
  case REPO_KIND_DIFFERENTIAL:
    return "differential";
  }
  g_return_val_if_reached ("full");
}

const char *
repo_format_ext (const char *format)
{
  if (format == NULL)
    return NULL;
  if (strcmp (format, "qcow2") == 0)
    return ".qcow2";
  if (strcmp (format, "raw") == 0)
    return ".raw";
  return NULL;
}

char *
repo_volume_basename (const char *vol, const char *format)
{
  return g_strconcat (vol, repo_format_ext (format), NULL);
}

char *
repo_expected_backing (const repo_backup *b, guint i, const repo_backup *parent)
{
  const repo_volume *prev;

  if (i > 0) {
    prev = g_ptr_array_index (b->volumes, i - 1);
    return repo_volume_basename (prev->uuid, prev->format);
  }
  if (parent == NULL || parent->volumes->len == 0)
    return NULL;
  prev = g_ptr_array_index (parent->volumes, parent->volumes->len - 1);
  return g_strconcat ("../", prev->file, NULL);
}

/* ---- writing ---- */

/* The manifest is pretty-printed for people, except each backup's meta:
 * one compact line, so that what a stream sends never grows by the
 * indentation (pretty-printing multiplies a deep META many times over). */

static char *
json_text (JsonNode *node, gboolean pretty)
{
  g_autoptr(JsonGenerator) gen = json_generator_new ();

  json_generator_set_root (gen, node);
  json_generator_set_pretty (gen, pretty);
  return json_generator_to_data (gen, NULL);
}

static JsonNode *
build_backup (const repo_backup *b)
{
  g_autoptr(JsonBuilder) jb = json_builder_new ();

  json_builder_begin_object (jb);
  ova_json_add_string (jb, "id", b->id);
  ova_json_add_string (jb, "time", b->time);
  ova_json_add_string (jb, "host", b->host);
  ova_json_add_string (jb, "domain", b->domain);
  ova_json_add_string (jb, "kind", repo_kind_name (b->kind));
  ova_json_add_string (jb, "since", b->since);
  ova_json_add_string (jb, "parent", b->parent);
  /* Chain exports keep the members they always had. */
  if (repo_backup_is_cbt (b)) {
    ova_json_add_string (jb, "checkpoint", b->checkpoint);
    ova_json_add_string (jb, "from_checkpoint", b->from_checkpoint);
    ova_json_add_string (jb, "vm", b->vm);
  }
  json_builder_set_member_name (jb, "volumes");
  json_builder_begin_array (jb);
  for (guint i = 0; i < b->volumes->len; i++) {
    const repo_volume *v = g_ptr_array_index (b->volumes, i);

    json_builder_begin_object (jb);
    ova_json_add_string (jb, "uuid", v->uuid);
    ova_json_add_string (jb, "file", v->file);
    ova_json_add_string (jb, "format", v->format);
    ova_json_add_uint (jb, "size", v->size);
    ova_json_add_uint (jb, "virtual_size", v->virtual_size);
    ova_json_add_string (jb, "digest", v->digest);
    ova_json_add_string (jb, "backing", v->backing);
    json_builder_end_object (jb);
  }
  json_builder_end_array (jb);
  if (b->removing) {
    json_builder_set_member_name (jb, "removing");
    json_builder_add_boolean_value (jb, TRUE);
  }
  json_builder_end_object (jb);
  return json_builder_get_root (jb);
}

/* One entry of "backups": its members pretty-printed at the depth of the
 * array's elements, "meta" last on one line. JSON text holds no raw
 * newline inside a string, so indenting line by line is safe. */
static void
append_backup (GString *out, const repo_backup *b)
{
  g_autoptr(JsonNode) node = build_backup (b);
  g_autofree char *text = json_text (node, TRUE);
  g_autofree char *meta = b->meta ? ova_json_to_compact (b->meta) : g_strdup ("null");
  g_auto(GStrv) lines = NULL;
  char *close = strrchr (text, '}');

  /* The generator ends the object with "\n}". */
  g_assert (close != NULL && close > text && close[-1] == '\n');
  close[-1] = '\0';
  lines = g_strsplit (text, "\n", -1);
  for (size_t i = 0; lines[i] != NULL; i++)
    g_string_append_printf (out, "%s    %s", i ? "\n" : "", lines[i]);
  g_string_append_printf (out, ",\n      \"meta\" : %s\n    }", meta);
}

static char *
manifest_text (const repo_manifest *m, const repo_backup *extra)
{
  g_autoptr(JsonNode) disk = json_node_init_string (json_node_alloc (), m->disk);
  g_autofree char *disk_text = json_text (disk, FALSE);
  GString *out = g_string_new (NULL);
  guint n = m->backups->len + (extra ? 1 : 0);

  g_string_append_printf (out, "{\n  \"format\" : \"%s\",\n  \"version\" : %d,\n"
                          "  \"disk\" : %s,\n  \"backups\" : [", REPO_MANIFEST_FORMAT,
                          REPO_MANIFEST_VERSION, disk_text);
  for (guint i = 0; i < n; i++) {
    g_string_append (out, i ? ",\n" : "\n");
    append_backup (out, i < m->backups->len ? g_ptr_array_index (m->backups, i) : extra);
  }
  g_string_append (out, n ? "\n  ]\n}\n" : "]\n}\n");
  return g_string_free (out, FALSE);
}

char *
repo_manifest_to_json (const repo_manifest *m)
{
  return manifest_text (m, NULL);
}

gboolean
repo_manifest_check_room (const repo_manifest *m, const repo_backup *b, GError **error)
{
  g_autofree char *text = manifest_text (m, b);
  gsize len = strlen (text);

  if (len <= REPO_MANIFEST_MAX)
    return TRUE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
               "the manifest of disk %s would grow to %" G_GSIZE_FORMAT " bytes, over "
               "the limit of %d; nothing was committed: back this disk up into "
               "another repository (its %u backups here stay readable)",
               m->disk, len, REPO_MANIFEST_MAX, m->backups->len);
  return FALSE;
}

static gboolean
write_all (int fd, const char *buf, gsize len, const char *path, GError **error)
{
  while (len > 0) {
    gssize n = write (fd, buf, len);

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;

      g_set_error (error, OVA_ERROR,
                   e == ENOSPC || e == EDQUOT ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
                   "cannot write %s: %s", path, g_strerror (e));
      return FALSE;
    }
    buf += n;
    len -= n;
  }
  return TRUE;
}

gboolean
repo_fsync_dir (const char *dir, GError **error)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int e;

  if (fd < 0 || fsync (fd) < 0) {
    e = errno;
    if (fd >= 0)
      close (fd);
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot sync directory %s: %s", dir, g_strerror (e));
    return FALSE;
  }
  close (fd);
  return TRUE;
}

/* Create path (which must not exist) with text in it, synced. */
static gboolean
write_new_file (const char *path, const char *text, GError **error)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  const char *step = "create";
  int e = 0;

  if (fd < 0)
    e = errno;
  else if (!write_all (fd, text, strlen (text), path, error)) {
    close (fd);
    return FALSE;
  }
  else if (fsync (fd) < 0) {
    e = errno;
    step = "sync";
    close (fd);
  }
  else if (close (fd) < 0) {
    e = errno;
    step = "write";
  }
  if (e != 0) {
    g_set_error (error, OVA_ERROR,
                 e == ENOSPC || e == EDQUOT ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
                 "cannot %s %s: %s", step, path, g_strerror (e));
    return FALSE;
  }
  return TRUE;
}

gboolean
repo_manifest_save (const repo_manifest *m, const char *disk_dir, GError **error)
{
  g_autofree char *text = repo_manifest_to_json (m);
  g_autofree char *tmp = g_build_filename (disk_dir, MANIFEST_TMP, NULL);
  g_autofree char *path = g_build_filename (disk_dir, REPO_MANIFEST_NAME, NULL);
  g_autoptr(GError) err = NULL;
  gsize len = strlen (text);

  /* Never write a manifest that would not load again. */
  if (len > REPO_MANIFEST_MAX) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "cannot write %s: it would be %" G_GSIZE_FORMAT " bytes, over the "
                 "limit of %d that a manifest can be read with", path, len,
                 REPO_MANIFEST_MAX);
    return FALSE;
  }

  for (guint i = 0; i < m->backups->len; i++) {
    const repo_backup *b = g_ptr_array_index (m->backups, i);

    if (b->meta != NULL && !ova_json_is_finite (b->meta)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "cannot write %s: the metadata of backup %s holds a number beyond "
                   "the range of a double", path, b->id);
      return FALSE;
    }
  }
  if (unlink (tmp) < 0 && errno != ENOENT) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot remove %s: %s", tmp, g_strerror (errno));
    return FALSE;
  }
  if (!write_new_file (tmp, text, error)) {
    unlink (tmp);
    return FALSE;
  }
  if (rename (tmp, path) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot rename %s to %s: %s", tmp, path, g_strerror (errno));
    unlink (tmp);
    return FALSE;
  }
  /* The new manifest is in place and the caller must not undo the
   * backup it names; a power cut before the directory reaches the disk
   * can only bring back the old manifest, and the next receive then
   * moves the unlisted backup directory aside. */
  if (!repo_fsync_dir (disk_dir, &err))
    ova_warn ("%s", err->message);
  return TRUE;
}

/* ---- lookups ---- */

const repo_backup *
repo_manifest_find (const repo_manifest *m, const char *id)
{
  for (guint i = 0; i < m->backups->len; i++) {
    const repo_backup *b = g_ptr_array_index (m->backups, i);

    if (strcmp (b->id, id) == 0)
      return b;
  }
  return NULL;
}

const repo_backup *
repo_manifest_latest (const repo_manifest *m)
{
  if (m->backups->len == 0)
    return NULL;
  return g_ptr_array_index (m->backups, m->backups->len - 1);
}

const repo_backup *
repo_manifest_find_checkpoint (const repo_manifest *m, const char *checkpoint)
{
  for (guint i = m->backups->len; i > 0; i--) {
    const repo_backup *b = g_ptr_array_index (m->backups, i - 1);

    if (b->checkpoint != NULL && g_ascii_strcasecmp (b->checkpoint, checkpoint) == 0)
      return b;
  }
  return NULL;
}

const repo_volume *
repo_manifest_latest_volume (const repo_manifest *m)
{
  const repo_backup *b = repo_manifest_latest (m);

  if (b == NULL || b->volumes->len == 0)
    return NULL;
  return g_ptr_array_index (b->volumes, b->volumes->len - 1);
}
