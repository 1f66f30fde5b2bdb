/* ovagent tests: serve's command-line grammar (common/cmdline.c) and its
 * allow-lists per role (agent/serve-policy.c), table-driven. */
#include <config.h>

#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "cmdline.h"
#include "error.h"
#include "agent/serve.h"

#define IMG "0b3e5d7f-2a4c-4e6f-8a1b-3c5d7e9f1a2b"
#define SD "5e6f3a2c-8d1b-4c7e-9f0a-1b2c3d4e5f60"
#define VOL "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b"
#define CP "aaaa0b1c-2d3e-4f5a-8b6c-7d8e9f0a1b2c"
#define BACKUP "20261122T031000Z-3f2a9c"
#define SELF "/opt/ovagent/bin/ovagent"
#define VM "5d3f0a2e-1b4c-4d6e-8f70-a1b2c3d4e5f6"
#define OTHER_CP "bbbb0b1c-2d3e-4f5a-8b6c-7d8e9f0a1b2c"

/* ---- the grammar ---- */

typedef struct {
  const char *line;
  gssize len;            /* -1: strlen */
  const char *words;     /* joined by '|'; NULL: refused */
  const char *needle;    /* in the refusal */
} split_case;

static const split_case split_cases[] = {
  { "ovagent list", -1, "ovagent|list" },
  { "  ovagent\tlist  ", -1, "ovagent|list" },
  { "ovagent receive --repo '/srv/a b' --json", -1, "ovagent|receive|--repo|/srv/a b|--json" },
  /* What g_shell_quote makes of "/srv/it's" (sink-ssh quotes --repo so). */
  { "ovagent receive --repo '/srv/it'\\''s'", -1, "ovagent|receive|--repo|/srv/it's" },
  { "\"a \\\"b\\\" \\\\c\"", -1, "a \"b\" \\c" },
  { "'a;b|c$d`e(f)*?[]~!#<>{}'", -1, "a;b|c$d`e(f)*?[]~!#<>{}" },
  { "ab'cd'\"ef\"gh", -1, "abcdefgh" },
  { "--opt=\"x y\"", -1, "--opt=x y" },
  { "\\'x \\\"y", -1, "'x|\"y" },
  { "ovagent info 'é✓'", -1, "ovagent|info|é✓" },
  { "a=b,c%d^e@f:g+h", -1, "a=b,c%d^e@f:g+h" },
  { "", -1, "" },

  { "ovagent list; id", -1, NULL, "';' is a shell metacharacter" },
  { "ovagent list | cat", -1, NULL, "'|' is a shell metacharacter" },
  { "ovagent list && id", -1, NULL, "'&' is a shell metacharacter" },
  { "ovagent $(id)", -1, NULL, "'$' is a shell metacharacter" },
  { "ovagent ${HOME}", -1, NULL, "'$' is a shell metacharacter" },
  { "ovagent `id`", -1, NULL, "'`' is a shell metacharacter" },
  { "ovagent list >/tmp/x", -1, NULL, "'>' is a shell metacharacter" },
  { "ovagent </etc/shadow", -1, NULL, "'<' is a shell metacharacter" },
  { "ovagent (list)", -1, NULL, "'(' is a shell metacharacter" },
  { "ovagent {a,b}", -1, NULL, "'{' is a shell metacharacter" },
  { "ovagent *", -1, NULL, "'*' is a shell metacharacter" },
  { "ovagent l?st", -1, NULL, "'?' is a shell metacharacter" },
  { "ovagent [a]", -1, NULL, "'[' is a shell metacharacter" },
  { "ovagent ~root", -1, NULL, "'~' is a shell metacharacter" },
  { "ovagent !!", -1, NULL, "'!' is a shell metacharacter" },
  { "ovagent list #", -1, NULL, "'#' is a shell metacharacter" },
  { "ovagent list\nid", -1, NULL, "control character U+000A" },
  { "ovagent list\r", -1, NULL, "control character U+000D" },
  { "ovagent 'a\tb'", -1, NULL, "a tab inside quotes" },
  { "ovagent \"a\tb\"", -1, NULL, "a tab inside quotes" },
  { "ovagent \x1b[2J", -1, NULL, "control character U+001B" },
  { "ovagent \x7f", -1, NULL, "control character U+007F" },
  { "ovagent \xc2\x85", -1, NULL, "control character U+0085" },
  { "ovagent \xff list", -1, NULL, "not valid UTF-8" },
  { "ovagent \xc0\xaf", -1, NULL, "not valid UTF-8" },
  { "ovagent\0; id", 13, NULL, "NUL byte" },
  { "ovagent 'list", -1, NULL, "single quote is never closed" },
  { "ovagent \"list", -1, NULL, "double quote is never closed" },
  { "ovagent \"$HOME\"", -1, NULL, "inside double quotes would be expanded" },
  { "ovagent \"`id`\"", -1, NULL, "inside double quotes would be expanded" },
  { "ovagent \"a\\nb\"", -1, NULL, "a backslash may only escape \" or \\" },
  { "ovagent a\\ b", -1, NULL, "outside quotes a backslash may only escape a quote" },
  { "ovagent list\\", -1, NULL, "outside quotes a backslash" },
  { "ovagent '' list", -1, NULL, "an empty word" },
  { "ovagent \"\"", -1, NULL, "an empty word" },
};

