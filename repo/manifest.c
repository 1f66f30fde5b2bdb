/* ovagent: a disk's manifest: the JSON schema of docs/repository.md, checked
 * field by field on load (it may have been edited), written atomically. */
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

/* Free-text fields copied from the stream are kept, but bounded. */
#define TEXT_FIELD_MAX 255

/* Messages quote at most this much of a bad value. */
#define QUOTE_MAX 80

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

/* ---- parsing ---- */

static void G_GNUC_PRINTF (3, 4)
bad (GError **error, const char *what, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY, "%s: %s", what, msg);
}

/* The member if it is a string (NULL for a missing or null member when
 * nullable). */
static gboolean
get_string (JsonObject *o, const char *name, gboolean nullable, const char **out,
            const char *what, const char *where, GError **error)
{
  JsonNode *n = json_object_get_member (o, name);

  *out = NULL;
  if ((n == NULL || JSON_NODE_HOLDS_NULL (n)) && nullable)
    return TRUE;
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) ||
      json_node_get_value_type (n) != G_TYPE_STRING) {
    bad (error, what, "%s: \"%s\" must be a string%s", where, name,
         nullable ? " or null" : "");
    return FALSE;
  }
  *out = json_node_get_string (n);
  return TRUE;
}

static gboolean
get_size (JsonObject *o, const char *name, guint64 *out,
          const char *what, const char *where, GError **error)
{
  JsonNode *n = json_object_get_member (o, name);

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) ||
      json_node_get_value_type (n) != G_TYPE_INT64 || json_node_get_int (n) < 0) {
    bad (error, what, "%s: \"%s\" must be a non-negative integer", where, name);
    return FALSE;
  }
  *out = json_node_get_int (n);
  return TRUE;
}

static gboolean
check_uuid (const char *value, const char *name, const char *what,
            const char *where, GError **error)
{
  g_autofree char *q = NULL;

  if (ova_uuid_is_valid (value) && !ova_uuid_is_blank (value))
    return TRUE;
  q = ova_quote_untrusted (value, QUOTE_MAX);
  bad (error, what, "%s: \"%s\" is not a UUID: %s", where, name, q);
  return FALSE;
}

static gboolean
check_text (const char *value, const char *name, const char *what,
            const char *where, GError **error)
{
  if (value == NULL || (strlen (value) <= TEXT_FIELD_MAX && g_utf8_validate (value, -1, NULL)))
    return TRUE;
  bad (error, what, "%s: \"%s\" is longer than %d bytes or not UTF-8",
       where, name, TEXT_FIELD_MAX);
  return FALSE;
}

/* JSON numbers beyond the range of a double (1e400) parse as infinities,
 * which the writer cannot write back as JSON: a manifest holding one would
 * be written unreadable. The recursion is bounded: the text was checked
 * for depth before it was parsed (here, or by the stream decoder). */
static gboolean
meta_is_finite (JsonNode *node)
{
  switch (JSON_NODE_TYPE (node)) {
  case JSON_NODE_OBJECT: {
    JsonObjectIter iter;
    JsonNode *member;

    json_object_iter_init (&iter, json_node_get_object (node));
    while (json_object_iter_next (&iter, NULL, &member))
      if (!meta_is_finite (member))
        return FALSE;
    return TRUE;
  }
  case JSON_NODE_ARRAY: {
    JsonArray *a = json_node_get_array (node);

    for (guint i = 0; i < json_array_get_length (a); i++)
      if (!meta_is_finite (json_array_get_element (a, i)))
        return FALSE;
    return TRUE;
  }
  case JSON_NODE_VALUE:
    return json_node_get_value_type (node) != G_TYPE_DOUBLE ||
      isfinite (json_node_get_double (node));
  case JSON_NODE_NULL:
    return TRUE;
  }
  return FALSE;
}

