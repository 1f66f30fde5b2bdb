/* ovagent: the `export-chain` command: choose the volumes of a disk's chain to
 * send, check and activate them, and stream them to a file, stdout or a target. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "agent/cancel.h"
#include "agent/command.h"
#include "agent/output.h"
#include "agent/progress.h"
#include "agent/stream-output.h"
#include "storage/chain.h"
#include "storage/lvm.h"
#include "storage/probe.h"
#include "storage/scan.h"
#include "storage/source-file.h"
#include "stream/copy.h"
#include "stream/ssh.h"
#include "stream/stream.h"
#include "virt/vmusage.h"

/* Volume problems that do not make the data wrong: the PU_ tag lags the
 * record after a merge until the SPM rewrites it, and a volume's CAP may
 * lag its qcow2 header after an extend. Anything else refuses the export. */
static const char *const tolerated_problems[] = {
  "parent-tag-mismatch", "capacity-mismatch", NULL
};

static struct {
  char *since;
  char *to;
} opts;

static const GOptionEntry entries[] = {
  { "since", 0, 0, G_OPTION_ARG_STRING, &opts.since,
    "Send only the volumes after VOL (an incremental export)", "VOL" },
  { "to", 0, 0, G_OPTION_ARG_STRING, &opts.to,
    "Send up to VOL (default: the newest volume no running VM writes to)", "VOL" },
  OVA_STREAM_OPTION_ENTRIES,
  { NULL },
};

const struct ova_command ova_cmd_export_chain = {
  .name = "export-chain",
  .handler = cmd_export_chain,
  .args = "DISK",
  .usage = "DISK [--since VOL] [--to VOL] (--output FILE|- | --target ssh://[USER@]HOST[:PORT]/PATH) [--compress[=LEVEL]] [--io-timeout SECONDS] [--json]",
  .summary = "Send a disk's volume chain (or the part after --since) as a stream.",
  .details = "DISK is an image UUID, or SD_UUID/IMG_UUID. The volumes go base "
             "first, each as it is stored (qcow2 or raw, holes kept), with "
             "their VDSM metadata; 'ovagent receive' turns the stream into a "
             "qcow2 chain in a repository. "
             "By default the newest volume sent is the newest one no running "
             "VM writes to: when a VM's disk is the leaf, the export stops at "
             "its parent (take a snapshot first to include the latest data). "
             "When libvirt cannot be reached, a LEAF volume is not sent unless "
             "--to names it; VMs on other hosts are not seen: the caller must "
             "not ask for a volume such a VM writes to. "
             "--since VOL sends only the volumes after VOL (an incremental "
             "backup after one that ended with VOL); nothing newer is exit 3. "
             "A chain with problems, an ILLEGAL volume or a volume whose "
             "metadata changed while it was read (a merge, an extend) is "
             "exit 6, and the stream then ends without its trailer so that no "
             "receiver accepts it. "
             "Block volumes are activated for the run and "
             "deactivated again, also on SIGINT/SIGTERM; LVs left active by a "
             "run that was killed are deactivated by the next run. "
             "--output FILE creates FILE (never overwrites one) and removes it "
             "if the export fails. With --output - the stream goes to "
             "standard output (never to a terminal) and no result object is "
             "printed (without --json a summary line goes to standard "
             "error); otherwise --json prints the result object: disk, "
             "volumes, bytes_read, bytes_sent, data_bytes, zero_bytes, "
             "hole_bytes, seconds, and with --target backup_id and remote "
             "(the result of receive on the target). --target runs "
             "'REMOTE_COMMAND receive --repo PATH --json' on the target "
             "and uses the config keys ssh_key (default ~/.ssh/id_ed25519, "
             "id_ecdsa, id_rsa), ssh_known_hosts (default "
             "~/.ssh/known_hosts: an unknown or changed host key is exit 7, "
             "never added) and remote_command (default ovagent). "
             "--compress takes its level after '=' (--compress=9).",
  .examples =
    "  ovagent export-chain 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --output /var/tmp/disk.ovs\n"
    "  ssh root@node ovagent export-chain 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --output - | ovagent receive --repo /backup\n"
    "  ovagent export-chain 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --since 7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f \\\n"
    "      --target ssh://backup@target.example.com/srv/backup --json\n",
};

