/* ovagent: the `backup` command: its options and help, the VM opened and locked,
 * and one run's steps in order (backup-priv.h: plan, recover, send, result). */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <string.h>

#include <libvirt/libvirt.h>

#include "error.h"
#include "util.h"
#include "agent/backup-priv.h"
#include "agent/cancel.h"
#include "virt/checkpoint.h"
#include "virt/state.h"

backup_options backup_opts;

static const GOptionEntry entries[] = {
  { "disk", 0, 0, G_OPTION_ARG_STRING_ARRAY, &backup_opts.disks,
    "Back up this disk only (image UUID, or target dev such as vda); repeat "
    "for several", "DISK" },
  { "full", 0, 0, G_OPTION_ARG_NONE, &backup_opts.full,
    "Send every allocated block", NULL },
  { "incremental", 0, 0, G_OPTION_ARG_NONE, &backup_opts.incremental,
    "Send what changed since the last committed checkpoint (or --from CP)", NULL },
  { "differential", 0, 0, G_OPTION_ARG_NONE, &backup_opts.differential,
    "Send what changed since checkpoint --from CP", NULL },
  { "auto", 0, 0, G_OPTION_ARG_NONE, &backup_opts.autom,
    "Per disk: incremental when its last checkpoint is valid, else full", NULL },
  { "from", 0, 0, G_OPTION_ARG_STRING, &backup_opts.from,
    "The checkpoint an incremental or differential backup starts from", "CP" },
  OVA_STREAM_OPTION_ENTRIES,
  { "scratch-dir", 0, 0, G_OPTION_ARG_FILENAME, &backup_opts.scratch_dir,
    "Where a running VM's backup keeps the old content of rewritten clusters "
    "(config key scratch_dir)", "DIR" },
  { "requests", 0, 0, G_OPTION_ARG_INT, &backup_opts.requests,
    "NBD reads in flight per disk (default 16)", "N" },
  { "connections", 0, 0, G_OPTION_ARG_INT, &backup_opts.connections,
    "NBD connections per disk when the export allows several (default 4)", "N" },
  { NULL },
};

const struct ova_command ova_cmd_backup = {
  .name = "backup",
  .handler = cmd_backup,
  .args = "VM",
  .usage = "VM [--disk DISK]... (--full | --incremental [--from CP] | --differential --from CP | --auto) (--output FILE|- | --target ssh://[USER@]HOST[:PORT]/PATH) [--compress[=LEVEL]] [--io-timeout SECONDS] [--scratch-dir DIR] [--requests N] [--connections N] [--json]",
  .summary = "Back up a VM's disks with changed-block tracking (libvirt "
             "checkpoints and qcow2 dirty bitmaps) as a stream.",
  .details = "VM is a libvirt domain name or a VM UUID; DISK an image UUID "
             "or, for a running VM, a target dev (vda). By default every "
             "disk that can be backed up is sent; the others (raw, qcow2 "
             "compat 0.10, network, shareable, LUN, read-only, not an oVirt "
             "volume) are listed under \"skipped\" with the reason, and one "
             "named with --disk is exit 5. Each backup creates a new "
             "checkpoint named by a UUID. --full sends every allocated "
             "block; --incremental what changed since the last checkpoint "
             "this agent committed (or --from CP; none yet is exit 3: take a "
             "full backup first); --differential what changed since --from "
             "CP, an older checkpoint; --auto decides per disk: incremental "
             "when its last checkpoint is valid, else full, and says why. "
             "A running VM is read through a pull-mode backup job "
             "(libvirt backup-begin, an NBD socket in run_dir, scratch files "
             "in scratch_dir, checked for space first: not enough is exit 8 "
             "before the VM is touched); the job is always ended, also on "
             "SIGINT/SIGTERM. Checkpoints libvirt forgot after a VM restart "
             "are redefined from the XML saved in state_dir; a broken bitmap "
             "chain is exit 5 naming the bitmap (with --auto: a full backup "
             "of that disk). A stopped VM is read through a read-only "
             "qemu-nbd over each disk's chain (block volumes activated for "
             "the run); incremental only from the newest bitmap of the top "
             "volume. The new checkpoint is kept only after the receiver "
             "committed the backup; on any failure it is deleted again. "
             "Another backup of the same VM is exit 4. The stream goes to "
             "'ovagent receive', which stores each disk as a qcow2 backed by "
             "the backup it continues. --json prints the result object "
             "(with --output - as the last line of standard error): vm, "
             "job, checkpoint, disks (kind, from_checkpoint, reason, byte "
             "counts), skipped, redefined, recovered, totals and remote. "
             "See 'ovagent checkpoints' to list or delete checkpoints.",
  .examples =
    "  ovagent backup vm1 --full --target ssh://backup@target.example.com/srv/backup --json\n"
    "  ovagent backup vm1 --auto --output - | ssh backup@target ovagent receive --repo /srv/backup\n"
    "  ovagent backup 5d3f0a2e-1b4c-4d6e-8f70-a1b2c3d4e5f6 --disk 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b \\\n"
    "      --incremental --output /var/tmp/vm1-inc.ovs\n"
    "  ovagent backup vm1 --differential --from aaaa0b1c-2d3e-4f5a-8b6c-7d8e9f0a1b2c --output - | ovagent receive --repo /backup\n",
};

