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

static const struct ova_command ova_cmd_help = {
  .name = "help",
  .handler = cmd_help,
  .args = "[COMMAND]",
  .usage = "[COMMAND]",
  .summary = "Show how to use ovagent, or one of its commands.",
  .examples =
    "  ovagent help\n"
    "  ovagent help info\n",
  .no_config = TRUE,
};

static const struct ova_command *const commands[] = {
  &ova_cmd_list,
  &ova_cmd_info,
  &ova_cmd_export_chain,
  &ova_cmd_backup,
  &ova_cmd_checkpoints,
  &ova_cmd_receive,
  &ova_cmd_backups,
  &ova_cmd_verify,
  &ova_cmd_restore,
  &ova_cmd_prune,
  &ova_cmd_forget,
  &ova_cmd_import,
  &ova_cmd_serve,
  &ova_cmd_version,
  &ova_cmd_help,
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

/* The option tables of the context being parsed, for --long-options and
 * --short-options: the command's (or NULL), then the global ones. */
static const GOptionEntry *listed_entries[3];

/* --long-options, --short-options: every option the context accepts, one
 * a line, for completion scripts (as nbdcopy does); --help last, these
 * listing options themselves left out. */
static gboolean
opt_list_options (const char *name, const char *value G_GNUC_UNUSED,
                  gpointer data G_GNUC_UNUSED, GError **error G_GNUC_UNUSED)
{
  gboolean long_names = strcmp (name, "--long-options") == 0;

  for (size_t t = 0; t < G_N_ELEMENTS (listed_entries); t++) {
    if (listed_entries[t] == NULL)
      continue;
    for (const GOptionEntry *e = listed_entries[t]; e->long_name != NULL; e++) {
      if (e->flags & G_OPTION_FLAG_HIDDEN)
        continue;
      if (long_names)
        printf ("--%s\n", e->long_name);
      else if (e->short_name != 0)
        printf ("-%c\n", e->short_name);
    }
  }
  puts (long_names ? "--help" : "-h");
  /* Like --help: the listing is the whole of the run. */
  exit (fflush (stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

/* --list-commands: the command names, one a line. */
static gboolean
opt_list_commands (const char *name G_GNUC_UNUSED, const char *value G_GNUC_UNUSED,
                   gpointer data G_GNUC_UNUSED, GError **error G_GNUC_UNUSED)
{
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    puts (commands[i]->name);
  exit (fflush (stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

static const GOptionEntry listing_entries[] = {
  { "long-options", 0, G_OPTION_FLAG_HIDDEN | G_OPTION_FLAG_NO_ARG,
    G_OPTION_ARG_CALLBACK, opt_list_options,
    "List the long options, one a line", NULL },
  { "short-options", 0, G_OPTION_FLAG_HIDDEN | G_OPTION_FLAG_NO_ARG,
    G_OPTION_ARG_CALLBACK, opt_list_options,
    "List the short options, one a line", NULL },
  { NULL },
};

static const GOptionEntry list_commands_entries[] = {
  { "list-commands", 0, G_OPTION_FLAG_HIDDEN | G_OPTION_FLAG_NO_ARG,
    G_OPTION_ARG_CALLBACK, opt_list_commands,
    "List the command names, one a line", NULL },
  { NULL },
};

const struct ova_command *
ova_command_lookup (const char *name)
{
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (commands[i]->name, name) == 0)
      return commands[i];
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
    size_t dist = g_str_has_prefix (commands[i]->name, name)
      ? 1 : edit_distance (name, commands[i]->name);

    if (dist < best_dist && dist < len) {
      best = commands[i]->name;
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
    g_string_append_printf (s, "  %-8s %s\n", commands[i]->name, commands[i]->usage);
    append_wrapped (s, commands[i]->summary, 11);
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
  g_option_context_add_main_entries (oc, listing_entries, NULL);
  g_option_context_add_main_entries (oc, list_commands_entries, NULL);
  listed_entries[0] = global_entries;
  listed_entries[1] = version_entries;
  listed_entries[2] = NULL;
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
  g_option_context_add_main_entries (oc, listing_entries, NULL);
  listed_entries[0] = entries;
  listed_entries[1] = global_entries;
  listed_entries[2] = NULL;
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