static char *
joined_words (const char *line, gssize len, GError **error)
{
  g_auto(GStrv) words = NULL;

  if (!ova_cmdline_split (line, len < 0 ? strlen (line) : (gsize) len, &words, error))
    return NULL;
  return g_strjoinv ("|", words);
}

static void
test_split (void)
{
  for (size_t i = 0; i < G_N_ELEMENTS (split_cases); i++) {
    const split_case *c = &split_cases[i];
    g_autoptr(GError) err = NULL;
    g_autofree char *got = joined_words (c->line, c->len, &err);

    if (c->words != NULL) {
      if (got == NULL)
        g_error ("line %zu refused: %s", i, err->message);
      g_assert_cmpstr (got, ==, c->words);
      continue;
    }
    if (got != NULL)
      g_error ("line %zu accepted as \"%s\"", i, got);
    g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
    if (strstr (err->message, c->needle) == NULL)
      g_error ("line %zu: \"%s\" does not say \"%s\"", i, err->message, c->needle);
    g_assert_nonnull (strstr (err->message, "byte "));
  }
}

/* line splits into n words, or (n 0) is refused saying needle. */
static void
expect_split (const GString *line, guint n, const char *needle)
{
  g_autoptr(GError) err = NULL;
  g_auto(GStrv) words = NULL;

  if (n == 0) {
    g_assert_false (ova_cmdline_split (line->str, line->len, &words, &err));
    g_assert_nonnull (strstr (err->message, needle));
    return;
  }
  g_assert_true (ova_cmdline_split (line->str, line->len, &words, &err));
  g_assert_no_error (err);
  g_assert_cmpuint (g_strv_length (words), ==, n);
}

/* The bounds, exactly at and just past them. */
static void
test_split_bounds (void)
{
  g_autoptr(GString) line = g_string_new ("ovagent ");

  /* OVA_CMDLINE_MAX bytes, a word of OVA_CMDLINE_MAX_WORD: taken. */
  for (int i = 0; i < OVA_CMDLINE_MAX_WORD; i++)
    g_string_append_c (line, 'x');
  g_string_append_c (line, ' ');
  while (line->len < OVA_CMDLINE_MAX)
    g_string_append_c (line, 'y');
  expect_split (line, 3, NULL);
  /* One byte more. */
  g_string_append_c (line, 'y');
  expect_split (line, 0, "longer than 8192 bytes");

  /* A word one byte longer than a word may be. */
  g_string_assign (line, "ovagent 'x");
  for (int i = 0; i < OVA_CMDLINE_MAX_WORD; i++)
    g_string_append_c (line, 'x');
  g_string_append_c (line, '\'');
  expect_split (line, 0, "a word is longer than 4096 bytes");

  /* OVA_CMDLINE_MAX_WORDS words, then one more. */
  g_string_assign (line, "");
  for (int i = 0; i < OVA_CMDLINE_MAX_WORDS; i++)
    g_string_append (line, "x ");
  expect_split (line, OVA_CMDLINE_MAX_WORDS, NULL);
  g_string_append (line, "x");
  expect_split (line, 0, "more than 256 words");
}

/* ---- the allow-lists ---- */

typedef struct {
  ova_serve_role role;
  gboolean append_only;
  const char *line;      /* ROOT: the repository root */
  const char *argv;      /* what runs, joined by ' '; NULL: refused */
  const char *needle;
} policy_case;

