/* ovagent tests: configuration loading (agent/config.c): defaults, the key
 * file, OVAGENT_<KEY> overrides, list forms and every way a value is refused. */
#include <config.h>

#include <string.h>

#include <glib/gstdio.h>

#include "error.h"
#include "agent/settings.h"

static const char *const env_vars[] = {
  "OVAGENT_CONFIG", "OVAGENT_DATA_CENTER", "OVAGENT_LVM_DEVICES",
  "OVAGENT_LVM_COMMAND", "OVAGENT_RUN_DIR", "OVAGENT_STATE_DIR",
  "OVAGENT_LIBVIRT_URI", "OVAGENT_LOG_LEVEL", "OVAGENT_SYSLOG",
  "OVAGENT_SSH_KEY", "OVAGENT_SSH_KNOWN_HOSTS", "OVAGENT_REMOTE_COMMAND",
  "OVAGENT_SCRATCH_DIR", "OVAGENT_IO_TIMEOUT", "OVAGENT_SANLOCK_RUN_DIR",
  "OVAGENT_AUDIT_SOCKET",
};

/* A private directory for config files; the environment starts clean. */
typedef struct {
  char *dir;
  char *conf;
} fixture;

static void
fixture_setup (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;

  for (size_t i = 0; i < G_N_ELEMENTS (env_vars); i++)
    g_unsetenv (env_vars[i]);
  f->dir = g_dir_make_tmp ("ovagent-test-config.XXXXXX", &err);
  g_assert_no_error (err);
  f->conf = g_build_filename (f->dir, "ovagent.conf", NULL);
}

static void
fixture_teardown (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_unlink (f->conf);
  g_rmdir (f->dir);
  g_free (f->conf);
  g_free (f->dir);
  for (size_t i = 0; i < G_N_ELEMENTS (env_vars); i++)
    g_unsetenv (env_vars[i]);
}

static void
write_conf (const fixture *f, const char *text)
{
  g_autoptr(GError) err = NULL;

  g_file_set_contents (f->conf, text, -1, &err);
  g_assert_no_error (err);
}

/* Load f->conf expecting a usage error whose message names every needle. */
static void
expect_usage_error (const fixture *f, const char *const *needles)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_config) cfg = ova_config_load (f->conf, &err);

  g_assert_null (cfg);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
  for (size_t i = 0; needles[i] != NULL; i++)
    if (strstr (err->message, needles[i]) == NULL)
      g_error ("error \"%s\" does not mention \"%s\"", err->message, needles[i]);
}

static void
assert_defaults (const ova_config *cfg)
{
  g_assert_cmpstr (cfg->env.data_center, ==, "/rhev/data-center");
  g_assert_null (cfg->env.lvm_devices);
  g_assert_cmpstr (cfg->env.lvm_command, ==, "lvm");
  g_assert_cmpstr (cfg->env.run_dir, ==, "/run/ovagent");
  g_assert_cmpstr (cfg->env.state_dir, ==, "/var/lib/ovagent");
  g_assert_cmpstr (cfg->env.libvirt_uri, ==, "qemu:///system");
  g_assert_cmpstr (cfg->env.sanlock_run_dir, ==, "/run/sanlock");
  g_assert_cmpstr (cfg->log_level, ==, "warning");
  g_assert_true (cfg->syslog);
  g_assert_null (cfg->ssh_key);
  g_assert_null (cfg->ssh_known_hosts);
  g_assert_cmpstr (cfg->remote_command, ==, "ovagent");
  g_assert_cmpstr (cfg->scratch_dir, ==, "/var/lib/ovagent/scratch");
  g_assert_cmpuint (cfg->io_timeout, ==, OVA_IO_TIMEOUT_DEFAULT);
  g_assert_cmpstr (cfg->audit_socket, ==, "/dev/log");
}

