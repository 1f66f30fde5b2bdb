/* ovagent: unit tests of the prune plan: which backups keep rules and
 * forget keep or remove, why, and which kept backup takes a removed one's data. */
#include <config.h>

#include <stdarg.h>
#include <string.h>

#include "error.h"
#include "repo/manifest.h"
#include "repo/prune.h"

#define DISK "0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b"
#define DIGEST REPO_DIGEST_PREFIX "0123456789abcdef0123456789abcdef"
#define GiB G_GUINT64_CONSTANT (1073741824)

/* One backup of a test manifest. Its id is its time without separators
 * and its index; a chain backup has one volume of its own, a changed-block
 * one the disk itself. */
typedef struct spec {
  const char *time;      /* ISO 8601 UTC */
  const char *kind;      /* "full", "incremental", "differential" */
  int parent;            /* index of the backup it is built on, -1 for a full */
  gboolean cbt;
  gboolean removing;
  guint64 virtual_size;  /* 0: 1 GiB */
} spec;

/* What the plan must say of one backup: kept or removed, the reason, and
 * for a removed one the index of the backup taking its data (-1: deleted). */
typedef struct expect {
  gboolean keep;
  const char *reason;
  int merged_into;
} expect;

#define KEEP(r) { TRUE, r, -1 }
#define GONE(r, into) { FALSE, r, into }

#define CHAIN_FULL(t) { t, "full", -1, FALSE, FALSE, 0 }
#define CHAIN_INC(t, p) { t, "incremental", p, FALSE, FALSE, 0 }
#define CBT_FULL(t) { t, "full", -1, TRUE, FALSE, 0 }
#define CBT_INC(t, p) { t, "incremental", p, TRUE, FALSE, 0 }
#define CBT_DIFF(t, p) { t, "differential", p, TRUE, FALSE, 0 }

static char *
backup_id (const spec *s, guint i)
{
  GString *id = g_string_new (NULL);

  for (const char *p = s[i].time; *p != '\0'; p++)
    if (*p != '-' && *p != ':')
      g_string_append_c (id, *p);
  g_string_append_printf (id, "-%06x", i);
  return g_string_free (id, FALSE);
}

static char *
volume_uuid (const spec *s, guint i)
{
  return s[i].cbt ? g_strdup (DISK) : g_strdup_printf ("%08x-0000-4000-8000-000000000001", i + 1);
}

static char *
checkpoint_uuid (guint i)
{
  return g_strdup_printf ("c0000000-0000-4000-8000-%012x", i + 1);
}

/* The manifest text receive would write for backups s[0..n). */
static char *
manifest_text (const spec *s, guint n)
{
  GString *t = g_string_new ("{\"format\":\"ovagent-manifest\",\"version\":1,"
                             "\"disk\":\"" DISK "\",\"backups\":[");

  for (guint i = 0; i < n; i++) {
    g_autofree char *id = backup_id (s, i);
    g_autofree char *vol = volume_uuid (s, i);
    g_autofree char *cp = checkpoint_uuid (i);
    g_autofree char *pid = s[i].parent >= 0 ? backup_id (s, (guint) s[i].parent) : NULL;
    g_autofree char *pvol = s[i].parent >= 0 ? volume_uuid (s, (guint) s[i].parent) : NULL;
    g_autofree char *pcp = s[i].parent >= 0 ? checkpoint_uuid ((guint) s[i].parent) : NULL;

    g_string_append_printf (t, "%s{\"id\":\"%s\",\"time\":\"%s\",\"host\":\"node1\","
                            "\"domain\":null,\"kind\":\"%s\",", i ? "," : "",
                            id, s[i].time, s[i].kind);
    if (!s[i].cbt && pid)
      g_string_append_printf (t, "\"since\":\"%s\",\"parent\":\"%s\",", pvol, pid);
    else if (pid)
      g_string_append_printf (t, "\"since\":null,\"parent\":\"%s\",", pid);
    else
      g_string_append (t, "\"since\":null,\"parent\":null,");
    if (s[i].cbt)
      g_string_append_printf (t, "\"checkpoint\":\"%s\",\"from_checkpoint\":%s%s%s,"
                              "\"vm\":null,", cp, pcp ? "\"" : "", pcp ? pcp : "null",
                              pcp ? "\"" : "");
    g_string_append_printf (t, "\"volumes\":[{\"uuid\":\"%s\",\"file\":\"%s/%s.qcow2\","
                            "\"format\":\"qcow2\",\"size\":196608,"
                            "\"virtual_size\":%" G_GUINT64_FORMAT ",\"digest\":\"" DIGEST "\",",
                            vol, id, vol, s[i].virtual_size ? s[i].virtual_size : GiB);
    if (pid)
      g_string_append_printf (t, "\"backing\":\"../%s/%s.qcow2\"}],", pid, pvol);
    else
      g_string_append (t, "\"backing\":null}],");
    g_string_append_printf (t, "%s\"meta\":null}", s[i].removing ? "\"removing\":true," : "");
  }
  g_string_append (t, "]}");
  return g_string_free (t, FALSE);
}

