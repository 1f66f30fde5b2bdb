/* ovagent: the entry point: the command table, global options (accepted before
 * or after the command name), configuration and logging set-up, error reporting. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "agent/command.h"
#include "agent/output.h"

/* Longest command name worth comparing for a suggestion. */
#define SUGGEST_MAX_LEN 64
/* Help text is wrapped to fit a terminal. */
#define HELP_WIDTH 79

static gboolean cmd_help (ova_ctx *ctx, int argc, char **argv, GError **error);

static const struct ova_command commands[] = {
  {
    .name = "list",
    .handler = cmd_list,
    .args = NULL,
    .usage = "[--domain SD] [--json]",
    .summary = "List the storage domains of this host, their images (disks) "
               "and each image's volume chain, base first.",
    .details = "Problems found on the way (unreadable metadata, broken chains) "
               "are shown on lines starting with '!' and do not stop the listing.",
    .examples =
      "  ovagent list\n"
      "  ovagent list --domain 5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60\n"
      "  ovagent list --json | jq -r '.domains[].images[].uuid'\n",
  },
  {
    .name = "info",
    .handler = cmd_info,
    .args = "DISK",
    .usage = "DISK [--json]",
    .summary = "Show one disk's volume chain, base first: metadata, qcow2 compat, "
               "virtual and actual size, backing string, bitmaps, activation "
               "and the running VMs using each volume.",
    .details = "DISK is an image UUID, or SD_UUID/IMG_UUID when the image UUID "
               "alone is found in several storage domains. Block volumes that "
               "are not active are activated read-only for the command and "
               "deactivated again.",
    .examples =
      "  ovagent info 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b\n"
      "  ovagent info 5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60/0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --json\n",
  },
  {
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
  },
  {
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
  },
  {
    .name = "checkpoints",
    .handler = cmd_checkpoints,
    .args = "VM",
    .usage = "VM [--delete CP] [--json]",
    .summary = "List a VM's backup checkpoints, or delete one.",
    .details = "VM is a libvirt domain name or a VM UUID (a VM that is down "
               "and no longer defined in libvirt is found by its UUID in "
               "state_dir). The list merges the checkpoints libvirt knows "
               "(parents first), the checkpoint XML 'backup' saved in "
               "state_dir/checkpoints/VM_UUID (VDSM runs VMs as transient "
               "domains: after a restart libvirt has forgotten them, the next "
               "backup redefines them) and the backup state: for each disk "
               "its last committed checkpoint, and a pending backup that did "
               "not finish (the next backup cleans it up). For a VM that is "
               "not running, the bitmaps in each disk's top volume are shown "
               "too (qemu-img info -U). --delete CP removes the checkpoint: "
               "through libvirt when the VM runs (its bitmaps merge into the "
               "parent's); otherwise with qemu-img bitmap on the disks' "
               "volumes (merged into the parent's bitmap, then removed) and "
               "its saved XML. Disks whose last checkpoint it was get a full "
               "backup next time with 'backup --auto'. An unknown VM or "
               "checkpoint is exit 3; a backup of the same VM in progress is "
               "exit 4. --json prints vm, name, running, checkpoints (name, "
               "parent, created, known_to_libvirt, saved, disks, last_for), "
               "pending and disks.",
    .examples =
      "  ovagent checkpoints vm1\n"
      "  ovagent checkpoints 5d3f0a2e-1b4c-4d6e-8f70-a1b2c3d4e5f6 --json\n"
      "  ovagent checkpoints vm1 --delete aaaa0b1c-2d3e-4f5a-8b6c-7d8e9f0a1b2c\n",
  },
  {
    .name = "receive",
    .handler = cmd_receive,
    .args = NULL,
    .usage = "--repo DIR [--io-timeout SECONDS] [--json] < STREAM",
    .summary = "Read a stream on standard input and commit it to a repository.",
    .details = "The stream comes from 'ovagent export-chain --output -' (or a "
               "file it wrote). It becomes a new backup of the repository DIR "
               "(plain qcow2 files and a manifest per disk, see "
               "docs/repository.md) only if it arrived whole and every "
               "checksum matched; on any error or signal the repository is "
               "left as it was. DIR is created if missing; a non-empty "
               "directory that is not a repository is exit 2. A full backup "
               "starts a new chain; an incremental (export-chain --since VOL) "
               "must continue the latest backup of the disk (VOL its last "
               "volume), else exit 6. The stream's metadata is checked before "
               "DIR is opened; then receive holds the repository lock shared "
               "(verify and restore run alongside, and so do receives of other "
               "disks) and the lock of its disk: another receive writing the "
               "same disk, or a run holding the repository exclusively, is "
               "exit 4. A stream cut short, or a sender that sends nothing for "
               "--io-timeout seconds (the io_timeout key, default 300), is exit "
               "7, a full file system exit 8. --json prints backup_id, disk, "
               "kind (full or incremental), volumes, bytes_received, "
               "data_bytes, seconds.",
    .examples =
      "  ssh root@node ovagent export-chain 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --output - | \\\n"
      "      ovagent receive --repo /backup --json\n"
      "  ovagent receive --repo /backup < /var/tmp/disk.ovs\n",
  },
  {
    .name = "backups",
    .handler = cmd_backups,
    .args = "[DISK]",
    .usage = "--repo DIR [DISK] [--json]",
    .summary = "List the backups of a repository (or of one disk), oldest "
               "first, with the storage each one takes.",
    .details = "For every disk (or DISK, an image UUID) the backups its "
               "manifest lists: id, commit time, kind (full, incremental, "
               "differential), type (chain export or cbt), the backup it is "
               "built on, its guest-visible size and the bytes its own files "
               "take on the file system (allocated blocks; a file linked into "
               "two backups counts once), with per-disk and repository totals. "
               "A backup an unfinished prune or forget is removing is shown "
               "as being removed. Holds the repository lock shared, like "
               "verify: a prune or forget running is exit 4. A missing "
               "repository or an unknown disk is exit 3; a manifest that "
               "fails its checks is exit 6, naming it. --json prints repo, "
               "stored_bytes and disks (disk, stored_bytes, backups: id, time, "
               "kind, type, parent, checkpoint, from_checkpoint, vm, host, "
               "domain, volumes, stored_bytes, virtual_size, removing).",
    .examples =
      "  ovagent backups --repo /backup\n"
      "  ovagent backups --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --json | jq -r '.disks[].backups[].id'\n",
  },
  {
    .name = "verify",
    .handler = cmd_verify,
    .args = "[DISK]",
    .usage = "--repo DIR [DISK [--backup ID]] [--json]",
    .summary = "Re-read every file of a repository and check it against the manifest.",
    .details = "Every file of every backup (or of DISK, an image UUID, or of "
               "one backup of it) is read and its length, digest and "
               "qcow2 backing string compared with the manifest. Every "
               "mismatch, missing or replaced file is reported by name, and "
               "any is exit 6. An unknown disk or backup is exit 3. --json "
               "prints disks, backups, files and bytes checked.",
    .examples =
      "  ovagent verify --repo /backup\n"
      "  ovagent verify --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --backup 20261122T031000Z-3f2a9c --json\n",
  },
  {
    .name = "restore",
    .handler = cmd_restore,
    .args = "DISK",
    .usage = "--repo DIR DISK [--backup ID] (--to PATH [--format raw|qcow2] | --output - [--io-timeout SECONDS]) [--json]",
    .summary = "Write a disk as it was at a backup, as a file or as a stream.",
    .details = "DISK is an image UUID; the backup is the latest one unless "
               "--backup names another. --to PATH writes the guest-visible "
               "disk to the new file PATH (raw by default, or one qcow2 file "
               "with --format qcow2), sparse, through PATH.part renamed at the "
               "end; an existing PATH or PATH.part is exit 2. --output - "
               "writes a restore stream to standard output instead (never to "
               "a terminal), for 'ovagent import' on a host; no result object "
               "is printed then. An unknown disk or backup is exit 3. --json "
               "prints disk, backup_id, path, format and bytes_written (the "
               "space the file takes).",
    .examples =
      "  ovagent restore --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --to /var/tmp/disk.raw\n"
      "  ovagent restore --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --backup 20261122T031000Z-3f2a9c \\\n"
      "      --to /var/tmp/disk.qcow2 --format qcow2 --json\n",
  },
  {
    .name = "prune",
    .handler = cmd_prune,
    .args = "[DISK...]",
    .usage = "--repo DIR [DISK...] RULES [--dry-run] [--json]",
    .summary = "Remove the backups no keep rule keeps, merging their data into the kept ones.",
    .details = "RULES are any of --keep-last N, --keep-within DURATION (36h, 7d, "
               "2w, 6m, 1y, counted back from the disk's newest backup), "
               "--keep-hourly, --keep-daily, --keep-weekly (ISO weeks), "
               "--keep-monthly and --keep-yearly N: the newest backup of each "
               "of the N latest periods (UTC) that have one; applied in that "
               "order, a period whose newest backup another rule kept uses up "
               "the period but not the count. Each disk's latest backup is "
               "always kept, so the next incremental continues. A removed "
               "backup that kept ones are built on is merged into the oldest "
               "of them (qemu-img commit), so every kept backup restores to the "
               "same bytes; one that two kept backups are built on is kept. "
               "Every step is journalled: after a kill or a full file system "
               "(exit 8) the repository verifies and the next prune finishes "
               "the work. Takes the repository exclusively: exit 4 if a "
               "receive, verify or restore runs. --dry-run shows every backup "
               "kept or removed and why, and changes nothing. Without DISK, "
               "every disk of the repository.",
    .examples =
      "  ovagent prune --repo /backup --keep-daily 7 --keep-weekly 4 --keep-monthly 6 --dry-run\n"
      "  ovagent prune --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --keep-last 7 --json\n",
  },
  {
    .name = "forget",
    .handler = cmd_forget,
    .args = "DISK",
    .usage = "--repo DIR DISK --backup ID [--dry-run] [--json]",
    .summary = "Remove one backup of a disk, merging its data into the backup built on it.",
    .details = "The backup's data moves into the backup built on it, as prune "
               "does, so every other backup restores to the same bytes. The "
               "latest backup, and one that two kept backups are built on, "
               "cannot be forgotten (exit 2); an unknown one is exit 3.",
    .examples =
      "  ovagent forget --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --backup 20261122T031000Z-3f2a9c\n",
  },
  {
    .name = "import",
    .handler = cmd_import,
    .args = NULL,
    .usage = "(--to-volume SD/IMG/VOL | --to PATH) [--format raw|qcow2] [--io-timeout SECONDS] [--json] < STREAM",
    .summary = "Write a restore stream into an existing volume or a local file.",
    .details = "The stream comes from 'ovagent restore --output -' on "
               "standard input; a chain stream is exit 2 (it goes to "
               "receive). --to-volume writes through a writable qemu-nbd into "
               "an existing volume of this host: the only volume of an empty "
               "disk created through the engine (a LEAF without a parent, at "
               "least as large as the disk), used by no running VM (else exit "
               "4), in the format its metadata gives (--format, if given, must "
               "agree). A block volume is activated for the run and "
               "deactivated again. --to PATH writes a new file instead (raw by "
               "default, or qcow2 with --format), never overwriting one. "
               "--json prints target, format, data_bytes, zero_bytes and "
               "seconds.",
    .examples =
      "  ssh backup@target ovagent restore --repo /backup 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b --output - | \\\n"
      "      ovagent import --to-volume 5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60/9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d/1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b --json\n"
      "  ovagent import --to /var/tmp/disk.qcow2 --format qcow2 < restore.ovs\n",
  },
  {
    .name = "serve",
    .handler = cmd_serve,
    .args = NULL,
    .usage = "--role host|target [--repo-root DIR] [--append-only]",
    .summary = "Run the ovagent command an SSH client asked for, if the role "
               "of its key allows it: the forced command of a restricted key.",
    .details = "Named by authorized_keys (restrict,command=\"ovagent serve "
               "...\"), serve reads the client's command line from "
               "SSH_ORIGINAL_COMMAND, splits it without a shell (quotes only; "
               "any shell metacharacter, control character or line over 8 KiB "
               "is refused) and runs it only if it is an ovagent command the "
               "role allows, with options from that command's allow-list and "
               "values of the right form. --role host allows version, list, "
               "info, export-chain and backup with --output -, checkpoints "
               "(--delete only of a checkpoint ovagent saved) and import "
               "--to-volume; --role target allows "
               "version, receive, verify, backups, restore --output -, prune and "
               "forget, each --repo resolved (links followed, no '..') under "
               "--repo-root DIR. --append-only refuses the commands that delete "
               "backups (prune, forget). "
               "Options that change where trust comes from (--config, "
               "--data-center, --scratch-dir, --target, --output FILE, --to "
               "PATH...) are refused. The environment is ignored: the "
               "configuration is the default file (or the one the forced "
               "command names with --config). Every call, refused (exit 2) or "
               "run, leaves one audit line in the system log (facility auth, "
               "socket audit_socket): client, key (with ExposeAuthInfo yes in "
               "sshd_config), role, command line, exit status and stream "
               "bytes in and out; serve runs nothing it cannot audit (exit 1). "
               "authorized_keys.example in ovagent's documentation has the "
               "lines for each role.",
    .examples =
      "  ovagent serve --role host\n"
      "  ovagent serve --role target --repo-root /srv/backup --append-only\n"
      "  # authorized_keys: restrict,command=\"ovagent serve --role host\" ssh-ed25519 AAAA... controller\n",
  },
  {
    .name = "version",
    .handler = cmd_version,
    .args = NULL,
    .usage = "[--json]",
    .summary = "Print the version of ovagent and of the libraries it runs with.",
    .examples =
      "  ovagent version\n"
      "  ovagent version --json\n",
    .no_config = TRUE,
  },
  {
    .name = "help",
    .handler = cmd_help,
    .args = "[COMMAND]",
    .usage = "[COMMAND]",
    .summary = "Show how to use ovagent, or one of its commands.",
    .examples =
      "  ovagent help\n"
      "  ovagent help info\n",
    .no_config = TRUE,
  },
};

