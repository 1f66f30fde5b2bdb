/* ovagent: opening the SSH sink's connection: session options, the host key
 * check against known_hosts, key login, the channel and the remote command. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "error.h"
#include "log.h"
#include "stream/ssh-priv.h"

/* Fast AEAD ciphers first (TESTBED §5: AES-128-GCM through libssh moved
 * 740-850 MiB/s here, ChaCha20 half that); CTR for older servers. */
#define PREFERRED_CIPHERS \
  "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr," \
  "aes256-gcm@openssh.com,aes256-ctr"

/* Connecting, key exchange and authentication. Writes of the stream wait
 * at most the sink's io_timeout for the peer; waiting for the result has
 * no limit (the receiver may take long to commit a big backup). */
#define CONNECT_TIMEOUT_SECONDS 30L

/* Dead peers on an idle connection (waiting for the result). */
#define KEEPALIVE_IDLE 60
#define KEEPALIVE_INTERVAL 15
#define KEEPALIVE_COUNT 4

static gboolean
set_option (ssh_sink *k, enum ssh_options_e opt, const void *value,
            const char *name, GError **error)
{
  if (ssh_options_set (k->session, opt, value) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot set the SSH option %s for %s: %s",
                 name, k->target, ssh_get_error (k->session));
    return FALSE;
  }
  return TRUE;
}

/* libssh opens the socket without close-on-exec; commands run while the
 * stream flows must not inherit it. */