#define H OVA_SERVE_ROLE_HOST
#define T OVA_SERVE_ROLE_TARGET

static const policy_case policy_cases[] = {
  /* Host: what a controller runs. */
  { H, 0, "ovagent version", "version" },
  { H, 0, SELF " version --json", "version --json" },
  { H, 0, "ovagent --json -q list", "list --json --quiet" },
  { H, 0, "ovagent list -d " SD " --log-level=debug --progress none",
    "list --domain=" SD " --log-level=debug --progress=none" },
  { H, 0, "ovagent -v -v info " SD "/" IMG, "info " SD "/" IMG " --verbose --verbose" },
  { H, 0, "ovagent export-chain " IMG " --since " VOL " --to=" VOL
    " --output - --compress=3 --io-timeout 60",
    "export-chain " IMG " --since=" VOL " --to=" VOL " --output=- "
    "--compress=3 --io-timeout=60" },
  { H, 0, "ovagent export-chain --compress " IMG " -o -",
    "export-chain " IMG " --compress --output=-" },
  { H, 0, "ovagent export-chain " IMG " -o - --compress",
    "export-chain " IMG " --output=- --compress" },
  { H, 0, "ovagent backup vm1 --disk vda --disk " IMG " --incremental --from "
    CP " --output - --requests 8 --connections 2 --json",
    "backup vm1 --disk=vda --disk=" IMG " --incremental --from=" CP
    " --output=- --requests=8 --connections=2 --json" },
  { H, 0, "ovagent backup " VOL " --auto --output -", "backup " VOL " --auto --output=-" },
  { H, 0, "ovagent checkpoints web_01.example --json", "checkpoints web_01.example --json" },
  /* A checkpoint ovagent saved (STATE/checkpoints/VM/CP.xml) may go. */
  { H, 0, "ovagent checkpoints " VM " --delete " CP, "checkpoints " VM " --delete=" CP },
  { H, 0, "ovagent import --to-volume " SD "/" IMG "/" VOL " --format qcow2 --io-timeout 0",
    "import --to-volume=" SD "/" IMG "/" VOL " --format=qcow2 --io-timeout=0" },

  /* Host: refused. */
  { H, 0, "", NULL, "no command given" },
  { H, 0, "ovagent", NULL, "no command after" },
  { H, 0, "bash -c id", NULL, "serve runs ovagent only, not \"bash\"" },
  { H, 0, "/usr/bin/ovagent list", NULL, "must begin with 'ovagent' or " SELF },
  { H, 0, "ovagent2 list", NULL, "serve runs ovagent only" },
  { H, 0, "OVAGENT_DATA_CENTER=/x ovagent list", NULL, "sets a variable" },
  { H, 0, "env OVAGENT_DATA_CENTER=/x ovagent list", NULL, "serve runs ovagent only" },
  { H, 0, "ovagent --config /etc/x.conf list", NULL, "option --config is refused" },
  { H, 0, "ovagent list --config=/etc/x.conf", NULL, "option --config is refused" },
  { H, 0, "ovagent list --data-center=/x", NULL, "option --data-center is refused" },
  { H, 0, "ovagent info " IMG " --lvm-command /bin/sh", NULL, "option --lvm-command is refused" },
  { H, 0, "ovagent info " IMG " --lvm-devices /dev/sda", NULL, "option --lvm-devices is refused" },
  { H, 0, "ovagent list --run-dir /tmp", NULL, "option --run-dir is refused" },
  { H, 0, "ovagent list --state-dir /tmp", NULL, "option --state-dir is refused" },
  { H, 0, "ovagent backup vm1 --full --output - --scratch-dir /tmp", NULL,
    "option --scratch-dir is refused" },
  { H, 0, "ovagent export-chain " IMG " --target ssh://evil/x", NULL, "option --target is refused" },
  { H, 0, "ovagent export-chain " IMG " --output /etc/cron.d/x", NULL,
    "--output takes - (this SSH channel)" },
  { H, 0, "ovagent export-chain " IMG " -o /tmp/x", NULL, "--output takes -" },
  { H, 0, "ovagent import --to /tmp/x.raw", NULL, "option --to of 'import' is refused" },
  { H, 0, "ovagent checkpoints vm1 --delete " CP, NULL, "needs the VM's UUID, not a domain name" },
  { H, 0, "ovagent checkpoints " VM " --delete " OTHER_CP, NULL,
    "deletes only ovagent's own checkpoints, and " OTHER_CP " is none" },
  { H, 0, "ovagent checkpoints " VM " --delete ../" CP, NULL, "--delete takes a UUID" },
  { H, 0, "ovagent receive --repo /srv", NULL, "'receive' is not a command for this key" },
  { H, 0, "ovagent restore --repo /srv " IMG " --output -", NULL, "not a command for this key" },
  { H, 0, "ovagent help", NULL, "unknown command \"help\"" },
  { H, 0, "ovagent serve --role target", NULL, "unknown command \"serve\"" },
  { H, 0, "ovagent --version", NULL, "option \"--version\" is not allowed before the command" },
  { H, 0, "ovagent list --help", NULL, "option \"--help\" is not allowed for 'list'" },
  { H, 0, "ovagent list --bogus", NULL, "not allowed for 'list'; its options are --domain" },
  { H, 0, "ovagent info not-a-uuid", NULL, "DISK takes an image UUID or SD_UUID/IMG_UUID" },
  { H, 0, "ovagent info " SD "/" IMG "/" VOL, NULL, "DISK takes" },
  { H, 0, "ovagent info " IMG " extra", NULL, "unexpected argument \"extra\"" },
  { H, 0, "ovagent info", NULL, "'info' needs DISK" },
  { H, 0, "ovagent list --domain", NULL, "--domain needs a value" },
  { H, 0, "ovagent list --domain /etc", NULL, "--domain takes a UUID" },
  { H, 0, "ovagent list --json=1", NULL, "--json takes no value" },
  { H, 0, "ovagent list --json --json", NULL, "--json is given twice" },
  { H, 0, "ovagent -vq list", NULL, "give short options one at a time" },
  { H, 0, "ovagent list -- " IMG, NULL, "'--' is not accepted" },
  { H, 0, "ovagent list -", NULL, "give short options one at a time" },
  { H, 0, "ovagent backup vm1 --requests 0", NULL, "--requests takes a number from 1 to 256" },
  { H, 0, "ovagent backup vm1 --connections 17", NULL, "--connections takes a number from 1 to 16" },
  { H, 0, "ovagent backup vm1 --from ../x", NULL, "--from takes a UUID" },
  { H, 0, "ovagent backup vm1 --disk ../vda", NULL, "--disk takes an image UUID or a target dev" },
  { H, 0, "ovagent backup 'vm;1'", NULL, "VM takes a VM UUID or a domain name" },
  { H, 0, "ovagent backup .vm", NULL, "VM takes" },
  { H, 0, "ovagent export-chain " IMG " --compress=99", NULL, "--compress takes a number from 1 to 19" },
  { H, 0, "ovagent export-chain " IMG " --io-timeout 5m", NULL, "--io-timeout takes whole seconds" },
  { H, 0, "ovagent list --log-level loud", NULL, "--log-level takes error, warning" },
  { H, 0, "ovagent list --progress=fast", NULL, "--progress takes auto, bar, json or none" },
  { H, 0, "ovagent import --to-volume " SD "/" IMG, NULL, "--to-volume takes SD_UUID/IMG_UUID/VOL_UUID" },
  { H, 0, "ovagent import --to-volume " SD "/" IMG "/" VOL " --format vmdk", NULL,
    "--format takes raw or qcow2" },

  /* Target. */
  { T, 0, "ovagent version", "version" },
  { T, 0, "ovagent receive --repo ROOT/repo1 --json", "receive --repo=ROOT/repo1 --json" },
  { T, 0, "ovagent receive --repo=ROOT/new/deeper --io-timeout 30",
    "receive --repo=ROOT/new/deeper --io-timeout=30" },
  { T, 0, "ovagent receive --repo ROOT//repo1/./", "receive --repo=ROOT/repo1" },
  { T, 0, "ovagent receive --repo ROOT/inside/x", "receive --repo=ROOT/repo1/x" },
  { T, 0, "ovagent receive --repo ROOT", "receive --repo=ROOT" },
  { T, 0, "ovagent verify --repo ROOT/repo1 " IMG " --backup " BACKUP,
    "verify " IMG " --repo=ROOT/repo1 --backup=" BACKUP },
  { T, 0, "ovagent verify --repo ROOT/repo1", "verify --repo=ROOT/repo1" },
  { T, 0, "ovagent restore --repo ROOT/repo1 " IMG " --output -",
    "restore " IMG " --repo=ROOT/repo1 --output=-" },
  { T, 0, "ovagent backups --repo ROOT/repo1", "backups --repo=ROOT/repo1" },
  { T, 0, "ovagent prune --repo ROOT/repo1 --keep-last 3 --keep-within 36h --keep-hourly 1 "
    "--keep-daily 7 --keep-weekly 4 --keep-monthly 12 --keep-yearly 2147483647 --dry-run --json",
    "prune --repo=ROOT/repo1 --keep-last=3 --keep-within=36h --keep-hourly=1 --keep-daily=7 "
    "--keep-weekly=4 --keep-monthly=12 --keep-yearly=2147483647 --dry-run --json" },
  { T, 0, "ovagent prune " IMG " " SD " --repo ROOT/repo1 --keep-within=1y",
    "prune " IMG " " SD " --repo=ROOT/repo1 --keep-within=1y" },
  { T, 0, "ovagent forget --repo ROOT/repo1 " IMG " --backup " BACKUP " --dry-run",
    "forget " IMG " --repo=ROOT/repo1 --backup=" BACKUP " --dry-run" },
  { T, 0, "ovagent backups " IMG " --repo ROOT/inside --json", "backups " IMG " --repo=ROOT/repo1 --json" },
  { T, 1, "ovagent receive --repo ROOT/repo1", "receive --repo=ROOT/repo1" },

  { T, 0, "ovagent receive --repo ROOT/escape", NULL, "outside the repository root" },
  { T, 0, "ovagent receive --repo ROOT/escape/new", NULL, "outside the repository root" },
  { T, 0, "ovagent receive --repo ROOT/repo1/../../etc", NULL, "'..' is not allowed" },
  { T, 0, "ovagent receive --repo ROOT/..", NULL, "'..' is not allowed" },
  { T, 0, "ovagent receive --repo repo1", NULL, "must be an absolute path under the repository root" },
  { T, 0, "ovagent receive --repo /etc", NULL, "outside the repository root" },
  { T, 0, "ovagent receive --repo ROOTx/repo", NULL, "outside the repository root" },
  { T, 0, "ovagent receive --repo ROOT/dangling", NULL, "leads nowhere" },
  { T, 0, "ovagent receive --repo ROOT/afile/x", NULL, "Not a directory" },
  { T, 0, "ovagent receive --repo ROOT/repo1 --repo ROOT/new", NULL, "--repo is given twice" },
  { T, 0, "ovagent verify --repo ROOT/repo1 " IMG " --backup latest", NULL,
    "--backup takes a backup id" },
  { T, 0, "ovagent verify --repo ROOT/repo1 " SD "/" IMG, NULL, "DISK takes an image UUID" },
  { T, 0, "ovagent restore --repo ROOT/repo1 " IMG " --to /tmp/x", NULL,
    "option --to of 'restore' is refused" },
  { T, 0, "ovagent restore --repo ROOT/repo1 " IMG " --format raw --output -", NULL,
    "option --format of 'restore' is refused" },
  { T, 0, "ovagent restore --repo ROOT/repo1 " IMG " --output ROOT/x", NULL, "--output takes -" },
  { T, 0, "ovagent list", NULL, "'list' is not a command for this key (serve --role target runs version, receive, verify, restore, backups, prune, forget)" },
  { T, 0, "ovagent export-chain " IMG " --output -", NULL, "not a command for this key" },
  { T, 0, "ovagent prune --repo ROOT/repo1 --keep-within 7x", NULL,
    "--keep-within takes a duration such as 36h, 7d" },
  { T, 0, "ovagent prune --repo ROOT/repo1 --keep-within 100001d", NULL, "--keep-within takes" },
  { T, 0, "ovagent prune --repo ROOT/repo1 --keep-daily 0", NULL,
    "--keep-daily takes a number from 1 to 2147483647" },
  { T, 0, "ovagent prune --repo ROOT/repo1 --keep-last -1", NULL, "--keep-last takes a number" },
  { T, 0, "ovagent prune --repo ROOT/repo1 --keep-last 2147483648", NULL, "--keep-last takes a number" },
  { T, 0, "ovagent prune --repo ROOT/repo1 " SD "/" IMG, NULL, "DISK takes an image UUID" },
  { T, 0, "ovagent prune --repo ROOT/escape --keep-last 1", NULL, "outside the repository root" },
  { T, 0, "ovagent prune --repo ROOT/repo1 --keep-last 1 --keep-last 2", NULL,
    "--keep-last is given twice" },
  { T, 0, "ovagent forget --repo ROOT/repo1", NULL, "'forget' needs DISK" },
  { T, 0, "ovagent forget --repo ROOT/repo1 " IMG " " IMG " --backup " BACKUP, NULL,
    "unexpected argument" },
  { T, 0, "ovagent forget --repo ROOT/repo1 " IMG " --backup ../x", NULL,
    "--backup takes a backup id" },
  { T, 0, "ovagent forget --repo ROOT/repo1 " IMG " --backup " BACKUP " --keep-last 1", NULL,
    "option \"--keep-last\" is not allowed for 'forget'" },
  { T, 0, "ovagent backups --repo ROOT/repo1 ../x", NULL, "DISK takes an image UUID" },
  { T, 0, "ovagent backups --repo ROOT/repo1 " IMG " " IMG, NULL, "unexpected argument" },
  { T, 0, "ovagent backups --repo ROOT/escape", NULL, "outside the repository root" },
  { T, 0, "ovagent backups --repo ROOT/repo1 --backup " BACKUP, NULL,
    "option \"--backup\" is not allowed for 'backups'" },
  { T, 1, "ovagent prune --repo ROOT/repo1 --keep-last 1", NULL, "'prune' deletes backups, and this key is append-only" },
  { T, 1, "ovagent forget --repo ROOT/repo1", NULL, "'forget' deletes backups" },
  { T, 1, "ovagent prune --repo ROOT/repo1 --dry-run --keep-last 1", NULL,
    "'prune' deletes backups, and this key is append-only" },
  { T, 1, "ovagent backups --repo ROOT/repo1 --json", "backups --repo=ROOT/repo1 --json" },
};