static void
test_defaults_empty_file (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_config) cfg = NULL;

  write_conf (f, "# nothing set\n");
  cfg = ova_config_load (f->conf, &err);
  g_assert_no_error (err);
  assert_defaults (cfg);

  /* A group with only comments changes nothing either. */
  g_clear_pointer (&cfg, ova_config_free);
  write_conf (f, "[ovagent]\n#data_center = /srv\n");
  cfg = ova_config_load (f->conf, &err);
  g_assert_no_error (err);
  assert_defaults (cfg);
}

static void
test_defaults_no_file (fixture *f G_GNUC_UNUSED, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_config) cfg = NULL;

  if (g_file_test (OVA_DEFAULT_CONFIG, G_FILE_TEST_EXISTS)) {
    g_test_skip (OVA_DEFAULT_CONFIG " exists on this machine");
    return;
  }
  cfg = ova_config_load (NULL, &err);
  g_assert_no_error (err);
  assert_defaults (cfg);
}

static void
test_file (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_config) cfg = NULL;

  write_conf (f,
              "# test bed\n"
              "[ovagent]\n"
              "data_center = /srv/dc\n"
              "lvm_devices = /dev/loop0;/dev/loop1\n"
              "lvm_command = /usr/libexec/ovagent-lvm\n"
              "run_dir = /tmp/run\n"
              "state_dir = /tmp/state\n"
              "libvirt_uri = qemu+unix:///system?socket=/tmp/sock\n"
              "log_level = DEBUG\n"
              "syslog = false\n"
              "ssh_key = /etc/ovagent/id_ed25519\n"
              "ssh_known_hosts = /etc/ovagent/known_hosts\n"
              "remote_command = /usr/local/bin/ovagent\n"
              "io_timeout = 0\n"
              "sanlock_run_dir = /tmp/sanlock\n");
  cfg = ova_config_load (f->conf, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (cfg->env.data_center, ==, "/srv/dc");
  g_assert_nonnull (cfg->env.lvm_devices);
  g_assert_cmpuint (g_strv_length (cfg->env.lvm_devices), ==, 2);
  g_assert_cmpstr (cfg->env.lvm_devices[0], ==, "/dev/loop0");
  g_assert_cmpstr (cfg->env.lvm_devices[1], ==, "/dev/loop1");
  g_assert_cmpstr (cfg->env.lvm_command, ==, "/usr/libexec/ovagent-lvm");
  g_assert_cmpstr (cfg->env.run_dir, ==, "/tmp/run");
  g_assert_cmpstr (cfg->env.state_dir, ==, "/tmp/state");
  g_assert_cmpstr (cfg->env.libvirt_uri, ==, "qemu+unix:///system?socket=/tmp/sock");
  g_assert_cmpstr (cfg->log_level, ==, "debug");
  g_assert_false (cfg->syslog);
  g_assert_cmpstr (cfg->ssh_key, ==, "/etc/ovagent/id_ed25519");
  g_assert_cmpstr (cfg->ssh_known_hosts, ==, "/etc/ovagent/known_hosts");
  g_assert_cmpstr (cfg->remote_command, ==, "/usr/local/bin/ovagent");
  g_assert_cmpuint (cfg->io_timeout, ==, 0);
  g_assert_cmpstr (cfg->env.sanlock_run_dir, ==, "/tmp/sanlock");
}

