/* ovagent: serve's allow-lists per role (commands, their options, the form of
 * every value) and the check of one command line against them (serve.h). */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "agent/serve.h"
#include "agent/settings.h"
#include "agent/stream-output.h"
#include "nbd/nbd.h"
#include "repo/manifest.h"
#include "repo/prune.h"
#include "stream/copy.h"

#define ROLE_ANY (OVA_SERVE_ROLE_HOST | OVA_SERVE_ROLE_TARGET)
/* Longest libvirt domain name serve passes on. */
#define VM_NAME_MAX 255
/* Longest target dev (vda, sdb, xvdaa). */
#define TARGET_DEV_MAX 16
/* The disks one prune may name: as many as a line has words. */
#define PRUNE_DISKS_MAX 256

/* The form a value or an argument must have. */
typedef enum {
  VAL_NONE = 0,      /* a flag: no value */
  VAL_UUID,          /* a storage domain, volume or checkpoint UUID */
  VAL_DISK,          /* IMG_UUID or SD_UUID/IMG_UUID */
  VAL_IMAGE,         /* IMG_UUID: a repository's disk */
  VAL_VOLUME,        /* SD_UUID/IMG_UUID/VOL_UUID */
  VAL_VM,            /* a VM UUID or a libvirt domain name */
  VAL_VM_DISK,       /* an image UUID or a target dev (vda) */
  VAL_BACKUP_ID,     /* a repository backup id */
  VAL_REPO,          /* a repository under the root */
  VAL_STDOUT,        /* "-": the SSH channel */
  VAL_FORMAT,        /* raw or qcow2 */
  VAL_SECONDS,       /* an io_timeout */
  VAL_COUNT,         /* 1 to the option's max */
  VAL_DURATION,      /* a keep-within duration: 7d */
  VAL_LOG_LEVEL,
  VAL_PROGRESS,
} serve_value;

typedef struct {
  const char *name;         /* long name, without "--" */
  char short_name;          /* or 0 */
  serve_value value;
  guint max;                /* VAL_COUNT: the largest value */
  gboolean repeat;          /* may be given more than once */
  gboolean optional;        /* the value only as --NAME=VALUE */
} serve_option;

/* An option of the command that serve refuses, and why. */
typedef struct {
  const char *name;
  const char *why;
} serve_refusal;

typedef struct {
  const char *name;
  guint roles;              /* ova_serve_role bits */
  gboolean deletes;         /* removes backups: refused under --append-only */
  serve_value arg;          /* the form of its arguments */
  guint min_args, max_args;
  const char *arg_name;     /* for messages: "DISK" */
  const serve_option *options;
  const serve_refusal *refused;
  /* A check of the whole line once each word passed (options, arguments). */
  gboolean (*verify) (const ova_serve_policy *p, GPtrArray *options,
                      GPtrArray *args, GError **error);
} serve_command;

static gboolean own_checkpoint (const ova_serve_policy *p, GPtrArray *options,
                                GPtrArray *args, GError **error);

#define OPT_IO_TIMEOUT { .name = "io-timeout", .value = VAL_SECONDS }
#define OPT_STDOUT { .name = "output", .short_name = 'o', .value = VAL_STDOUT }
#define OPT_COMPRESS { .name = "compress", .value = VAL_COUNT, \
                       .max = OVA_COMPRESS_LEVEL_MAX, .optional = TRUE }
#define OPT_REPO { .name = "repo", .value = VAL_REPO }

/* Allowed with every command, before or after its name. */
static const serve_option global_options[] = {
  { .name = "json" },
  { .name = "quiet", .short_name = 'q' },
  { .name = "verbose", .short_name = 'v', .repeat = TRUE },
  { .name = "log-level", .value = VAL_LOG_LEVEL },
  { .name = "progress", .value = VAL_PROGRESS },
  { NULL },
};

/* Options that change where ovagent's trust comes from: refused whatever
 * the command. */