static void
tune_socket (ssh_sink *k)
{
  int fd = ssh_get_fd (k->session);
  int on = 1, idle = KEEPALIVE_IDLE, intvl = KEEPALIVE_INTERVAL, cnt = KEEPALIVE_COUNT;
  int flags;

  if (fd < 0)
    return;
  flags = fcntl (fd, F_GETFD);
  if (flags < 0 || fcntl (fd, F_SETFD, flags | FD_CLOEXEC) < 0)
    ova_debug ("cannot set close-on-exec on the socket to %s: %s",
               k->target, g_strerror (errno));
  if (setsockopt (fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0 ||
      setsockopt (fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0 ||
      setsockopt (fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) < 0 ||
      setsockopt (fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0)
    ova_debug ("cannot enable TCP keepalive to %s: %s", k->target, g_strerror (errno));
}

/* "ssh-ed25519 SHA256:…" of the server's key, or NULL. */
static char *
server_key_fingerprint (ssh_sink *k)
{
  ssh_key key = NULL;
  unsigned char *hash = NULL;
  size_t hlen = 0;
  char *fp;
  char *ret = NULL;

  if (ssh_get_server_publickey (k->session, &key) != SSH_OK)
    return NULL;
  if (ssh_get_publickey_hash (key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) == 0) {
    fp = ssh_get_fingerprint_hash (SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    if (fp) {
      ret = g_strdup_printf ("%s %s", ssh_key_type_to_char (ssh_key_type (key)), fp);
      ssh_string_free_char (fp);
    }
    ssh_clean_pubkey_hash (&hash);
  }
  ssh_key_free (key);
  return ret;
}

/* Only a key listed in known_hosts is accepted; nothing is ever added. */
static gboolean
check_host_key (ssh_sink *k, const strm_ssh_url *url, const char *known_hosts,
                GError **error)
{
  g_autofree char *fp = server_key_fingerprint (k);
  g_autofree char *file = known_hosts ? g_strdup (known_hosts)
    : g_build_filename (g_get_home_dir (), ".ssh", "known_hosts", NULL);
  g_autofree char *keyscan = NULL;
  const char *offered = fp ? fp : "fingerprint unavailable";
  enum ssh_known_hosts_e state;

  if (url->port == 22)
    keyscan = g_strdup_printf ("ssh-keyscan %s >> %s", url->host, file);
  else
    keyscan = g_strdup_printf ("ssh-keyscan -p %u %s >> %s", url->port, url->host, file);

  state = ssh_session_is_known_server (k->session);
  switch (state) {
  case SSH_KNOWN_HOSTS_OK:
    ova_debug ("host key of %s: %s, listed in %s", k->target, offered, file);
    return TRUE;
  case SSH_KNOWN_HOSTS_CHANGED:
  case SSH_KNOWN_HOSTS_OTHER:
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "host key of %s has changed: %s lists another key%s for it, "
                 "the server offers %s; someone may be intercepting the "
                 "connection. If the target was reinstalled, check the new "
                 "fingerprint with its administrator, delete the old line "
                 "from %s and add the new key: %s",
                 k->target, file,
                 state == SSH_KNOWN_HOSTS_OTHER ? " of another type" : "",
                 offered, file, keyscan);
    return FALSE;
  case SSH_KNOWN_HOSTS_NOT_FOUND:
  case SSH_KNOWN_HOSTS_UNKNOWN:
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "host key of %s is unknown: %s %s; the server offers %s. "
                 "Check that fingerprint with the target's administrator, "
                 "then add the key: %s", k->target, file,
                 g_file_test (file, G_FILE_TEST_EXISTS) ? "has no key for it"
                 : "does not exist", offered, keyscan);
    return FALSE;
  case SSH_KNOWN_HOSTS_ERROR:
  default:
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot check the host key of %s against %s: %s",
                 k->target, file, ssh_get_error (k->session));
    return FALSE;
  }
}

/* Never prompt for a passphrase: the agent runs without a terminal. */
static int
refuse_passphrase (const char *prompt G_GNUC_UNUSED, char *buf G_GNUC_UNUSED,
                   size_t len G_GNUC_UNUSED, int echo G_GNUC_UNUSED,
                   int verify G_GNUC_UNUSED, void *userdata G_GNUC_UNUSED)
{
  return -1;
}

/* 1: logged in, 0: the server refused this key, -1: error set. */
static int
try_key (ssh_sink *k, const char *path, GError **error)
{
  ssh_key key = NULL;
  int rc;

  rc = ssh_pki_import_privkey_file (path, NULL, refuse_passphrase, NULL, &key);
  if (rc == SSH_EOF) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "cannot read the SSH key %s for %s", path, k->target);
    return -1;
  }
  if (rc != SSH_OK) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "cannot load the SSH key %s for %s: not a private key, or "
                 "protected by a passphrase (not supported)", path, k->target);
    return -1;
  }
  rc = ssh_userauth_publickey (k->session, NULL, key);
  ssh_key_free (key);
  switch (rc) {
  case SSH_AUTH_SUCCESS:
    ova_debug ("logged in to %s with %s", k->target, path);
    return 1;
  case SSH_AUTH_DENIED:
  case SSH_AUTH_PARTIAL:
    return 0;
  default:
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot log in to %s with the key %s: %s",
                 k->target, path, ssh_get_error (k->session));
    return -1;
  }
}

static gboolean
authenticate (ssh_sink *k, const char *key_path, GError **error)
{
  static const char *const defaults[] = { "id_ed25519", "id_ecdsa", "id_rsa" };
  g_autoptr (GString) tried = g_string_new (NULL);
  gsize i;
  int rc;

  if (key_path != NULL) {
    rc = try_key (k, key_path, error);
    if (rc < 0)
      return FALSE;
    if (rc == 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                   "%s refused the key %s", k->target, key_path);
      return FALSE;
    }
    return TRUE;
  }

  for (i = 0; i < G_N_ELEMENTS (defaults); i++) {
    g_autofree char *path = g_build_filename (g_get_home_dir (), ".ssh",
                                              defaults[i], NULL);
    g_autoptr (GError) err = NULL;

    if (!g_file_test (path, G_FILE_TEST_EXISTS))
      continue;
    g_string_append_printf (tried, "%s%s", tried->len ? ", " : "", path);
    rc = try_key (k, path, &err);
    if (rc > 0)
      return TRUE;
    if (rc < 0 && err->code != OVA_ERROR_USAGE) {
      g_propagate_error (error, g_steal_pointer (&err));
      return FALSE;
    }
    if (rc < 0)
      ova_warn ("%s", err->message);
  }
  if (tried->len == 0)
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "no SSH key to log in to %s with: set ssh_key (none of "
                 "~/.ssh/id_ed25519, id_ecdsa, id_rsa exists)", k->target);
  else
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "%s refused the keys %s; set ssh_key", k->target, tried->str);
  return FALSE;
}

