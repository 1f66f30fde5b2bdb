/* ovagent: the stream destination shared by export-chain and backup: the
 * options and their checks, opening a file, stdout or an SSH target, closing. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "log.h"
#include "agent/cancel.h"
#include "agent/output.h"
#include "agent/stream-output.h"
#include "stream/ssh.h"

#define DEFAULT_COMPRESS_LEVEL 3

ova_stream_options ova_stream_opts;

gboolean
ova_stream_opt_compress (const char *name, const char *value,
                         gpointer data G_GNUC_UNUSED, GError **error)
{
  guint64 level = DEFAULT_COMPRESS_LEVEL;

  if (value != NULL &&
      !g_ascii_string_to_unsigned (value, 10, 1, OVA_COMPRESS_LEVEL_MAX,
                                   &level, NULL)) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "%s takes a zstd level from 1 to %d, not '%s'",
                 name, OVA_COMPRESS_LEVEL_MAX, value);
    return FALSE;
  }
  ova_stream_opts.compress = (int) level;
  return TRUE;
}

gboolean
ova_stream_command_parse (ova_ctx *ctx, const GOptionEntry *entries,
                          int *argc, char ***argv, GError **error)
{
  if (!ova_command_parse (ctx, entries, argc, argv, error))
    return FALSE;
  if (ova_stream_opts.output != NULL && strcmp (ova_stream_opts.output, "-") == 0)
    ova_output_stdout_is_stream ();
  return TRUE;
}

gboolean
ova_stream_output_check (const ova_ctx *ctx, const char *output,
                         const char *target, GError **error)
{
  if ((output == NULL) == (target == NULL)) {
    ova_usage_error (ctx, error, "give exactly one of --output FILE|- and --target URL");
    return FALSE;
  }
  if (output != NULL && *output == '\0') {
    ova_usage_error (ctx, error, "--output needs a file name, or - for standard output");
    return FALSE;
  }
  if (output != NULL && strcmp (output, "-") == 0 && isatty (STDOUT_FILENO)) {
    ova_usage_error (ctx, error, "refusing to write a binary stream to a terminal; "
                     "redirect standard output or use --output FILE");
    return FALSE;
  }
  if (target != NULL) {
    g_autoptr (strm_ssh_url) url = strm_ssh_url_parse (target, error);

    if (url == NULL)
      return FALSE;
  }
  return TRUE;
}

void
ova_stream_output_add_remote (JsonBuilder *b, const ova_stream_output *o)
{
  JsonObject *remote = o->ssh && o->sink != NULL
                       ? strm_sink_ssh_result_object (o->sink) : NULL;

  json_builder_set_member_name (b, "remote");
  if (remote != NULL) {
    JsonNode *n = json_node_alloc ();

    json_node_init_object (n, remote);
    json_builder_add_value (b, n);
  }
  else
    json_builder_add_null_value (b);
}

void
ova_stream_output_clear (ova_stream_output *o)
{
  ova_cancel_redirect (-1);
  g_clear_pointer (&o->sink, strm_sink_free);
  if (o->fd >= 0)
    close (o->fd);
  o->fd = -1;
  if (o->created != NULL) {
    if (unlink (o->created) < 0 && errno != ENOENT)
      ova_warn ("cannot remove the incomplete stream %s: %s",
                o->created, g_strerror (errno));
    g_clear_pointer (&o->created, g_free);
  }
  g_clear_pointer (&o->path, g_free);
}

static gboolean
open_file (const ova_ctx *ctx, ova_stream_output *o, const char *path,
           GError **error)
{
  struct stat st;
  int fd;

  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd >= 0) {
    o->created = g_strdup (path);
  }
  else if (errno == EEXIST && stat (path, &st) == 0 &&
           (S_ISCHR (st.st_mode) || S_ISFIFO (st.st_mode))) {
    /* /dev/null, a named pipe: written, never created or removed. */
    fd = open (path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "cannot open %s for writing: %s", path, g_strerror (errno));
      return FALSE;
    }
  }
  else if (errno == EEXIST) {
    ova_usage_error (ctx, error, "%s exists; refusing to overwrite it", path);
    return FALSE;
  }
  else {
    g_set_error (error, OVA_ERROR,
                 errno == ENOSPC ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
                 "cannot create %s: %s", path, g_strerror (errno));
    return FALSE;
  }
  o->fd = fd;
  if (isatty (fd)) {
    ova_usage_error (ctx, error, "refusing to write a binary stream to "
                     "terminal %s", path);
    return FALSE;
  }
  o->sink = strm_sink_fd_new (fd, path);
  ova_cancel_redirect (fd);
  return TRUE;
}

gboolean
ova_stream_output_open (const ova_ctx *ctx, ova_stream_output *o,
                        const char *output, const char *target, GError **error)
{
  const ova_config *cfg = ctx->cfg;

  o->path = g_strdup (output);
  if (target != NULL) {
    o->sink = strm_sink_ssh_new (target, cfg->ssh_key, cfg->ssh_known_hosts,
                                 cfg->remote_command, error);
    o->ssh = TRUE;
  }
  else if (strcmp (output, "-") == 0) {
    o->sink = strm_sink_fd_new (STDOUT_FILENO, "standard output");
    ova_cancel_redirect (STDOUT_FILENO);
  }
  else if (!open_file (ctx, o, output, error))
    return FALSE;
  if (o->sink == NULL)
    return FALSE;
  strm_sink_set_io_limits (o->sink, cfg->io_timeout, &ova_cancelled);
  return TRUE;
}

/* Flush what was written to its place (the fd sink syncs a regular file);
 * the file is kept from now on. */
gboolean
ova_stream_output_close (ova_stream_output *o, GError **error)
{
  if (!o->sink->ops->close (o->sink, error))
    return FALSE;
  ova_cancel_redirect (-1);
  if (o->fd >= 0) {
    if (close (o->fd) < 0) {
      o->fd = -1;
      g_set_error (error, OVA_ERROR,
                   errno == ENOSPC ? OVA_ERROR_NO_SPACE : OVA_ERROR_INTERNAL,
                   "cannot write %s: %s", o->path, g_strerror (errno));
      return FALSE;
    }
    o->fd = -1;
  }
  g_clear_pointer (&o->created, g_free);
  return TRUE;
}

gboolean
ova_stream_output_is_stdout (const ova_stream_output *o)
{
  return o->path != NULL && strcmp (o->path, "-") == 0;
}

const char *
ova_stream_output_remote_backup_id (const ova_stream_output *o)
{
  if (!o->ssh || o->sink == NULL)
    return NULL;
  return ova_json_get_string (strm_sink_ssh_result_object (o->sink), "backup_id");
}