static repo_manifest *
manifest (const spec *s, guint n)
{
  g_autofree char *text = manifest_text (s, n);
  g_autoptr(GError) err = NULL;
  repo_manifest *m = repo_manifest_parse (DISK, text, strlen (text), "test manifest", &err);

  if (m == NULL)
    g_error ("the test manifest does not parse: %s\n%s", err->message, text);
  return m;
}

/* A case that came out otherwise: reported, the test failed, the other
 * cases still run. */
static void G_GNUC_PRINTF (1, 2)
mismatch (const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_printerr ("MISMATCH: %s\n", msg);
  g_test_fail ();
}

/* The plan for s under rules (or forgetting backup forget, when >= 0)
 * against e, backup by backup. */
static void
check_plan (const char *what, const spec *s, guint n, const repo_keep_rules *rules,
            int forget, const expect *e)
{
  g_autoptr(repo_manifest) m = manifest (s, n);
  g_autofree char *forget_id = forget >= 0 ? backup_id (s, (guint) forget) : NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(repo_prune_plan) plan = repo_prune_plan_new (m, forget_id ? NULL : rules,
                                                         forget_id, &err);
  guint removed = 0;

  if (plan == NULL) {
    mismatch ("%s: no plan: %s", what, err->message);
    return;
  }
  g_assert_cmpstr (plan->disk, ==, DISK);
  g_assert_cmpuint (plan->items->len, ==, n);
  for (guint i = 0; i < n; i++) {
    const repo_prune_item *it = g_ptr_array_index (plan->items, i);
    g_autofree char *id = backup_id (s, i);
    g_autofree char *into = e[i].merged_into >= 0 ? backup_id (s, (guint) e[i].merged_into) : NULL;

    g_test_message ("%s: %s %s %s (%s)%s%s", what, it->id, it->time,
                    it->keep ? "keep" : "remove", it->reason,
                    it->merged_into ? " into " : "", it->merged_into ? it->merged_into : "");
    g_assert_cmpstr (it->id, ==, id);
    g_assert_cmpstr (it->time, ==, s[i].time);
    g_assert_nonnull (it->reason);
    if (it->keep != e[i].keep)
      mismatch ("%s: backup %u (%s) is %s (%s), expected %s", what, i, id,
                it->keep ? "kept" : "removed", it->reason, e[i].keep ? "kept" : "removed");
    else if (strcmp (it->reason, e[i].reason) != 0)
      mismatch ("%s: backup %u (%s): reason \"%s\", expected \"%s\"", what, i, id,
                it->reason, e[i].reason);
    else if (g_strcmp0 (it->merged_into, into) != 0)
      mismatch ("%s: backup %u (%s): merged into %s, expected %s", what, i, id,
                it->merged_into ? it->merged_into : "nothing (deleted)",
                into ? into : "nothing (deleted)");
    if (!it->keep)
      removed++;
  }
  g_assert_cmpuint (plan->removed, ==, removed);
}

/* ---- keep-last and keep-within ---- */

static const spec six_days[] = {
  CHAIN_FULL ("2026-11-20T03:10:00Z"),
  CHAIN_INC ("2026-11-21T03:10:00Z", 0),
  CHAIN_INC ("2026-11-22T03:10:00Z", 1),
  CHAIN_INC ("2026-11-23T03:10:00Z", 2),
  CHAIN_INC ("2026-11-24T03:10:00Z", 3),
  CHAIN_INC ("2026-11-25T03:10:00Z", 4),
};

