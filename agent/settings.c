/* ovagent: configuration: built-in defaults, then the [ovagent] group of the
 * GKeyFile, then OVAGENT_<KEY> variables (not under serve); every value
 * validated on the way in. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "agent/settings.h"

#define CONFIG_GROUP "ovagent"
#define ENV_PREFIX "OVAGENT_"

typedef enum {
  KEY_PATH,        /* absolute path */
  KEY_COMMAND,     /* program name searched in PATH, or absolute path */
  KEY_STRING,      /* non-empty string */
  KEY_DEVICES,     /* list of absolute paths, ';' or ',' separated */
  KEY_LOG_LEVEL,
  KEY_BOOL,
  KEY_SECONDS,     /* io_timeout: 0 (no limit) or 1..OVA_IO_TIMEOUT_MAX */
} key_type;

static const struct config_key {
  const char *name;
  key_type type;
} config_keys[] = {
  { "data_center", KEY_PATH },
  { "lvm_devices", KEY_DEVICES },
  { "lvm_command", KEY_COMMAND },
  { "run_dir", KEY_PATH },
  { "state_dir", KEY_PATH },
  { "libvirt_uri", KEY_STRING },
  { "log_level", KEY_LOG_LEVEL },
  { "syslog", KEY_BOOL },
  { "ssh_key", KEY_PATH },
  { "ssh_known_hosts", KEY_PATH },
  { "remote_command", KEY_COMMAND },
  { "scratch_dir", KEY_PATH },
  { "io_timeout", KEY_SECONDS },
  { "sanlock_run_dir", KEY_PATH },
  { "audit_socket", KEY_PATH },
};

/* serve: the configuration comes from the file alone. */
static gboolean ignore_environment;

static const struct config_key *
config_key_lookup (const char *name)
{
  for (size_t i = 0; i < G_N_ELEMENTS (config_keys); i++)
    if (strcmp (config_keys[i].name, name) == 0)
      return &config_keys[i];
  return NULL;
}

static char *
config_key_names (void)
{
  g_autoptr(GString) s = g_string_new (NULL);

  for (size_t i = 0; i < G_N_ELEMENTS (config_keys); i++)
    g_string_append_printf (s, "%s%s", i ? ", " : "", config_keys[i].name);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/* The char* field a string-valued key is stored in. */
static char **
config_string_field (ova_config *cfg, const char *name)
{
  if (strcmp (name, "data_center") == 0)
    return &cfg->env.data_center;
  if (strcmp (name, "lvm_command") == 0)
    return &cfg->env.lvm_command;
  if (strcmp (name, "run_dir") == 0)
    return &cfg->env.run_dir;
  if (strcmp (name, "state_dir") == 0)
    return &cfg->env.state_dir;
  if (strcmp (name, "libvirt_uri") == 0)
    return &cfg->env.libvirt_uri;
  if (strcmp (name, "log_level") == 0)
    return &cfg->log_level;
  if (strcmp (name, "ssh_key") == 0)
    return &cfg->ssh_key;
  if (strcmp (name, "ssh_known_hosts") == 0)
    return &cfg->ssh_known_hosts;
  if (strcmp (name, "remote_command") == 0)
    return &cfg->remote_command;
  if (strcmp (name, "scratch_dir") == 0)
    return &cfg->scratch_dir;
  if (strcmp (name, "sanlock_run_dir") == 0)
    return &cfg->env.sanlock_run_dir;
  if (strcmp (name, "audit_socket") == 0)
    return &cfg->audit_socket;
  g_assert_not_reached ();
}

static gboolean
parse_bool (const char *value, gboolean *out)
{
  static const char *const yes[] = { "true", "yes", "on", "1" };
  static const char *const no[] = { "false", "no", "off", "0" };

  for (size_t i = 0; i < G_N_ELEMENTS (yes); i++) {
    if (g_ascii_strcasecmp (value, yes[i]) == 0) {
      *out = TRUE;
      return TRUE;
    }
    if (g_ascii_strcasecmp (value, no[i]) == 0) {
      *out = FALSE;
      return TRUE;
    }
  }
  return FALSE;
}

gboolean
ova_io_timeout_parse (const char *value, guint *out)
{
  guint64 v;

  /* g_ascii_string_to_unsigned takes no sign, blank or base prefix. */
  if (!g_ascii_string_to_unsigned (value, 10, 0, OVA_IO_TIMEOUT_MAX, &v, NULL))
    return FALSE;
  *out = (guint) v;
  return TRUE;
}

static gboolean
valid_path (const char *value)
{
  return g_path_is_absolute (value) && strlen (value) < PATH_MAX;
}

/* Split "a;b", "a,b" (or a mix); blanks around items are ignored and an
 * empty value gives an empty list: block scanning disabled. */
static char **
parse_devices (const char *value, const char *source, const char *key,
               GError **error)
{
  g_auto(GStrv) items = g_strsplit_set (value, ";,", -1);
  g_autoptr(GPtrArray) devs = g_ptr_array_new_with_free_func (g_free);

  for (size_t i = 0; items[i] != NULL; i++) {
    char *dev = g_strstrip (items[i]);

    if (*dev == '\0')
      continue;
    if (!valid_path (dev)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s: %s: device '%s' is not an absolute path "
                   "(expected e.g. /dev/mapper/WWID;/dev/sdb)",
                   source, key, dev);
      return NULL;
    }
    g_ptr_array_add (devs, g_strdup (dev));
  }
  g_ptr_array_add (devs, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&devs), FALSE);
}