/* ---- the volumes to send ---- */

typedef struct {
  stor_volume *vol;      /* borrowed from the domain */
  stor_volume *parent;   /* borrowed; NULL for the base */
  stor_probe *probe;
  stor_volmeta *md;      /* read again just before the copy */
  char *record;          /* its text, for META */
  ova_source *src;
} planned_volume;

static void
planned_volume_free (planned_volume *p)
{
  stor_probe_free (p->probe);
  stor_volmeta_free (p->md);
  g_free (p->record);
  ova_source_free (p->src);
  g_free (p);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (planned_volume, planned_volume_free)

static char *
chain_names (const stor_image *img)
{
  g_autoptr (GString) s = g_string_new (NULL);

  for (guint i = 0; i < img->volumes->len; i++) {
    const stor_volume *v = img->volumes->pdata[i];

    g_string_append_printf (s, "%s%s", i ? ", " : "", v->uuid);
  }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static int
chain_index (const stor_image *img, const char *uuid)
{
  for (guint i = 0; i < img->volumes->len; i++) {
    const stor_volume *v = img->volumes->pdata[i];

    if (g_ascii_strcasecmp (v->uuid, uuid) == 0)
      return (int) i;
  }
  return -1;
}

static void
append_problems (GString *s, GPtrArray *problems, const char *const *skip)
{
  for (guint i = 0; problems != NULL && i < problems->len; i++) {
    const stor_problem *p = problems->pdata[i];

    if (skip != NULL && g_strv_contains (skip, p->code))
      continue;
    g_string_append_printf (s, "\n  %s: %s", p->code, p->message);
  }
}

/* A chain that is not one clean line base -> top cannot be exported: which
 * volumes form it is a guess. ILLEGAL volumes are judged per volume sent. */
static gboolean
check_image (const stor_domain *dom, const stor_image *img, GError **error)
{
  static const char *const per_volume[] = { STOR_CHAIN_ILLEGAL, NULL };
  g_autoptr (GString) s = g_string_new (NULL);

  append_problems (s, img->problems, per_volume);
  if (s->len == 0)
    return TRUE;
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
               "disk %s/%s has chain problems; refusing to export it "
               "(see 'ovagent info %s'):%s", dom->uuid, img->uuid, img->uuid,
               s->str);
  return FALSE;
}

/* The running VM that writes to path (its <source>), or NULL. */
static const virt_disk_user *
writer_of (GHashTable *users, const char *path)
{
  g_autofree char *real = realpath (path, NULL);
  const char *keys[] = { real, path };

  for (size_t k = 0; k < G_N_ELEMENTS (keys); k++) {
    GPtrArray *list = keys[k] ? g_hash_table_lookup (users, keys[k]) : NULL;

    for (guint i = 0; list != NULL && i < list->len; i++) {
      const virt_disk_user *u = list->pdata[i];

      if (u->writable_top)
        return u;
    }
  }
  return NULL;
}

/* Indexes in img->volumes of the first and last volume to send. */
static gboolean
choose_range (const ova_ctx *ctx, const stor_image *img, int *first, int *last,
              GError **error)
{
  g_autofree char *chain = chain_names (img);
  g_autoptr (GHashTable) users = NULL;
  g_autoptr (GError) err = NULL;
  int since = -1, to;
  const stor_volume *top;

  if (opts.since != NULL) {
    since = chain_index (img, opts.since);
    if (since < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "volume %s is not in the chain of disk %s (chain: %s)",
                   opts.since, img->uuid, chain);
      return FALSE;
    }
  }

  users = virt_volume_users (ctx->cfg->env.libvirt_uri, &err);

  if (opts.to != NULL) {
    to = chain_index (img, opts.to);
    if (to < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                   "volume %s is not in the chain of disk %s (chain: %s)",
                   opts.to, img->uuid, chain);
      return FALSE;
    }
    if (to <= since) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "--to %s is not after --since %s in the chain of disk %s "
                   "(chain: %s)", opts.to, opts.since, img->uuid, chain);
      return FALSE;
    }
    top = img->volumes->pdata[to];
    if (users != NULL && top->path != NULL) {
      const virt_disk_user *u = writer_of (users, top->path);

      if (u != NULL) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                     "volume %s is the writable top of running VM %s (disk %s); "
                     "take a snapshot and export up to its parent, or pass "
                     "--to an older volume", top->uuid, u->vm_name, u->target);
        return FALSE;
      }
    }
    else if (users == NULL)
      ova_warn ("exporting up to volume %s as asked by --to, without knowing "
                "whether a running VM writes to it: %s", top->uuid, err->message);
  }
  else {
    to = (int) img->volumes->len - 1;
    top = img->volumes->pdata[to];
    if (users != NULL && top->path != NULL) {
      const virt_disk_user *u = writer_of (users, top->path);

      if (u != NULL) {
        ova_info ("volume %s is written by running VM %s: exporting up to "
                  "its parent", top->uuid, u->vm_name);
        if (to == 0 || to - 1 <= since) {
          g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                       "volume %s, the newest of disk %s, is the writable top "
                       "of running VM %s and %s; take a snapshot first",
                       top->uuid, img->uuid, u->vm_name,
                       to == 0 ? "the only volume" : "nothing older is left to send");
          return FALSE;
        }
        to--;
      }
    }
    else if (users == NULL && top->md != NULL &&
             top->md->voltype == STOR_VOLTYPE_LEAF) {
      /* A LEAF is what a VM writes to: without libvirt there is no way to
       * know it is not being written right now. */
      g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                   "cannot tell whether a running VM writes to volume %s, the "
                   "LEAF of disk %s (%s); pass --to with its parent, or --to "
                   "%s if no VM uses the disk", top->uuid, img->uuid,
                   err->message, top->uuid);
      return FALSE;
    }
    else if (users == NULL)
      ova_warn ("cannot tell which running VMs use disk %s: %s",
                img->uuid, err->message);
  }

  if (to <= since) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "nothing to send after volume %s: it is the newest volume of "
                 "disk %s that can be exported (chain: %s)",
                 opts.since, img->uuid, chain);
    return FALSE;
  }
  *first = since + 1;
  *last = to;
  return TRUE;
}