static void
test_env_overrides_file (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_config) cfg = NULL;

  write_conf (f,
              "[ovagent]\n"
              "data_center = /srv/file\n"
              "lvm_devices = /dev/loop0\n"
              "state_dir = /srv/state\n"
              "syslog = true\n"
              "ssh_key = /srv/key\n"
              "remote_command = ovagent\n"
              "io_timeout = 30\n"
              "sanlock_run_dir = /srv/sanlock\n");
  g_setenv ("OVAGENT_DATA_CENTER", "/srv/env", TRUE);
  g_setenv ("OVAGENT_LVM_DEVICES", "/dev/loop5,/dev/loop6", TRUE);
  g_setenv ("OVAGENT_LIBVIRT_URI", "test:///default", TRUE);
  g_setenv ("OVAGENT_SYSLOG", "no", TRUE);
  g_setenv ("OVAGENT_LOG_LEVEL", "info", TRUE);
  g_setenv ("OVAGENT_SSH_KEY", "/root/.ssh/backup_key", TRUE);
  g_setenv ("OVAGENT_SSH_KNOWN_HOSTS", "/srv/known_hosts", TRUE);
  g_setenv ("OVAGENT_REMOTE_COMMAND", "/opt/ovagent/bin/ovagent", TRUE);
  g_setenv ("OVAGENT_IO_TIMEOUT", "86400", TRUE);
  g_setenv ("OVAGENT_SANLOCK_RUN_DIR", "/srv/env-sanlock", TRUE);
  cfg = ova_config_load (f->conf, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (cfg->env.data_center, ==, "/srv/env");
  g_assert_cmpuint (g_strv_length (cfg->env.lvm_devices), ==, 2);
  g_assert_cmpstr (cfg->env.lvm_devices[0], ==, "/dev/loop5");
  g_assert_cmpstr (cfg->env.lvm_devices[1], ==, "/dev/loop6");
  g_assert_cmpstr (cfg->env.libvirt_uri, ==, "test:///default");
  g_assert_cmpstr (cfg->log_level, ==, "info");
  g_assert_false (cfg->syslog);
  g_assert_cmpstr (cfg->ssh_key, ==, "/root/.ssh/backup_key");
  g_assert_cmpstr (cfg->ssh_known_hosts, ==, "/srv/known_hosts");
  g_assert_cmpstr (cfg->remote_command, ==, "/opt/ovagent/bin/ovagent");
  g_assert_cmpuint (cfg->io_timeout, ==, 86400);
  g_assert_cmpstr (cfg->env.sanlock_run_dir, ==, "/srv/env-sanlock");
  /* Not overridden: the file's value stays. */
  g_assert_cmpstr (cfg->env.state_dir, ==, "/srv/state");
}

static void
test_list_forms (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  static const struct {
    const char *value;
    const char *const expect[4];
  } forms[] = {
    { "/dev/a;/dev/b", { "/dev/a", "/dev/b", NULL } },
    { "/dev/a,/dev/b", { "/dev/a", "/dev/b", NULL } },
    { "/dev/a ; /dev/b,/dev/c;", { "/dev/a", "/dev/b", "/dev/c", NULL } },
    { "/dev/mapper/36001405abc", { "/dev/mapper/36001405abc", NULL } },
    { "", { NULL } },
    { " ; , ", { NULL } },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (forms); i++) {
    for (int from_env = 0; from_env <= 1; from_env++) {
      g_autoptr(GError) err = NULL;
      g_autoptr(ova_config) cfg = NULL;
      g_autofree char *text = NULL;
      size_t n;

      if (from_env) {
        write_conf (f, "");
        g_setenv ("OVAGENT_LVM_DEVICES", forms[i].value, TRUE);
      }
      else {
        text = g_strdup_printf ("[ovagent]\nlvm_devices=%s\n", forms[i].value);
        write_conf (f, text);
        g_unsetenv ("OVAGENT_LVM_DEVICES");
      }
      cfg = ova_config_load (f->conf, &err);
      g_assert_no_error (err);
      /* Empty is a list with nothing in it (no block scanning), never
       * NULL (which would mean: detect the devices). */
      g_assert_nonnull (cfg->env.lvm_devices);
      for (n = 0; forms[i].expect[n] != NULL; n++)
        g_assert_cmpstr (cfg->env.lvm_devices[n], ==, forms[i].expect[n]);
      g_assert_null (cfg->env.lvm_devices[n]);
    }
  }
}

static void
test_bad_key (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  const char *const needles[] = { "data_centre", "ovagent.conf", NULL };
  const char *const group_needles[] = { "[lvm]", "ovagent.conf", NULL };

  write_conf (f, "[ovagent]\ndata_centre = /srv\n");
  expect_usage_error (f, needles);
  write_conf (f, "[ovagent]\n[lvm]\ndevices = /dev/sda\n");
  expect_usage_error (f, group_needles);
}