/* Global options: the same variables are filled whether an option comes
 * before the command name or after it (the later one wins). */
static struct {
  gboolean json;
  gboolean quiet;
  int verbose;
  char *log_level;
  char *config;
  char *data_center;
  ova_progress progress;
  gboolean version;
  gboolean io_timeout_set;  /* --io-timeout of a data command */
  guint io_timeout;
} globals;

static void
set_string (char **field, const char *value)
{
  g_free (*field);
  *field = g_strdup (value);
}

static gboolean
opt_verbose (const char *name G_GNUC_UNUSED, const char *value G_GNUC_UNUSED,
             gpointer data G_GNUC_UNUSED, GError **error G_GNUC_UNUSED)
{
  globals.verbose++;
  return TRUE;
}

static gboolean
opt_log_level (const char *name, const char *value,
               gpointer data G_GNUC_UNUSED, GError **error)
{
  if (ova_log_level_parse (value) < 0) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "unknown log level '%s' for %s (expected error, warning, "
                 "notice, info or debug)", value, name);
    return FALSE;
  }
  set_string (&globals.log_level, value);
  return TRUE;
}

static gboolean
opt_config (const char *name G_GNUC_UNUSED, const char *value,
            gpointer data G_GNUC_UNUSED, GError **error G_GNUC_UNUSED)
{
  set_string (&globals.config, value);
  return TRUE;
}

