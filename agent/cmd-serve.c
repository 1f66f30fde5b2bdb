/* ovagent: serve, the forced command of a restricted SSH key: the client's
 * command line checked against the role's policy, run with the environment
 * ignored, one audit line per call. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmdline.h"
#include "error.h"
#include "log.h"
#include "util.h"
#include "agent/command.h"
#include "agent/output.h"
#include "agent/serve.h"

/* Bounds of what an audit line quotes. */
#define AUDIT_COMMAND_MAX 1024
#define AUDIT_MESSAGE_MAX 512
#define AUDIT_CLIENT_MAX 128
/* SSH_USER_AUTH (sshd's ExposeAuthInfo): the bytes read of it, and of one
 * key type. */
#define AUTH_INFO_MAX 16384
#define KEY_TYPE_MAX 64

/* What the command's process leaves for the audit: it may be killed, so
 * this lives in memory shared with the parent. */
typedef struct {
  ova_io_totals io;
  char error[AUDIT_MESSAGE_MAX];
} serve_outcome;

/* One call, as the audit line tells it. */
typedef struct {
  char *role;        /* --role as the operator gave it */
  char *client;      /* SSH_CLIENT */
  char *key;         /* "TYPE SHA256:..." from SSH_USER_AUTH */
  char *line;        /* SSH_ORIGINAL_COMMAND */
} serve_call;

static void
serve_call_clear (serve_call *call)
{
  g_free (call->role);
  g_free (call->client);
  g_free (call->key);
  g_free (call->line);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (serve_call, serve_call_clear)

static struct {
  char *role;
  char *repo_root;
  gboolean append_only;
} opts;

/* The command's process: the parent passes the signals it gets on. */
static volatile sig_atomic_t child_pid;

/* ---- who is calling ---- */

static gboolean
is_key_text (const char *s, const char *extra, gsize max)
{
  gsize len = strlen (s);

  if (len == 0 || len > max)
    return FALSE;
  for (const char *p = s; *p; p++)
    if (!g_ascii_isalnum (*p) && strchr (extra, *p) == NULL)
      return FALSE;
  return TRUE;
}

/* "publickey TYPE BASE64" as "TYPE SHA256:FINGERPRINT", the way sshd logs
 * the key it accepted. */
static char *
key_fingerprint (const char *line)
{
  g_auto(GStrv) f = g_strsplit (line, " ", 4);
  g_autoptr(GChecksum) sum = NULL;
  g_autofree guchar *blob = NULL;
  g_autofree char *b64 = NULL;
  guint8 digest[32];
  gsize blob_len, digest_len = sizeof digest;

  if (g_strv_length (f) < 3 || strcmp (f[0], "publickey") != 0 ||
      !is_key_text (f[1], "@.-", KEY_TYPE_MAX) ||
      !is_key_text (f[2], "+/=", AUTH_INFO_MAX))
    return NULL;
  blob = g_base64_decode (f[2], &blob_len);
  sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (sum, blob, blob_len);
  g_checksum_get_digest (sum, digest, &digest_len);
  b64 = g_base64_encode (digest, digest_len);
  *strchrnul (b64, '=') = '\0';
  return g_strdup_printf ("%s SHA256:%s", f[1], b64);
}

/* The key sshd accepted, from the file SSH_USER_AUTH names: its first
 * publickey line, at most AUTH_INFO_MAX bytes read. NULL if unknown. */
static char *
auth_key (const char *path)
{
  g_autofree char *buf = NULL;
  g_auto(GStrv) lines = NULL;
  struct stat st;
  ssize_t n;
  int fd;

  if (path == NULL || !g_path_is_absolute (path))
    return NULL;
  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0)
    return NULL;
  buf = g_malloc0 (AUTH_INFO_MAX + 1);
  n = fstat (fd, &st) == 0 && S_ISREG (st.st_mode) ? read (fd, buf, AUTH_INFO_MAX) : -1;
  close (fd);
  if (n <= 0)
    return NULL;
  lines = g_strsplit (buf, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    if (g_str_has_prefix (lines[i], "publickey "))
      return key_fingerprint (lines[i]);
  return NULL;
}

/* What the client may have put in the environment (AcceptEnv, SetEnv)
 * reaches neither the command nor the programs it runs. */
static void
scrub_environment (void)
{
  static const char *const keep[] = { "PATH", "HOME", "USER", "LOGNAME", "SHELL", NULL };
  g_auto(GStrv) names = g_listenv ();

  for (guint i = 0; names[i] != NULL; i++)
    if (!g_strv_contains (keep, names[i]))
      g_unsetenv (names[i]);
}

/* ---- the audit line ---- */

static char *
quoted_or_dash (const char *value, gsize max)
{
  return value != NULL ? ova_quote_untrusted (value, max) : g_strdup ("-");
}

static void
audit (ova_syslog *log, const serve_call *call, int code,
       const ova_io_totals *io, const char *refused, const char *failure)
{
  g_autoptr(GString) s = g_string_new ("serve");
  g_autofree char *role = quoted_or_dash (call->role, 16);
  g_autofree char *client = quoted_or_dash (call->client, AUDIT_CLIENT_MAX);
  g_autofree char *key = quoted_or_dash (call->key, AUDIT_CLIENT_MAX);
  g_autofree char *line = quoted_or_dash (call->line, AUDIT_COMMAND_MAX);
  g_autoptr(GError) err = NULL;

  g_string_append_printf (s, " role=%s client=%s key=%s command=%s exit=%d"
                          " in=%" G_GUINT64_FORMAT " out=%" G_GUINT64_FORMAT,
                          role, client, key, line, code, io->in, io->out);
  if (refused != NULL) {
    g_autofree char *why = ova_quote_untrusted (refused, AUDIT_MESSAGE_MAX);

    g_string_append_printf (s, " refused=%s", why);
  }
  else if (failure != NULL && *failure != '\0') {
    g_autofree char *why = ova_quote_untrusted (failure, AUDIT_MESSAGE_MAX);

    g_string_append_printf (s, " error=%s", why);
  }
  if (!ova_syslog_send (log, code == 0 ? LOG_NOTICE : LOG_WARNING, s->str, &err))
    ova_error ("the audit line of this call is lost: %s", err->message);
}

/* ---- checking the call ---- */

/* A refused line gets its error as JSON when it asked for JSON, on stderr
 * when standard output was to carry a stream. */
static void
error_format_of (ova_ctx *ctx, char *const *words)
{
  for (guint i = 0; words[i] != NULL; i++) {
    if (strcmp (words[i], "--json") == 0)
      ctx->json = TRUE;
    if (strcmp (words[i], "-o") == 0 || g_str_has_prefix (words[i], "--output"))
      ova_output_stdout_is_stream ();
  }
}

/* The policy from serve's own options (the operator's, in authorized_keys). */
static gboolean
policy_of_options (ova_serve_policy *p, char **root, GError **error)
{
  if (opts.role == NULL || (p->role = ova_serve_role_parse (opts.role)) == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "serve needs --role host or --role target in the forced "
                 "command of the key (authorized_keys)");
    return FALSE;
  }
  if (p->role == OVA_SERVE_ROLE_HOST && (opts.repo_root || opts.append_only)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "--repo-root and --append-only are for serve --role target");
    return FALSE;
  }
  if (p->role == OVA_SERVE_ROLE_TARGET) {
    if (opts.repo_root == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "serve --role target needs --repo-root DIR: the directory "
                   "every repository of this key is under");
      return FALSE;
    }
    *root = ova_serve_root_resolve (opts.repo_root, error);
    if (*root == NULL)
      return FALSE;
  }
  p->repo_root = *root;
  p->append_only = opts.append_only;
  return TRUE;
}