static repo_volume *
parse_volume (JsonNode *node, const repo_backup *b, guint i,
              const repo_backup *parent, const char *what, GError **error)
{
  g_autoptr(repo_volume) v = g_new0 (repo_volume, 1);
  g_autofree char *where = g_strdup_printf ("backup %s volume %u", b->id, i);
  g_autofree char *want_file = NULL;
  g_autofree char *want_backing = NULL;
  g_autofree char *base = NULL;
  const char *uuid, *format, *file, *digest, *backing;
  JsonObject *o;

  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    bad (error, what, "%s is not an object", where);
    return NULL;
  }
  o = json_node_get_object (node);
  if (!get_string (o, "uuid", FALSE, &uuid, what, where, error) ||
      !check_uuid (uuid, "uuid", what, where, error) ||
      !get_string (o, "format", FALSE, &format, what, where, error) ||
      !get_string (o, "file", FALSE, &file, what, where, error) ||
      !get_string (o, "digest", FALSE, &digest, what, where, error) ||
      !get_string (o, "backing", TRUE, &backing, what, where, error) ||
      !get_size (o, "size", &v->size, what, where, error) ||
      !get_size (o, "virtual_size", &v->virtual_size, what, where, error))
    return NULL;

  if (repo_format_ext (format) == NULL) {
    g_autofree char *q = ova_quote_untrusted (format, QUOTE_MAX);

    bad (error, what, "%s: unknown format %s (expected qcow2 or raw)", where, q);
    return NULL;
  }
  v->uuid = g_ascii_strdown (uuid, -1);
  v->format = g_strdup (format);

  /* Paths are never taken from the manifest: the file must be exactly the
   * name the id and UUID give. */
  base = repo_volume_basename (v->uuid, v->format);
  want_file = g_build_path ("/", b->id, base, NULL);
  if (strcmp (file, want_file) != 0) {
    g_autofree char *q = ova_quote_untrusted (file, QUOTE_MAX);

    bad (error, what, "%s: file is %s, expected \"%s\"", where, q, want_file);
    return NULL;
  }
  v->file = g_steal_pointer (&want_file);

  if (strlen (digest) != REPO_DIGEST_LEN || !g_str_has_prefix (digest, REPO_DIGEST_PREFIX) ||
      !all_of (digest + strlen (REPO_DIGEST_PREFIX), REPO_DIGEST_HEX_LEN, is_lower_hex)) {
    g_autofree char *q = ova_quote_untrusted (digest, QUOTE_MAX);

    bad (error, what, "%s: digest %s is not \"" REPO_DIGEST_PREFIX "\" and %d "
         "lowercase hex digits", where, q, REPO_DIGEST_HEX_LEN);
    return NULL;
  }
  v->digest = g_strdup (digest);

  /* A raw file has no backing string, so it can only start a chain. */
  if (strcmp (v->format, "raw") == 0 && (i > 0 || parent != NULL)) {
    bad (error, what, "%s: a raw volume can only be the first of a full backup", where);
    return NULL;
  }

  /* The volume is not in b->volumes yet, so the backing of index 0 comes
   * from the parent, of the others from the volume before. */
  want_backing = repo_expected_backing (b, i, parent);
  if (g_strcmp0 (backing, want_backing) != 0) {
    g_autofree char *q = backing ? ova_quote_untrusted (backing, QUOTE_MAX) : g_strdup ("null");

    bad (error, what, "%s: backing is %s, expected %s%s%s", where, q,
         want_backing ? "\"" : "", want_backing ? want_backing : "null",
         want_backing ? "\"" : "");
    return NULL;
  }
  v->backing = g_steal_pointer (&want_backing);
  return g_steal_pointer (&v);
}

/* The kind, checkpoints and parent of a changed-block backup: a full has
 * neither from_checkpoint nor parent; an incremental is backed by the
 * backup just before it, a differential by an earlier one, and that
 * backup created from_checkpoint. Checkpoints are unique in a disk's
 * manifest, so the parent is never ambiguous. */
