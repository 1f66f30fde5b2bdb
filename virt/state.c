/* ovagent: the sender's per-VM backup state file (last committed checkpoint
 * per disk, pending backup) and the per-VM lock that serialises backups. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "state.h"
#include "error.h"
#include "json.h"
#include "util.h"

#define STATE_FORMAT "ovagent-vm-state"
#define STATE_VERSION 1
#define STATE_FILE "state.json"
/* A VM with hundreds of disks stays far below this. */
#define STATE_MAX (4 * 1024 * 1024)
#define STATE_DISKS_MAX 4096
#define TIME_MAX 40

typedef struct state_disk {
  char *target;                 /* NULL if not known */
  char *checkpoint;
  char *job;
  char *time;
} state_disk;

typedef struct state_pending {
  char *job;
  char *checkpoint;
  gboolean running;
  char *started;
  GPtrArray *images;            /* char*, NULL-terminated */
} state_pending;

struct virt_state {
  char *dir;
  char *path;
  char *vm;
  GHashTable *disks;            /* image uuid → state_disk* */
  state_pending *pending;
};

static void
state_disk_free (state_disk *d)
{
  if (d == NULL)
    return;
  g_free (d->target);
  g_free (d->checkpoint);
  g_free (d->job);
  g_free (d->time);
  g_free (d);
}

static void
state_pending_free (state_pending *p)
{
  if (p == NULL)
    return;
  g_free (p->job);
  g_free (p->checkpoint);
  g_free (p->started);
  if (p->images)
    g_ptr_array_unref (p->images);
  g_free (p);
}

void
virt_state_free (virt_state *s)
{
  if (s == NULL)
    return;
  g_free (s->dir);
  g_free (s->path);
  g_free (s->vm);
  if (s->disks)
    g_hash_table_unref (s->disks);
  state_pending_free (s->pending);
  g_free (s);
}

static char *
now_iso (void)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();

  return g_date_time_format (now, "%Y-%m-%dT%H:%M:%SZ");
}

/* Target devs as libvirt names them: vda, sdb, hdc, vdaa ... */
static gboolean
valid_target (const char *t)
{
  gsize n = strlen (t);
  gsize letters = 0;

  if (n == 0 || n > 11)
    return FALSE;
  while (letters < n && letters < 3 && g_ascii_islower (t[letters]))
    letters++;
  if (letters == 0 || n - letters > 8)
    return FALSE;
  for (gsize i = letters; i < n; i++)
    if (!g_ascii_islower (t[i]) && !g_ascii_isdigit (t[i]))
      return FALSE;
  return TRUE;
}

static gboolean
valid_time (const char *t)
{
  g_autoptr (GDateTime) dt = NULL;

  if (strlen (t) > TIME_MAX || !g_str_has_suffix (t, "Z"))
    return FALSE;
  dt = g_date_time_new_from_iso8601 (t, NULL);
  return dt != NULL;
}

/* ------------------------------------------------------------------ */
/* Lock */

int
virt_state_lock (const char *run_dir, const char *vm_uuid, GError **error)
{
  g_autofree char *name = NULL;
  g_autofree char *path = NULL;
  int fd;

  if (!ova_uuid_is_valid (vm_uuid)) {
    g_autofree char *q = ova_quote_untrusted (vm_uuid, 64);

    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "invalid VM UUID %s", q);
    return -1;
  }
  /* QEMU must be able to reach socket directories made here later. */
  if (g_mkdir_with_parents (run_dir, 0711) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot create %s: %s",
                 run_dir, g_strerror (errno));
    return -1;
  }
  name = g_strdup_printf ("backup-%s.lock", vm_uuid);
  path = g_build_filename (run_dir, name, NULL);
  fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot open %s: %s",
                 path, g_strerror (errno));
    return -1;
  }
  if (flock (fd, LOCK_EX | LOCK_NB) < 0) {
    int e = errno;

    close (fd);
    if (e == EWOULDBLOCK)
      g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                   "VM %s: another backup or checkpoint operation is running "
                   "(%s is locked)", vm_uuid, path);
    else
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot lock %s: %s",
                   path, g_strerror (e));
    return -1;
  }
  return fd;
}

/* ------------------------------------------------------------------ */
/* Load */

static gboolean bad (GError **error, const char *path, const char *fmt, ...)
  G_GNUC_PRINTF (3, 4);

static gboolean
bad (GError **error, const char *path, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY, "%s: %s", path, msg);
  return FALSE;
}