/* Validate and store one value; source says where it came from for errors
 * ("file /etc/ovagent/ovagent.conf [ovagent]" or "environment variable"). */
static gboolean
config_set (ova_config *cfg, const struct config_key *key, const char *value,
            const char *source, GError **error)
{
  const char *name = key->name;
  gboolean b;

  switch (key->type) {
  case KEY_DEVICES: {
    char **devs = parse_devices (value, source, name, error);

    if (devs == NULL)
      return FALSE;
    g_strfreev (cfg->env.lvm_devices);
    cfg->env.lvm_devices = devs;
    return TRUE;
  }

  case KEY_BOOL:
    if (!parse_bool (value, &b)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s: %s: invalid value '%s' (expected true or false)",
                   source, name, value);
      return FALSE;
    }
    cfg->syslog = b;
    return TRUE;

  case KEY_SECONDS:
    if (!ova_io_timeout_parse (value, &cfg->io_timeout)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s: %s: invalid value '%s' (expected whole seconds from 1 "
                   "to %d, or 0 for no limit)", source, name, value,
                   OVA_IO_TIMEOUT_MAX);
      return FALSE;
    }
    return TRUE;

  case KEY_PATH:
    if (!valid_path (value)) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s: %s: '%s' is not an absolute path", source, name, value);
      return FALSE;
    }
    break;

  case KEY_COMMAND:
    if (*value == '\0' || (strchr (value, '/') != NULL && !valid_path (value))) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s: %s: '%s' must be a program name or an absolute path",
                   source, name, value);
      return FALSE;
    }
    break;

  case KEY_STRING:
    if (*value == '\0') {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s: %s: the value must not be empty", source, name);
      return FALSE;
    }
    break;

  case KEY_LOG_LEVEL:
    if (ova_log_level_parse (value) < 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s: %s: unknown level '%s' (expected error, warning, "
                   "notice, info or debug)", source, name, value);
      return FALSE;
    }
    break;
  }

  {
    char **field = config_string_field (cfg, name);

    g_free (*field);
    *field = key->type == KEY_LOG_LEVEL ? g_ascii_strdown (value, -1)
                                        : g_strdup (value);
  }
  return TRUE;
}