static void
test_keep_last (void)
{
  const repo_keep_rules last3 = { .last = 3 };
  const repo_keep_rules last1 = { .last = 1 };
  const repo_keep_rules last10 = { .last = 10 };
  const expect e3[] = {
    GONE ("no rule keeps it", 3), GONE ("no rule keeps it", 3), GONE ("no rule keeps it", 3),
    KEEP ("last #3"), KEEP ("last #2"), KEEP ("last #1"),
  };
  const expect e1[] = {
    GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5),
    GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5), KEEP ("last #1"),
  };
  const expect e10[] = {
    KEEP ("last #6"), KEEP ("last #5"), KEEP ("last #4"), KEEP ("last #3"), KEEP ("last #2"),
    KEEP ("last #1"),
  };

  check_plan ("keep-last 3", six_days, 6, &last3, -1, e3);
  check_plan ("keep-last 1", six_days, 6, &last1, -1, e1);
  check_plan ("keep-last 10", six_days, 6, &last10, -1, e10);
}

static void
test_keep_within (void)
{
  static const spec s[] = {
    CHAIN_FULL ("2026-11-20T00:00:00Z"),
    CHAIN_INC ("2026-11-23T23:00:00Z", 0),    /* 37 h before the newest */
    CHAIN_INC ("2026-11-24T01:00:00Z", 1),    /* 35 h */
    CHAIN_INC ("2026-11-25T00:00:00Z", 2),
    CHAIN_INC ("2026-11-25T12:00:00Z", 3),
  };
  const expect e[] = {
    GONE ("no rule keeps it", 2), GONE ("no rule keeps it", 2),
    KEEP ("within 36h"), KEEP ("within 36h"), KEEP ("within 36h"),
  };
  const expect e2d[] = {
    GONE ("no rule keeps it", 1),
    KEEP ("within 2d"), KEEP ("within 2d"), KEEP ("within 2d"), KEEP ("within 2d"),
  };
  repo_keep_rules rules = { 0 };

  g_assert_true (repo_parse_duration ("36h", &rules.within_seconds));
  check_plan ("keep-within 36h", s, 5, &rules, -1, e);
  g_assert_true (repo_parse_duration ("2d", &rules.within_seconds));
  check_plan ("keep-within 2d", s, 5, &rules, -1, e2d);
  /* An hour back from the newest: only the latest. */
  rules.within_seconds = 3600;
  {
    const expect e1h[] = {
      GONE ("no rule keeps it", 4), GONE ("no rule keeps it", 4), GONE ("no rule keeps it", 4),
      GONE ("no rule keeps it", 4), KEEP ("within 1h"),
    };

    check_plan ("keep-within 1h", s, 5, &rules, -1, e1h);
  }
}

/* ---- the period rules ---- */

/* Several backups a day, a day without any, a day ending a second before
 * midnight (UTC). */
static const spec days[] = {
  CHAIN_FULL ("2026-11-19T12:00:00Z"),
  CHAIN_INC ("2026-11-20T01:00:00Z", 0),
  CHAIN_INC ("2026-11-20T13:00:00Z", 1),
  CHAIN_INC ("2026-11-21T02:00:00Z", 2),
  CHAIN_INC ("2026-11-21T10:00:00Z", 3),
  CHAIN_INC ("2026-11-21T23:59:59Z", 4),
  CHAIN_INC ("2026-11-23T00:00:00Z", 5),
  CHAIN_INC ("2026-11-23T05:00:00Z", 6),
  CHAIN_INC ("2026-11-23T06:00:00Z", 7),
};

/* keep-last 2 kept the two newest of 2026-11-23: that day is used up,
 * not counted, and the days counted are the ones before it. */
static void
test_daily (void)
{
  const repo_keep_rules last2_daily2 = { .last = 2, .daily = 2 };
  const expect e_2_2[] = {
    GONE ("no rule keeps it", 2), GONE ("no rule keeps it", 2), KEEP ("daily 2026-11-20"),
    GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5), KEEP ("daily 2026-11-21"),
    GONE ("no rule keeps it", 7), KEEP ("last #2"), KEEP ("last #1"),
  };

  check_plan ("keep-last 2 keep-daily 2", days, 9, &last2_daily2, -1, e_2_2);
}