static gboolean
opt_data_center (const char *name, const char *value,
                 gpointer data G_GNUC_UNUSED, GError **error)
{
  if (!g_path_is_absolute (value)) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "%s needs an absolute path, not '%s' "
                 "(e.g. --data-center /rhev/data-center)", name, value);
    return FALSE;
  }
  set_string (&globals.data_center, value);
  return TRUE;
}

gboolean
ova_opt_io_timeout (const char *name, const char *value,
                    gpointer data G_GNUC_UNUSED, GError **error)
{
  if (!ova_io_timeout_parse (value, &globals.io_timeout)) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "%s takes whole seconds from 1 to %d, or 0 for no limit, "
                 "not '%s'", name, OVA_IO_TIMEOUT_MAX, value);
    return FALSE;
  }
  globals.io_timeout_set = TRUE;
  return TRUE;
}

static gboolean
opt_progress (const char *name, const char *value,
              gpointer data G_GNUC_UNUSED, GError **error)
{
  static const char *const modes[] = {
    [OVA_PROGRESS_AUTO] = "auto", [OVA_PROGRESS_BAR] = "bar",
    [OVA_PROGRESS_JSON] = "json", [OVA_PROGRESS_NONE] = "none",
  };

  for (size_t i = 0; i < G_N_ELEMENTS (modes); i++) {
    if (strcmp (value, modes[i]) == 0) {
      globals.progress = i;
      return TRUE;
    }
  }
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               "unknown progress mode '%s' for %s (expected auto, bar, json "
               "or none)", value, name);
  return FALSE;
}

