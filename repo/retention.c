/* ovagent: which backups of a disk keep rules keep (docs/repository.md §7.1):
 * the rules applied newest first, the backups kept because others need them. */
#include <config.h>

#include <string.h>

#include "error.h"
#include "util.h"
#include "repo/prune.h"

#define DURATION_MAX_UNITS 100000

gboolean
repo_parse_duration (const char *text, gint64 *seconds)
{
  static const struct { char unit; gint64 seconds; } units[] = {
    { 'h', 3600 }, { 'd', 86400 }, { 'w', 7 * 86400 },
    { 'm', 31 * 86400 }, { 'y', 365 * 86400 },
  };
  guint64 n = 0;
  const char *p = text;

  if (text == NULL || !g_ascii_isdigit (*p))
    return FALSE;
  for (; g_ascii_isdigit (*p); p++) {
    n = n * 10 + (guint64) (*p - '0');
    if (n > DURATION_MAX_UNITS)
      return FALSE;
  }
  if (n == 0 || p[0] == '\0' || p[1] != '\0')
    return FALSE;
  for (gsize i = 0; i < G_N_ELEMENTS (units); i++) {
    if (units[i].unit == *p) {
      *seconds = (gint64) n * units[i].seconds;
      return TRUE;
    }
  }
  return FALSE;
}

void
repo_prune_item_free (repo_prune_item *it)
{
  if (it == NULL)
    return;
  g_free (it->id);
  g_free (it->time);
  g_free (it->reason);
  g_free (it->merged_into);
  g_free (it);
}

void
repo_prune_plan_free (repo_prune_plan *p)
{
  if (p == NULL)
    return;
  g_free (p->disk);
  if (p->items)
    g_ptr_array_unref (p->items);
  g_free (p);
}

/* The plan being made: per backup (manifest order) its parent's index
 * (-1: none), its time, and whether it is kept. */
typedef struct planner {
  const repo_manifest *m;
  guint n;
  int *parent;
  GDateTime **time;
  gboolean *keep;
  char **reason;
} planner;

static void
planner_clear (planner *pl)
{
  for (guint i = 0; i < pl->n; i++) {
    if (pl->time[i])
      g_date_time_unref (pl->time[i]);
    g_free (pl->reason[i]);
  }
  g_free (pl->parent);
  g_free (pl->time);
  g_free (pl->keep);
  g_free (pl->reason);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (planner, planner_clear)

static const repo_backup *
nth (const planner *pl, guint i)
{
  return g_ptr_array_index (pl->m->backups, i);
}

static void
keep (planner *pl, guint i, char *reason)
{
  g_assert (!pl->keep[i]);
  pl->keep[i] = TRUE;
  g_free (pl->reason[i]);
  pl->reason[i] = reason;
}

static gboolean
planner_init (planner *pl, const repo_manifest *m, GError **error)
{
  pl->m = m;
  pl->n = m->backups->len;
  pl->parent = g_new (int, pl->n);
  pl->time = g_new0 (GDateTime *, pl->n);
  pl->keep = g_new0 (gboolean, pl->n);
  pl->reason = g_new0 (char *, pl->n);
  for (guint i = 0; i < pl->n; i++) {
    const repo_backup *b = nth (pl, i);

    pl->parent[i] = -1;
    for (guint j = 0; b->parent != NULL && j < i; j++)
      if (strcmp (nth (pl, j)->id, b->parent) == 0)
        pl->parent[i] = (int) j;
    pl->time[i] = g_date_time_new_from_iso8601 (b->time, NULL);
    if (pl->time[i] == NULL) {
      g_autofree char *q = ova_quote_untrusted (b->time, 80);

      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "backup %s of disk %s: its time %s is not an ISO 8601 time; "
                   "correct it in the manifest", b->id, m->disk, q);
      return FALSE;
    }
  }
  return TRUE;
}

/* Backups that are points (not marked removing), newest first by time
 * (manifest order breaks ties). */
static GArray *
newest_first (const planner *pl)
{
  GArray *order = g_array_new (FALSE, FALSE, sizeof (guint));

  for (guint i = pl->n; i-- > 0;) {
    guint j = order->len;

    if (nth (pl, i)->removing)
      continue;
    while (j > 0 && g_date_time_compare (pl->time[g_array_index (order, guint, j - 1)],
                                         pl->time[i]) < 0)
      j--;
    g_array_insert_val (order, j, i);
  }
  return order;
}

static char *
duration_text (gint64 s)
{
  if (s % (365 * 86400) == 0)
    return g_strdup_printf ("%" G_GINT64_FORMAT "y", s / (365 * 86400));
  if (s % (31 * 86400) == 0)
    return g_strdup_printf ("%" G_GINT64_FORMAT "m", s / (31 * 86400));
  if (s % 86400 == 0)
    return g_strdup_printf ("%" G_GINT64_FORMAT "d", s / 86400);
  return g_strdup_printf ("%" G_GINT64_FORMAT "h", s / 3600);
}

