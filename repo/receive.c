/* ovagent: receiving a stream into the repository: its META read and checked
 * before the repository is touched, then the destination of its mode. */
#include <config.h>

#include <errno.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json.h"
#include "util.h"
#include "repo/receive-priv.h"
#include "repo/repo.h"
#include "stream/dest.h"
#include "stream/stream.h"

/* Who reads the stream, for the messages of the input. */
typedef struct rx_run {
  const char *repo_dir;  /* as given: the repository is opened after META */
  repo *r;               /* once opened */
  guint io_timeout;
} rx_run;

/* The repository as messages name it: canonical once opened. */
static char *
rx_say (void *opaque, int err)
{
  const rx_run *run = opaque;
  const char *dir = run->r != NULL ? run->r->dir : run->repo_dir;

  if (err == ECANCELED)
    return g_strdup_printf ("receive interrupted by a signal; nothing was committed "
                            "to %s", dir);
  if (err == ETIMEDOUT)
    return g_strdup_printf ("the sender sent nothing for %u s (io_timeout); nothing "
                            "was committed to %s", run->io_timeout, dir);
  return g_strdup_printf ("cannot read the stream: %s", g_strerror (err));
}

/* What every stream's META must say before its mode is looked at; the
 * destination of the mode checks the rest. The parsed object in *root. */
static gboolean
parse_meta (const char *json, JsonNode **root_out, const char **mode_out,
            GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) err = NULL;
  const char *mode;
  JsonNode *root;
  JsonObject *o;
  guint64 version = 0;

  if (!json_parser_load_from_data (parser, json, -1, &err)) {
    repo_rx_meta_error (error, "not JSON: %s", err->message);
    return FALSE;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    repo_rx_meta_error (error, "not a JSON object");
    return FALSE;
  }
  o = json_node_get_object (root);
  if (g_strcmp0 (ova_json_get_string (o, "format"), "ovagent-stream") != 0) {
    repo_rx_meta_error (error, "\"format\" is not \"ovagent-stream\"");
    return FALSE;
  }
  if (!ova_json_get_uint (o, "version", &version) || version != STRM_VERSION) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "stream metadata version %" G_GUINT64_FORMAT " is not supported "
                 "(this ovagent reads version %d)", version, STRM_VERSION);
    return FALSE;
  }
  mode = ova_json_get_string (o, "mode");
  if (g_strcmp0 (mode, "restore") == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "this is a restore stream; use ovagent import to write it to a volume");
    return FALSE;
  }
  if (g_strcmp0 (mode, "backup") != 0 && g_strcmp0 (mode, "chain") != 0) {
    g_autofree char *q = mode ? ova_quote_untrusted (mode, QUOTE_MAX) : g_strdup ("none");

    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "stream mode %s cannot be received (only chain exports and "
                 "changed-block backups can)", q);
    return FALSE;
  }
  *mode_out = strcmp (mode, "backup") == 0 ? "backup" : "chain";
  *root_out = json_node_copy (root);
  return TRUE;
}

gboolean
repo_backup_meta_check (const char *json, gsize len, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) err = NULL;
  g_autoptr(repo_rx_backup) b = NULL;
  g_autoptr(GArray) volumes = NULL;
  JsonNode *root;

  /* What the decoder checks of a META payload before receive sees it: its
   * bounds, then the text (UTF-8, nesting depth) and the members every
   * reader needs, with the decoder's own function. */
  if (len > STRM_MAX_JSON_PAYLOAD) {
    repo_rx_meta_error (error, "larger than %u bytes", STRM_MAX_JSON_PAYLOAD);
    return FALSE;
  }
  if (memchr (json, '\0', len) != NULL) {
    repo_rx_meta_error (error, "it holds a NUL byte");
    return FALSE;
  }
  volumes = strm_meta_volumes_parse (json, len, error);
  if (volumes == NULL)
    return FALSE;
  if (!json_parser_load_from_data (parser, json, len, &err)) {
    g_autofree char *msg = g_utf8_make_valid (err->message, -1);

    repo_rx_meta_error (error, "not JSON: %s", msg);
    return FALSE;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    repo_rx_meta_error (error, "not a JSON object");
    return FALSE;
  }
  b = repo_rx_backup_new (root, error);
  return b != NULL;
}

gboolean
repo_receive (const char *repo_dir, int fd, const repo_receive_opts *opts,
              repo_receive_result *res, GError **error)
{
  rx_run run = { .repo_dir = repo_dir, .io_timeout = opts->io_timeout };
  strm_input in = { .fd = fd, .io_timeout = opts->io_timeout, .cancel = opts->cancel,
                    .say = rx_say, .opaque = &run };
  g_autoptr(strm_decoder) dec = strm_input_decoder (&in);
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(repo_rx_chain) chain = NULL;
  g_autoptr(repo_rx_backup) backup = NULL;
  g_autoptr(repo) r = NULL;
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  gint64 start = g_get_monotonic_time ();
  const char *meta, *mode;

  /* A sender that stalls or lies before its META is complete never gets
   * the repository made, opened or locked. */
  meta = strm_decoder_meta (dec, &in, error);
  if (meta == NULL || !parse_meta (meta, &root, &mode, error))
    return FALSE;
  if (strcmp (mode, "backup") == 0)
    backup = repo_rx_backup_new (root, error);
  else
    chain = repo_rx_chain_new (root, error);
  if (backup == NULL && chain == NULL)
    return FALSE;

  r = repo_open (repo_dir, TRUE, REPO_LOCK_SHARED, error);
  if (r == NULL)
    return FALSE;
  repo_set_run_dir (r, opts->run_dir);
  run.r = r;
  if (backup != NULL)
    return repo_rx_backup_run (backup, r, dec, &in, now, res, error);
  return repo_rx_chain_run (chain, r, dec, &in, now, start, res, error);
}