/* A string member; NULL when it is JSON null and nullable. */
static gboolean
get_string (JsonObject *o, const char *member, gboolean nullable,
            const char **out, const char *path, const char *where, GError **error)
{
  *out = NULL;
  if (!json_object_has_member (o, member))
    return bad (error, path, "%s: member \"%s\" is missing", where, member);
  if (ova_json_is_null (o, member)) {
    if (nullable)
      return TRUE;
    return bad (error, path, "%s: member \"%s\" is null", where, member);
  }
  *out = ova_json_get_string (o, member);
  if (*out == NULL)
    return bad (error, path, "%s: member \"%s\" is not a string", where, member);
  return TRUE;
}

static gboolean
get_uuid (JsonObject *o, const char *member, const char **out,
          const char *path, const char *where, GError **error)
{
  if (!get_string (o, member, FALSE, out, path, where, error))
    return FALSE;
  if (!ova_uuid_is_valid (*out)) {
    g_autofree char *q = ova_quote_untrusted (*out, 64);

    return bad (error, path, "%s: \"%s\" is not a UUID: %s", where, member, q);
  }
  return TRUE;
}

static gboolean
get_time (JsonObject *o, const char *member, const char **out,
          const char *path, const char *where, GError **error)
{
  if (!get_string (o, member, FALSE, out, path, where, error))
    return FALSE;
  if (!valid_time (*out)) {
    g_autofree char *q = ova_quote_untrusted (*out, 64);

    return bad (error, path, "%s: \"%s\" is not an ISO 8601 UTC time: %s",
                where, member, q);
  }
  return TRUE;
}

static gboolean
load_disk (virt_state *s, JsonObject *disks, const char *image, GError **error)
{
  g_autofree char *where = NULL;
  g_autofree char *qi = ova_quote_untrusted (image, 64);
  JsonObject *o = ova_json_get_object (disks, image);
  const char *target, *cp, *job, *time;
  state_disk *d;

  if (!ova_uuid_is_valid (image))
    return bad (error, s->path, "disks: key %s is not an image UUID", qi);
  where = g_strdup_printf ("disk %s", image);
  if (o == NULL)
    return bad (error, s->path, "%s: not an object", where);
  if (!get_string (o, "target", TRUE, &target, s->path, where, error) ||
      !get_uuid (o, "checkpoint", &cp, s->path, where, error) ||
      !get_uuid (o, "job", &job, s->path, where, error) ||
      !get_time (o, "time", &time, s->path, where, error))
    return FALSE;
  if (target && !valid_target (target)) {
    g_autofree char *q = ova_quote_untrusted (target, 64);

    return bad (error, s->path, "%s: invalid target %s", where, q);
  }
  if (g_hash_table_contains (s->disks, image))
    return bad (error, s->path, "disk %s appears twice", image);
  d = g_new0 (state_disk, 1);
  d->target = g_strdup (target);
  d->checkpoint = g_strdup (cp);
  d->job = g_strdup (job);
  d->time = g_strdup (time);
  g_hash_table_insert (s->disks, g_strdup (image), d);
  return TRUE;
}

static gboolean
load_pending (virt_state *s, JsonObject *state, GError **error)
{
  const char *where = "pending";
  JsonObject *o = ova_json_get_object (state, "pending");
  JsonArray *arr;
  const char *job, *cp, *started;
  gboolean running;
  state_pending *p;

  if (!json_object_has_member (state, "pending"))
    return bad (error, s->path, "member \"pending\" is missing");
  if (ova_json_is_null (state, "pending"))
    return TRUE;
  if (o == NULL)
    return bad (error, s->path, "pending: not an object or null");
  if (!get_uuid (o, "job", &job, s->path, where, error) ||
      !get_uuid (o, "checkpoint", &cp, s->path, where, error) ||
      !get_time (o, "started", &started, s->path, where, error))
    return FALSE;
  if (!ova_json_get_bool (o, "running", &running))
    return bad (error, s->path, "pending: \"running\" is not true or false");
  arr = ova_json_get_array (o, "disks");
  if (arr == NULL)
    return bad (error, s->path, "pending: \"disks\" is not a list");
  if (json_array_get_length (arr) > STATE_DISKS_MAX)
    return bad (error, s->path, "pending: too many disks");

  p = g_new0 (state_pending, 1);
  p->job = g_strdup (job);
  p->checkpoint = g_strdup (cp);
  p->started = g_strdup (started);
  p->running = running;
  p->images = g_ptr_array_new_with_free_func (g_free);
  s->pending = p;
  for (guint i = 0; i < json_array_get_length (arr); i++) {
    JsonNode *e = json_array_get_element (arr, i);
    const char *img;

    if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING ||
        !ova_uuid_is_valid (img = json_node_get_string (e)))
      return bad (error, s->path, "pending: disk %u is not an image UUID", i);
    g_ptr_array_add (p->images, g_strdup (img));
  }
  g_ptr_array_add (p->images, NULL);
  return TRUE;
}

