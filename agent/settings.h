/* ovagent: configuration: defaults, then the GKeyFile (--config, default
 * /etc/ovagent/ovagent.conf, group [ovagent]), then OVAGENT_<KEY> variables. */
#ifndef OVA_SETTINGS_H
#define OVA_SETTINGS_H

#include <glib.h>

#include "storage/env.h"

#define OVA_DEFAULT_CONFIG SYSCONFDIR "/ovagent/ovagent.conf"

typedef struct ova_config {
  stor_env env;          /* data_center, lvm_devices, lvm_command, run_dir,
                          * state_dir, libvirt_uri, sanlock_run_dir */
  char *log_level;       /* log_level key; NULL = warning */
  gboolean syslog;       /* syslog key; default true */
  char *ssh_key;         /* ssh_key: private key for --target; NULL = the
                          * SSH library's defaults (~/.ssh/id_ed25519, id_rsa…) */
  char *ssh_known_hosts; /* ssh_known_hosts; NULL = ~/.ssh/known_hosts */
  char *remote_command;  /* remote_command: the program --target runs on the
                          * target host; default "ovagent" */
  char *scratch_dir;     /* scratch_dir: where a running VM's backup keeps
                          * the old content of rewritten clusters; default
                          * <state_dir>/scratch */
  guint io_timeout;      /* io_timeout: seconds a read or write of a stream
                          * may wait for its peer to move a byte
                          * (OVA_IO_TIMEOUT_MAX at most); 0 = no limit;
                          * default OVA_IO_TIMEOUT_DEFAULT */
  char *audit_socket;    /* audit_socket: the syslog socket serve sends its
                          * audit lines to; default /dev/log */
} ova_config;

#define OVA_IO_TIMEOUT_DEFAULT 300
#define OVA_IO_TIMEOUT_MAX 86400

/* A number of seconds for io_timeout or --io-timeout: 0 to
 * OVA_IO_TIMEOUT_MAX, digits only. */
gboolean ova_io_timeout_parse (const char *value, guint *out);

/* Load configuration. path NULL means the default file, which may be
 * absent; an explicit path must exist. An unknown key, a bad value or an
 * unreadable file fails with OVA_ERROR_USAGE naming the file and key.
 * Environment variables OVAGENT_DATA_CENTER, OVAGENT_LVM_DEVICES
 * (comma-separated), OVAGENT_LVM_COMMAND, OVAGENT_RUN_DIR,
 * OVAGENT_STATE_DIR, OVAGENT_LIBVIRT_URI, OVAGENT_LOG_LEVEL,
 * OVAGENT_SYSLOG, OVAGENT_SSH_KEY, OVAGENT_SSH_KNOWN_HOSTS,
 * OVAGENT_REMOTE_COMMAND, OVAGENT_SCRATCH_DIR, OVAGENT_IO_TIMEOUT and
 * OVAGENT_SANLOCK_RUN_DIR and OVAGENT_AUDIT_SOCKET override the file, and
 * OVAGENT_CONFIG names the file when path is NULL, unless
 * ova_config_ignore_environment was called. */
ova_config *ova_config_load (const char *path, GError **error);

/* From now on, ova_config_load reads no environment variable: serve's
 * configuration is the file the operator chose, whatever an SSH client
 * passed (AcceptEnv, SetEnv). */
void ova_config_ignore_environment (void);
void ova_config_free (ova_config *cfg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ova_config, ova_config_free)

#endif