typedef struct {
  char *dir;      /* what the root is made in */
  char *root;     /* its real path */
  char *outside;
  char *state;    /* a host's state_dir holding CP of VM */
} policy_fixture;

static void
policy_setup (policy_fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autofree char *p = NULL;

  f->dir = g_dir_make_tmp ("ovagent-test-serve.XXXXXX", &err);
  g_assert_no_error (err);
  p = g_build_filename (f->dir, "root", NULL);
  g_assert_cmpint (g_mkdir (p, 0700), ==, 0);
  f->root = ova_serve_root_resolve (p, &err);
  g_assert_no_error (err);
  f->outside = g_build_filename (f->dir, "outside", NULL);
  g_assert_cmpint (g_mkdir (f->outside, 0700), ==, 0);
#define AT(name) g_build_filename (f->root, name, NULL)
  {
    g_autofree char *repo1 = AT ("repo1");
    g_autofree char *inside = AT ("inside");
    g_autofree char *escape = AT ("escape");
    g_autofree char *dangling = AT ("dangling");
    g_autofree char *afile = AT ("afile");
    g_autofree char *sibling = g_strconcat (f->root, "x", NULL);

    g_assert_cmpint (g_mkdir (repo1, 0700), ==, 0);
    g_assert_cmpint (symlink (repo1, inside), ==, 0);
    g_assert_cmpint (symlink (f->outside, escape), ==, 0);
    g_assert_cmpint (symlink ("nowhere/at/all", dangling), ==, 0);
    g_assert_true (g_file_set_contents (afile, "", 0, NULL));
    g_assert_cmpint (g_mkdir (sibling, 0700), ==, 0);
  }
#undef AT
  f->state = g_build_filename (f->dir, "state", NULL);
  {
    g_autofree char *vm_dir = g_build_filename (f->state, "checkpoints", VM, NULL);
    g_autofree char *xml = g_build_filename (vm_dir, CP ".xml", NULL);

    g_assert_cmpint (g_mkdir_with_parents (vm_dir, 0700), ==, 0);
    g_assert_true (g_file_set_contents (xml, "<domaincheckpoint/>", -1, NULL));
  }
}