static gboolean
load_disks (virt_state *s, JsonObject *disks, GError **error)
{
  g_autoptr (GList) members = json_object_get_members (disks);

  if (json_object_get_size (disks) > STATE_DISKS_MAX)
    return bad (error, s->path, "too many disks");
  for (GList *l = members; l; l = l->next)
    if (!load_disk (s, disks, l->data, error))
      return FALSE;
  return TRUE;
}

static gboolean
load_json (virt_state *s, const char *text, gsize len, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) perr = NULL;
  JsonNode *root;
  JsonObject *o, *disks;
  const char *format, *vm;
  guint64 version;

  if (!json_parser_load_from_data (parser, text, len, &perr))
    return bad (error, s->path, "not valid JSON: %s", perr->message);
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return bad (error, s->path, "not a JSON object");
  o = json_node_get_object (root);
  if (!get_string (o, "format", FALSE, &format, s->path, "state", error))
    return FALSE;
  if (strcmp (format, STATE_FORMAT) != 0) {
    g_autofree char *q = ova_quote_untrusted (format, 64);

    return bad (error, s->path, "format is %s, expected \"" STATE_FORMAT "\"", q);
  }
  if (!ova_json_get_uint (o, "version", &version) || version != STATE_VERSION)
    return bad (error, s->path, "unsupported version (expected %d)", STATE_VERSION);
  if (!get_uuid (o, "vm", &vm, s->path, "state", error))
    return FALSE;
  if (g_ascii_strcasecmp (vm, s->vm) != 0)
    return bad (error, s->path, "the state of VM %s, not of VM %s", vm, s->vm);

  disks = ova_json_get_object (o, "disks");
  if (disks == NULL)
    return bad (error, s->path, "\"disks\" is not an object");
  if (!load_disks (s, disks, error))
    return FALSE;

  return load_pending (s, o, error);
}

virt_state *
virt_state_load (const char *state_dir, const char *vm_uuid, GError **error)
{
  g_autoptr (virt_state) s = NULL;
  g_autoptr (GError) err = NULL;
  g_autofree char *text = NULL;
  gsize len;

  if (!ova_uuid_is_valid (vm_uuid)) {
    g_autofree char *q = ova_quote_untrusted (vm_uuid, 64);

    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "invalid VM UUID %s", q);
    return NULL;
  }
  s = g_new0 (virt_state, 1);
  s->vm = g_ascii_strdown (vm_uuid, -1);
  s->dir = g_build_filename (state_dir, "checkpoints", s->vm, NULL);
  s->path = g_build_filename (s->dir, STATE_FILE, NULL);
  s->disks = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                    (GDestroyNotify) state_disk_free);

  if (!ova_read_file_direct (s->path, STATE_MAX, &text, &len, &err)) {
    if (g_error_matches (err, OVA_ERROR, OVA_ERROR_NOT_FOUND))
      return g_steal_pointer (&s);
    g_propagate_error (error, g_steal_pointer (&err));
    return NULL;
  }
  if (!load_json (s, text, len, error))
    return NULL;
  return g_steal_pointer (&s);
}

/* ------------------------------------------------------------------ */
/* Save */

static char *
state_to_json (const virt_state *s)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GPtrArray) images = virt_state_disks (s);
  g_autoptr (JsonGenerator) gen = json_generator_new ();

  json_builder_begin_object (b);
  ova_json_add_string (b, "format", STATE_FORMAT);
  ova_json_add_int (b, "version", STATE_VERSION);
  ova_json_add_string (b, "vm", s->vm);

  json_builder_set_member_name (b, "disks");
  json_builder_begin_object (b);
  for (guint i = 0; i < images->len; i++) {
    const char *img = g_ptr_array_index (images, i);
    const state_disk *d = g_hash_table_lookup (s->disks, img);

    json_builder_set_member_name (b, img);
    json_builder_begin_object (b);
    ova_json_add_string (b, "target", d->target);
    ova_json_add_string (b, "checkpoint", d->checkpoint);
    ova_json_add_string (b, "job", d->job);
    ova_json_add_string (b, "time", d->time);
    json_builder_end_object (b);
  }
  json_builder_end_object (b);

  json_builder_set_member_name (b, "pending");
  if (s->pending == NULL) {
    json_builder_add_null_value (b);
  } else {
    const state_pending *p = s->pending;

    json_builder_begin_object (b);
    ova_json_add_string (b, "job", p->job);
    ova_json_add_string (b, "checkpoint", p->checkpoint);
    ova_json_add_bool (b, "running", p->running);
    ova_json_add_string (b, "started", p->started);
    json_builder_set_member_name (b, "disks");
    json_builder_begin_array (b);
    for (guint i = 0; i + 1 < p->images->len; i++)
      json_builder_add_string_value (b, g_ptr_array_index (p->images, i));
    json_builder_end_array (b);
    json_builder_end_object (b);
  }
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  return json_generator_to_data (gen, NULL);
}