/* The command line to run, or a refusal. */
static char **
check_call (ova_ctx *ctx, const serve_call *call, int argc, GError **error)
{
  g_autofree char *root = NULL;
  g_autofree char *self = NULL;
  g_auto(GStrv) words = NULL;
  ova_serve_policy policy = { 0 };
  char **argv = NULL;

  if (argc > 1) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "serve takes no arguments: the command comes from the SSH "
                 "client (SSH_ORIGINAL_COMMAND)");
    return NULL;
  }
  if (!policy_of_options (&policy, &root, error))
    return NULL;
  if (call->line == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "no command given: this key runs ovagent commands only "
                 "(ssh HOST ovagent COMMAND ...), no login shell");
    return NULL;
  }
  if (!ova_cmdline_split (call->line, strlen (call->line), &words, error))
    return NULL;
  error_format_of (ctx, words);
  self = realpath ("/proc/self/exe", NULL);
  policy.self_path = self;
  policy.state_dir = ctx->cfg->env.state_dir;
  if (!ova_serve_check (&policy, words, &argv, error))
    return NULL;
  return argv;
}

/* ---- running it ---- */

static void
forward_signal (int sig)
{
  int saved = errno;

  if (child_pid > 0)
    kill (child_pid, sig);
  errno = saved;
}

/* The parent's part: standard input and output are the command's alone
 * (the client sees their end when it exits), signals go on to it once it
 * is known (they are blocked until then: mask is the mask to go back to). */
