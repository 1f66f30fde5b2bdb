/* ovagent tests: drives virt/ (backup jobs, checkpoints, bitmap chains)
 * against a real libvirtd for virt-checkpoint.sh, one operation per run,
 * results as JSON on stdout. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "storage/qemu-img.h"
#include "virt/backup-job.h"
#include "virt/bitmaps.h"
#include "virt/checkpoint.h"
#include "virt/libvirt.h"

static char *opt_uri = NULL;
static char *opt_run_dir = NULL;
static char *opt_scratch_dir = NULL;
static char *opt_state_dir = NULL;
static char *opt_backup_id = NULL;
static char **opt_disks = NULL;
static char **opt_full_disks = NULL;
static int opt_percent = 0;
static gboolean opt_running = FALSE;

static const GOptionEntry entries[] = {
  { "uri", 0, 0, G_OPTION_ARG_STRING, &opt_uri, "libvirt URI", "URI" },
  { "run-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_run_dir, "socket parent", "DIR" },
  { "scratch-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_scratch_dir, "scratch parent", "DIR" },
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_state_dir, "saved checkpoints", "DIR" },
  { "backup-id", 0, 0, G_OPTION_ARG_STRING, &opt_backup_id, "backup UUID", "UUID" },
  { "disk", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_disks, "disk to back up", "DEV" },
  { "full-disk", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_full_disks, "read in full", "DEV" },
  { "scratch-percent", 0, 0, G_OPTION_ARG_INT, &opt_percent, "scratch space", "N" },
  { "running", 0, 0, G_OPTION_ARG_NONE, &opt_running, "image open by QEMU", NULL },
  { NULL }
};

static void
print_json (JsonBuilder *b)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *text = NULL;

  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
}

static void
print_names (GPtrArray *names)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();

  json_builder_begin_array (b);
  for (guint i = 0; names && i < names->len; i++)
    json_builder_add_string_value (b, g_ptr_array_index (names, i));
  json_builder_end_array (b);
  print_json (b);
}

static void
print_backup (const virt_backup *bk)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();

  json_builder_begin_object (b);
  ova_json_add_string (b, "backup_id", bk->backup_id);
  ova_json_add_string (b, "socket", bk->socket_path);
  ova_json_add_string (b, "scratch_dir", bk->scratch_dir);
  json_builder_set_member_name (b, "disks");
  json_builder_begin_array (b);
  for (guint i = 0; i < bk->disks->len; i++) {
    const virt_backup_disk *d = g_ptr_array_index (bk->disks, i);

    json_builder_begin_object (b);
    ova_json_add_string (b, "target", d->target);
    ova_json_add_string (b, "export", d->export_name);
    ova_json_add_string (b, "uri", d->nbd_uri);
    ova_json_add_string (b, "bitmap_context", d->bitmap_context);
    ova_json_add_string (b, "scratch", d->scratch);
    ova_json_add_bool (b, "incremental", d->incremental);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  print_json (b);
}

static void
print_disks (GPtrArray *disks)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();

  json_builder_begin_array (b);
  for (guint i = 0; i < disks->len; i++) {
    const virt_disk *d = g_ptr_array_index (disks, i);

    json_builder_begin_object (b);
    ova_json_add_string (b, "target", d->target);
    ova_json_add_string (b, "path", d->path);
    ova_json_add_string (b, "format", d->format);
    ova_json_add_int (b, "virtual_size", (gint64) d->virtual_size);
    ova_json_add_string (b, "unsupported", d->unsupported);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  print_json (b);
}

static gboolean
need_dirs (GError **error)
{
  if (opt_run_dir == NULL || opt_scratch_dir == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "--run-dir and --scratch-dir are needed");
    return FALSE;
  }
  return TRUE;
}

static gboolean
need_state (GError **error)
{
  if (opt_state_dir == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "--state-dir is needed");
    return FALSE;
  }
  return TRUE;
}

static gboolean
run (int argc, char **argv, GError **error)
{
  const char *cmd = argv[1];
  g_autofree char *backup_id = NULL;
  virConnectPtr conn = NULL;
  virDomainPtr dom = NULL;
  gboolean ok = FALSE;

  if (strcmp (cmd, "check-bitmap") == 0) {
    g_autofree char *problem = NULL;
    g_autoptr (JsonBuilder) b = json_builder_new ();

    g_autoptr (GPtrArray) layers = stor_layers_new ();

    if (argc < 4) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "check-bitmap PATH BITMAP [BACKING...] (qcow2 files; raw:PATH for a raw base)");
      return FALSE;
    }
    for (int i = 2; i < argc; i++) {
      if (i == 3)
        continue;
      if (g_str_has_prefix (argv[i], "raw:"))
        stor_layers_add (layers, argv[i] + 4, "raw");
      else
        stor_layers_add (layers, argv[i], "qcow2");
    }
    problem = virt_bitmap_chain_problem (layers, argv[3], opt_running, error);
    if (problem == NULL && error && *error)
      return FALSE;
    json_builder_begin_object (b);
    ova_json_add_bool (b, "ok", problem == NULL);
    ova_json_add_string (b, "reason", problem);
    json_builder_end_object (b);
    print_json (b);
    return TRUE;
  }

  if (argc < 3) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "%s needs a VM", cmd);
    return FALSE;
  }
  conn = virt_connect (opt_uri, error);
  if (conn == NULL)
    return FALSE;
  dom = virt_find_domain (conn, argv[2], error);
  if (dom == NULL)
    goto out;

  if (strcmp (cmd, "disks") == 0 && argc == 3) {
    g_autoptr (GPtrArray) disks = virt_domain_disks (dom, error);

    if (disks == NULL)
      goto out;
    print_disks (disks);
  }
  else if ((strcmp (cmd, "begin-full") == 0 && argc == 4) ||
           (strcmp (cmd, "begin-inc") == 0 && argc == 5)) {
    gboolean inc = strcmp (cmd, "begin-inc") == 0;
    virt_backup_request req = {
      .checkpoint_id = argv[inc ? 4 : 3],
      .from_checkpoint = inc ? argv[3] : NULL,
      .disks = (const char *const *) opt_disks,
      .full_disks = (const char *const *) opt_full_disks,
      .run_dir = opt_run_dir,
      .scratch_dir = opt_scratch_dir,
      .scratch_percent = opt_percent,
    };
    g_autoptr (virt_backup) bk = NULL;

    if (!need_dirs (error))
      goto out;
    backup_id = opt_backup_id ? g_strdup (opt_backup_id) : g_uuid_string_random ();
    req.backup_id = backup_id;
    bk = virt_backup_begin (dom, &req, error);
    if (bk == NULL)
      goto out;
    /* The job outlives this process: "end" ends it. */
    print_backup (bk);
  }
  else if (strcmp (cmd, "end") == 0 && argc == 4) {
    g_autoptr (virt_backup) bk = NULL;

    if (!need_dirs (error))
      goto out;
    bk = virt_backup_for_id (opt_run_dir, opt_scratch_dir, argv[3], error);
    if (bk == NULL || !virt_backup_end (dom, bk, error) ||
        !virt_backup_end (dom, bk, error))   /* idempotent */
      goto out;
    printf ("{\"ended\": true}\n");
  }
  else if (strcmp (cmd, "list") == 0 && argc == 3) {
    g_autoptr (GPtrArray) names = virt_checkpoint_list (dom, error);

    if (names == NULL)
      goto out;
    print_names (names);
  }
  else if (strcmp (cmd, "dump") == 0 && argc == 4) {
    g_autofree char *xml = virt_checkpoint_dump (dom, argv[3], error);

    if (xml == NULL)
      goto out;
    printf ("%s", xml);
  }
  else if (strcmp (cmd, "save") == 0 && argc == 4) {
    if (!need_state (error) || !virt_checkpoint_save (dom, argv[3], opt_state_dir, error))
      goto out;
    printf ("{\"saved\": \"%s\"}\n", argv[3]);
  }
  else if (strcmp (cmd, "redefine") == 0 && argc == 3) {
    g_autoptr (GPtrArray) names = NULL;

    if (!need_state (error) ||
        !virt_checkpoint_redefine_missing (dom, opt_state_dir, &names, error))
      goto out;
    print_names (names);
  }
  else if (strcmp (cmd, "delete") == 0 && argc == 4) {
    if (!virt_checkpoint_delete (dom, argv[3], opt_state_dir, error))
      goto out;
    printf ("{\"deleted\": \"%s\"}\n", argv[3]);
  }
  else {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "unknown command or wrong arguments: %s",
                 cmd);
    goto out;
  }
  ok = TRUE;
 out:
  if (dom)
    virDomainFree (dom);
  virConnectClose (conn);
  return ok;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) oc =
    g_option_context_new ("disks VM | begin-full VM CP | begin-inc VM FROM CP | end VM ID |"
                          " list VM | dump VM CP | save VM CP | redefine VM | delete VM CP |"
                          " check-bitmap PATH BITMAP");
  g_autoptr (GError) err = NULL;

  ova_log_init ("virt-checkpoint-driver", LOG_INFO, FALSE);
  g_option_context_add_main_entries (oc, entries, NULL);
  if (!g_option_context_parse (oc, &argc, &argv, &err) || argc < 2) {
    fprintf (stderr, "virt-checkpoint-driver: %s\n", err ? err->message : "no command");
    return 2;
  }
  if (!run (argc, argv, &err)) {
    fprintf (stderr, "virt-checkpoint-driver: %s\n", err->message);
    return ova_error_exit_code (err);
  }
  return 0;
}