static void
policy_teardown (policy_fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  static const char *const names[] = { "repo1", "inside", "escape", "dangling", "afile" };

  for (size_t i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autofree char *p = g_build_filename (f->root, names[i], NULL);

    g_remove (p);
  }
  {
    g_autofree char *sibling = g_strconcat (f->root, "x", NULL);
    g_autofree char *root = g_build_filename (f->dir, "root", NULL);

    g_rmdir (sibling);
    g_rmdir (root);
  }
  {
    g_autofree char *vm_dir = g_build_filename (f->state, "checkpoints", VM, NULL);
    g_autofree char *xml = g_build_filename (vm_dir, CP ".xml", NULL);
    g_autofree char *cps = g_build_filename (f->state, "checkpoints", NULL);

    g_remove (xml);
    g_rmdir (vm_dir);
    g_rmdir (cps);
    g_rmdir (f->state);
  }
  g_rmdir (f->outside);
  g_rmdir (f->dir);
  g_free (f->state);
  g_free (f->outside);
  g_free (f->root);
  g_free (f->dir);
}

static char *
with_root (const char *text, const char *root)
{
  g_auto(GStrv) parts = g_strsplit (text, "ROOT", -1);

  return g_strjoinv (root, parts);
}

static void
test_policy (policy_fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  for (size_t i = 0; i < G_N_ELEMENTS (policy_cases); i++) {
    const policy_case *c = &policy_cases[i];
    ova_serve_policy p = {
      .role = c->role, .append_only = c->append_only, .self_path = SELF,
      .repo_root = c->role == T ? f->root : NULL,
      .state_dir = c->role == H ? f->state : NULL,
    };
    g_autofree char *line = with_root (c->line, f->root);
    g_auto(GStrv) words = NULL;
    g_auto(GStrv) argv = NULL;
    g_autoptr(GError) err = NULL;

    if (!ova_cmdline_split (line, strlen (line), &words, &err))
      g_error ("case %zu: the line does not split: %s", i, err->message);
    if (c->argv != NULL) {
      g_autofree char *want = with_root (c->argv, f->root);
      g_autofree char *got = NULL;

      if (!ova_serve_check (&p, words, &argv, &err))
        g_error ("case %zu (%s) refused: %s", i, line, err->message);
      got = g_strjoinv (" ", argv);
      g_assert_cmpstr (got, ==, want);
      continue;
    }
    if (ova_serve_check (&p, words, &argv, &err)) {
      g_autofree char *got = g_strjoinv (" ", argv);

      g_error ("case %zu (%s) accepted as \"%s\"", i, line, got);
    }
    g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
    if (strstr (err->message, c->needle) == NULL)
      g_error ("case %zu (%s): \"%s\" does not say \"%s\"", i, line,
               err->message, c->needle);
  }
}