/* Activate, probe and check one volume, read its record again and open it. */
static planned_volume *
prepare_volume (const ova_ctx *ctx, stor_domain *dom, stor_volume *v,
                stor_volume *parent, stor_lv_guard *guard, GError **error)
{
  g_autoptr (GString) problems = g_string_new (NULL);
  g_autoptr (planned_volume) p = g_new0 (planned_volume, 1);

  p->vol = v;
  p->parent = parent;

  if (v->md == NULL || v->md->cleared) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "volume %s/%s has no usable metadata; refusing to export it",
                 dom->uuid, v->uuid);
    return NULL;
  }
  if (v->md->legality != STOR_LEGALITY_LEGAL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "volume %s/%s is %s, not LEGAL (an operation on it did not "
                 "finish, or it is being created); refusing to export it",
                 dom->uuid, v->uuid, stor_legality_name (v->md->legality));
    return NULL;
  }

  if (dom->kind == STOR_KIND_BLOCK &&
      !stor_lv_guard_activate (guard, dom->uuid, v->uuid, error))
    return NULL;

  p->probe = stor_probe_volume (v->path, v->md->format, error);
  if (p->probe == NULL)
    return NULL;
  stor_probe_check (p->probe, v, parent);
  append_problems (problems, v->problems, tolerated_problems);
  if (problems->len > 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "volume %s/%s does not match its metadata or chain; refusing "
                 "to export it:%s", dom->uuid, v->uuid, problems->str);
    return NULL;
  }
  for (guint i = 0; v->problems != NULL && i < v->problems->len; i++) {
    const stor_problem *pb = v->problems->pdata[i];

    ova_warn ("%s", pb->message);
  }

  /* The record as it is now is what META carries and what the check after
   * the copy compares with. */
  p->md = stor_reread_volmeta (&ctx->cfg->env, dom, v, &p->record, error);
  if (p->md == NULL)
    return NULL;
  if (p->md->cleared || p->md->legality != STOR_LEGALITY_LEGAL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "volume %s/%s is no longer LEGAL; refusing to export it",
                 dom->uuid, v->uuid);
    return NULL;
  }

  p->src = stor_source_open_volume (dom, v, error);
  if (p->src == NULL)
    return NULL;
  return g_steal_pointer (&p);
}