static void
test_bad_values (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  static const struct {
    const char *text;
    const char *key;
    const char *value;
  } bad[] = {
    { "data_center = relative/dc", "data_center", "relative/dc" },
    { "data_center =", "data_center", "" },
    { "run_dir = run", "run_dir", "run" },
    { "state_dir = ./state", "state_dir", "./state" },
    { "lvm_devices = /dev/sda;sdb", "lvm_devices", "sdb" },
    { "lvm_command = bin/lvm", "lvm_command", "bin/lvm" },
    { "lvm_command =", "lvm_command", "" },
    { "libvirt_uri =", "libvirt_uri", "" },
    { "log_level = loud", "log_level", "loud" },
    { "syslog = maybe", "syslog", "maybe" },
    { "ssh_key = id_rsa", "ssh_key", "id_rsa" },
    { "ssh_key =", "ssh_key", "" },
    { "ssh_known_hosts = ~/.ssh/known_hosts", "ssh_known_hosts", "~/.ssh/known_hosts" },
    { "remote_command = bin/ovagent", "remote_command", "bin/ovagent" },
    { "remote_command =", "remote_command", "" },
    { "scratch_dir = scratch", "scratch_dir", "scratch" },
    { "sanlock_run_dir = run/sanlock", "sanlock_run_dir", "run/sanlock" },
    { "io_timeout = 86401", "io_timeout", "86401" },
    { "io_timeout = -1", "io_timeout", "-1" },
    { "io_timeout = +30", "io_timeout", "+30" },
    { "io_timeout = 5m", "io_timeout", "5m" },
    { "io_timeout = 0x10", "io_timeout", "0x10" },
    { "audit_socket = dev/log", "audit_socket", "dev/log" },
    { "io_timeout =", "io_timeout", "expected whole seconds" },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autofree char *text = g_strdup_printf ("[ovagent]\n%s\n", bad[i].text);
    const char *const needles[] = { bad[i].key, bad[i].value, f->conf, NULL };

    write_conf (f, text);
    expect_usage_error (f, needles);
  }
}

static void
test_bad_env (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  static const struct {
    const char *var;
    const char *value;
  } bad[] = {
    { "OVAGENT_DATA_CENTER", "dc" },
    { "OVAGENT_DATA_CENTER", "" },
    { "OVAGENT_LOG_LEVEL", "chatty" },
    { "OVAGENT_SYSLOG", "2" },
    { "OVAGENT_LVM_DEVICES", "/dev/sda,loop0" },
    { "OVAGENT_SSH_KEY", "key" },
    { "OVAGENT_REMOTE_COMMAND", "" },
    { "OVAGENT_IO_TIMEOUT", "ten" },
    { "OVAGENT_IO_TIMEOUT", "99999999999999999999" },
  };

  write_conf (f, "");
  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
    const char *const needles[] = { bad[i].var, NULL };

    g_setenv (bad[i].var, bad[i].value, TRUE);
    expect_usage_error (f, needles);
    g_unsetenv (bad[i].var);
  }
}

/* scratch_dir follows state_dir unless set itself, in the file or the
 * environment. */