static const serve_refusal trust_options[] = {
  { "config", "the configuration is the operator's file" },
  { "data-center", "where storage is found is the operator's configuration" },
  { "lvm-command", "the LVM program is the operator's configuration" },
  { "lvm-devices", "the devices LVM scans are the operator's configuration" },
  { "run-dir", "run_dir is the operator's configuration" },
  { "state-dir", "state_dir is the operator's configuration" },
  { "scratch-dir", "scratch_dir is the operator's configuration" },
  { "target", "a stream goes only over this SSH channel (--output -)" },
  { NULL },
};

static const serve_option no_options[] = { { NULL } };

static const serve_option list_options[] = {
  { .name = "domain", .short_name = 'd', .value = VAL_UUID },
  { NULL },
};

static const serve_option export_chain_options[] = {
  { .name = "since", .value = VAL_UUID },
  { .name = "to", .value = VAL_UUID },
  OPT_STDOUT, OPT_COMPRESS, OPT_IO_TIMEOUT,
  { NULL },
};

static const serve_option backup_options[] = {
  { .name = "disk", .value = VAL_VM_DISK, .repeat = TRUE },
  { .name = "full" },
  { .name = "incremental" },
  { .name = "differential" },
  { .name = "auto" },
  { .name = "from", .value = VAL_UUID },
  OPT_STDOUT, OPT_COMPRESS, OPT_IO_TIMEOUT,
  { .name = "requests", .value = VAL_COUNT, .max = STRM_COPY_MAX_REQUESTS },
  { .name = "connections", .value = VAL_COUNT, .max = NBDR_MAX_CONNECTIONS },
  { NULL },
};

/* --delete: only a checkpoint ovagent made (own_checkpoint). */
static const serve_option checkpoints_options[] = {
  { .name = "delete", .value = VAL_UUID },
  { NULL },
};

static const serve_option import_options[] = {
  { .name = "to-volume", .value = VAL_VOLUME },
  { .name = "format", .value = VAL_FORMAT },
  OPT_IO_TIMEOUT,
  { NULL },
};

static const serve_refusal import_refused[] = {
  { "to", "serve writes into volumes only (--to-volume), never into a file "
          "the client names" },
  { NULL },
};

static const serve_option receive_options[] = {
  OPT_REPO, OPT_IO_TIMEOUT,
  { NULL },
};

static const serve_option verify_options[] = {
  OPT_REPO,
  { .name = "backup", .value = VAL_BACKUP_ID },
  { NULL },
};

static const serve_option backups_options[] = {
  OPT_REPO,
  { NULL },
};

#define OPT_KEEP(period) { .name = "keep-" period, .value = VAL_COUNT, .max = G_MAXINT }

static const serve_option prune_options[] = {
  OPT_REPO,
  OPT_KEEP ("last"),
  { .name = "keep-within", .value = VAL_DURATION },
  OPT_KEEP ("hourly"), OPT_KEEP ("daily"), OPT_KEEP ("weekly"),
  OPT_KEEP ("monthly"), OPT_KEEP ("yearly"),
  { .name = "dry-run" },
  { NULL },
};

static const serve_option forget_options[] = {
  OPT_REPO,
  { .name = "backup", .value = VAL_BACKUP_ID },
  { .name = "dry-run" },
  { NULL },
};

static const serve_option restore_options[] = {
  OPT_REPO,
  { .name = "backup", .value = VAL_BACKUP_ID },
  OPT_STDOUT, OPT_IO_TIMEOUT,
  { NULL },
};

static const serve_refusal restore_refused[] = {
  { "to", "serve restores only as a stream over this SSH channel "
          "(--output -), never into a file the client names" },
  { "format", "it only applies to --to, which serve refuses" },
  { NULL },
};

