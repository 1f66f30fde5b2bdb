/* ovagent: reading a manifest, which anyone may have edited: the JSON schema
 * of docs/repository.md checked member by member before anything trusts it. */
#include <config.h>

#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "error.h"
#include "json.h"
#include "util.h"
#include "repo/manifest.h"
#include "stream/stream.h"

/* Free-text fields copied from the stream are kept, but bounded. */
#define TEXT_FIELD_MAX 255

/* Messages quote at most this much of a bad value. */
#define QUOTE_MAX 80

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
  *out = ova_json_get_string (o, name);
  if (*out != NULL || (nullable && ova_json_is_null (o, name)))
    return TRUE;
  bad (error, what, "%s: \"%s\" must be a string%s", where, name,
       nullable ? " or null" : "");
  return FALSE;
}

static gboolean
get_size (JsonObject *o, const char *name, guint64 *out,
          const char *what, const char *where, GError **error)
{
  if (ova_json_get_uint (o, name, out))
    return TRUE;
  bad (error, what, "%s: \"%s\" must be a non-negative integer", where, name);
  return FALSE;
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

  if (!repo_digest_text_is_valid (digest)) {
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
  JsonNode *vols, *meta;
  gboolean removing;
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

  if (json_object_has_member (o, "removing")) {
    if (!ova_json_get_bool (o, "removing", &removing) || !removing) {
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
    if (!ova_json_is_finite (meta)) {
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
