/* ovagent: the descriptor each command file defines beside its options, the
 * context every handler gets, and the option parsing shared by all commands. */
#ifndef OVA_COMMAND_H
#define OVA_COMMAND_H

#include <glib.h>

#include "agent/settings.h"

typedef enum {
  OVA_PROGRESS_AUTO = 0,    /* bar on a TTY, none otherwise */
  OVA_PROGRESS_BAR,
  OVA_PROGRESS_JSON,        /* JSON lines on stderr */
  OVA_PROGRESS_NONE,
} ova_progress;

struct ova_command;

typedef struct ova_ctx {
  const struct ova_command *cmd;
  ova_config *cfg;          /* set by ova_command_parse, unless .no_config */
  gboolean json;            /* --json */
  ova_progress progress;    /* --progress */
  int exit_code;            /* a handler that reported its outcome itself
                             * and returned TRUE: the exit status (serve's
                             * parent exits with its command's) */
} ova_ctx;

/* A command: argv[0] is the command name. Reports failure as a GError in
 * OVA_ERROR; main prints it once (and as JSON with --json) and exits with
 * its code. Output on success is the handler's. */
typedef gboolean (*ova_handler) (ova_ctx *ctx, int argc, char **argv,
                                 GError **error);

/* A command's descriptor: its name, handler and help text, defined in its
 * cmd-*.c next to its option entries; main.c dispatches from a table of
 * them. The help of 'ovagent CMD --help' and 'ovagent --help' is built
 * from these fields. */
struct ova_command {
  const char *name;
  ova_handler handler;
  const char *args;         /* positional arguments, for --help: "DISK" */
  const char *usage;        /* synopsis after the name: "DISK [--json]" */
  const char *summary;      /* one line */
  const char *details;      /* more for --help, may be NULL */
  const char *examples;     /* lines of "  ovagent ..." for --help */
  gboolean no_config;       /* runs without loading the configuration */
};

/* The commands, one descriptor each (cmd-*.c; help in main.c). */
extern const struct ova_command ova_cmd_list;
extern const struct ova_command ova_cmd_info;
extern const struct ova_command ova_cmd_export_chain;
extern const struct ova_command ova_cmd_backup;
extern const struct ova_command ova_cmd_checkpoints;
extern const struct ova_command ova_cmd_receive;
extern const struct ova_command ova_cmd_backups;
extern const struct ova_command ova_cmd_verify;
extern const struct ova_command ova_cmd_restore;
extern const struct ova_command ova_cmd_prune;
extern const struct ova_command ova_cmd_forget;
extern const struct ova_command ova_cmd_import;
extern const struct ova_command ova_cmd_serve;
extern const struct ova_command ova_cmd_version;

/* The command named name, or NULL. */
const struct ova_command *ova_command_lookup (const char *name);

/* Parse argv (global options accepted too) with the command's entries
 * (NULL-terminated, may be NULL), then load the configuration and set up
 * logging. Leaves argv[0] and the positional arguments in argc/argv.
 * --help prints the command's help and exits 0; --long-options and
 * --short-options print the options it accepts, one a line, and exit 0.
 * Fails with OVA_ERROR_USAGE saying what was wrong and what to type
 * instead. */
gboolean ova_command_parse (ova_ctx *ctx, const GOptionEntry *entries,
                            int *argc, char ***argv, GError **error);

/* --io-timeout SECONDS, taken by every command that reads or writes a
 * stream: it overrides the io_timeout key in ctx->cfg. */
gboolean ova_opt_io_timeout (const char *name, const char *value,
                             gpointer data, GError **error);

#define OVA_IO_TIMEOUT_OPTION_ENTRY \
  { "io-timeout", 0, 0, G_OPTION_ARG_CALLBACK, ova_opt_io_timeout, \
    "Fail (exit 7) when the other end of the stream moves no byte for " \
    "SECONDS (0: no limit; default: the io_timeout key, 300)", "SECONDS" }

/* An OVA_ERROR_USAGE error for ctx's command: the message, then the
 * command's synopsis so the user sees what to type. */
void ova_usage_error (const ova_ctx *ctx, GError **error, const char *fmt, ...)
  G_GNUC_PRINTF (3, 4);

/* The arguments of a command on a repository: --repo DIR (repo_dir, its
 * option's value) must be given, and at most one DISK, an image UUID, set
 * in lower case in *disk (NULL when none is given). Else OVA_ERROR_USAGE. */
gboolean ova_repo_disk_args (const ova_ctx *ctx, const char *repo_dir, int argc,
                             char **argv, char **disk, GError **error);

/* The handlers the descriptors name. */
gboolean cmd_list (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_info (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_version (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_export_chain (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_receive (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_backups (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_verify (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_restore (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_import (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_backup (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_checkpoints (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_serve (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_prune (ova_ctx *ctx, int argc, char **argv, GError **error);
gboolean cmd_forget (ova_ctx *ctx, int argc, char **argv, GError **error);

#endif