gboolean
virt_state_save (virt_state *s, GError **error)
{
  g_autofree char *text = state_to_json (s);

  return ova_write_private_file (s->path, text, error);
}

/* ------------------------------------------------------------------ */
/* Queries and changes */

const char *
virt_state_disk_checkpoint (const virt_state *s, const char *image)
{
  const state_disk *d = image ? g_hash_table_lookup (s->disks, image) : NULL;

  return d ? d->checkpoint : NULL;
}

const char *
virt_state_disk_target (const virt_state *s, const char *image)
{
  const state_disk *d = image ? g_hash_table_lookup (s->disks, image) : NULL;

  return d ? d->target : NULL;
}

GPtrArray *
virt_state_disks (const virt_state *s)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  GHashTableIter it;
  gpointer key;

  g_hash_table_iter_init (&it, s->disks);
  while (g_hash_table_iter_next (&it, &key, NULL))
    g_ptr_array_add (out, g_strdup (key));
  g_ptr_array_sort (out, ova_compare_strings);
  return out;
}

void
virt_state_set_pending (virt_state *s, const char *job, const char *checkpoint,
                        gboolean running, const char *const *images)
{
  state_pending *p = g_new0 (state_pending, 1);

  g_return_if_fail (ova_uuid_is_valid (job) && ova_uuid_is_valid (checkpoint));
  p->job = g_strdup (job);
  p->checkpoint = g_strdup (checkpoint);
  p->running = running;
  p->started = now_iso ();
  p->images = g_ptr_array_new_with_free_func (g_free);
  for (gsize i = 0; images && images[i]; i++) {
    g_return_if_fail (ova_uuid_is_valid (images[i]));
    g_ptr_array_add (p->images, g_strdup (images[i]));
  }
  g_ptr_array_add (p->images, NULL);
  state_pending_free (s->pending);
  s->pending = p;
}

gboolean
virt_state_get_pending (const virt_state *s, const char **job, const char **checkpoint,
                        gboolean *running, const char *const **images)
{
  const state_pending *p = s->pending;

  if (p == NULL)
    return FALSE;
  if (job)
    *job = p->job;
  if (checkpoint)
    *checkpoint = p->checkpoint;
  if (running)
    *running = p->running;
  if (images)
    *images = (const char *const *) p->images->pdata;
  return TRUE;
}

void
virt_state_clear_pending (virt_state *s)
{
  state_pending_free (s->pending);
  s->pending = NULL;
}

void
virt_state_commit (virt_state *s, const char *checkpoint, const char *job,
                   const char *const *images, const char *const *targets)
{
  g_autofree char *now = now_iso ();

  g_return_if_fail (ova_uuid_is_valid (checkpoint) && ova_uuid_is_valid (job));
  for (gsize i = 0; images && images[i]; i++) {
    const char *target = targets ? targets[i] : NULL;
    state_disk *d;

    g_return_if_fail (ova_uuid_is_valid (images[i]));
    d = g_new0 (state_disk, 1);
    /* A target that does not look like one is not kept: the state must
     * load again. */
    d->target = target && valid_target (target) ? g_strdup (target) : NULL;
    d->checkpoint = g_strdup (checkpoint);
    d->job = g_strdup (job);
    d->time = g_strdup (now);
    g_hash_table_replace (s->disks, g_strdup (images[i]), d);
  }
  virt_state_clear_pending (s);
}

static gboolean
disk_has_checkpoint (gpointer key, gpointer value, gpointer data)
{
  const state_disk *d = value;

  return strcmp (d->checkpoint, data) == 0;
}

void
virt_state_forget_checkpoint (virt_state *s, const char *checkpoint)
{
  if (checkpoint)
    g_hash_table_foreach_remove (s->disks, disk_has_checkpoint, (gpointer) checkpoint);
}

void
virt_state_forget_disk (virt_state *s, const char *image)
{
  if (image)
    g_hash_table_remove (s->disks, image);
}