static void
test_roles (void)
{
  g_autofree char *host = ova_serve_allowed_commands (OVA_SERVE_ROLE_HOST);
  g_autofree char *target = ova_serve_allowed_commands (OVA_SERVE_ROLE_TARGET);
  g_autoptr(GError) err = NULL;
  g_autofree char *root = NULL;

  g_assert_cmpstr (host, ==, "version, list, info, export-chain, backup, checkpoints, import");
  g_assert_cmpstr (target, ==, "version, receive, verify, restore, backups, prune, forget");
  g_assert_cmpint (ova_serve_role_parse ("host"), ==, OVA_SERVE_ROLE_HOST);
  g_assert_cmpint (ova_serve_role_parse ("target"), ==, OVA_SERVE_ROLE_TARGET);
  g_assert_cmpint (ova_serve_role_parse ("Host"), ==, 0);
  g_assert_cmpint (ova_serve_role_parse (""), ==, 0);

  root = ova_serve_root_resolve ("relative", &err);
  g_assert_null (root);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
  g_clear_error (&err);
  root = ova_serve_root_resolve ("/proc/self/status", &err);
  g_assert_null (root);
  g_assert_nonnull (strstr (err->message, "is not a directory"));
  g_clear_error (&err);
  root = ova_serve_root_resolve ("/nonexistent-ovagent-root", &err);
  g_assert_null (root);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/serve/split", test_split);
  g_test_add_func ("/serve/split-bounds", test_split_bounds);
  g_test_add ("/serve/policy", policy_fixture, NULL, policy_setup, test_policy,
              policy_teardown);
  g_test_add_func ("/serve/roles", test_roles);
  return g_test_run ();
}
