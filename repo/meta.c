/* ovagent: what a manifest keeps of a stream's META: the members allowed per mode
 * (one table each), their bounds, and the kept copy, compact and bounded. */
#include <config.h>

#include <string.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "util.h"
#include "repo/receive-priv.h"
#include "repo/repo.h"
#include "stream/stream.h"

typedef enum {
  KEEP_TEXT,       /* a string of at most max bytes */
  KEEP_UUID,       /* a string that is a UUID */
  KEEP_INT,        /* an integer from 0 to max */
  KEEP_BOOL,
  KEEP_OBJECT,     /* an object: the members of `members` */
  KEEP_ARRAY,      /* at most max objects: the members of `members` */
  KEEP_OWN_ENTRY,  /* at most max objects; kept: the one whose uuid is the disk's */
  KEEP_RECORD,     /* an object: the keys of `keys`, each a string of at most max bytes */
} keep_kind;

typedef struct keep_member {
  const char *name;
  keep_kind kind;
  guint64 max;
  const struct keep_member *members;
  const char *const *keys;
} keep_member;

/* A kept member may also be null; one the table does not name is dropped. */
#define TEXT(n) { n, KEEP_TEXT, STRM_MAX_TEXT, NULL, NULL }
#define UUID(n) { n, KEEP_UUID, 0, NULL, NULL }
#define INT(n, max) { n, KEEP_INT, max, NULL, NULL }
#define STREAM_MEMBERS \
  TEXT ("format"), INT ("version", G_MAXINT64), TEXT ("tool"), TEXT ("host"), \
  TEXT ("created"), TEXT ("mode")

static const keep_member domain_members[] = {
  UUID ("uuid"), TEXT ("kind"), TEXT ("storage"), INT ("version", G_MAXINT64),
  { NULL },
};

/* The keys VDSM writes in a volume's metadata record (vdsm-storage.md §1.1). */
static const char *const vdsm_keys[] = {
  "CAP", "CTIME", "DESCRIPTION", "DISKTYPE", "DOMAIN", "FORMAT", "GEN", "IMAGE",
  "LEGALITY", "MTIME", "POOL_UUID", "PUUID", "SEQ", "SIZE", "TYPE", "VOLTYPE", NULL,
};

static const keep_member chain_volume_members[] = {
  UUID ("uuid"), UUID ("parent"), TEXT ("format"), TEXT ("voltype"), TEXT ("legality"),
  INT ("capacity", STRM_MAX_DISK_SIZE), INT ("generation", G_MAXINT64),
  INT ("size", STRM_MAX_VOLUME_SIZE), TEXT ("qcow2_compat"),
  { "backing", KEEP_TEXT, STRM_MAX_BACKING, NULL, NULL },
  { "metadata", KEEP_RECORD, STRM_MAX_VDSM_VALUE, NULL, vdsm_keys },
  { NULL },
};

static const keep_member chain_members[] = {
  STREAM_MEMBERS,
  { "domain", KEEP_OBJECT, 0, domain_members, NULL },
  UUID ("disk"), INT ("capacity", STRM_MAX_DISK_SIZE), UUID ("since"),
  { "volumes", KEEP_ARRAY, STRM_MAX_CHAIN_VOLUMES, chain_volume_members, NULL },
  { NULL },
};

static const keep_member vm_members[] = {
  UUID ("uuid"), TEXT ("name"), { "running", KEEP_BOOL, 0, NULL, NULL },
  { NULL },
};

static const keep_member backup_disk_members[] = {
  UUID ("uuid"), UUID ("disk"), TEXT ("target"), UUID ("domain"), UUID ("volume"),
  TEXT ("kind"), UUID ("from_checkpoint"), TEXT ("format"),
  INT ("size", STRM_MAX_DISK_SIZE), INT ("capacity", STRM_MAX_DISK_SIZE),
  { NULL },
};

static const keep_member backup_members[] = {
  STREAM_MEMBERS,
  { "vm", KEEP_OBJECT, 0, vm_members, NULL },
  UUID ("job"), UUID ("checkpoint"),
  { "checkpoint_xml", KEEP_TEXT, STRM_MAX_CHECKPOINT_XML, NULL, NULL },
  { "volumes", KEEP_OWN_ENTRY, STRM_MAX_BACKUP_DISKS, backup_disk_members, NULL },
  { NULL },
};