static gboolean
parse_cbt_kind (repo_backup *b, const repo_manifest *m, const char *kind,
                const char *since, const char *parent_id, const char *checkpoint,
                const char *from_cp, const char *vm, const repo_backup **parent_out,
                const char *what, const char *where, GError **error)
{
  const repo_backup *parent = NULL;
  const repo_backup *other;

  if (!check_uuid (checkpoint, "checkpoint", what, where, error) ||
      (from_cp && !check_uuid (from_cp, "from_checkpoint", what, where, error)) ||
      (vm && !check_uuid (vm, "vm", what, where, error)))
    return FALSE;
  b->checkpoint = g_ascii_strdown (checkpoint, -1);
  b->from_checkpoint = from_cp ? g_ascii_strdown (from_cp, -1) : NULL;
  b->vm = vm ? g_ascii_strdown (vm, -1) : NULL;
  if (since != NULL) {
    bad (error, what, "%s: a changed-block backup has no since", where);
    return FALSE;
  }
  other = repo_manifest_find_checkpoint (m, b->checkpoint);
  if (other != NULL) {
    bad (error, what, "%s: checkpoint %s was already created by backup %s",
         where, b->checkpoint, other->id);
    return FALSE;
  }

  if (strcmp (kind, "full") == 0)
    b->kind = REPO_KIND_FULL;
  else if (strcmp (kind, "incremental") == 0)
    b->kind = REPO_KIND_INCREMENTAL;
  else if (strcmp (kind, "differential") == 0)
    b->kind = REPO_KIND_DIFFERENTIAL;
  else {
    g_autofree char *q = ova_quote_untrusted (kind, QUOTE_MAX);

    bad (error, what, "%s: kind %s is not full, incremental or differential", where, q);
    return FALSE;
  }
  if (b->kind == REPO_KIND_FULL) {
    if (from_cp != NULL || parent_id != NULL) {
      bad (error, what, "%s: a full backup has no from_checkpoint or parent", where);
      return FALSE;
    }
    *parent_out = NULL;
    return TRUE;
  }

  if (from_cp == NULL || parent_id == NULL) {
    bad (error, what, "%s: an %s backup needs from_checkpoint and parent", where, kind);
    return FALSE;
  }
  parent = repo_manifest_find (m, parent_id);
  if (parent == NULL) {
    g_autofree char *q = ova_quote_untrusted (parent_id, QUOTE_MAX);

    bad (error, what, "%s: parent %s is not an earlier backup", where, q);
    return FALSE;
  }
  if (g_strcmp0 (parent->checkpoint, b->from_checkpoint) != 0) {
    bad (error, what, "%s: from_checkpoint is %s but parent %s created %s%s",
         where, b->from_checkpoint, parent->id,
         parent->checkpoint ? "checkpoint " : "no checkpoint",
         parent->checkpoint ? parent->checkpoint : "");
    return FALSE;
  }
  if (b->kind == REPO_KIND_INCREMENTAL && parent != repo_manifest_latest (m)) {
    bad (error, what, "%s: an incremental is backed by the backup just before it, "
         "not by %s", where, parent->id);
    return FALSE;
  }
  b->parent = g_strdup (parent->id);
  *parent_out = parent;
  return TRUE;
}

/* A changed-block backup holds the disk as one qcow2 named by the image. */
static gboolean
check_cbt_volume (const repo_backup *b, const repo_manifest *m,
                  const char *what, const char *where, GError **error)
{
  const repo_volume *v = g_ptr_array_index (b->volumes, 0);

  if (b->volumes->len != 1) {
    bad (error, what, "%s: a changed-block backup has one volume, not %u",
         where, b->volumes->len);
    return FALSE;
  }
  if (strcmp (v->uuid, m->disk) != 0 || strcmp (v->format, "qcow2") != 0) {
    bad (error, what, "%s: the volume of a changed-block backup is the disk %s "
         "as qcow2, not %s (%s)", where, m->disk, v->uuid, v->format);
    return FALSE;
  }
  return TRUE;
}