static const GOptionEntry global_entries[] = {
  { "json", 0, 0, G_OPTION_ARG_NONE, &globals.json,
    "Print the result (or the error) as one JSON object on stdout", NULL },
  { "quiet", 'q', 0, G_OPTION_ARG_NONE, &globals.quiet,
    "Log only errors", NULL },
  { "verbose", 'v', G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, opt_verbose,
    "Log more (twice: debug messages)", NULL },
  { "log-level", 0, 0, G_OPTION_ARG_CALLBACK, opt_log_level,
    "Log at this level and above: error, warning, notice, info, debug", "LEVEL" },
  { "config", 0, 0, G_OPTION_ARG_CALLBACK, opt_config,
    "Configuration file (default " OVA_DEFAULT_CONFIG ")", "FILE" },
  { "data-center", 0, 0, G_OPTION_ARG_CALLBACK, opt_data_center,
    "Look for storage domains under DIR (config key data_center)", "DIR" },
  { "progress", 0, 0, G_OPTION_ARG_CALLBACK, opt_progress,
    "Progress report: auto, bar, json (lines on stderr) or none", "MODE" },
  { NULL },
};

static const GOptionEntry version_entries[] = {
  { "version", 'V', 0, G_OPTION_ARG_NONE, &globals.version,
    "Print the version and exit", NULL },
  { NULL },
};