static int
wait_for_command (pid_t pid, const sigset_t *mask)
{
  struct sigaction sa = { .sa_handler = forward_signal, .sa_flags = SA_RESTART };
  int devnull = open ("/dev/null", O_RDWR | O_CLOEXEC);
  int status = 0;

  if (devnull >= 0) {
    dup2 (devnull, STDIN_FILENO);
    dup2 (devnull, STDOUT_FILENO);
    close (devnull);
  }
  child_pid = pid;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);
  sigprocmask (SIG_SETMASK, mask, NULL);
  while (waitpid (pid, &status, 0) < 0)
    if (errno != EINTR)
      return OVA_ERROR_INTERNAL;
  if (WIFSIGNALED (status))
    return 128 + WTERMSIG (status);
  return WEXITSTATUS (status);
}

/* Run argv in a child process (this program's code, no exec): the child
 * returns to main, which reports and exits; the parent waits, audits and
 * exits with the child's status (ctx->exit_code). */
static gboolean
run_audited (ova_ctx *ctx, ova_syslog **log, const serve_call *call,
             char **argv, GError **error)
{
  const struct ova_command *cmd = ova_command_lookup (argv[0]);
  serve_outcome *out;
  sigset_t block, old;
  pid_t pid;
  int code;

  out = mmap (NULL, sizeof *out, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (out == MAP_FAILED) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot map memory for the audit: %s", g_strerror (errno));
    return FALSE;
  }
  sigemptyset (&block);
  sigaddset (&block, SIGINT);
  sigaddset (&block, SIGTERM);
  sigaddset (&block, SIGHUP);
  sigprocmask (SIG_BLOCK, &block, &old);
  fflush (NULL);
  pid = fork ();
  if (pid == 0) {
    gboolean ok;

    sigprocmask (SIG_SETMASK, &old, NULL);
    g_clear_pointer (log, ova_syslog_close);
    ova_io_totals_share (&out->io);
    /* The parser moves the array's pointers: argv keeps owning them. */
    g_autofree char **args = g_memdup2 (argv, sizeof *argv * (g_strv_length (argv) + 1));

    ctx->cmd = cmd;
    ok = cmd->handler (ctx, (int) g_strv_length (args), args, error);
    if (!ok && error != NULL && *error != NULL)
      g_strlcpy (out->error, (*error)->message, sizeof out->error);
    return ok;
  }
  if (pid < 0) {
    sigprocmask (SIG_SETMASK, &old, NULL);
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot start the command: fork: %s", g_strerror (errno));
    munmap (out, sizeof *out);
    return FALSE;
  }
  code = wait_for_command (pid, &old);
  audit (*log, call, code, &out->io, NULL, out->error);
  munmap (out, sizeof *out);
  ctx->exit_code = code;
  return TRUE;
}

const struct ova_command ova_cmd_serve = {
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
};

gboolean
cmd_serve (ova_ctx *ctx, int argc, char **argv, GError **error)
{
  const GOptionEntry entries[] = {
    { "role", 0, 0, G_OPTION_ARG_STRING, &opts.role,
      "What this key may do: host (a hypervisor) or target (the backup "
      "target)", "ROLE" },
    { "repo-root", 0, 0, G_OPTION_ARG_FILENAME, &opts.repo_root,
      "target: every --repo must be under DIR", "DIR" },
    { "append-only", 0, 0, G_OPTION_ARG_NONE, &opts.append_only,
      "target: refuse the commands that delete backups", NULL },
    { NULL },
  };
  g_auto(serve_call) call = { 0 };
  g_autoptr(ova_syslog) log = NULL;
  g_auto(GStrv) run_argv = NULL;
  g_autoptr(GError) refusal = NULL;
  ova_io_totals none = { 0 };

  ova_config_ignore_environment ();
  if (!ova_command_parse (ctx, entries, &argc, &argv, error))
    return FALSE;
  call.role = g_strdup (opts.role);
  call.client = g_strdup (g_getenv ("SSH_CLIENT"));
  call.key = auth_key (g_getenv ("SSH_USER_AUTH"));
  call.line = g_strdup (g_getenv ("SSH_ORIGINAL_COMMAND"));
  scrub_environment ();

  log = ova_syslog_open (ctx->cfg->audit_socket, "ovagent", LOG_AUTH, error);
  if (log == NULL) {
    g_prefix_error (error, "serve runs nothing it cannot audit (audit_socket): ");
    return FALSE;
  }
  run_argv = check_call (ctx, &call, argc, &refusal);
  if (run_argv == NULL) {
    audit (log, &call, ova_error_exit_code (refusal), &none, refusal->message, NULL);
    g_propagate_error (error, g_steal_pointer (&refusal));
    return FALSE;
  }
  return run_audited (ctx, &log, &call, run_argv, error);
}