static repo_backup *
parse_backup (JsonNode *node, guint index, const repo_manifest *m,
              const char *what, GError **error)
{
  g_autoptr(repo_backup) b = repo_backup_new ();
  g_autofree char *where = g_strdup_printf ("backup %u", index);
  g_autoptr(GDateTime) t = NULL;
  const char *id, *time, *host, *domain, *kind, *since, *parent_id;
  const char *checkpoint, *from_cp, *vm;
  const repo_backup *parent = NULL;
  JsonNode *vols, *meta, *removing;
  JsonObject *o;
  guint n;

  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    bad (error, what, "%s is not an object", where);
    return NULL;
  }
  o = json_node_get_object (node);
  if (!get_string (o, "id", FALSE, &id, what, where, error))
    return NULL;
  if (!repo_backup_id_is_valid (id)) {
    g_autofree char *q = ova_quote_untrusted (id, QUOTE_MAX);

    bad (error, what, "%s: id %s is not a backup id (like 20261122T031000Z-3f2a9c)",
         where, q);
    return NULL;
  }
  if (repo_manifest_find (m, id) != NULL) {
    bad (error, what, "backup %s is listed twice", id);
    return NULL;
  }
  b->id = g_strdup (id);
  g_free (where);
  where = g_strdup_printf ("backup %s", id);

  if (!get_string (o, "time", FALSE, &time, what, where, error) ||
      !get_string (o, "host", TRUE, &host, what, where, error) ||
      !check_text (host, "host", what, where, error) ||
      !get_string (o, "domain", TRUE, &domain, what, where, error) ||
      (domain && !check_uuid (domain, "domain", what, where, error)) ||
      !get_string (o, "kind", FALSE, &kind, what, where, error) ||
      !get_string (o, "since", TRUE, &since, what, where, error) ||
      !get_string (o, "parent", TRUE, &parent_id, what, where, error))
    return NULL;

  t = g_date_time_new_from_iso8601 (time, NULL);
  if (t == NULL || strlen (time) > TEXT_FIELD_MAX) {
    g_autofree char *q = ova_quote_untrusted (time, QUOTE_MAX);

    bad (error, what, "%s: time %s is not an ISO 8601 time", where, q);
    return NULL;
  }
  b->time = g_strdup (time);
  b->host = g_strdup (host);
  b->domain = domain ? g_ascii_strdown (domain, -1) : NULL;

  if (!get_string (o, "checkpoint", TRUE, &checkpoint, what, where, error) ||
      !get_string (o, "from_checkpoint", TRUE, &from_cp, what, where, error) ||
      !get_string (o, "vm", TRUE, &vm, what, where, error))
    return NULL;
  if (checkpoint != NULL) {
    if (!parse_cbt_kind (b, m, kind, since, parent_id, checkpoint, from_cp, vm,
                         &parent, what, where, error))
      return NULL;
  }
  else if (from_cp != NULL || vm != NULL) {
    bad (error, what, "%s: from_checkpoint or vm without a checkpoint", where);
    return NULL;
  }
  else if (strcmp (kind, "full") == 0) {
    b->kind = REPO_KIND_FULL;
    if (since != NULL || parent_id != NULL) {
      bad (error, what, "%s: a full backup has no since or parent", where);
      return NULL;
    }
  }
  else if (strcmp (kind, "incremental") == 0) {
    const repo_volume *last;

    b->kind = REPO_KIND_INCREMENTAL;
    if (since == NULL || parent_id == NULL) {
      bad (error, what, "%s: an incremental backup needs since and parent", where);
      return NULL;
    }
    if (!check_uuid (since, "since", what, where, error))
      return NULL;
    parent = repo_manifest_find (m, parent_id);
    if (parent == NULL) {
      g_autofree char *q = ova_quote_untrusted (parent_id, QUOTE_MAX);

      bad (error, what, "%s: parent %s is not an earlier backup", where, q);
      return NULL;
    }
    last = g_ptr_array_index (parent->volumes, parent->volumes->len - 1);
    if (g_ascii_strcasecmp (last->uuid, since) != 0) {
      bad (error, what, "%s: since is %s but the last volume of parent %s is %s",
           where, since, parent->id, last->uuid);
      return NULL;
    }
    b->since = g_ascii_strdown (since, -1);
    b->parent = g_strdup (parent->id);
  }
  else {
    g_autofree char *q = ova_quote_untrusted (kind, QUOTE_MAX);

    bad (error, what, "%s: kind %s is not full or incremental (a chain export "
         "has no checkpoint)", where, q);
    return NULL;
  }

  vols = json_object_get_member (o, "volumes");
  if (vols == NULL || !JSON_NODE_HOLDS_ARRAY (vols) ||
      (n = json_array_get_length (json_node_get_array (vols))) == 0) {
    bad (error, what, "%s: \"volumes\" must be a non-empty array", where);
    return NULL;
  }
  for (guint i = 0; i < n; i++) {
    JsonNode *vn = json_array_get_element (json_node_get_array (vols), i);
    repo_volume *v = parse_volume (vn, b, i, parent, what, error);

    if (v == NULL)
      return NULL;
    for (guint j = 0; j < b->volumes->len; j++) {
      const repo_volume *other = g_ptr_array_index (b->volumes, j);

      if (strcmp (other->uuid, v->uuid) == 0) {
        bad (error, what, "%s: volume %s is listed twice", where, v->uuid);
        repo_volume_free (v);
        return NULL;
      }
    }
    g_ptr_array_add (b->volumes, v);
  }
  if (repo_backup_is_cbt (b) && !check_cbt_volume (b, m, what, where, error))
    return NULL;

  removing = json_object_get_member (o, "removing");
  if (removing != NULL) {
    if (!JSON_NODE_HOLDS_VALUE (removing) ||
        json_node_get_value_type (removing) != G_TYPE_BOOLEAN ||
        !json_node_get_boolean (removing)) {
      bad (error, what, "%s: \"removing\" must be true when present", where);
      return NULL;
    }
    b->removing = TRUE;
  }

  meta = json_object_get_member (o, "meta");
  if (meta != NULL && !JSON_NODE_HOLDS_NULL (meta)) {
    if (!JSON_NODE_HOLDS_OBJECT (meta)) {
      bad (error, what, "%s: \"meta\" must be an object", where);
      return NULL;
    }
    if (!meta_is_finite (meta)) {
      bad (error, what, "%s: \"meta\" holds a number beyond the range of a double", where);
      return NULL;
    }
    b->meta = json_node_copy (meta);
  }
  return g_steal_pointer (&b);
}

