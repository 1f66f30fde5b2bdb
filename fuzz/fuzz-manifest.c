/* ovagent: libFuzzer target for the repository manifest parser (a manifest on the
 * backup target may have been edited). Any input must parse or fail cleanly. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"
#include "repo/manifest.h"
#include "repo/prune.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* The disk of every seed in corpus/manifest: a manifest of another disk
 * stops at the first check. */
#define FUZZ_DISK "66ed19d4-9586-40c3-8ec0-e08fe8b26062"

static gboolean
is_lower_uuid (const char *s)
{
  g_autofree char *down = NULL;

  if (!ova_uuid_is_valid (s))
    return FALSE;
  down = g_ascii_strdown (s, -1);
  return strcmp (s, down) == 0;
}

/* A path the manifest gives must stay inside the disk directory: the one
 * "../" step of a backing string is the only way out of a backup's own. */
static void
check_file (const repo_backup *b, const repo_volume *v)
{
  g_autofree char *want = g_strconcat (b->id, "/", v->uuid,
                                       repo_format_ext (v->format), NULL);

  if (repo_format_ext (v->format) == NULL || strcmp (v->file, want) != 0 ||
      strstr (v->file, "..") != NULL)
    abort ();
}

static void
check_backing (const repo_manifest *m, guint index, const repo_backup *b,
               guint i, const repo_backup *parent)
{
  const repo_volume *v = g_ptr_array_index (b->volumes, i);
  g_autofree char *want = repo_expected_backing (b, i, parent);

  if (g_strcmp0 (v->backing, want) != 0)
    abort ();
  if (v->backing == NULL)
    return;
  if (strcmp (v->format, "raw") == 0 || v->backing[0] == '/')
    abort ();
  if (g_str_has_prefix (v->backing, "../")) {
    /* Only the first volume, and only into an earlier backup's file. */
    gboolean found = FALSE;

    if (i != 0 || parent == NULL)
      abort ();
    for (guint j = 0; j < index; j++) {
      const repo_backup *e = g_ptr_array_index (m->backups, j);
      const repo_volume *top = g_ptr_array_index (e->volumes, e->volumes->len - 1);

      if (e == parent && strcmp (v->backing + 3, top->file) == 0)
        found = TRUE;
    }
    if (!found)
      abort ();
  }
  else if (strchr (v->backing, '/') != NULL || i == 0)
    abort ();
}

static void
check_backup (const repo_manifest *m, guint index)
{
  const repo_backup *b = g_ptr_array_index (m->backups, index);
  const repo_backup *parent = NULL;

  if (!repo_backup_id_is_valid (b->id) || b->time == NULL || b->volumes->len == 0)
    abort ();
  for (guint j = 0; j < index; j++) {
    const repo_backup *e = g_ptr_array_index (m->backups, j);

    if (strcmp (e->id, b->id) == 0)
      abort ();
    if (b->parent != NULL && strcmp (e->id, b->parent) == 0)
      parent = e;
    if (repo_backup_is_cbt (b) && repo_backup_is_cbt (e) &&
        strcmp (e->checkpoint, b->checkpoint) == 0)
      abort ();
  }
  if ((b->kind == REPO_KIND_FULL) != (b->parent == NULL) ||
      (b->parent != NULL && parent == NULL))
    abort ();
  if (b->domain != NULL && !is_lower_uuid (b->domain))
    abort ();

  if (repo_backup_is_cbt (b)) {
    const repo_volume *v = g_ptr_array_index (b->volumes, 0);

    if (!is_lower_uuid (b->checkpoint) || b->since != NULL ||
        (b->vm != NULL && !is_lower_uuid (b->vm)) ||
        (b->kind == REPO_KIND_FULL) != (b->from_checkpoint == NULL) ||
        b->volumes->len != 1 || strcmp (v->uuid, m->disk) != 0 ||
        strcmp (v->format, "qcow2") != 0)
      abort ();
    if (parent != NULL &&
        (parent->checkpoint == NULL || strcmp (parent->checkpoint, b->from_checkpoint) != 0))
      abort ();
    if (b->kind == REPO_KIND_INCREMENTAL && parent != g_ptr_array_index (m->backups, index - 1))
      abort ();
  }
  else {
    if (b->from_checkpoint != NULL || b->vm != NULL || b->kind == REPO_KIND_DIFFERENTIAL)
      abort ();
    if (b->kind == REPO_KIND_INCREMENTAL) {
      const repo_volume *last = g_ptr_array_index (parent->volumes, parent->volumes->len - 1);

      if (b->since == NULL || strcmp (b->since, last->uuid) != 0)
        abort ();
    }
    else if (b->since != NULL)
      abort ();
  }

  for (guint i = 0; i < b->volumes->len; i++) {
    const repo_volume *v = g_ptr_array_index (b->volumes, i);

    if (!is_lower_uuid (v->uuid) || strlen (v->digest) != REPO_DIGEST_LEN ||
        !g_str_has_prefix (v->digest, REPO_DIGEST_PREFIX))
      abort ();
    for (guint j = 0; j < i; j++)
      if (strcmp (v->uuid, ((const repo_volume *) g_ptr_array_index (b->volumes, j))->uuid) == 0)
        abort ();
    check_file (b, v);
    check_backing (m, index, b, i, parent);
  }
  if (b->meta != NULL && !JSON_NODE_HOLDS_OBJECT (b->meta))
    abort ();
}