/* One period rule, as borg applies it: walking newest first, the newest
 * backup of each period (UTC) is kept until count periods got a newly kept
 * one; a period whose newest backup is already kept uses up the period. */
static void
keep_periods (planner *pl, GArray *order, const char *rule, const char *fmt,
              guint count)
{
  g_autofree char *last = NULL;
  guint kept = 0;

  for (guint k = 0; k < order->len && kept < count; k++) {
    guint i = g_array_index (order, guint, k);
    g_autoptr(GDateTime) utc = g_date_time_to_utc (pl->time[i]);
    g_autofree char *period = g_date_time_format (utc, fmt);

    if (g_strcmp0 (period, last) == 0)
      continue;
    g_free (last);
    last = g_strdup (period);
    if (pl->keep[i])
      continue;
    keep (pl, i, g_strdup_printf ("%s %s", rule, period));
    kept++;
  }
}

static void
apply_rules (planner *pl, const repo_keep_rules *rules)
{
  g_autoptr(GArray) order = newest_first (pl);
  static const struct { const char *rule, *fmt; gsize offset; } periods[] = {
    { "hourly", "%Y-%m-%dT%H", G_STRUCT_OFFSET (repo_keep_rules, hourly) },
    { "daily", "%Y-%m-%d", G_STRUCT_OFFSET (repo_keep_rules, daily) },
    { "weekly", "%G-W%V", G_STRUCT_OFFSET (repo_keep_rules, weekly) },
    { "monthly", "%Y-%m", G_STRUCT_OFFSET (repo_keep_rules, monthly) },
    { "yearly", "%Y", G_STRUCT_OFFSET (repo_keep_rules, yearly) },
  };

  for (guint k = 0; k < order->len && k < rules->last; k++) {
    guint i = g_array_index (order, guint, k);

    if (!pl->keep[i])
      keep (pl, i, g_strdup_printf ("last #%u", k + 1));
  }
  if (rules->within_seconds > 0 && order->len > 0) {
    GDateTime *newest = pl->time[g_array_index (order, guint, 0)];
    g_autofree char *text = duration_text (rules->within_seconds);

    for (guint k = 0; k < order->len; k++) {
      guint i = g_array_index (order, guint, k);

      if (!pl->keep[i] &&
          g_date_time_difference (newest, pl->time[i]) <=
          rules->within_seconds * G_TIME_SPAN_SECOND)
        keep (pl, i, g_strdup_printf ("within %s", text));
    }
  }
  for (gsize p = 0; p < G_N_ELEMENTS (periods); p++) {
    guint count = G_STRUCT_MEMBER (guint, rules, periods[p].offset);

    if (count > 0)
      keep_periods (pl, order, periods[p].rule, periods[p].fmt, count);
  }
  /* The next incremental continues from it, whatever the rules say. */
  if (!pl->keep[pl->n - 1])
    keep (pl, pl->n - 1, g_strdup ("latest"));
}

/* For each removed backup, the kept backups whose data reads through it:
 * those reached from it going down to the first kept backup. users[i] holds
 * indices (guint) of kept backups. */
static GPtrArray *
kept_users (const planner *pl)
{
  GPtrArray *users = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);

  for (guint i = 0; i < pl->n; i++)
    g_ptr_array_add (users, g_array_new (FALSE, FALSE, sizeof (guint)));
  for (guint c = 0; c < pl->n; c++) {
    if (!pl->keep[c])
      continue;
    for (int r = pl->parent[c]; r >= 0 && !pl->keep[r]; r = pl->parent[r])
      g_array_append_val ((GArray *) g_ptr_array_index (users, r), c);
  }
  return users;
}

static char *
id_list (const planner *pl, GArray *idx)
{
  GString *s = g_string_new (NULL);

  for (guint k = 0; k < idx->len; k++) {
    if (k > 0)
      g_string_append (s, k + 1 == idx->len ? " and " : ", ");
    g_string_append (s, nth (pl, g_array_index (idx, guint, k))->id);
  }
  return g_string_free (s, FALSE);
}

/* The oldest removed backup under kept backup c, if its parent is removed. */
static int
oldest_removed_under (const planner *pl, guint c)
{
  int r0 = -1;

  for (int r = pl->parent[c]; r >= 0 && !pl->keep[r]; r = pl->parent[r])
    r0 = r;
  return r0;
}

static guint64
top_virtual_size (const repo_backup *b)
{
  const repo_volume *top = g_ptr_array_index (b->volumes, b->volumes->len - 1);

  return top->virtual_size;
}