static const serve_command commands[] = {
  { .name = "version", .roles = ROLE_ANY, .options = no_options },
  { .name = "list", .roles = OVA_SERVE_ROLE_HOST, .options = list_options },
  { .name = "info", .roles = OVA_SERVE_ROLE_HOST, .arg = VAL_DISK,
    .min_args = 1, .max_args = 1, .arg_name = "DISK", .options = no_options },
  { .name = "export-chain", .roles = OVA_SERVE_ROLE_HOST, .arg = VAL_DISK,
    .min_args = 1, .max_args = 1, .arg_name = "DISK",
    .options = export_chain_options },
  { .name = "backup", .roles = OVA_SERVE_ROLE_HOST, .arg = VAL_VM,
    .min_args = 1, .max_args = 1, .arg_name = "VM", .options = backup_options },
  { .name = "checkpoints", .roles = OVA_SERVE_ROLE_HOST, .arg = VAL_VM,
    .min_args = 1, .max_args = 1, .arg_name = "VM",
    .options = checkpoints_options, .verify = own_checkpoint },
  { .name = "import", .roles = OVA_SERVE_ROLE_HOST, .options = import_options,
    .refused = import_refused },
  { .name = "receive", .roles = OVA_SERVE_ROLE_TARGET, .options = receive_options },
  { .name = "verify", .roles = OVA_SERVE_ROLE_TARGET, .arg = VAL_IMAGE,
    .max_args = 1, .arg_name = "DISK", .options = verify_options },
  { .name = "restore", .roles = OVA_SERVE_ROLE_TARGET, .arg = VAL_IMAGE,
    .min_args = 1, .max_args = 1, .arg_name = "DISK", .options = restore_options,
    .refused = restore_refused },
  { .name = "backups", .roles = OVA_SERVE_ROLE_TARGET, .arg = VAL_IMAGE,
    .max_args = 1, .arg_name = "DISK", .options = backups_options },
  { .name = "prune", .roles = OVA_SERVE_ROLE_TARGET, .deletes = TRUE,
    .arg = VAL_IMAGE, .max_args = PRUNE_DISKS_MAX, .arg_name = "DISK",
    .options = prune_options },
  { .name = "forget", .roles = OVA_SERVE_ROLE_TARGET, .deletes = TRUE,
    .arg = VAL_IMAGE, .min_args = 1, .max_args = 1, .arg_name = "DISK",
    .options = forget_options },
};

ova_serve_role
ova_serve_role_parse (const char *name)
{
  if (strcmp (name, "host") == 0)
    return OVA_SERVE_ROLE_HOST;
  if (strcmp (name, "target") == 0)
    return OVA_SERVE_ROLE_TARGET;
  return 0;
}

const char *
ova_serve_role_name (ova_serve_role role)
{
  return role == OVA_SERVE_ROLE_TARGET ? "target" : "host";
}

