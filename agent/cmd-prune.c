/* ovagent: the `prune` and `forget` commands: which backups keep rules keep,
 * shown with --dry-run, and the others removed by merging (repo/prune.h). */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "util.h"
#include "agent/cancel.h"
#include "agent/command.h"
#include "agent/output.h"
#include "repo/prune.h"
#include "repo/repo.h"

static void
add_item (JsonBuilder *b, const repo_prune_item *it)
{
  json_builder_begin_object (b);
  ova_json_add_string (b, "id", it->id);
  ova_json_add_string (b, "time", it->time);
  ova_json_add_string (b, "action", it->keep ? "keep" : "remove");
  ova_json_add_string (b, "reason", it->reason);
  if (it->merged_into)
    ova_json_add_string (b, "merged_into", it->merged_into);
  else
    ova_json_add_null (b, "merged_into");
  json_builder_end_object (b);
}

static void
print_json (GPtrArray *plans, gboolean dry_run, const repo_prune_result *res,
            double seconds)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  guint removed = 0;

  json_builder_begin_object (b);
  ova_json_add_string (b, "result", "ok");
  ova_json_add_bool (b, "dry_run", dry_run);
  json_builder_set_member_name (b, "disks");
  json_builder_begin_array (b);
  for (guint i = 0; i < plans->len; i++) {
    const repo_prune_plan *p = g_ptr_array_index (plans, i);

    json_builder_begin_object (b);
    ova_json_add_string (b, "disk", p->disk);
    ova_json_add_uint (b, "removed", p->removed);
    json_builder_set_member_name (b, "backups");
    json_builder_begin_array (b);
    for (guint k = 0; k < p->items->len; k++)
      add_item (b, g_ptr_array_index (p->items, k));
    json_builder_end_array (b);
    json_builder_end_object (b);
    removed += p->removed;
  }
  json_builder_end_array (b);
  ova_json_add_uint (b, "removed", dry_run ? removed : res->removed);
  ova_json_add_uint (b, "merges", res->merges);
  ova_json_add_uint (b, "freed_bytes", res->freed);
  ova_json_add_uint (b, "merged_bytes", res->merged_bytes);
  ova_json_add_double (b, "seconds", seconds);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  ova_print_json (root);
}

static void
print_table (GPtrArray *plans, gboolean dry_run, const repo_prune_result *res,
             double seconds)
{
  g_autofree char *freed = ova_format_size (res->freed);
  g_autofree char *moved = ova_format_size (res->merged_bytes);
  guint removed = 0;

  for (guint i = 0; i < plans->len; i++) {
    const repo_prune_plan *p = g_ptr_array_index (plans, i);

    printf ("disk %s: %u backup%s, %s %u\n", p->disk, p->items->len,
            p->items->len == 1 ? "" : "s", dry_run ? "would remove" : "removing",
            p->removed);
    for (guint k = 0; k < p->items->len; k++) {
      const repo_prune_item *it = g_ptr_array_index (p->items, k);

      printf ("  %s  %-20s  %-6s  %s%s%s%s\n", it->id, it->time,
              it->keep ? "keep" : "remove", it->reason,
              it->keep ? "" : it->merged_into ? " (merged into " : " (deleted",
              it->merged_into && !it->keep ? it->merged_into : "",
              it->keep ? "" : ")");
    }
    removed += p->removed;
  }
  if (dry_run)
    printf ("dry run: %u backup%s would be removed; nothing was changed\n",
            removed, removed == 1 ? "" : "s");
  else
    printf ("removed %u backup%s (%u merge%s, %s moved), freed %s in %.1f s\n",
            res->removed, res->removed == 1 ? "" : "s", res->merges,
            res->merges == 1 ? "" : "s", moved, freed, seconds);
}

/* The disks given, or every disk of the repository. */
static GPtrArray *
chosen_disks (const repo *r, int argc, char **argv, GError **error)
{
  g_autoptr(GPtrArray) disks = NULL;

  if (argc <= 1)
    return repo_list_disks (r, error);
  disks = g_ptr_array_new_with_free_func (g_free);
  for (int i = 1; i < argc; i++)
    g_ptr_array_add (disks, g_ascii_strdown (argv[i], -1));
  return g_steal_pointer (&disks);
}