static void
test_hourly (void)
{
  static const spec s[] = {
    CHAIN_FULL ("2026-11-22T03:10:00Z"),
    CHAIN_INC ("2026-11-22T03:50:00Z", 0),
    CHAIN_INC ("2026-11-22T04:05:00Z", 1),
    CHAIN_INC ("2026-11-22T04:55:00Z", 2),
  };
  const repo_keep_rules rules = { .hourly = 2 };
  const expect e[] = {
    GONE ("no rule keeps it", 1), KEEP ("hourly 2026-11-22T03"),
    GONE ("no rule keeps it", 3), KEEP ("hourly 2026-11-22T04"),
  };

  check_plan ("keep-hourly 2", s, 4, &rules, -1, e);
}

/* ISO weeks across a year's end: 2027-01-03 is in week 53 of 2026. */
static const spec weeks[] = {
  CHAIN_FULL ("2026-12-20T10:00:00Z"),    /* 2026-W51 */
  CHAIN_INC ("2026-12-22T10:00:00Z", 0),   /* 2026-W52 */
  CHAIN_INC ("2026-12-27T10:00:00Z", 1),   /* 2026-W52, a Sunday */
  CHAIN_INC ("2026-12-28T10:00:00Z", 2),   /* 2026-W53 */
  CHAIN_INC ("2027-01-03T10:00:00Z", 3),   /* 2026-W53 */
  CHAIN_INC ("2027-01-04T10:00:00Z", 4),   /* 2027-W01 */
};

static const spec months[] = {
  CHAIN_FULL ("2025-06-01T10:00:00Z"),
  CHAIN_INC ("2025-12-31T23:00:00Z", 0),
  CHAIN_INC ("2026-01-15T10:00:00Z", 1),
  CHAIN_INC ("2026-02-01T10:00:00Z", 2),
  CHAIN_INC ("2026-02-20T10:00:00Z", 3),
  CHAIN_INC ("2026-04-10T10:00:00Z", 4),
  CHAIN_INC ("2026-04-11T10:00:00Z", 5),
};

static void
test_monthly_yearly (void)
{
  const repo_keep_rules monthly2_yearly2 = { .monthly = 2, .yearly = 2 };
  const repo_keep_rules yearly5 = { .yearly = 5 };
  /* monthly keeps April and February; 2026's newest is kept already: the
   * year is used up, and the second year counted is 2025, ending on its
   * last evening. */
  const expect e_my[] = {
    GONE ("no rule keeps it", 1), KEEP ("yearly 2025"), GONE ("no rule keeps it", 4),
    GONE ("no rule keeps it", 4), KEEP ("monthly 2026-02"),
    GONE ("no rule keeps it", 6), KEEP ("monthly 2026-04"),
  };
  /* Five years asked, two have backups. */
  const expect e_y[] = {
    GONE ("no rule keeps it", 1), KEEP ("yearly 2025"), GONE ("no rule keeps it", 6),
    GONE ("no rule keeps it", 6), GONE ("no rule keeps it", 6),
    GONE ("no rule keeps it", 6), KEEP ("yearly 2026"),
  };

  check_plan ("keep-monthly 2 keep-yearly 2", months, 7, &monthly2_yearly2, -1, e_my);
  check_plan ("keep-yearly 5", months, 7, &yearly5, -1, e_y);
}

/* A period rule alone keeps N periods, the latest's the first of them
 * (docs/repository.md §7.1). */