/* A removed backup must be kept when its data cannot move into one kept
 * backup: two kept ones read through it, or it is the oldest removed one
 * under a kept one and larger (its top takes the merge: qemu-img commit
 * never shrinks it). Repeated until nothing changes. Backups an earlier
 * prune marked removing may already be partly merged into: one that
 * would have to be kept is an integrity error. */
static gboolean
keep_needed (planner *pl, GError **error)
{
  gboolean changed = TRUE;

  while (changed) {
    g_autoptr(GPtrArray) users = kept_users (pl);

    changed = FALSE;
    for (guint r = 0; r < pl->n; r++) {
      GArray *u = g_ptr_array_index (users, r);
      g_autofree char *who = NULL;

      if (pl->keep[r] || u->len < 2)
        continue;
      who = id_list (pl, u);
      if (nth (pl, r)->removing) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                     "backup %s of disk %s is marked \"removing\" but %s are built "
                     "on it; the manifest was edited: restore it from a copy",
                     nth (pl, r)->id, pl->m->disk, who);
        return FALSE;
      }
      keep (pl, r, g_strdup_printf ("needed by %s", who));
      changed = TRUE;
    }
    if (changed)
      continue;
    for (guint c = 0; c < pl->n; c++) {
      int r0;

      if (!pl->keep[c] || (r0 = oldest_removed_under (pl, c)) < 0 ||
          top_virtual_size (nth (pl, r0)) <= top_virtual_size (nth (pl, c)))
        continue;
      if (nth (pl, r0)->removing) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                     "backup %s of disk %s is marked \"removing\" but is larger than "
                     "%s built on it; the manifest was edited: restore it from a copy",
                     nth (pl, r0)->id, pl->m->disk, nth (pl, c)->id);
        return FALSE;
      }
      keep (pl, (guint) r0, g_strdup_printf ("larger than %s built on it",
                                             nth (pl, c)->id));
      changed = TRUE;
    }
  }
  return TRUE;
}

static gboolean
named_backup (const repo_manifest *m, const char *forget_id, guint *index,
              GError **error)
{
  guint i = 0;

  while (i < m->backups->len &&
         strcmp (((const repo_backup *) g_ptr_array_index (m->backups, i))->id,
                 forget_id) != 0)
    i++;
  if (i == m->backups->len) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND,
                 "disk %s has no backup %s", m->disk, forget_id);
    return FALSE;
  }
  if (i + 1 == m->backups->len) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "backup %s is the latest of disk %s: the next incremental "
                 "continues from it, so it cannot be forgotten", forget_id, m->disk);
    return FALSE;
  }
  *index = i;
  return TRUE;
}

repo_prune_plan *
repo_prune_plan_new (const repo_manifest *m, const repo_keep_rules *rules,
                     const char *forget_id, GError **error)
{
  g_autoptr(repo_prune_plan) plan = g_new0 (repo_prune_plan, 1);
  g_autoptr(GPtrArray) users = NULL;
  g_auto(planner) pl = { 0 };
  guint forget = 0;

  plan->disk = g_strdup (m->disk);
  plan->items = g_ptr_array_new_with_free_func ((GDestroyNotify) repo_prune_item_free);
  if (m->backups->len == 0)
    return g_steal_pointer (&plan);
  if ((forget_id != NULL && !named_backup (m, forget_id, &forget, error)) ||
      !planner_init (&pl, m, error))
    return NULL;

  if (forget_id != NULL) {
    for (guint i = 0; i < pl.n; i++)
      if (i != forget && !nth (&pl, i)->removing)
        keep (&pl, i, g_strdup (i + 1 == pl.n ? "latest" : "not named"));
  }
  else
    apply_rules (&pl, rules);
  if (!keep_needed (&pl, error))
    return NULL;
  if (forget_id != NULL && pl.keep[forget]) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "backup %s of disk %s cannot be forgotten: it is %s%s", forget_id,
                 m->disk, pl.reason[forget],
                 g_str_has_prefix (pl.reason[forget], "needed by")
                 ? "; forget those first" : "; its data cannot move into it");
    return NULL;
  }

  users = kept_users (&pl);
  for (guint i = 0; i < pl.n; i++) {
    repo_prune_item *it = g_new0 (repo_prune_item, 1);
    GArray *u = g_ptr_array_index (users, i);

    it->id = g_strdup (nth (&pl, i)->id);
    it->time = g_strdup (nth (&pl, i)->time);
    it->keep = pl.keep[i];
    if (it->keep)
      it->reason = g_strdup (pl.reason[i]);
    else {
      it->reason = g_strdup (nth (&pl, i)->removing ? "being removed"
                             : forget_id ? "forget" : "no rule keeps it");
      if (u->len == 1)
        it->merged_into = g_strdup (nth (&pl, g_array_index (u, guint, 0))->id);
      plan->removed++;
    }
    g_ptr_array_add (plan->items, it);
  }
  return g_steal_pointer (&plan);
}