/* ---- META ---- */

/* The VDSM record as key -> value strings, in its order. Values come from
 * storage: kept as they are where they are UTF-8, else made valid. */
static void
add_record (JsonBuilder *b, const char *record)
{
  g_auto (GStrv) lines = g_strsplit (record, "\n", -1);

  json_builder_begin_object (b);
  for (size_t i = 0; lines[i] != NULL; i++) {
    g_autofree char *line = g_utf8_make_valid (lines[i], -1);
    char *eq = strchr (line, '=');

    if (eq == NULL || eq == line)
      continue;
    *eq = '\0';
    ova_json_add_string (b, line, eq + 1);
  }
  json_builder_end_object (b);
}

static char *
build_meta (const stor_domain *dom, const stor_image *img, const char *since,
            GPtrArray *plan)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  const planned_volume *top = plan->pdata[plan->len - 1];

  strm_meta_begin (b, "chain");

  json_builder_set_member_name (b, "domain");
  json_builder_begin_object (b);
  ova_json_add_string (b, "uuid", dom->uuid);
  ova_json_add_string (b, "kind", dom->kind == STOR_KIND_BLOCK ? "block" : "file");
  ova_json_add_string (b, "storage", dom->storage ? dom->storage : "unknown");
  ova_json_add_int (b, "version", dom->version);
  json_builder_end_object (b);

  ova_json_add_string (b, "disk", img->uuid);
  ova_json_add_int (b, "capacity", (gint64) top->md->capacity);
  ova_json_add_string (b, "since", since);

  json_builder_set_member_name (b, "volumes");
  json_builder_begin_array (b);
  for (guint i = 0; i < plan->len; i++) {
    const planned_volume *p = plan->pdata[i];
    const stor_volmeta *md = p->md;
    gboolean qcow2 = p->probe->format && strcmp (p->probe->format, "qcow2") == 0;

    json_builder_begin_object (b);
    ova_json_add_string (b, "uuid", p->vol->uuid);
    ova_json_add_string (b, "parent",
                         ova_uuid_is_blank (md->parent) ? NULL : md->parent);
    ova_json_add_string (b, "format", stor_format_name (md->format));
    ova_json_add_string (b, "voltype", stor_voltype_name (md->voltype));
    ova_json_add_string (b, "legality", stor_legality_name (md->legality));
    ova_json_add_int (b, "capacity", (gint64) md->capacity);
    ova_json_add_int (b, "generation", md->gen);
    ova_json_add_int (b, "size", (gint64) p->src->size);
    ova_json_add_string (b, "qcow2_compat", qcow2 ? p->probe->qcow2_compat : NULL);
    ova_json_add_string (b, "backing", qcow2 ? p->probe->backing : NULL);
    json_builder_set_member_name (b, "metadata");
    add_record (b, p->record);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

/* ---- the copy ---- */

/* The records must be as they were before the copy: a new generation or a
 * change of legality means a merge, an extend or a deletion ran while the
 * data was read. */
static gboolean
recheck_volumes (const ova_ctx *ctx, stor_domain *dom, GPtrArray *plan,
                 GError **error)
{
  for (guint i = 0; i < plan->len; i++) {
    const planned_volume *p = plan->pdata[i];
    g_autoptr (stor_volmeta) md = NULL;
    g_autoptr (GError) err = NULL;
    g_autofree char *what = NULL;

    md = stor_reread_volmeta (&ctx->cfg->env, dom, p->vol, NULL, &err);
    if (md == NULL)
      what = g_strdup (err->message);
    else if (md->cleared)
      what = g_strdup ("its metadata was cleared");
    else if (md->gen != p->md->gen)
      what = g_strdup_printf ("generation %u → %u", p->md->gen, md->gen);
    else if (md->legality != p->md->legality)
      what = g_strdup_printf ("legality %s → %s",
                              stor_legality_name (p->md->legality),
                              stor_legality_name (md->legality));
    else if (g_ascii_strcasecmp (md->parent, p->md->parent) != 0)
      what = g_strdup_printf ("parent %s → %s", p->md->parent, md->parent);
    else if (md->capacity != p->md->capacity)
      what = g_strdup_printf ("capacity %" G_GUINT64_FORMAT " → %" G_GUINT64_FORMAT,
                              p->md->capacity, md->capacity);
    if (what != NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "volume %s changed while it was read (%s); the stream was "
                   "not completed and must not be used", p->vol->uuid, what);
      return FALSE;
    }
  }
  return TRUE;
}