static void
test_period_alone (void)
{
  const repo_keep_rules daily3 = { .daily = 3 };
  const repo_keep_rules daily1 = { .daily = 1 };
  const repo_keep_rules weekly3 = { .weekly = 3 };
  const repo_keep_rules monthly2 = { .monthly = 2 };
  const expect e_d3[] = {
    GONE ("no rule keeps it", 2), GONE ("no rule keeps it", 2), KEEP ("daily 2026-11-20"),
    GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5), KEEP ("daily 2026-11-21"),
    GONE ("no rule keeps it", 8), GONE ("no rule keeps it", 8), KEEP ("daily 2026-11-23"),
  };
  const expect e_d1[] = {
    GONE ("no rule keeps it", 8), GONE ("no rule keeps it", 8), GONE ("no rule keeps it", 8),
    GONE ("no rule keeps it", 8), GONE ("no rule keeps it", 8), GONE ("no rule keeps it", 8),
    GONE ("no rule keeps it", 8), GONE ("no rule keeps it", 8), KEEP ("daily 2026-11-23"),
  };
  const expect e_w3[] = {
    GONE ("no rule keeps it", 2), GONE ("no rule keeps it", 2), KEEP ("weekly 2026-W52"),
    GONE ("no rule keeps it", 4), KEEP ("weekly 2026-W53"), KEEP ("weekly 2027-W01"),
  };
  const expect e_m2[] = {
    GONE ("no rule keeps it", 4), GONE ("no rule keeps it", 4), GONE ("no rule keeps it", 4),
    GONE ("no rule keeps it", 4), KEEP ("monthly 2026-02"),
    GONE ("no rule keeps it", 6), KEEP ("monthly 2026-04"),
  };

  check_plan ("keep-daily 3", days, 9, &daily3, -1, e_d3);
  check_plan ("keep-daily 1", days, 9, &daily1, -1, e_d1);
  check_plan ("keep-weekly 3", weeks, 6, &weekly3, -1, e_w3);
  check_plan ("keep-monthly 2", months, 7, &monthly2, -1, e_m2);
}

/* times[0..n): first, then one every step days, as manifest times. */
static void
times_every (char (*times)[32], guint n, GDateTime *first, int step)
{
  for (guint i = 0; i < n; i++) {
    g_autoptr(GDateTime) t = g_date_time_add_days (first, step * (int) i);
    g_autofree char *text = g_date_time_format (t, "%Y-%m-%dT%H:%M:%SZ");

    g_strlcpy (times[i], text, sizeof times[i]);
  }
}

/* s[0..n): a chain full at times[0], each next an incremental on it. */
static void
linear_chain (spec *s, char (*times)[32], guint n)
{
  for (guint i = 0; i < n; i++)
    s[i] = (spec) { times[i], i ? "incremental" : "full", (int) i - 1, FALSE, FALSE, 0 };
}

/* The worked examples of docs/repository.md §7.1. */
static void
test_documented (void)
{
  g_autoptr(GDateTime) first = g_date_time_new_utc (2026, 11, 1, 3, 0, 0);
  const repo_keep_rules rules = { .last = 2, .daily = 3 };
  const repo_keep_rules daily7 = { .daily = 7 };
  const expect e[] = {
    GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5),
    GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5), KEEP ("daily 2026-11-06"),
    KEEP ("daily 2026-11-07"), KEEP ("daily 2026-11-08"), KEEP ("last #2"), KEEP ("last #1"),
  };
  const expect e_twice[] = {
    GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5),
    GONE ("no rule keeps it", 5), GONE ("no rule keeps it", 5), KEEP ("daily 2026-11-06"),
    KEEP ("daily 2026-11-07"), GONE ("no rule keeps it", 8), KEEP ("daily 2026-11-08"),
    KEEP ("last #2"), KEEP ("last #1"),
  };
  char t10[10][32], t_twice[11][32], t_other[16][32];
  spec d10[10], d10_twice[11], every_other[16];
  expect e_other[16];

  /* D1 ... D10 at 03:00; then with a second backup on D8's day at 15:00. */
  times_every (t10, 10, first, 1);
  linear_chain (d10, t10, 10);
  memcpy (t_twice, t10, 8 * sizeof t10[0]);
  g_strlcpy (t_twice[8], "2026-11-08T15:00:00Z", sizeof t_twice[8]);
  memcpy (t_twice[9], t10[8], 2 * sizeof t10[0]);
  linear_chain (d10_twice, t_twice, 11);
  check_plan ("keep-last 2 keep-daily 3", d10, 10, &rules, -1, e);
  check_plan ("keep-last 2 keep-daily 3, two on D8's day", d10_twice, 11, &rules, -1, e_twice);

  /* A backup every other day: --keep-daily 7 reaches back 12 days. */
  times_every (t_other, 16, first, 2);
  linear_chain (every_other, t_other, 16);
  for (guint i = 0; i < 16; i++)
    e_other[i] = (expect) GONE ("no rule keeps it", 9);
  for (guint i = 9; i < 16; i++) {
    e_other[i] = (expect) KEEP (NULL);
    e_other[i].reason = g_strdup_printf ("daily %.10s", t_other[i]);
  }
  g_assert_cmpstr (t_other[9], ==, "2026-11-19T03:00:00Z");
  check_plan ("keep-daily 7, every other day", every_other, 16, &daily7, -1, e_other);
  for (guint i = 9; i < 16; i++)
    g_free ((char *) e_other[i].reason);
}

