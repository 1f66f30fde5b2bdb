/* ovagent: serve's policy: which command lines a restricted SSH key may run
 * per role, every value checked, --repo kept under the repository root. */
#ifndef OVA_SERVE_H
#define OVA_SERVE_H

#include <glib.h>

typedef enum {
  OVA_SERVE_ROLE_HOST = 1 << 0,     /* a hypervisor: read disks, import */
  OVA_SERVE_ROLE_TARGET = 1 << 1,   /* the backup target: repositories */
} ova_serve_role;

typedef struct {
  ova_serve_role role;
  const char *repo_root;   /* target: the real path every --repo must be
                            * under (no link in it); NULL for a host */
  gboolean append_only;    /* target: commands that delete backups refused */
  const char *self_path;   /* the real path of this binary, or NULL: the
                            * program word may name it instead of "ovagent" */
  const char *state_dir;   /* host: where ovagent saves the checkpoints it
                            * made (checkpoints --delete takes only those) */
} ova_serve_policy;

/* "host" or "target"; 0 for anything else. */
ova_serve_role ova_serve_role_parse (const char *name);
const char *ova_serve_role_name (ova_serve_role role);

/* Check words (ova_cmdline_split of SSH_ORIGINAL_COMMAND) against the
 * policy: the program is ovagent, the command is allowed for the role,
 * every option is in the command's allow-list (or a harmless global one:
 * --json, --quiet, --verbose, --log-level, --progress), every value and
 * argument has the form the command takes, each --repo resolves under the
 * root. On success *argv is the command line to run, argv[0] the command
 * name, then the arguments, then each option as --NAME or --NAME=VALUE (a
 * --repo as its real path): what the command parses is exactly what was
 * checked. A refusal is OVA_ERROR_USAGE saying what was refused and why. */
gboolean ova_serve_check (const ova_serve_policy *policy, char *const *words,
                          char ***argv, GError **error);

/* The commands the role allows, "version, list, ..." (for messages and
 * help). */
char *ova_serve_allowed_commands (ova_serve_role role);

/* The real path of dir, which must be an absolute path to a directory:
 * the repository root of a target. */
char *ova_serve_root_resolve (const char *dir, GError **error);

/* value (a --repo) resolved under root: absolute, no ".." component, every
 * existing component's links followed (realpath) and the result inside
 * root; components that do not exist yet (receive creates them) are
 * checked from their nearest existing parent. The resolved path, or NULL
 * with OVA_ERROR_USAGE. */
char *ova_serve_repo_resolve (const char *root, const char *value, GError **error);

#endif