static void
test_scratch_dir (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_config) cfg = NULL;

  write_conf (f, "[ovagent]\nstate_dir = /srv/state\n");
  cfg = ova_config_load (f->conf, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (cfg->scratch_dir, ==, "/srv/state/scratch");
  g_clear_pointer (&cfg, ova_config_free);

  g_setenv ("OVAGENT_STATE_DIR", "/srv/env-state", TRUE);
  cfg = ova_config_load (f->conf, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (cfg->scratch_dir, ==, "/srv/env-state/scratch");
  g_clear_pointer (&cfg, ova_config_free);

  write_conf (f, "[ovagent]\nstate_dir = /srv/state\nscratch_dir = /srv/fast\n");
  cfg = ova_config_load (f->conf, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (cfg->scratch_dir, ==, "/srv/fast");
  g_clear_pointer (&cfg, ova_config_free);

  g_setenv ("OVAGENT_SCRATCH_DIR", "/srv/env-scratch", TRUE);
  cfg = ova_config_load (f->conf, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (cfg->scratch_dir, ==, "/srv/env-scratch");
  g_clear_pointer (&cfg, ova_config_free);

  g_setenv ("OVAGENT_SCRATCH_DIR", "tmp", TRUE);
  {
    const char *const needles[] = { "OVAGENT_SCRATCH_DIR", "tmp", NULL };

    expect_usage_error (f, needles);
  }
}

static void
test_malformed_file (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  const char *const needles[] = { f->conf, NULL };

  write_conf (f, "[ovagent\ndata_center = /srv\n");
  expect_usage_error (f, needles);
  write_conf (f, "data_center = /srv\n");
  expect_usage_error (f, needles);
}

static void
test_missing_explicit (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autofree char *missing = g_build_filename (f->dir, "nosuch.conf", NULL);
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_config) cfg = ova_config_load (missing, &err);

  g_assert_null (cfg);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
  g_assert_nonnull (strstr (err->message, missing));
  g_clear_error (&err);

  /* OVAGENT_CONFIG names a file as explicitly as --config does. */
  g_setenv ("OVAGENT_CONFIG", missing, TRUE);
  cfg = ova_config_load (NULL, &err);
  g_assert_null (cfg);
  g_assert_error (err, OVA_ERROR, OVA_ERROR_USAGE);
  g_assert_nonnull (strstr (err->message, missing));
}

static void
test_config_env_file (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_config) cfg = NULL;

  write_conf (f, "[ovagent]\nrun_dir = /srv/run\n");
  g_setenv ("OVAGENT_CONFIG", f->conf, TRUE);
  cfg = ova_config_load (NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (cfg->env.run_dir, ==, "/srv/run");
}

/* serve: neither OVAGENT_CONFIG nor any OVAGENT_<KEY> is read any more,
 * for the rest of the process (so it runs after the tests that read it). */
static void
test_ignore_environment (fixture *f, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(ova_config) cfg = NULL;

  write_conf (f, "[ovagent]\nrun_dir = /srv/run\naudit_socket = /srv/audit.sock\n");
  g_setenv ("OVAGENT_RUN_DIR", "/client/run", TRUE);
  g_setenv ("OVAGENT_DATA_CENTER", "/client/dc", TRUE);
  g_setenv ("OVAGENT_AUDIT_SOCKET", "/client/sock", TRUE);
  ova_config_ignore_environment ();
  cfg = ova_config_load (f->conf, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (cfg->env.run_dir, ==, "/srv/run");
  g_assert_cmpstr (cfg->env.data_center, ==, "/rhev/data-center");
  g_assert_cmpstr (cfg->audit_socket, ==, "/srv/audit.sock");

  /* OVAGENT_CONFIG naming another file is not followed either. */
  if (g_file_test (OVA_DEFAULT_CONFIG, G_FILE_TEST_EXISTS))
    return;
  g_clear_pointer (&cfg, ova_config_free);
  g_setenv ("OVAGENT_CONFIG", f->conf, TRUE);
  cfg = ova_config_load (NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (cfg->env.run_dir, ==, "/run/ovagent");
  g_assert_cmpstr (cfg->audit_socket, ==, "/dev/log");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(name, fn) \
  g_test_add ("/config/" name, fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("defaults/empty-file", test_defaults_empty_file);
  ADD ("defaults/no-file", test_defaults_no_file);
  ADD ("file", test_file);
  ADD ("env-overrides-file", test_env_overrides_file);
  ADD ("list-forms", test_list_forms);
  ADD ("bad-key", test_bad_key);
  ADD ("bad-values", test_bad_values);
  ADD ("bad-env", test_bad_env);
  ADD ("scratch-dir", test_scratch_dir);
  ADD ("malformed-file", test_malformed_file);
  ADD ("missing-explicit", test_missing_explicit);
  ADD ("config-env-file", test_config_env_file);
  /* After every test that reads the environment: it changes the process
   * for good. */
  ADD ("ignore-environment", test_ignore_environment);
#undef ADD

  return g_test_run ();
}