/* All rules at once, in their order: last, within, then the periods. */
static void
test_rule_order (void)
{
  repo_keep_rules rules = { .last = 1, .daily = 1, .monthly = 1 };
  /* last keeps the latest; daily's one day and monthly's one month are
   * used up by it (not counted) and count further back, as borg counts. */
  const expect e[] = {
    GONE ("no rule keeps it", 2), GONE ("no rule keeps it", 2), KEEP ("monthly 2026-10"),
    KEEP ("daily 2026-11-21"), KEEP ("last #1"),
  };
  static const spec s[] = {
    CHAIN_FULL ("2026-10-01T10:00:00Z"),
    CHAIN_INC ("2026-10-20T10:00:00Z", 0),
    CHAIN_INC ("2026-10-31T10:00:00Z", 1),
    CHAIN_INC ("2026-11-21T10:00:00Z", 2),
    CHAIN_INC ("2026-11-22T10:00:00Z", 3),
  };

  check_plan ("keep-last 1 keep-daily 1 keep-monthly 1", s, 5, &rules, -1, e);
}

/* ---- backups other backups need ---- */

/* A changed-block full under two kept differentials cannot move into
 * either: it is kept. The incremental nothing kept is built on goes. */
static const spec cbt_diffs[] = {
  CBT_FULL ("2026-11-20T03:10:00Z"),
  CBT_INC ("2026-11-21T03:10:00Z", 0),
  CBT_DIFF ("2026-11-22T03:10:00Z", 0),
  CBT_DIFF ("2026-11-23T03:10:00Z", 0),
};

/* One kept incremental reads the full through a removed incremental, a
 * differential reads it directly: the full is needed by both, the removed
 * incremental moves into the kept one. */
static const spec cbt_run[] = {
  CBT_FULL ("2026-11-20T03:10:00Z"),
  CBT_INC ("2026-11-21T03:10:00Z", 0),
  CBT_INC ("2026-11-22T03:10:00Z", 1),
  CBT_DIFF ("2026-11-23T03:10:00Z", 0),
};

/* Two chain incrementals on the same full (receive makes none such, the
 * manifest allows it). */
static const spec chain_fork[] = {
  CHAIN_FULL ("2026-11-20T03:10:00Z"),
  CHAIN_INC ("2026-11-21T03:10:00Z", 0),
  CHAIN_INC ("2026-11-22T03:10:00Z", 0),
  CHAIN_INC ("2026-11-23T03:10:00Z", 1),
};

/* "needed by A and B" for backups a and b of s. */
static char *
needed_by (const spec *s, guint a, guint b)
{
  g_autofree char *ida = backup_id (s, a);
  g_autofree char *idb = backup_id (s, b);

  return g_strdup_printf ("needed by %s and %s", ida, idb);
}

static void
test_needed (void)
{
  static const struct { const char *what; const spec *s; int into; } cases[] = {
    { "cbt full under two differentials", cbt_diffs, -1 },
    { "cbt full under an incremental run and a differential", cbt_run, 2 },
    { "chain full under two incrementals", chain_fork, 3 },
  };
  const repo_keep_rules last2 = { .last = 2 };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *why = needed_by (cases[i].s, 2, 3);
    const expect e[] = {
      KEEP (why), GONE ("no rule keeps it", cases[i].into), KEEP ("last #2"), KEEP ("last #1"),
    };

    check_plan (cases[i].what, cases[i].s, 4, &last2, -1, e);
  }
}

/* A new full starts another chain: the old chain's backups have no kept
 * backup built on them and are deleted. */
static void
test_deleted (void)
{
  static const spec s[] = {
    CHAIN_FULL ("2026-11-20T03:10:00Z"),
    CHAIN_INC ("2026-11-21T03:10:00Z", 0),
    CHAIN_INC ("2026-11-22T03:10:00Z", 1),
    CHAIN_FULL ("2026-11-23T03:10:00Z"),
    CHAIN_INC ("2026-11-24T03:10:00Z", 3),
    CHAIN_INC ("2026-11-25T03:10:00Z", 4),
  };
  const repo_keep_rules last2 = { .last = 2 };
  const expect e[] = {
    GONE ("no rule keeps it", -1), GONE ("no rule keeps it", -1), GONE ("no rule keeps it", -1),
    GONE ("no rule keeps it", 4), KEEP ("last #2"), KEEP ("last #1"),
  };

  check_plan ("an old chain", s, 6, &last2, -1, e);
}