static void
print_result (const ova_ctx *ctx, const stor_image *img, GPtrArray *plan,
              const strm_totals *t, guint64 bytes_read, double seconds,
              const ova_stream_output *out)
{
  gboolean ssh = out->ssh;
  const char *backup_id = ova_stream_output_remote_backup_id (out);

  /* DESIGN §3: the JSON result goes to stdout only when the stream does
   * not; with --output - the summary line goes to stderr as without --json. */
  if (ctx->json && !ova_stream_output_is_stdout (out)) {
    g_autoptr (JsonBuilder) b = json_builder_new ();
    g_autoptr (JsonNode) root = NULL;

    json_builder_begin_object (b);
    ova_json_add_string (b, "result", "ok");
    ova_json_add_string (b, "disk", img->uuid);
    json_builder_set_member_name (b, "volumes");
    json_builder_begin_array (b);
    for (guint i = 0; i < plan->len; i++)
      json_builder_add_string_value (b, ((planned_volume *) plan->pdata[i])->vol->uuid);
    json_builder_end_array (b);
    ova_json_add_int (b, "bytes_read", bytes_read);
    ova_json_add_int (b, "bytes_sent", t->bytes_sent);
    ova_json_add_int (b, "data_bytes", t->data_bytes);
    ova_json_add_int (b, "zero_bytes", t->zero_bytes);
    ova_json_add_int (b, "hole_bytes", t->hole_bytes);
    ova_json_add_double (b, "seconds", seconds);
    if (ssh) {
      ova_json_add_string (b, "backup_id", backup_id);
      ova_stream_output_add_remote (b, out);
    }
    json_builder_end_object (b);
    root = json_builder_get_root (b);
    ova_print_json (root);
    return;
  }

  {
    g_autofree char *read = ova_format_size (bytes_read);
    g_autofree char *sent = ova_format_size (t->bytes_sent);
    g_autofree char *rate = ova_format_size (seconds > 0 ? bytes_read / seconds : 0);
    FILE *fp = ova_stream_output_is_stdout (out) ? stderr : stdout;

    fprintf (fp, "Exported %u volume%s of disk %s: %s read, %s sent in %.1f s "
             "(%s/s)%s%s\n", plan->len, plan->len == 1 ? "" : "s", img->uuid,
             read, sent, seconds, rate,
             backup_id ? "; backup " : "", backup_id ? backup_id : "");
  }
}

static gboolean
check_options (const ova_ctx *ctx, int argc, char **argv, GError **error)
{
  if (argc < 2) {
    ova_usage_error (ctx, error, "missing DISK (an image UUID or SD_UUID/IMG_UUID)");
    return FALSE;
  }
  if (argc > 2) {
    ova_usage_error (ctx, error, "unexpected argument '%s' after DISK", argv[2]);
    return FALSE;
  }
  if (opts.since != NULL && !ova_uuid_is_valid (opts.since)) {
    ova_usage_error (ctx, error, "--since needs a volume UUID, not '%s'", opts.since);
    return FALSE;
  }
  if (opts.to != NULL && !ova_uuid_is_valid (opts.to)) {
    ova_usage_error (ctx, error, "--to needs a volume UUID, not '%s'", opts.to);
    return FALSE;
  }
  if (!ova_stream_output_check (ctx, ova_stream_opts.output, ova_stream_opts.target, error))
    return FALSE;
  return TRUE;
}