/* ---- the command ---- */

static gboolean
open_vm (run *r, const char *vm, GError **error)
{
  g_autoptr (GError) err = NULL;
  char uuid[VIR_UUID_STRING_BUFLEN];

  r->conn = virt_connect (r->env->libvirt_uri, error);
  if (r->conn == NULL)
    return FALSE;
  r->dom = virt_find_domain (r->conn, vm, &err);
  if (r->dom == NULL) {
    if (!g_error_matches (err, OVA_ERROR, OVA_ERROR_NOT_FOUND)) {
      g_propagate_error (error, g_steal_pointer (&err));
      return FALSE;
    }
    if (!ova_uuid_is_valid (vm) || backup_opts.disks == NULL) {
      g_autofree char *q = ova_quote_untrusted (vm, 128);

      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "VM %s is not known to libvirt at %s; for a stopped VM give its "
                   "UUID and --disk IMAGE_UUID for each of its disks", q,
                   r->env->libvirt_uri);
      return FALSE;
    }
    r->vm_uuid = g_ascii_strdown (vm, -1);
    return TRUE;
  }
  if (virDomainGetUUIDString (r->dom, uuid) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot get the UUID of domain %s", vm);
    return FALSE;
  }
  r->vm_uuid = g_ascii_strdown (uuid, -1);
  r->vm_name = g_strdup (virDomainGetName (r->dom));
  r->running = virDomainIsActive (r->dom) == 1;
  return TRUE;
}