char *
ova_serve_allowed_commands (ova_serve_role role)
{
  g_autoptr(GString) s = g_string_new (NULL);

  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    if (commands[i].roles & role)
      g_string_append_printf (s, "%s%s", s->len ? ", " : "", commands[i].name);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static const serve_command *
command_lookup (const char *name)
{
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

/* A refusal: an OVA_ERROR_USAGE saying what and why; FALSE. */
#define refuse(error, ...) \
  (g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, __VA_ARGS__), FALSE)

/* ---- the form of values ---- */

/* n UUIDs separated by '/'. */
static gboolean
is_uuid_path (const char *v, guint n)
{
  g_auto(GStrv) parts = g_strsplit (v, "/", n + 1);

  if (g_strv_length (parts) != n)
    return FALSE;
  for (guint i = 0; i < n; i++)
    if (!ova_uuid_is_valid (parts[i]))
      return FALSE;
  return TRUE;
}

static gboolean
is_vm_name (const char *v)
{
  gsize len = strlen (v);

  if (len == 0 || len > VM_NAME_MAX || !(g_ascii_isalnum (v[0]) || v[0] == '_'))
    return FALSE;
  for (const char *p = v; *p; p++)
    if (!g_ascii_isalnum (*p) && strchr ("._+:@-", *p) == NULL)
      return FALSE;
  return TRUE;
}

static gboolean
is_target_dev (const char *v)
{
  gsize len = strlen (v);

  if (len < 2 || len > TARGET_DEV_MAX || !g_ascii_islower (v[0]))
    return FALSE;
  for (const char *p = v; *p; p++)
    if (!g_ascii_islower (*p) && !g_ascii_isdigit (*p))
      return FALSE;
  return TRUE;
}

static const char *
form_text (serve_value kind)
{
  switch (kind) {
  case VAL_UUID: return "a UUID";
  case VAL_DISK: return "an image UUID or SD_UUID/IMG_UUID";
  case VAL_IMAGE: return "an image UUID";
  case VAL_VOLUME: return "SD_UUID/IMG_UUID/VOL_UUID";
  case VAL_VM: return "a VM UUID or a domain name of letters, digits and ._+:@-";
  case VAL_VM_DISK: return "an image UUID or a target dev such as vda";
  case VAL_BACKUP_ID: return "a backup id such as 20261122T031000Z-3f2a9c";
  case VAL_REPO: return "a repository path under the repository root";
  case VAL_STDOUT: return "- (this SSH channel): serve writes no file";
  case VAL_FORMAT: return "raw or qcow2";
  case VAL_SECONDS: return "whole seconds, 0 for no limit";
  case VAL_COUNT: return "a number";
  case VAL_DURATION: return "a duration such as 36h, 7d, 2w, 6m or 1y";
  case VAL_LOG_LEVEL: return "error, warning, notice, info or debug";
  case VAL_PROGRESS: return "auto, bar, json or none";
  case VAL_NONE: break;
  }
  return "no value";
}

static gboolean
is_progress_mode (const char *v)
{
  return strcmp (v, "auto") == 0 || strcmp (v, "bar") == 0 ||
         strcmp (v, "json") == 0 || strcmp (v, "none") == 0;
}

/* Whether value has the form; sets *canon for a form that is rewritten
 * (a repository: its real path). */
static gboolean
value_has_form (const ova_serve_policy *p, serve_value kind, guint max,
                const char *value, char **canon, GError **error)
{
  guint64 n;
  guint secs;
  gint64 secs64;

  switch (kind) {
  case VAL_UUID: return ova_uuid_is_valid (value);
  case VAL_DISK: return is_uuid_path (value, 1) || is_uuid_path (value, 2);
  case VAL_IMAGE: return ova_uuid_is_valid (value);
  case VAL_VOLUME: return is_uuid_path (value, 3);
  case VAL_VM: return ova_uuid_is_valid (value) || is_vm_name (value);
  case VAL_VM_DISK: return ova_uuid_is_valid (value) || is_target_dev (value);
  case VAL_BACKUP_ID: return repo_backup_id_is_valid (value);
  case VAL_STDOUT: return strcmp (value, "-") == 0;
  case VAL_FORMAT: return strcmp (value, "raw") == 0 || strcmp (value, "qcow2") == 0;
  case VAL_SECONDS: return ova_io_timeout_parse (value, &secs);
  case VAL_COUNT:
    return g_ascii_string_to_unsigned (value, 10, 1, max, &n, NULL);
  case VAL_DURATION: return repo_parse_duration (value, &secs64);
  case VAL_LOG_LEVEL: return ova_log_level_parse (value) >= 0;
  case VAL_PROGRESS: return is_progress_mode (value);
  case VAL_REPO:
    /* Only a target has a root; its own message says what is wrong. */
    *canon = ova_serve_repo_resolve (p->repo_root, value, error);
    return *canon != NULL;
  case VAL_NONE: break;
  }
  return FALSE;
}

/* The value as the command gets it, or NULL (refused). what: "--repo",
 * "DISK". */
static char *
check_value (const ova_serve_policy *p, const char *what, serve_value kind,
             guint max, const char *value, GError **error)
{
  g_autoptr(GError) err = NULL;
  char *canon = NULL;

  if (value_has_form (p, kind, max, value, &canon, &err))
    return canon != NULL ? canon : g_strdup (value);
  if (err != NULL) {
    g_propagate_error (error, g_steal_pointer (&err));
    return NULL;
  }
  {
    g_autofree char *q = ova_quote_untrusted (value, 80);

    if (kind == VAL_COUNT)
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s takes a number from 1 to %u, not %s", what, max, q);
    else
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s takes %s, not %s", what, form_text (kind), q);
  }
  return NULL;
}

/* ---- repositories under the root ---- */

char *
ova_serve_root_resolve (const char *dir, GError **error)
{
  g_autofree char *real = NULL;
  struct stat st;

  if (!g_path_is_absolute (dir)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "--repo-root needs an absolute path, not '%s'", dir);
    return NULL;
  }
  real = realpath (dir, NULL);
  if (real == NULL || stat (real, &st) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "--repo-root %s: %s", dir, g_strerror (errno));
    return NULL;
  }
  if (!S_ISDIR (st.st_mode)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "--repo-root %s is not a directory", dir);
    return NULL;
  }
  return g_steal_pointer (&real);
}