/* json-glib parses nested arrays and objects by recursion: an edited
 * manifest of a few hundred KiB of '[' would overflow the stack. A stream's
 * META nests at most 64 deep (the decoder's limit) and sits 3 levels down. */
#define MANIFEST_MAX_DEPTH 128

static gboolean
check_json_text (const char *text, gsize len, const char *what, GError **error)
{
  gsize where;
  const char *problem = strm_json_text_problem (text, len, MANIFEST_MAX_DEPTH, &where);

  if (problem != NULL) {
    bad (error, what, "%s at byte %" G_GSIZE_FORMAT, problem, where);
    return FALSE;
  }
  return TRUE;
}

repo_manifest *
repo_manifest_parse (const char *disk, const char *text, gsize len,
                     const char *what, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) err = NULL;
  g_autoptr(repo_manifest) m = repo_manifest_new (disk);
  const char *format, *mdisk;
  JsonNode *root, *backups;
  JsonObject *o;
  guint64 version;

  if (len > REPO_MANIFEST_MAX) {
    bad (error, what, "larger than %d bytes", REPO_MANIFEST_MAX);
    return NULL;
  }
  if (memchr (text, '\0', len) != NULL || !g_utf8_validate (text, len, NULL)) {
    bad (error, what, "not UTF-8 text");
    return NULL;
  }
  if (!check_json_text (text, len, what, error))
    return NULL;
  if (!json_parser_load_from_data (parser, text, len, &err)) {
    /* json-glib quotes the input, with escapes like \202 decoded. */
    g_autofree char *msg = g_utf8_make_valid (err->message, -1);

    bad (error, what, "not valid JSON: %s", msg);
    return NULL;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    bad (error, what, "not a JSON object");
    return NULL;
  }
  o = json_node_get_object (root);
  if (!get_string (o, "format", FALSE, &format, what, "manifest", error) ||
      !get_size (o, "version", &version, what, "manifest", error) ||
      !get_string (o, "disk", FALSE, &mdisk, what, "manifest", error))
    return NULL;
  if (strcmp (format, REPO_MANIFEST_FORMAT) != 0) {
    g_autofree char *q = ova_quote_untrusted (format, QUOTE_MAX);

    bad (error, what, "format is %s, expected \"%s\"", q, REPO_MANIFEST_FORMAT);
    return NULL;
  }
  if (version != REPO_MANIFEST_VERSION) {
    bad (error, what, "version %" G_GUINT64_FORMAT " is not supported (this "
         "ovagent reads version %d)", version, REPO_MANIFEST_VERSION);
    return NULL;
  }
  if (g_ascii_strcasecmp (mdisk, disk) != 0) {
    g_autofree char *q = ova_quote_untrusted (mdisk, QUOTE_MAX);

    bad (error, what, "it is the manifest of disk %s, not of %s", q, disk);
    return NULL;
  }

  backups = json_object_get_member (o, "backups");
  if (backups == NULL || !JSON_NODE_HOLDS_ARRAY (backups)) {
    bad (error, what, "\"backups\" must be an array");
    return NULL;
  }
  for (guint i = 0; i < json_array_get_length (json_node_get_array (backups)); i++) {
    JsonNode *bn = json_array_get_element (json_node_get_array (backups), i);
    repo_backup *b = parse_backup (bn, i, m, what, error);

    if (b == NULL)
      return NULL;
    g_ptr_array_add (m->backups, b);
  }
  /* The next incremental continues from the latest backup: a prune never
   * removes it. */
  if (m->backups->len > 0 && repo_manifest_latest (m)->removing) {
    bad (error, what, "its latest backup %s is marked \"removing\"",
         repo_manifest_latest (m)->id);
    return NULL;
  }
  return g_steal_pointer (&m);
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

repo_manifest *
repo_manifest_load (const char *disk_dir, const char *disk, gboolean missing_ok,
                    GError **error)
{
  g_autofree char *path = g_build_filename (disk_dir, REPO_MANIFEST_NAME, NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) err = NULL;
  gsize len = 0;

  if (!ova_read_file_direct (path, REPO_MANIFEST_MAX, &text, &len, &err)) {
    if (g_error_matches (err, OVA_ERROR, OVA_ERROR_NOT_FOUND) && missing_ok)
      return repo_manifest_new (disk);
    g_propagate_error (error, g_steal_pointer (&err));
    return NULL;
  }
  return repo_manifest_parse (disk, text, len, path, error);
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

    if (b->meta != NULL && !meta_is_finite (b->meta)) {
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