/* Retention over an accepted manifest (times and chains as edited): the
 * plan fails cleanly or names every backup once, in order, keeps the
 * latest and removes nothing a kept backup other than its one merge
 * target reads through. */
static void
check_plan (const repo_manifest *m, const repo_keep_rules *rules, const char *forget)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(repo_prune_plan) p = repo_prune_plan_new (m, rules, forget, &error);
  guint removed = 0;

  if (p == NULL) {
    if (error == NULL || error->domain != OVA_ERROR ||
        !g_utf8_validate (error->message, -1, NULL))
      abort ();
    return;
  }
  if (p->items->len != m->backups->len)
    abort ();
  for (guint i = 0; i < p->items->len; i++) {
    const repo_prune_item *it = g_ptr_array_index (p->items, i);
    const repo_backup *b = g_ptr_array_index (m->backups, i);

    if (strcmp (it->id, b->id) != 0 || it->reason == NULL ||
        (it->keep && it->merged_into != NULL) || (b->removing && it->keep))
      abort ();
    if (!it->keep)
      removed++;
    if (it->merged_into != NULL) {
      const repo_backup *c = repo_manifest_find (m, it->merged_into);
      const repo_prune_item *ci = NULL;

      for (guint k = 0; c != NULL && k < p->items->len; k++)
        if (strcmp (((repo_prune_item *) g_ptr_array_index (p->items, k))->id, c->id) == 0)
          ci = g_ptr_array_index (p->items, k);
      if (ci == NULL || !ci->keep)
        abort ();
    }
  }
  if (removed != p->removed ||
      (m->backups->len > 0 &&
       !((repo_prune_item *) g_ptr_array_index (p->items, p->items->len - 1))->keep))
    abort ();
}

/* What the writer makes of a manifest the parser accepted must read back
 * as the same manifest: receive rewrites manifests it loaded. */
static void
check_round_trip (const repo_manifest *m)
{
  g_autofree char *text = repo_manifest_to_json (m);
  g_autofree char *again = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(repo_manifest) m2 =
    repo_manifest_parse (FUZZ_DISK, text, strlen (text), "rewritten manifest", &error);

  if (m2 == NULL)
    abort ();
  again = repo_manifest_to_json (m2);
  if (strcmp (text, again) != 0)
    abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(repo_manifest) m =
    repo_manifest_parse (FUZZ_DISK, (const char *) data, size, "manifest", &error);

  if (m == NULL) {
    if (error == NULL || error->domain != OVA_ERROR ||
        error->code != OVA_ERROR_INTEGRITY ||
        !g_utf8_validate (error->message, -1, NULL))
      abort ();
    return 0;
  }
  if (error != NULL || strcmp (m->disk, FUZZ_DISK) != 0)
    abort ();
  for (guint i = 0; i < m->backups->len; i++) {
    const repo_backup *b = g_ptr_array_index (m->backups, i);

    check_backup (m, i);
    if (repo_manifest_find (m, b->id) != b ||
        (repo_backup_is_cbt (b) && repo_manifest_find_checkpoint (m, b->checkpoint) != b))
      abort ();
  }
  if ((m->backups->len == 0) != (repo_manifest_latest_volume (m) == NULL))
    abort ();
  check_round_trip (m);
  {
    repo_keep_rules last = { .last = 2 };
    repo_keep_rules periods = { .within_seconds = 36 * 3600, .daily = 3, .weekly = 2,
                                .monthly = 2, .yearly = 1 };

    check_plan (m, &last, NULL);
    check_plan (m, &periods, NULL);
    if (m->backups->len > 0)
      check_plan (m, NULL, ((repo_backup *) g_ptr_array_index (m->backups, 0))->id);
  }
  return 0;
}