static gboolean
path_is_under (const char *path, const char *root)
{
  gsize len = strlen (root);

  if (strcmp (root, "/") == 0)
    return TRUE;
  return strncmp (path, root, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

/* "/" and the first n components. */
static char *
join_components (GPtrArray *comps, guint n)
{
  g_autoptr(GString) s = g_string_new (NULL);

  for (guint i = 0; i < n; i++)
    g_string_append_printf (s, "/%s", (const char *) g_ptr_array_index (comps, i));
  if (s->len == 0)
    g_string_append_c (s, '/');
  return g_string_free (g_steal_pointer (&s), FALSE);
}

char *
ova_serve_repo_resolve (const char *root, const char *value, GError **error)
{
  g_autofree char *q = ova_quote_untrusted (value, 200);
  g_auto(GStrv) parts = NULL;
  g_autoptr(GPtrArray) comps = g_ptr_array_new ();
  g_autofree char *existing = NULL;
  g_autofree char *real = NULL;
  g_autoptr(GString) out = NULL;
  struct stat st;
  guint k;

  if (root == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "--repo %s: this key has no repository root "
                 "(serve --role target --repo-root DIR)", q);
    return NULL;
  }
  if (!g_path_is_absolute (value) || strlen (value) >= PATH_MAX) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "--repo %s must be an absolute path under the repository "
                 "root %s", q, root);
    return NULL;
  }
  parts = g_strsplit (value, "/", -1);
  for (guint i = 0; parts[i] != NULL; i++) {
    if (strcmp (parts[i], "..") == 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "--repo %s: '..' is not allowed; name the repository by "
                   "its path under %s", q, root);
      return NULL;
    }
    if (*parts[i] != '\0' && strcmp (parts[i], ".") != 0)
      g_ptr_array_add (comps, parts[i]);
  }

  /* The nearest existing parent; "/" always is one. */
  for (k = comps->len; ; k--) {
    g_free (existing);
    existing = join_components (comps, k);
    if (lstat (existing, &st) == 0)
      break;
    if (errno != ENOENT || k == 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "--repo %s: cannot look at %s: %s", q, existing,
                   g_strerror (errno));
      return NULL;
    }
  }
  real = realpath (existing, NULL);
  if (real == NULL || stat (real, &st) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "--repo %s: %s leads nowhere: %s", q, existing,
                 g_strerror (errno));
    return NULL;
  }
  if (k < comps->len && !S_ISDIR (st.st_mode)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "--repo %s: %s is not a directory", q, existing);
    return NULL;
  }
  out = g_string_new (real);
  for (guint i = k; i < comps->len; i++) {
    if (out->len > 1)
      g_string_append_c (out, '/');
    g_string_append (out, g_ptr_array_index (comps, i));
  }
  if (!path_is_under (out->str, root)) {
    g_autofree char *shown = ova_quote_untrusted (out->str, 200);

    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "--repo %s resolves to %s, outside the repository root %s "
                 "(serve --repo-root)", q, shown, root);
    return NULL;
  }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* ---- checkpoints --delete ---- */