/* A removed backup larger than the kept one built on it (the disk shrank
 * in between) cannot take its data: its top would become the kept one's,
 * and qemu-img commit never shrinks it. It is kept. */
static const spec shrunk[] = {
  { "2026-11-20T03:10:00Z", "full", -1, FALSE, FALSE, 2 * GiB },
  CHAIN_INC ("2026-11-21T03:10:00Z", 0),
  CHAIN_INC ("2026-11-22T03:10:00Z", 1),
};

static void
test_larger (void)
{
  const repo_keep_rules last1 = { .last = 1 };
  g_autofree char *id2 = backup_id (shrunk, 2);
  g_autofree char *why = g_strdup_printf ("larger than %s built on it", id2);
  const expect e[] = {
    KEEP (why), GONE ("no rule keeps it", 2), KEEP ("last #1"),
  };

  check_plan ("a larger backup under the latest", shrunk, 3, &last1, -1, e);
}

/* ---- forget ---- */

static void
test_forget (void)
{
  g_autoptr(repo_manifest) m = manifest (six_days, 6);
  g_autofree char *latest = backup_id (six_days, 5);
  g_autoptr(GError) err = NULL;
  repo_prune_plan *none;

  none = repo_prune_plan_new (m, NULL, latest, &err);
  g_assert_null (none);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
  g_assert_nonnull (strstr (err->message, latest));
  g_test_message ("forget the latest: %s", err->message);
  g_clear_error (&err);

  none = repo_prune_plan_new (m, NULL, "20200101T000000Z-000000", &err);
  g_assert_null (none);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, "20200101T000000Z-000000"));
  g_test_message ("forget an unknown backup: %s", err->message);
  g_clear_error (&err);

  {
    const expect e[] = {
      KEEP ("not named"), GONE ("forget", 2), KEEP ("not named"), KEEP ("not named"),
      KEEP ("not named"), KEEP ("latest"),
    };

    check_plan ("forget an incremental", six_days, 6, NULL, 1, e);
  }
  {
    const expect e[] = {
      GONE ("forget", 1), KEEP ("not named"), KEEP ("not named"), KEEP ("not named"),
      KEEP ("not named"), KEEP ("latest"),
    };

    check_plan ("forget the full", six_days, 6, NULL, 0, e);
  }
  /* Nothing kept is built on the changed-block incremental: deleted. */
  {
    const expect e[] = {
      KEEP ("not named"), GONE ("forget", -1), KEEP ("not named"), KEEP ("latest"),
    };

    check_plan ("forget a cbt incremental", cbt_diffs, 4, NULL, 1, e);
  }
  /* The full the other three read cannot go: forget refuses, naming them. */
  {
    g_autoptr(repo_manifest) cbt = manifest (cbt_diffs, 4);
    g_autofree char *full = backup_id (cbt_diffs, 0);
    g_autofree char *a = backup_id (cbt_diffs, 1);
    g_autofree char *b = backup_id (cbt_diffs, 2);
    g_autofree char *c = backup_id (cbt_diffs, 3);
    g_autofree char *why = g_strdup_printf ("needed by %s, %s and %s", a, b, c);

    none = repo_prune_plan_new (cbt, NULL, full, &err);
    g_assert_null (none);
    g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
    g_assert_nonnull (strstr (err->message, full));
    if (strstr (err->message, why) == NULL)
      mismatch ("forget a cbt full under differentials: \"%s\" does not say \"%s\"",
                err->message, why);
    g_test_message ("forget a cbt full under differentials: %s", err->message);
    g_clear_error (&err);
  }
  /* Nor the full larger than the incremental it would move into. */
  {
    g_autoptr(repo_manifest) sm = manifest (shrunk, 3);
    g_autofree char *full = backup_id (shrunk, 0);

    none = repo_prune_plan_new (sm, NULL, full, &err);
    g_assert_null (none);
    g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
    if (strstr (err->message, "larger than") == NULL)
      mismatch ("forget a larger full: \"%s\" does not say \"larger than\"", err->message);
    g_test_message ("forget a larger full: %s", err->message);
    g_clear_error (&err);
  }
}