const struct ova_command *
ova_command_lookup (const char *name)
{
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

/* Edit distance counting a swap of neighbours as one edit ("lsit"). */
static size_t
edit_distance (const char *a, const char *b)
{
  size_t la = strlen (a), lb = strlen (b);
  g_autofree size_t *d = g_new (size_t, (la + 1) * (lb + 1));
#define D(i, j) d[(i) * (lb + 1) + (j)]

  for (size_t i = 0; i <= la; i++)
    D (i, 0) = i;
  for (size_t j = 0; j <= lb; j++)
    D (0, j) = j;
  for (size_t i = 1; i <= la; i++) {
    for (size_t j = 1; j <= lb; j++) {
      size_t cost = a[i - 1] != b[j - 1];
      size_t v = MIN (MIN (D (i - 1, j) + 1, D (i, j - 1) + 1),
                      D (i - 1, j - 1) + cost);

      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        v = MIN (v, D (i - 2, j - 2) + 1);
      D (i, j) = v;
    }
  }
  return D (la, lb);
#undef D
}

/* The command the user most likely meant, or NULL. */
static const char *
command_suggest (const char *name)
{
  const char *best = NULL;
  size_t best_dist = 3;   /* more than two edits is another word */
  size_t len = strlen (name);

  if (len == 0 || len > SUGGEST_MAX_LEN)
    return NULL;
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++) {
    size_t dist = g_str_has_prefix (commands[i].name, name)
      ? 1 : edit_distance (name, commands[i].name);

    if (dist < best_dist && dist < len) {
      best = commands[i].name;
      best_dist = dist;
    }
  }
  return best;
}