/* The value of a canonical option ("--NAME=VALUE"), or NULL. */
static const char *
option_value (GPtrArray *options, const char *name)
{
  gsize len = strlen (name);

  for (guint i = 0; i < options->len; i++) {
    const char *o = g_ptr_array_index (options, i);

    if (strncmp (o, "--", 2) == 0 && strncmp (o + 2, name, len) == 0 &&
        o[2 + len] == '=')
      return o + 3 + len;
  }
  return NULL;
}

/* A checkpoint is ovagent's own when a backup of this agent committed it:
 * its XML is saved under <state_dir>/checkpoints/<VM_UUID>/. Deleting one
 * the engine or another tool made is left to the operator. */
static gboolean
own_checkpoint (const ova_serve_policy *p, GPtrArray *options, GPtrArray *args,
                GError **error)
{
  const char *cp = option_value (options, "delete");
  const char *vm = g_ptr_array_index (args, 0);
  g_autofree char *vm_uuid = NULL;
  g_autofree char *name = NULL;
  g_autofree char *saved = NULL;

  if (cp == NULL)
    return TRUE;
  if (!ova_uuid_is_valid (vm))
    return refuse (error, "checkpoints --delete needs the VM's UUID, not a "
                   "domain name: ovagent's own checkpoints are found by it");
  if (p->state_dir == NULL)
    return refuse (error, "checkpoints --delete: this agent has no state_dir");
  /* Saved under the VM's UUID as libvirt prints it: lower case. */
  vm_uuid = g_ascii_strdown (vm, -1);
  name = g_strconcat (cp, ".xml", NULL);
  saved = g_build_filename (p->state_dir, "checkpoints", vm_uuid, name, NULL);
  if (!g_file_test (saved, G_FILE_TEST_IS_REGULAR))
    return refuse (error, "checkpoints --delete deletes only ovagent's own "
                   "checkpoints, and %s is none: no checkpoint XML saved at "
                   "%s (delete others on the host itself)", cp, saved);
  return TRUE;
}

/* ---- the command line ---- */

typedef struct {
  const ova_serve_policy *policy;
  const serve_command *cmd;     /* NULL before the command name */
  GPtrArray *options;           /* canonical --NAME[=VALUE] */
  GPtrArray *args;
  GPtrArray *seen;              /* options given (const serve_option *) */
} checker;

static const serve_option *
option_in (const serve_option *table, const char *name, char short_name)
{
  for (const serve_option *o = table; o->name != NULL; o++)
    if (short_name ? o->short_name == short_name : strcmp (o->name, name) == 0)
      return o;
  return NULL;
}

static const char *
refusal_in (const serve_refusal *table, const char *name)
{
  for (const serve_refusal *r = table; r != NULL && r->name != NULL; r++)
    if (strcmp (r->name, name) == 0)
      return r->why;
  return NULL;
}