/* ---- backups an interrupted prune marked "removing" ---- */

static void
test_removing (void)
{
  static const spec s[] = {
    CHAIN_FULL ("2026-11-20T03:10:00Z"),
    CHAIN_INC ("2026-11-21T03:10:00Z", 0),
    { "2026-11-22T03:10:00Z", "incremental", 1, FALSE, TRUE, 0 },
    CHAIN_INC ("2026-11-23T03:10:00Z", 2),
  };
  const repo_keep_rules last10 = { .last = 10 };
  const repo_keep_rules last2 = { .last = 2 };
  /* Whatever the rules say, a backup being removed is no longer a point:
   * it stays removed, and keep-last counts only points. */
  const expect e10[] = {
    KEEP ("last #3"), KEEP ("last #2"), GONE ("being removed", 3), KEEP ("last #1"),
  };
  const expect e2[] = {
    GONE ("no rule keeps it", 1), KEEP ("last #2"), GONE ("being removed", 3), KEEP ("last #1"),
  };
  const expect e_forget[] = {
    KEEP ("not named"), GONE ("forget", 3), GONE ("being removed", 3), KEEP ("latest"),
  };

  check_plan ("keep-last 10 with one being removed", s, 4, &last10, -1, e10);
  check_plan ("keep-last 2 with one being removed", s, 4, &last2, -1, e2);
  check_plan ("forget with one being removed", s, 4, NULL, 1, e_forget);
}

static void
test_empty (void)
{
  g_autoptr(repo_manifest) m = repo_manifest_new (DISK);
  const repo_keep_rules rules = { .last = 1 };
  g_autoptr(GError) err = NULL;
  g_autoptr(repo_prune_plan) plan = repo_prune_plan_new (m, &rules, NULL, &err);

  g_assert_no_error (err);
  g_assert_nonnull (plan);
  g_assert_cmpuint (plan->items->len, ==, 0);
  g_assert_cmpuint (plan->removed, ==, 0);
}

/* ---- durations ---- */

static void
test_duration (void)
{
  static const struct { const char *text; gint64 seconds; } good[] = {
    { "36h", 36 * 3600 },
    { "1h", 3600 },
    { "7d", 7 * 86400 },
    { "2w", 14 * 86400 },
    { "6m", 6 * 31 * 86400 },
    { "1y", 365 * 86400 },
    { "100000y", G_GINT64_CONSTANT (100000) * 365 * 86400 },
  };
  static const char *const bad[] = {
    "", "7", "d", "0d", "00d", "-1d", "+1d", "7x", "7D", " 7d", "7d ", "7dd", "1.5d",
    "7 d", "100001d", "99999999999999999999y", "18446744073709551617h",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (good); i++) {
    gint64 s = -1;

    if (!repo_parse_duration (good[i].text, &s))
      g_error ("duration \"%s\" refused", good[i].text);
    g_assert_cmpint (s, ==, good[i].seconds);
  }
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    gint64 s = -1;

    if (repo_parse_duration (bad[i], &s))
      g_error ("duration \"%s\" accepted as %" G_GINT64_FORMAT " s", bad[i], s);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/prune-plan/keep-last", test_keep_last);
  g_test_add_func ("/prune-plan/keep-within", test_keep_within);
  g_test_add_func ("/prune-plan/daily", test_daily);
  g_test_add_func ("/prune-plan/period-alone", test_period_alone);
  g_test_add_func ("/prune-plan/documented", test_documented);
  g_test_add_func ("/prune-plan/hourly", test_hourly);
  g_test_add_func ("/prune-plan/monthly-yearly", test_monthly_yearly);
  g_test_add_func ("/prune-plan/rule-order", test_rule_order);
  g_test_add_func ("/prune-plan/needed", test_needed);
  g_test_add_func ("/prune-plan/deleted", test_deleted);
  g_test_add_func ("/prune-plan/larger", test_larger);
  g_test_add_func ("/prune-plan/forget", test_forget);
  g_test_add_func ("/prune-plan/removing", test_removing);
  g_test_add_func ("/prune-plan/empty", test_empty);
  g_test_add_func ("/duration", test_duration);
  return g_test_run ();
}