static JsonObject *keep_object (JsonObject *from, const keep_member *table,
                                const char *disk, const char *where, GError **error);

static char *
member_path (const char *where, const char *name)
{
  return *where ? g_strconcat (where, ".", name, NULL) : g_strdup (name);
}

static gboolean
holds (JsonNode *n, GType type)
{
  return JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == type;
}

static gboolean
text_ok (JsonNode *n, guint64 max, const char *path, GError **error)
{
  gsize len;

  if (!holds (n, G_TYPE_STRING)) {
    repo_rx_meta_error (error, "%s must be a string or null", path);
    return FALSE;
  }
  len = strlen (json_node_get_string (n));
  if (len > max) {
    repo_rx_meta_error (error, "%s is %" G_GSIZE_FORMAT " bytes long, over the "
                        "limit of %" G_GUINT64_FORMAT " bytes for that member",
                        path, len, max);
    return FALSE;
  }
  return TRUE;
}

/* The elements of an array member that are kept: all of them, or the one
 * entry of disk. */
static JsonArray *
keep_array (JsonNode *n, const keep_member *m, const char *disk, const char *path,
            GError **error)
{
  g_autoptr(JsonArray) to = json_array_new ();
  JsonArray *from;
  guint len;

  if (!JSON_NODE_HOLDS_ARRAY (n)) {
    repo_rx_meta_error (error, "%s must be an array", path);
    return NULL;
  }
  from = json_node_get_array (n);
  len = json_array_get_length (from);
  if (len > m->max) {
    repo_rx_meta_error (error, "%s lists %u entries, over the limit of %" G_GUINT64_FORMAT,
                        path, len, m->max);
    return NULL;
  }
  for (guint i = 0; i < len; i++) {
    JsonNode *e = json_array_get_element (from, i);
    g_autofree char *epath = g_strdup_printf ("%s[%u]", path, i);
    JsonObject *o;

    if (!JSON_NODE_HOLDS_OBJECT (e)) {
      repo_rx_meta_error (error, "%s must be an object", epath);
      return NULL;
    }
    if (m->kind == KEEP_OWN_ENTRY) {
      const char *uuid = ova_json_get_string (json_node_get_object (e), "uuid");

      if (uuid == NULL || g_ascii_strcasecmp (uuid, disk) != 0)
        continue;
    }
    o = keep_object (json_node_get_object (e), m->members, disk, epath, error);
    if (o == NULL)
      return NULL;
    json_array_add_object_element (to, o);
  }
  if (m->kind == KEEP_OWN_ENTRY && json_array_get_length (to) != 1) {
    repo_rx_meta_error (error, "%s does not list disk %s once", path, disk);
    return NULL;
  }
  return g_steal_pointer (&to);
}

static JsonObject *
keep_record (JsonNode *n, const keep_member *m, const char *path, GError **error)
{
  g_autoptr(JsonObject) to = json_object_new ();
  JsonObject *from;

  if (!JSON_NODE_HOLDS_OBJECT (n)) {
    repo_rx_meta_error (error, "%s must be an object", path);
    return NULL;
  }
  from = json_node_get_object (n);
  for (size_t i = 0; m->keys[i] != NULL; i++) {
    JsonNode *v = json_object_get_member (from, m->keys[i]);
    g_autofree char *kpath = NULL;

    if (v == NULL)
      continue;
    if (JSON_NODE_HOLDS_NULL (v)) {
      json_object_set_null_member (to, m->keys[i]);
      continue;
    }
    kpath = member_path (path, m->keys[i]);
    if (!text_ok (v, m->max, kpath, error))
      return NULL;
    json_object_set_string_member (to, m->keys[i], json_node_get_string (v));
  }
  return g_steal_pointer (&to);
}

/* A new node holding o (or a), which it owns from then on. */
static JsonNode *
node_of_object (JsonObject *o)
{
  JsonNode *n = json_node_init_object (json_node_alloc (), o);

  json_object_unref (o);
  return n;
}