static char *
allowed_options (const checker *c)
{
  g_autoptr(GString) s = g_string_new (NULL);

  for (const serve_option *o = c->cmd ? c->cmd->options : no_options; o->name; o++)
    g_string_append_printf (s, "--%s, ", o->name);
  for (const serve_option *o = global_options; o->name; o++)
    g_string_append_printf (s, "--%s%s", o->name, o[1].name ? ", " : "");
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/* The option a word names (before any '='), or NULL with the refusal. */
static const serve_option *
find_option (const checker *c, const char *word, const char *name, GError **error)
{
  char short_name = word[1] != '-' ? word[1] : 0;
  const serve_option *o = NULL;
  const char *why;
  g_autofree char *q = ova_quote_untrusted (word, 64);
  g_autofree char *allowed = NULL;

  if (c->cmd != NULL)
    o = option_in (c->cmd->options, name, short_name);
  if (o == NULL)
    o = option_in (global_options, name, short_name);
  if (o != NULL)
    return o;
  if (short_name == 0 && (why = refusal_in (trust_options, name)) != NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "option --%s is refused: %s", name, why);
    return NULL;
  }
  if (short_name == 0 && c->cmd != NULL &&
      (why = refusal_in (c->cmd->refused, name)) != NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "option --%s of '%s' is refused: %s", name, c->cmd->name, why);
    return NULL;
  }
  allowed = allowed_options (c);
  if (c->cmd == NULL)
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "option %s is not allowed before the command; the "
                 "options allowed there are %s", q, allowed);
  else
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "option %s is not allowed for '%s'; its options are %s",
                 q, c->cmd->name, allowed);
  return NULL;
}

/* words[*i] is an option: checked, its value taken (inline or the next
 * word), its canonical form kept. */
static gboolean
check_option (checker *c, char *const *words, guint *i, GError **error)
{
  const char *word = words[*i];
  const char *eq = strchr (word, '=');
  g_autofree char *name = NULL;
  g_autofree char *shown = NULL;
  g_autofree char *value = NULL;
  const char *given = NULL;
  const serve_option *o;

  if (strcmp (word, "--") == 0)
    return refuse (error, "'--' is not accepted: no argument serve allows "
                   "begins with '-'");
  if (word[1] != '-') {
    if (word[1] == '\0' || word[2] != '\0') {
      g_autofree char *q = ova_quote_untrusted (word, 64);

      return refuse (error, "%s: give short options one at a time (-v -v), "
                     "each alone", q);
    }
    name = g_strdup ("");
  }
  else {
    name = eq ? g_strndup (word + 2, eq - word - 2) : g_strdup (word + 2);
    given = eq ? eq + 1 : NULL;
  }
  o = find_option (c, word, name, error);
  if (o == NULL)
    return FALSE;
  shown = g_strdup_printf ("--%s", o->name);
  if (!o->repeat && g_ptr_array_find (c->seen, o, NULL))
    return refuse (error, "%s is given twice", shown);
  g_ptr_array_add (c->seen, (gpointer) o);

  if (o->value == VAL_NONE || (o->optional && given == NULL)) {
    if (given != NULL)
      return refuse (error, "%s takes no value", shown);
    g_ptr_array_add (c->options, g_steal_pointer (&shown));
    return TRUE;
  }
  if (given == NULL && !o->optional) {
    given = words[*i + 1];
    if (given == NULL)
      return refuse (error, "%s needs a value: %s", shown, form_text (o->value));
    (*i)++;
  }
  value = check_value (c->policy, shown, o->value, o->max, given, error);
  if (value == NULL)
    return FALSE;
  g_ptr_array_add (c->options, g_strdup_printf ("%s=%s", shown, value));
  return TRUE;
}

/* "NAME=..." as a shell reads a variable assignment. */
static gboolean
is_assignment (const char *word)
{
  const char *eq = strchr (word, '=');

  if (eq == NULL || eq == word || g_ascii_isdigit (word[0]))
    return FALSE;
  for (const char *p = word; p < eq; p++)
    if (!g_ascii_isalnum (*p) && *p != '_')
      return FALSE;
  return TRUE;
}