static gboolean
backup (ova_ctx *ctx, const char *vm, GError **error)
{
  run r = { .ctx = ctx, .env = &ctx->cfg->env, .lock_fd = -1 };
  g_auto (ova_stream_output) out = OVA_STREAM_OUTPUT_INIT;
  g_autoptr (strm_encoder) enc = NULL;
  g_autoptr (GPtrArray) images = NULL;
  g_autoptr (GPtrArray) targets = NULL;
  g_autoptr (GError) err = NULL;
  gint64 start = g_get_monotonic_time ();
  gboolean ok = FALSE;
  const char *sd = backup_opts.scratch_dir ? backup_opts.scratch_dir : ctx->cfg->scratch_dir;

  r.scratch_dir = sd ? g_canonicalize_filename (sd, NULL)
                     : g_build_filename (r.env->state_dir, "scratch", NULL);

  if (!open_vm (&r, vm, error))
    goto out;
  r.lock_fd = virt_state_lock (r.env->run_dir, r.vm_uuid, error);
  if (r.lock_fd < 0)
    goto out;
  r.state = virt_state_load (r.env->state_dir, r.vm_uuid, error);
  if (r.state == NULL || !bk_recover_pending (&r, error) || !bk_plan (&r, error))
    goto out;
  if (ova_cancelled) {
    bk_check_cancel (error);
    goto out;
  }

  /* Nothing is changed before the output is open: a file that exists or a
   * target that cannot be reached leaves the VM alone. */
  if (!ova_stream_output_open (ctx, &out, ova_stream_opts.output, ova_stream_opts.target, error))
    goto out;
  enc = strm_encoder_new (out.sink, ova_stream_opts.compress);

  r.job = g_uuid_string_random ();
  r.checkpoint = g_uuid_string_random ();
  images = bk_disk_images (&r);
  virt_state_set_pending (r.state, r.job, r.checkpoint, r.running,
                          (const char *const *) images->pdata);
  if (!virt_state_save (r.state, error))
    goto out;

  ok = r.running ? backup_running (&r, &out, enc, &err)
                 : backup_stopped (&r, &out, enc, &err);
  if (ok) {
    targets = bk_disk_targets (&r, FALSE);
    virt_state_commit (r.state, r.checkpoint, r.job, (const char *const *) images->pdata,
                       (const char *const *) targets->pdata);
  }
  else
    virt_state_clear_pending (r.state);
  /* Stopped VM: the LVs go before the result says done. */
  for (guint i = 0; i < r.disks->len; i++)
    g_clear_pointer (&((bdisk *) r.disks->pdata[i])->srv, nbdr_server_stop);
  if (r.guard)
    stor_lv_guard_release (r.guard);
  if (!virt_state_save (r.state, ok ? error : NULL) && ok) {
    ok = FALSE;
    goto out;
  }
  if (!ok) {
    g_propagate_error (error, g_steal_pointer (&err));
    goto out;
  }
  bk_print_result (&r, strm_encoder_totals (enc),
                (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC, &out);

 out:
  g_clear_pointer (&enc, strm_encoder_free);
  ova_stream_output_clear (&out);
  bk_run_clear (&r);
  return ok;
}

static gboolean
check_options (const ova_ctx *ctx, int argc, char **argv, GError **error)
{
  int modes = !!backup_opts.full + !!backup_opts.incremental + !!backup_opts.differential + !!backup_opts.autom;

  if (argc < 2) {
    ova_usage_error (ctx, error, "missing VM (a libvirt domain name or UUID)");
    return FALSE;
  }
  if (argc > 2) {
    ova_usage_error (ctx, error, "unexpected argument '%s' after VM", argv[2]);
    return FALSE;
  }
  if (modes != 1) {
    ova_usage_error (ctx, error, "give exactly one of --full, --incremental, "
                     "--differential and --auto");
    return FALSE;
  }
  if (backup_opts.from != NULL && !backup_opts.incremental && !backup_opts.differential) {
    ova_usage_error (ctx, error, "--from goes only with --incremental or --differential");
    return FALSE;
  }
  if (backup_opts.differential && backup_opts.from == NULL) {
    ova_usage_error (ctx, error, "--differential needs --from CHECKPOINT");
    return FALSE;
  }
  if (backup_opts.from != NULL && (*backup_opts.from == '\0' || strlen (backup_opts.from) > 255 ||
                            strpbrk (backup_opts.from, ",=/\n") != NULL)) {
    g_autofree char *q = ova_quote_untrusted (backup_opts.from, 64);

    ova_usage_error (ctx, error, "--from needs a checkpoint name, not %s", q);
    return FALSE;
  }
  for (gsize i = 0; backup_opts.disks && backup_opts.disks[i]; i++)
    if (*backup_opts.disks[i] == '\0' || strlen (backup_opts.disks[i]) > 64) {
      ova_usage_error (ctx, error, "--disk needs an image UUID or a target such as vda");
      return FALSE;
    }
  if (backup_opts.requests < 0 || backup_opts.requests > STRM_COPY_MAX_REQUESTS) {
    ova_usage_error (ctx, error, "--requests takes 1 to %d", STRM_COPY_MAX_REQUESTS);
    return FALSE;
  }
  if (backup_opts.connections < 0 || backup_opts.connections > NBDR_MAX_CONNECTIONS) {
    ova_usage_error (ctx, error, "--connections takes 1 to %d", NBDR_MAX_CONNECTIONS);
    return FALSE;
  }
  if (!ova_stream_output_check (ctx, ova_stream_opts.output, ova_stream_opts.target, error))
    return FALSE;
  return TRUE;
}

gboolean
cmd_backup (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  if (!ova_stream_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  if (!check_options (ctx, argc, argv, error))
    return FALSE;
  ova_cancel_install ();
  if (backup (ctx, argv[1], error))
    return TRUE;
  ova_cancel_explain (error);
  return FALSE;
}