static JsonNode *
node_of_array (JsonArray *a)
{
  JsonNode *n = json_node_init_array (json_node_alloc (), a);

  json_array_unref (a);
  return n;
}

/* The kept copy of member m's value n (not null), or NULL with an error. */
static JsonNode *
keep_value (JsonNode *n, const keep_member *m, const char *disk, const char *path,
            GError **error)
{
  JsonObject *o;
  JsonArray *a;

  switch (m->kind) {
  case KEEP_TEXT:
    if (!text_ok (n, m->max, path, error))
      return NULL;
    return json_node_copy (n);
  case KEEP_UUID:
    if (!holds (n, G_TYPE_STRING) || !ova_uuid_is_valid (json_node_get_string (n))) {
      repo_rx_meta_error (error, "%s must be a UUID or null", path);
      return NULL;
    }
    return json_node_copy (n);
  case KEEP_INT:
    if (!holds (n, G_TYPE_INT64) || json_node_get_int (n) < 0) {
      repo_rx_meta_error (error, "%s must be an integer from 0 to %" G_GUINT64_FORMAT,
                          path, m->max);
      return NULL;
    }
    if ((guint64) json_node_get_int (n) > m->max) {
      repo_rx_meta_error (error, "%s is %" G_GINT64_FORMAT ", over the limit of %"
                          G_GUINT64_FORMAT, path, json_node_get_int (n), m->max);
      return NULL;
    }
    return json_node_copy (n);
  case KEEP_BOOL:
    if (!holds (n, G_TYPE_BOOLEAN)) {
      repo_rx_meta_error (error, "%s must be true, false or null", path);
      return NULL;
    }
    return json_node_copy (n);
  case KEEP_OBJECT:
    if (!JSON_NODE_HOLDS_OBJECT (n)) {
      repo_rx_meta_error (error, "%s must be an object", path);
      return NULL;
    }
    o = keep_object (json_node_get_object (n), m->members, disk, path, error);
    return o ? node_of_object (o) : NULL;
  case KEEP_ARRAY:
  case KEEP_OWN_ENTRY:
    a = keep_array (n, m, disk, path, error);
    return a ? node_of_array (a) : NULL;
  case KEEP_RECORD:
    o = keep_record (n, m, path, error);
    return o ? node_of_object (o) : NULL;
  }
  g_return_val_if_reached (NULL);
}

static JsonObject *
keep_object (JsonObject *from, const keep_member *table, const char *disk,
             const char *where, GError **error)
{
  g_autoptr(JsonObject) to = json_object_new ();

  for (const keep_member *m = table; m->name != NULL; m++) {
    JsonNode *n = json_object_get_member (from, m->name);
    g_autofree char *path = NULL;
    JsonNode *kept;

    if (n == NULL)
      continue;
    if (JSON_NODE_HOLDS_NULL (n)) {
      json_object_set_null_member (to, m->name);
      continue;
    }
    path = member_path (where, m->name);
    kept = keep_value (n, m, disk, path, error);
    if (kept == NULL)
      return NULL;
    json_object_set_member (to, m->name, kept);
  }
  return g_steal_pointer (&to);
}

JsonNode *
repo_meta_keep (JsonNode *meta, const char *disk, GError **error)
{
  g_autoptr(JsonNode) out = NULL;
  g_autofree char *text = NULL;
  JsonObject *o;
  gsize len;

  g_return_val_if_fail (JSON_NODE_HOLDS_OBJECT (meta), NULL);
  o = keep_object (json_node_get_object (meta), disk ? backup_members : chain_members,
                   disk, "", error);
  if (o == NULL)
    return NULL;
  out = node_of_object (o);

  text = json_to_string (out, FALSE);
  len = strlen (text);
  if (len > REPO_META_MAX) {
    repo_rx_meta_error (error, "what a manifest keeps of it%s%s is %" G_GSIZE_FORMAT
                        " bytes, over the limit of %d bytes per backup",
                        disk ? " for disk " : "", disk ? disk : "", len, REPO_META_MAX);
    return NULL;
  }
  return g_steal_pointer (&out);
}