static gboolean
config_load_file (ova_config *cfg, const char *path, gboolean explicit,
                  GError **error)
{
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  g_autoptr(GError) err = NULL;
  g_auto(GStrv) groups = NULL;
  g_auto(GStrv) keys = NULL;
  g_autofree char *source = NULL;

  if (!g_key_file_load_from_file (kf, path, G_KEY_FILE_NONE, &err)) {
    if (!explicit && g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      return TRUE;
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "cannot read configuration file %s: %s", path, err->message);
    return FALSE;
  }

  groups = g_key_file_get_groups (kf, NULL);
  for (size_t i = 0; groups[i] != NULL; i++) {
    if (strcmp (groups[i], CONFIG_GROUP) != 0) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "configuration file %s: unknown group [%s] "
                   "(settings belong in [" CONFIG_GROUP "])", path, groups[i]);
      return FALSE;
    }
  }
  if (!g_key_file_has_group (kf, CONFIG_GROUP))
    return TRUE;

  source = g_strdup_printf ("configuration file %s [" CONFIG_GROUP "]", path);
  keys = g_key_file_get_keys (kf, CONFIG_GROUP, NULL, NULL);
  for (size_t i = 0; keys != NULL && keys[i] != NULL; i++) {
    const struct config_key *key = config_key_lookup (keys[i]);
    g_autofree char *value = NULL;

    if (key == NULL) {
      g_autofree char *known = config_key_names ();

      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s: unknown key '%s' (known keys: %s)",
                   source, keys[i], known);
      return FALSE;
    }
    value = g_key_file_get_string (kf, CONFIG_GROUP, keys[i], &err);
    if (value == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                   "%s: %s: %s", source, keys[i], err->message);
      return FALSE;
    }
    if (!config_set (cfg, key, value, source, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
config_load_env (ova_config *cfg, GError **error)
{
  for (size_t i = 0; i < G_N_ELEMENTS (config_keys); i++) {
    g_autofree char *upper = g_ascii_strup (config_keys[i].name, -1);
    g_autofree char *var = g_strconcat (ENV_PREFIX, upper, NULL);
    g_autofree char *source = NULL;
    const char *value = g_getenv (var);

    if (value == NULL)
      continue;
    source = g_strdup_printf ("environment variable %s", var);
    if (!config_set (cfg, &config_keys[i], value, source, error))
      return FALSE;
  }
  return TRUE;
}

void
ova_config_ignore_environment (void)
{
  ignore_environment = TRUE;
}

ova_config *
ova_config_load (const char *path, GError **error)
{
  g_autoptr(ova_config) cfg = g_new0 (ova_config, 1);
  gboolean explicit = TRUE;

  cfg->env.data_center = g_strdup ("/rhev/data-center");
  cfg->env.lvm_devices = NULL;
  cfg->env.lvm_command = g_strdup ("lvm");
  cfg->env.run_dir = g_strdup ("/run/ovagent");
  cfg->env.state_dir = g_strdup ("/var/lib/ovagent");
  cfg->env.libvirt_uri = g_strdup ("qemu:///system");
  cfg->env.sanlock_run_dir = g_strdup ("/run/sanlock");
  cfg->log_level = g_strdup ("warning");
  cfg->syslog = TRUE;
  cfg->ssh_key = NULL;
  cfg->ssh_known_hosts = NULL;
  cfg->remote_command = g_strdup ("ovagent");
  cfg->scratch_dir = NULL;
  cfg->io_timeout = OVA_IO_TIMEOUT_DEFAULT;
  cfg->audit_socket = g_strdup ("/dev/log");

  /* A file named by the user must exist; only the default may be absent. */
  if (path == NULL) {
    path = ignore_environment ? NULL : g_getenv (ENV_PREFIX "CONFIG");
    if (path == NULL || *path == '\0') {
      path = OVA_DEFAULT_CONFIG;
      explicit = FALSE;
    }
  }

  if (!config_load_file (cfg, path, explicit, error))
    return NULL;
  if (!ignore_environment && !config_load_env (cfg, error))
    return NULL;
  /* Follows state_dir unless set on its own. */
  if (cfg->scratch_dir == NULL)
    cfg->scratch_dir = g_build_filename (cfg->env.state_dir, "scratch", NULL);
  return g_steal_pointer (&cfg);
}

void
ova_config_free (ova_config *cfg)
{
  if (cfg == NULL)
    return;
  g_free (cfg->env.data_center);
  g_strfreev (cfg->env.lvm_devices);
  g_free (cfg->env.lvm_command);
  g_free (cfg->env.run_dir);
  g_free (cfg->env.state_dir);
  g_free (cfg->env.libvirt_uri);
  g_free (cfg->env.sanlock_run_dir);
  g_free (cfg->log_level);
  g_free (cfg->ssh_key);
  g_free (cfg->ssh_known_hosts);
  g_free (cfg->remote_command);
  g_free (cfg->scratch_dir);
  g_free (cfg->audit_socket);
  g_free (cfg);
}