/* Plan (and unless dry_run carry out) the removal on each disk. */
static gboolean
run (ova_ctx *ctx, const char *repo_dir, int argc, char **argv,
     const repo_keep_rules *rules, const char *forget_id, gboolean dry_run,
     GError **error)
{
  g_autoptr(repo) r = NULL;
  g_autoptr(GPtrArray) disks = NULL;
  g_autoptr(GPtrArray) plans =
    g_ptr_array_new_with_free_func ((GDestroyNotify) repo_prune_plan_free);
  repo_prune_result res = { 0 };
  gint64 start = g_get_monotonic_time ();
  double seconds;

  ova_cancel_install ();
  r = repo_open (repo_dir, FALSE, REPO_LOCK_EXCLUSIVE, error);
  if (r == NULL)
    return FALSE;
  disks = chosen_disks (r, argc, argv, error);
  if (disks == NULL)
    return FALSE;
  for (guint i = 0; i < disks->len; i++) {
    const char *disk = g_ptr_array_index (disks, i);
    g_autofree char *disk_dir = repo_disk_dir (r, disk);
    g_autoptr(repo_manifest) m = NULL;
    g_autoptr(GError) err = NULL;
    repo_prune_plan *plan;

    /* What an interrupted prune left is finished first: the plan is made
     * on a manifest whose removals are all still to do. */
    if (!dry_run && !repo_prune_finish (r, disk, TRUE, &ova_cancelled, &res, error))
      return FALSE;
    m = repo_manifest_load (disk_dir, disk, FALSE, &err);
    if (m == NULL && argc <= 1 && g_error_matches (err, OVA_ERROR, OVA_ERROR_NOT_FOUND))
      continue;            /* what a first receive interrupted leaves */
    if (m == NULL) {
      g_propagate_error (error, g_steal_pointer (&err));
      return FALSE;
    }
    plan = repo_prune_plan_new (m, rules, forget_id, error);
    if (plan == NULL)
      return FALSE;
    g_ptr_array_add (plans, plan);
    if (!dry_run && !repo_prune_apply (r, plan, &ova_cancelled, &res, error))
      return FALSE;
  }
  seconds = (double) (g_get_monotonic_time () - start) / G_USEC_PER_SEC;
  if (ctx->json)
    print_json (plans, dry_run, &res, seconds);
  else
    print_table (plans, dry_run, &res, seconds);
  return TRUE;
}

static gboolean
check_disks (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  for (int i = 1; i < argc; i++) {
    if (!ova_uuid_is_valid (argv[i])) {
      ova_usage_error (ctx, error, "DISK must be an image UUID (8-4-4-4-12 hex "
                       "digits), not '%s'", argv[i]);
      return FALSE;
    }
  }
  return TRUE;
}

/* The options, and --repo given: both commands need it. */
static gboolean
parse (ova_ctx *ctx, const GOptionEntry *entries, int *argc, char ***argv,
       char **repo_dir, GError **error)
{
  if (!ova_command_parse (ctx, entries, argc, argv, error))
    return FALSE;
  if (*repo_dir == NULL) {
    ova_usage_error (ctx, error, "missing --repo DIR");
    return FALSE;
  }
  return TRUE;
}

/* A count given to a --keep option: 1 or more (-1: not given). */
static gboolean
count_option (ova_ctx *ctx, const char *name, gint value, guint *out, GError **error)
{
  if (value == -1)
    return TRUE;
  if (value < 1) {
    ova_usage_error (ctx, error, "--%s needs a count of 1 or more, not %d", name, value);
    return FALSE;
  }
  *out = (guint) value;
  return TRUE;
}

const struct ova_command ova_cmd_prune = {
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
};