static void
set_unknown_command (GError **error, const char *name)
{
  g_autofree char *shown = g_strescape (name, NULL);
  const char *guess = command_suggest (name);

  if (guess != NULL)
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "unknown command '%s'; did you mean '%s'? See 'ovagent --help'.",
                 shown, guess);
  else
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "unknown command '%s'; the commands are list, info, "
                 "export-chain, receive, verify, restore, import, version "
                 "and help. See 'ovagent --help'.", shown);
}

/* Append text as lines of at most HELP_WIDTH columns, each indented. */
static void
append_wrapped (GString *s, const char *text, size_t indent)
{
  g_auto(GStrv) words = g_strsplit (text, " ", -1);
  size_t col = 0;

  for (size_t i = 0; words[i] != NULL; i++) {
    size_t len = strlen (words[i]);

    if (len == 0)
      continue;
    if (col > indent && col + 1 + len > HELP_WIDTH) {
      g_string_append_c (s, '\n');
      col = 0;
    }
    if (col == 0) {
      g_string_append_printf (s, "%*s", (int) indent, "");
      col = indent;
    }
    else {
      g_string_append_c (s, ' ');
      col++;
    }
    g_string_append (s, words[i]);
    col += len;
  }
  g_string_append_c (s, '\n');
}

static char *
global_description (void)
{
  g_autoptr(GString) s = g_string_new ("Commands:\n");

  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++) {
    g_string_append_printf (s, "  %-8s %s\n", commands[i].name, commands[i].usage);
    append_wrapped (s, commands[i].summary, 11);
  }
  g_string_append_c (s, '\n');
  append_wrapped (s, "Global options go before or after the command name. "
                  "'ovagent COMMAND --help' shows a command's options and "
                  "examples.", 0);
  g_string_append (s,
    "\nExamples:\n"
    "  ovagent list\n"
    "  ovagent info 0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b\n"
    "  ovagent --json list --domain 5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60\n\n");
  append_wrapped (s, "Configuration: " OVA_DEFAULT_CONFIG ", group [ovagent]; "
                  "each key can also be set with OVAGENT_<KEY> (for example "
                  "OVAGENT_DATA_CENTER), which overrides the file.", 0);
  g_string_append_c (s, '\n');
  append_wrapped (s, "Exit status: 0 ok, 1 internal error, 2 usage, 3 not found, "
                  "4 busy, 5 unsupported, 6 integrity, 7 transport, 8 no space.", 0);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static GOptionContext *
global_context (void)
{
  GOptionContext *oc = g_option_context_new ("COMMAND [ARG…]");
  g_autofree char *desc = global_description ();

  g_option_context_set_summary (oc,
    "Back up oVirt/RHV disks from this host: list storage domains and disks, "
    "export volume chains as streams, and keep, verify and restore them in "
    "a repository of qcow2 chains.");
  g_option_context_set_description (oc, desc);
  g_option_context_add_main_entries (oc, global_entries, NULL);
  g_option_context_add_main_entries (oc, version_entries, NULL);
  /* Stop at the command name: what follows is the command's. */
  g_option_context_set_strict_posix (oc, TRUE);
  return oc;
}

static GOptionContext *
command_context (const struct ova_command *cmd, const GOptionEntry *entries)
{
  GOptionContext *oc = g_option_context_new (cmd->args);
  g_autoptr(GString) summary = g_string_new (NULL);
  g_autoptr(GString) desc = g_string_new (NULL);

  append_wrapped (summary, cmd->summary, 0);
  g_string_truncate (summary, summary->len - 1);
  g_option_context_set_summary (oc, summary->str);
  if (cmd->details != NULL) {
    append_wrapped (desc, cmd->details, 0);
    g_string_append_c (desc, '\n');
  }
  g_string_append_printf (desc, "Examples:\n%s", cmd->examples);
  g_option_context_set_description (oc, desc->str);
  if (entries != NULL)
    g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_add_main_entries (oc, global_entries, NULL);
  return oc;
}