static gboolean
export_chain (ova_ctx *ctx, const char *disk, GError **error)
{
  const stor_env *env = &ctx->cfg->env;
  /* Cleanup runs in reverse: the encoder before its sink, the sources
   * (fds on the LVs) before the guard deactivates the LVs. */
  g_autoptr (stor_lv_guard) guard = stor_lv_guard_new (env);
  g_autoptr (GPtrArray) domains = NULL;
  g_autoptr (GPtrArray) plan = NULL;
  g_auto (ova_stream_output) out = OVA_STREAM_OUTPUT_INIT;
  g_autoptr (strm_encoder) enc = NULL;
  g_autoptr (ova_progress_meter) meter = NULL;
  g_autofree char *meta = NULL;
  g_autofree char *only_sd = NULL;
  stor_domain *dom = NULL;
  stor_image *img = NULL;
  const char *slash = strchr (disk, '/');
  gint64 start = g_get_monotonic_time ();
  guint64 bytes_read = 0, total = 0;
  const char *since_uuid = NULL;
  int first = 0, last = -1;

  /* Leftovers of a run that died before deactivating its LVs. */
  stor_lv_cleanup_stale (env);

  /* SD/IMG: only that domain is scanned (stor_find_disk judges the form). */
  if (slash != NULL) {
    only_sd = g_strndup (disk, slash - disk);
    if (!ova_uuid_is_valid (only_sd))
      g_clear_pointer (&only_sd, g_free);
  }
  domains = stor_scan_domains (env, only_sd, error);
  if (domains == NULL)
    return FALSE;
  if (!stor_find_disk (domains, disk, &dom, &img, error))
    return FALSE;
  if (!check_image (dom, img, error))
    return FALSE;
  if (!choose_range (ctx, img, &first, &last, error))
    return FALSE;
  if (first > 0)
    since_uuid = ((stor_volume *) img->volumes->pdata[first - 1])->uuid;

  plan = g_ptr_array_new_with_free_func ((GDestroyNotify) planned_volume_free);
  for (int i = first; i <= last; i++) {
    stor_volume *v = img->volumes->pdata[i];
    stor_volume *parent = i > 0 ? img->volumes->pdata[i - 1] : NULL;
    planned_volume *p;

    if (ova_cancelled) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERRUPTED,
                   "interrupted by a signal before the copy of disk %s began",
                   img->uuid);
      return FALSE;
    }
    p = prepare_volume (ctx, dom, v, parent, guard, error);
    if (p == NULL)
      return FALSE;
    g_ptr_array_add (plan, p);
    total += p->src->size;
  }

  meta = build_meta (dom, img, since_uuid, plan);
  if (!ova_stream_output_open (ctx, &out, ova_stream_opts.output, ova_stream_opts.target, error))
    return FALSE;

  enc = strm_encoder_new (out.sink, ova_stream_opts.compress);
  meter = ova_progress_new (ctx->progress, img->uuid, total);
  if (!strm_encoder_meta (enc, meta, error))
    return FALSE;
  for (guint i = 0; i < plan->len; i++) {
    planned_volume *p = plan->pdata[i];
    guint64 read = 0;

    ova_info ("sending volume %s (%" G_GUINT64_FORMAT " bytes)",
              p->vol->uuid, p->src->size);
    if (!strm_copy_source (enc, p->src, p->vol->uuid, NULL, ova_progress_part_done, meter,
                           &ova_cancelled, &read, error))
      return FALSE;
    bytes_read += read;
    ova_progress_next_part (meter, p->src->size);
  }

  /* Only a stream whose volumes did not change gets its STREAM_END: a
   * receiver never commits one without it. */
  if (!recheck_volumes (ctx, dom, plan, error))
    return FALSE;
  if (!strm_encoder_finish (enc, error))
    return FALSE;
  if (!ova_stream_output_close (&out, error))
    return FALSE;
  ova_progress_finish (meter);

  /* Deactivate before reporting success. */
  for (guint i = 0; i < plan->len; i++)
    g_clear_pointer (&((planned_volume *) plan->pdata[i])->src, ova_source_free);
  stor_lv_guard_release (guard);
  print_result (ctx, img, plan, strm_encoder_totals (enc), bytes_read,
                (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC,
                &out);
  return TRUE;
}

gboolean
cmd_export_chain (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autofree char *disk = NULL;

  if (!ova_stream_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  if (!check_options (ctx, argc, argv, error))
    return FALSE;
  disk = g_ascii_strdown (argv[1], -1);
  ova_cancel_install ();
  if (export_chain (ctx, disk, error))
    return TRUE;
  ova_cancel_explain (error);
  return FALSE;
}