gboolean
cmd_prune (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autofree char *repo_dir = NULL;
  g_autofree char *within = NULL;
  gboolean dry_run = FALSE;
  gint last = -1, hourly = -1, daily = -1, weekly = -1, monthly = -1, yearly = -1;
  repo_keep_rules rules = { 0 };
  const GOptionEntry entries[] = {
    { "repo", 0, 0, G_OPTION_ARG_FILENAME, &repo_dir, "The repository", "DIR" },
    { "keep-last", 0, 0, G_OPTION_ARG_INT, &last, "Keep the N newest backups", "N" },
    { "keep-within", 0, 0, G_OPTION_ARG_STRING, &within,
      "Keep the backups within DURATION (36h, 7d, 2w, 6m, 1y) of the newest",
      "DURATION" },
    { "keep-hourly", 0, 0, G_OPTION_ARG_INT, &hourly,
      "Keep the newest backup of each of the N latest hours that have one", "N" },
    { "keep-daily", 0, 0, G_OPTION_ARG_INT, &daily,
      "Keep the newest backup of each of the N latest days (UTC) that have one", "N" },
    { "keep-weekly", 0, 0, G_OPTION_ARG_INT, &weekly,
      "Keep the newest backup of each of the N latest ISO weeks that have one", "N" },
    { "keep-monthly", 0, 0, G_OPTION_ARG_INT, &monthly,
      "Keep the newest backup of each of the N latest months that have one", "N" },
    { "keep-yearly", 0, 0, G_OPTION_ARG_INT, &yearly,
      "Keep the newest backup of each of the N latest years that have one", "N" },
    { "dry-run", 0, 0, G_OPTION_ARG_NONE, &dry_run,
      "Show which backups would be kept and removed, and why; change nothing", NULL },
    { NULL },
  };

  if (!parse (ctx, entries, &argc, &argv, &repo_dir, error))
    return FALSE;
  if (!check_disks (ctx, argc, argv, error) ||
      !count_option (ctx, "keep-last", last, &rules.last, error) ||
      !count_option (ctx, "keep-hourly", hourly, &rules.hourly, error) ||
      !count_option (ctx, "keep-daily", daily, &rules.daily, error) ||
      !count_option (ctx, "keep-weekly", weekly, &rules.weekly, error) ||
      !count_option (ctx, "keep-monthly", monthly, &rules.monthly, error) ||
      !count_option (ctx, "keep-yearly", yearly, &rules.yearly, error))
    return FALSE;
  if (within != NULL && !repo_parse_duration (within, &rules.within_seconds)) {
    ova_usage_error (ctx, error, "--keep-within needs a duration such as 36h, 7d, "
                     "2w, 6m or 1y (1 to 100000 units), not '%s'", within);
    return FALSE;
  }
  if (rules.last == 0 && rules.within_seconds == 0 && rules.hourly == 0 &&
      rules.daily == 0 && rules.weekly == 0 && rules.monthly == 0 && rules.yearly == 0) {
    ova_usage_error (ctx, error, "give at least one rule (--keep-last N, --keep-within "
                     "DURATION, --keep-daily N, ...): prune never guesses what to keep");
    return FALSE;
  }
  return run (ctx, repo_dir, argc, argv, &rules, NULL, dry_run, error);
}

const struct ova_command ova_cmd_forget = {
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
};

gboolean
cmd_forget (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  g_autofree char *repo_dir = NULL;
  g_autofree char *backup_id = NULL;
  gboolean dry_run = FALSE;
  const GOptionEntry entries[] = {
    { "repo", 0, 0, G_OPTION_ARG_FILENAME, &repo_dir, "The repository", "DIR" },
    { "backup", 0, 0, G_OPTION_ARG_STRING, &backup_id, "The backup to remove", "ID" },
    { "dry-run", 0, 0, G_OPTION_ARG_NONE, &dry_run,
      "Show what would be removed and merged; change nothing", NULL },
    { NULL },
  };

  if (!parse (ctx, entries, &argc, &argv, &repo_dir, error))
    return FALSE;
  if (argc < 2) {
    ova_usage_error (ctx, error, "missing DISK");
    return FALSE;
  }
  if (argc > 2) {
    ova_usage_error (ctx, error, "unexpected argument '%s' after DISK", argv[2]);
    return FALSE;
  }
  if (!check_disks (ctx, argc, argv, error))
    return FALSE;
  if (backup_id == NULL || !repo_backup_id_is_valid (backup_id)) {
    ova_usage_error (ctx, error, "--backup needs a backup id like "
                     "20261122T031000Z-3f2a9c%s%s%s", backup_id ? ", not '" : "",
                     backup_id ? backup_id : "", backup_id ? "'" : "");
    return FALSE;
  }
  return run (ctx, repo_dir, argc, argv, NULL, backup_id, dry_run, error);
}