/* A GOption failure as a one-line usage error with where to read more. */
static void
set_option_error (GError **error, const GError *err, const char *cmd_name)
{
  g_autofree char *msg = g_strdup (err->message);

  if (err->domain == G_OPTION_ERROR && g_ascii_isupper (msg[0]) &&
      !g_ascii_isupper (msg[1]))
    msg[0] = g_ascii_tolower (msg[0]);
  g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "%s; see 'ovagent%s%s --help'.",
               msg, cmd_name ? " " : "", cmd_name ? cmd_name : "");
}

void
ova_usage_error (const ova_ctx *ctx, GError **error, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "%s; usage: ovagent %s %s",
               msg, ctx->cmd->name, ctx->cmd->usage);
}

gboolean
ova_repo_disk_args (const ova_ctx *ctx, const char *repo_dir, int argc,
                    char **argv, char **disk, GError **error)
{
  *disk = NULL;
  if (argc > 2) {
    ova_usage_error (ctx, error, "unexpected argument '%s' after DISK", argv[2]);
    return FALSE;
  }
  if (repo_dir == NULL) {
    ova_usage_error (ctx, error, "missing --repo DIR");
    return FALSE;
  }
  if (argc == 2) {
    if (!ova_uuid_is_valid (argv[1])) {
      ova_usage_error (ctx, error, "DISK must be an image UUID (8-4-4-4-12 hex "
                       "digits), not '%s'", argv[1]);
      return FALSE;
    }
    *disk = g_ascii_strdown (argv[1], -1);
  }
  return TRUE;
}

static void
setup_logging (const ova_config *cfg)
{
  int threshold = LOG_WARNING;

  if (globals.log_level != NULL)
    threshold = ova_log_level_parse (globals.log_level);
  else if (globals.quiet)
    threshold = LOG_ERR;
  else if (globals.verbose >= 2)
    threshold = LOG_DEBUG;
  else if (globals.verbose == 1)
    threshold = LOG_INFO;
  else if (cfg != NULL && cfg->log_level != NULL)
    threshold = ova_log_level_parse (cfg->log_level);
  if (threshold < 0)
    threshold = LOG_WARNING;
  ova_log_init ("ovagent", threshold, cfg != NULL && cfg->syslog);
}

gboolean
ova_command_parse (ova_ctx *ctx, const GOptionEntry *entries,
                   int *argc, char ***argv, GError **error)
{
  const struct ova_command *cmd = ctx->cmd;
  g_autoptr(GOptionContext) oc = command_context (cmd, entries);
  g_autofree char *prgname = g_strdup_printf ("ovagent %s", cmd->name);
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_config) cfg = NULL;

  /* --help prints "Usage: ovagent CMD [OPTION…] ARGS". */
  g_set_prgname (prgname);
  if (!g_option_context_parse (oc, argc, argv, &err)) {
    set_option_error (error, err, cmd->name);
    return FALSE;
  }
  ctx->json = globals.json;
  ctx->progress = globals.progress;

  if (cmd->no_config) {
    setup_logging (NULL);
    return TRUE;
  }

  cfg = ova_config_load (globals.config, error);
  if (cfg == NULL)
    return FALSE;
  if (globals.data_center != NULL)
    set_string (&cfg->env.data_center, globals.data_center);
  if (globals.io_timeout_set)
    cfg->io_timeout = globals.io_timeout;
  setup_logging (cfg);
  ova_debug ("data_center=%s lvm_command=%s run_dir=%s state_dir=%s libvirt_uri=%s "
             "io_timeout=%u", cfg->env.data_center, cfg->env.lvm_command,
             cfg->env.run_dir, cfg->env.state_dir, cfg->env.libvirt_uri,
             cfg->io_timeout);
  ova_config_free (ctx->cfg);
  ctx->cfg = g_steal_pointer (&cfg);
  return TRUE;
}