static gboolean
configure_session (ssh_sink *k, const strm_ssh_url *url, const char *known_hosts,
                   GError **error)
{
  long timeout = CONNECT_TIMEOUT_SECONDS;
  unsigned int port = url->port;
  int verbosity = SSH_LOG_NOLOG;
  bool process_config = false;

  return set_option (k, SSH_OPTIONS_LOG_VERBOSITY, &verbosity, "LogLevel", error)
    && set_option (k, SSH_OPTIONS_PROCESS_CONFIG, &process_config, "ProcessConfig", error)
    && set_option (k, SSH_OPTIONS_HOST, url->host, "HostName", error)
    && set_option (k, SSH_OPTIONS_PORT, &port, "Port", error)
    && (url->user == NULL ||
        set_option (k, SSH_OPTIONS_USER, url->user, "User", error))
    && (known_hosts == NULL ||
        set_option (k, SSH_OPTIONS_KNOWNHOSTS, known_hosts, "UserKnownHostsFile", error))
    && set_option (k, SSH_OPTIONS_TIMEOUT, &timeout, "ConnectTimeout", error)
    && set_option (k, SSH_OPTIONS_CIPHERS_C_S, PREFERRED_CIPHERS, "Ciphers", error)
    && set_option (k, SSH_OPTIONS_CIPHERS_S_C, PREFERRED_CIPHERS, "Ciphers", error)
    && set_option (k, SSH_OPTIONS_COMPRESSION, "no", "Compression", error);
}

char *
strm_ssh_url_target (const strm_ssh_url *url)
{
  gboolean v6 = strchr (url->host, ':') != NULL;

  return g_strdup_printf ("ssh://%s%s%s%s%s:%u", url->user ? url->user : "",
                          url->user ? "@" : "", v6 ? "[" : "", url->host,
                          v6 ? "]" : "", url->port);
}

gboolean
strm_ssh_connect (ssh_sink *k, const strm_ssh_url *url, const char *key_path,
                  const char *known_hosts, const char *command, GError **error)
{
  long no_timeout = 0;

  k->session = ssh_new ();
  if (k->session == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot create an SSH session for %s", k->target);
    return FALSE;
  }
  if (!configure_session (k, url, known_hosts, error))
    return FALSE;

  if (ssh_connect (k->session) != SSH_OK) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot connect to %s: %s", k->target, ssh_get_error (k->session));
    return FALSE;
  }
  tune_socket (k);
  if (!check_host_key (k, url, known_hosts, error))
    return FALSE;
  if (!authenticate (k, key_path, error))
    return FALSE;

  k->channel = ssh_channel_new (k->session);
  if (k->channel == NULL || ssh_channel_open_session (k->channel) != SSH_OK) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot open an SSH channel to %s: %s",
                 k->target, ssh_get_error (k->session));
    return FALSE;
  }
  if (ssh_set_channel_callbacks (k->channel, &k->callbacks) != SSH_OK) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot set the SSH channel callbacks for %s: %s",
                 k->target, ssh_get_error (k->session));
    return FALSE;
  }
  if (ssh_channel_request_exec (k->channel, command) != SSH_OK) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_TRANSPORT,
                 "cannot run %s on %s: %s", command, k->target,
                 ssh_get_error (k->session));
    return FALSE;
  }
  /* From here on, waiting is bounded by the peer, not by a clock. */
  if (!set_option (k, SSH_OPTIONS_TIMEOUT, &no_timeout, "Timeout", error))
    return FALSE;

  ova_debug ("running '%s' on %s (cipher %s)", command, k->target,
             ssh_get_cipher_out (k->session));
  return TRUE;
}