static gboolean
check_program (const ova_serve_policy *p, const char *word, GError **error)
{
  g_autofree char *q = ova_quote_untrusted (word, 64);

  if (strcmp (word, "ovagent") == 0)
    return TRUE;
  if (p->self_path != NULL && g_path_is_absolute (word)) {
    g_autofree char *real = NULL;

    if (strcmp (word, p->self_path) == 0)
      return TRUE;
    real = realpath (word, NULL);
    if (real != NULL && strcmp (real, p->self_path) == 0)
      return TRUE;
  }
  if (is_assignment (word))
    return refuse (error, "the command line sets a variable (%s): serve runs "
                   "ovagent alone and ignores the environment", q);
  return refuse (error, "serve runs ovagent only, not %s: the command line "
                 "must begin with 'ovagent'%s%s", q,
                 p->self_path ? " or " : "", p->self_path ? p->self_path : "");
}

static gboolean
check_command (checker *c, const char *word, GError **error)
{
  const ova_serve_policy *p = c->policy;
  const serve_command *cmd = command_lookup (word);
  g_autofree char *q = ova_quote_untrusted (word, 64);
  g_autofree char *allowed = ova_serve_allowed_commands (p->role);

  if (cmd != NULL && !(cmd->roles & p->role))
    return refuse (error, "'%s' is not a command for this key (serve --role "
                   "%s runs %s)", cmd->name, ova_serve_role_name (p->role), allowed);
  if (cmd != NULL && cmd->deletes && p->append_only)
    return refuse (error, "'%s' deletes backups, and this key is append-only "
                   "(serve --append-only)", cmd->name);
  if (cmd == NULL)
    return refuse (error, "unknown command %s (serve --role %s runs %s)", q,
                   ova_serve_role_name (p->role), allowed);
  c->cmd = cmd;
  return TRUE;
}

static gboolean
check_argument (checker *c, const char *word, GError **error)
{
  const serve_command *cmd = c->cmd;
  char *value;

  if (c->args->len >= cmd->max_args) {
    g_autofree char *q = ova_quote_untrusted (word, 64);

    return refuse (error, "unexpected argument %s for '%s'", q, cmd->name);
  }
  value = check_value (c->policy, cmd->arg_name, cmd->arg, 0, word, error);
  if (value == NULL)
    return FALSE;
  g_ptr_array_add (c->args, value);
  return TRUE;
}

gboolean
ova_serve_check (const ova_serve_policy *policy, char *const *words,
                 char ***argv, GError **error)
{
  g_autoptr(GPtrArray) options = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) seen = g_ptr_array_new ();
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  checker c = { .policy = policy, .options = options, .args = args, .seen = seen };

  if (words[0] == NULL)
    return refuse (error, "no command given: this key runs ovagent commands "
                   "only (ssh HOST ovagent COMMAND ...)");
  if (!check_program (policy, words[0], error))
    return FALSE;
  for (guint i = 1; words[i] != NULL; i++) {
    const char *w = words[i];
    gboolean ok;

    if (w[0] == '-')
      ok = check_option (&c, words, &i, error);
    else if (c.cmd == NULL)
      ok = check_command (&c, w, error);
    else
      ok = check_argument (&c, w, error);
    if (!ok)
      return FALSE;
  }
  if (c.cmd == NULL)
    return refuse (error, "no command after %s", words[0][0] == '/' ? words[0] : "ovagent");
  if (args->len < c.cmd->min_args)
    return refuse (error, "'%s' needs %s (%s)", c.cmd->name, c.cmd->arg_name,
                   form_text (c.cmd->arg));
  if (c.cmd->verify != NULL && !c.cmd->verify (policy, options, args, error))
    return FALSE;

  /* The arguments first: an option whose value is optional (--compress)
   * then never meets a word it could take for its value. */
  g_ptr_array_add (out, g_strdup (c.cmd->name));
  g_ptr_array_extend_and_steal (out, g_steal_pointer (&args));
  g_ptr_array_extend_and_steal (out, g_steal_pointer (&options));
  g_ptr_array_add (out, NULL);
  *argv = (char **) g_ptr_array_free (g_steal_pointer (&out), FALSE);
  return TRUE;
}