static void
print_global_help (FILE *fp)
{
  g_autoptr(GOptionContext) oc = global_context ();
  g_autofree char *text = NULL;

  g_set_prgname ("ovagent");
  text = g_option_context_get_help (oc, TRUE, NULL);
  fputs (text, fp);
}

static gboolean
cmd_help (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  const struct ova_command *cmd;
  g_auto(GStrv) help_argv = NULL;
  ova_ctx help_ctx = { 0 };

  if (!ova_command_parse (ctx, NULL, &argc, &argv, error))
    return FALSE;
  if (argc > 2) {
    ova_usage_error (ctx, error, "too many arguments");
    return FALSE;
  }
  if (argc == 1) {
    print_global_help (stdout);
    return TRUE;
  }

  cmd = ova_command_lookup (argv[1]);
  if (cmd == NULL) {
    set_unknown_command (error, argv[1]);
    return FALSE;
  }
  /* The command's own parser prints its help (and exits 0). */
  help_argv = g_new0 (char *, 3);
  help_argv[0] = g_strdup (cmd->name);
  help_argv[1] = g_strdup ("--help");
  help_ctx.cmd = cmd;
  return cmd->handler (&help_ctx, 2, help_argv, error);
}

static void
report_error (const ova_ctx *ctx, const GError *err)
{
  ova_error ("%s", err->message);
  if (ctx->json)
    ova_print_json_error (err);
}

/* --json may come after an argument that fails to parse; errors must still
 * be JSON then, so look for it first. */
static gboolean
argv_wants_json (int argc, char **argv)
{
  for (int i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--") == 0)
      break;
    if (strcmp (argv[i], "--json") == 0)
      return TRUE;
  }
  return FALSE;
}

static gboolean
run (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autoptr(GOptionContext) oc = global_context ();
  g_autoptr(GError) err = NULL;
  const struct ova_command *cmd;

  g_set_prgname ("ovagent");
  if (!g_option_context_parse (oc, &argc, &argv, &err)) {
    set_option_error (error, err, NULL);
    return FALSE;
  }

  if (globals.version) {
    static char version_name[] = "version";
    static char *version_argv[] = { version_name, NULL };

    if (argc > 1) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "--version takes no command; type 'ovagent --version' "
                   "or 'ovagent version'.");
      return FALSE;
    }
    ctx->cmd = ova_command_lookup ("version");
    return ctx->cmd->handler (ctx, 1, version_argv, error);
  }

  if (argc < 2) {
    fprintf (stderr, "Usage: ovagent [OPTION…] COMMAND [ARG…]\n"
             "Commands: list, info, export-chain, receive, verify, restore, import, "
             "version, help\n");
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "no command given; see 'ovagent --help'.");
    return FALSE;
  }

  cmd = ova_command_lookup (argv[1]);
  if (cmd == NULL) {
    set_unknown_command (error, argv[1]);
    return FALSE;
  }
  ctx->cmd = cmd;
  return cmd->handler (ctx, argc - 1, argv + 1, error);
}

int
main (int argc, char **argv)
{
  ova_ctx ctx = { 0 };
  g_autoptr(GError) err = NULL;
  gboolean ok;
  int exit_code;

  setlocale (LC_ALL, "");
  ctx.json = argv_wants_json (argc, argv);

  ok = run (&ctx, argc, argv, &err);
  if (!ok && err == NULL)
    g_set_error (&err, OVA_ERROR, OVA_ERROR_INTERNAL, "%s failed without saying why",
                 ctx.cmd ? ctx.cmd->name : "ovagent");
  if (ok && fflush (stdout) != 0)
    g_set_error (&err, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot write the output to stdout: %s", g_strerror (errno));
  if (err != NULL)
    report_error (&ctx, err);
  exit_code = err != NULL ? ova_error_exit_code (err) : ctx.exit_code;

  ova_config_free (ctx.cfg);
  g_free (globals.log_level);
  g_free (globals.config);
  g_free (globals.data_center);
  return exit_code;
}
