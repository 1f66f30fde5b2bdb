/* ovagent: every LVM call (VDSM's --devices/--config, report parsing) and the
 * activation guard with its state_dir records, so a crashed run is undone. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "util.h"

#include "lvm.h"

/* VDSM's LVMCONF_TEMPLATE for the "devices" config method, newlines folded
 * to spaces exactly as VDSM passes it (vdsm-storage.md §3.8). */
#define LVM_CONFIG \
  "devices {  preferred_names=[\"^/dev/mapper/\"]  ignore_suspended_devices=1" \
  "  write_cache_state=0  disable_after_error_count=3  hints=\"none\"" \
  "  obtain_device_list_from_udev=0 } global {  prioritise_write_locks=1" \
  "  wait_for_locks=1  use_lvmpolld=1 } backup {  retain_min=50  retain_days=0 }"

/* With no device at all, --devices cannot be empty: reject every device
 * with a filter instead, as VDSM does for an empty list. */
#define LVM_CONFIG_NO_DEVICES \
  "devices {  preferred_names=[\"^/dev/mapper/\"]  ignore_suspended_devices=1" \
  "  write_cache_state=0  disable_after_error_count=3  filter=[\"r|.*|\"]" \
  "  hints=\"none\"  obtain_device_list_from_udev=0 } global {" \
  "  prioritise_write_locks=1  wait_for_locks=1  use_lvmpolld=1 } backup {" \
  "  retain_min=50  retain_days=0 }"

/* LVM's own limit on VG and LV names is 127 characters. */
#define LVM_NAME_MAX 127
/* A device-mapper name from sysfs; DM_NAME_LEN is 128. */
#define DM_NAME_MAX 127
/* A report line longer than this is not something LVM printed for us. */
#define LVM_LINE_MAX (1024 * 1024)

#define ACTIVATIONS_DIR "activations"

static const char *
lvm_command (const stor_env *env)
{
  return env->lvm_command && *env->lvm_command ? env->lvm_command : "lvm";
}

/* Characters LVM accepts in VG and LV names; also keeps "/" and ".." out of
 * the paths built from them. */
static gboolean
lvm_name_is_valid (const char *name)
{
  size_t len;

  if (name == NULL)
    return FALSE;
  len = strlen (name);
  if (len == 0 || len > LVM_NAME_MAX || name[0] == '-')
    return FALSE;
  if (strcmp (name, ".") == 0 || strcmp (name, "..") == 0)
    return FALSE;
  for (size_t i = 0; i < len; i++) {
    if (!g_ascii_isalnum (name[i]) && strchr ("+_.-", name[i]) == NULL)
      return FALSE;
  }
  return TRUE;
}

static gboolean
check_names (const char *vg, const char *lv, GError **error)
{
  if (!lvm_name_is_valid (vg)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "invalid volume group name '%s'", vg ? vg : "");
    return FALSE;
  }
  if (!lvm_name_is_valid (lv)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "invalid logical volume name '%s' in volume group %s",
                 lv ? lv : "", vg);
    return FALSE;
  }
  return TRUE;
}

static char *
read_sysfs_line (const char *path)
{
  g_autofree char *contents = NULL;
  gsize len;

  if (!g_file_get_contents (path, &contents, &len, NULL))
    return NULL;
  if (len > 4096 || memchr (contents, '\0', len) != NULL)
    return NULL;
  g_strstrip (contents);
  return g_steal_pointer (&contents);
}

/* The multipath devices of the host, as VDSM's getMPDevNamesIter finds them:
 * device-mapper devices whose dm uuid starts with "mpath-". */
static void
add_multipath_devices (GPtrArray *devices)
{
  g_autoptr (GDir) dir = NULL;
  const char *entry;

  dir = g_dir_open ("/sys/block", 0, NULL);
  if (dir == NULL)
    return;
  while ((entry = g_dir_read_name (dir)) != NULL) {
    g_autofree char *uuid_path = NULL;
    g_autofree char *name_path = NULL;
    g_autofree char *uuid = NULL;
    g_autofree char *name = NULL;

    if (!g_str_has_prefix (entry, "dm-"))
      continue;
    uuid_path = g_build_filename ("/sys/block", entry, "dm", "uuid", NULL);
    uuid = read_sysfs_line (uuid_path);
    if (uuid == NULL || !g_str_has_prefix (uuid, "mpath-"))
      continue;
    name_path = g_build_filename ("/sys/block", entry, "dm", "name", NULL);
    name = read_sysfs_line (name_path);
    if (name == NULL || *name == '\0' || strlen (name) > DM_NAME_MAX ||
        strchr (name, '/') != NULL || strchr (name, ',') != NULL ||
        strcmp (name, ".") == 0 || strcmp (name, "..") == 0) {
      ova_warn ("ignoring multipath device %s: unusable name in %s",
                entry, name_path);
      continue;
    }
    g_ptr_array_add (devices, g_strconcat ("/dev/mapper/", name, NULL));
  }
  g_ptr_array_sort (devices, ova_compare_strings);
}

GPtrArray *
stor_lvm_devices (const stor_env *env)
{
  GPtrArray *devices = g_ptr_array_new_with_free_func (g_free);

  if (env->lvm_devices == NULL) {
    add_multipath_devices (devices);
    return devices;
  }
  for (char **d = env->lvm_devices; *d; d++) {
    g_autofree char *dev = g_strstrip (g_strdup (*d));

    if (*dev == '\0')
      continue;
    /* The list is passed comma-separated to --devices. */
    if (strchr (dev, ',') != NULL || dev[0] != '/') {
      ova_warn ("ignoring lvm_devices entry '%s': not an absolute device path "
                "without commas", dev);
      continue;
    }
    g_ptr_array_add (devices, g_steal_pointer (&dev));
  }
  return devices;
}

static void
set_lvm_environment (void)
{
  static gsize done = 0;

  /* LVM complains on stderr about every inherited descriptor otherwise. */
  if (g_once_init_enter (&done)) {
    g_setenv ("LVM_SUPPRESS_FD_WARNINGS", "1", TRUE);
    g_once_init_leave (&done, 1);
  }
}

gboolean
stor_lvm_run (const stor_env *env, const char *const *args,
              char **out, GError **error)
{
  g_autoptr (GPtrArray) devices = NULL;
  g_autoptr (GPtrArray) argv = NULL;
  g_autofree char *device_list = NULL;

  g_return_val_if_fail (args != NULL && args[0] != NULL, FALSE);

  set_lvm_environment ();
  devices = stor_lvm_devices (env);
  argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) lvm_command (env));
  g_ptr_array_add (argv, (gpointer) args[0]);
  if (devices->len > 0) {
    g_ptr_array_add (devices, NULL);
    device_list = g_strjoinv (",", (char **) devices->pdata);
    g_ptr_array_add (argv, (gpointer) "--devices");
    g_ptr_array_add (argv, device_list);
    g_ptr_array_add (argv, (gpointer) "--config");
    g_ptr_array_add (argv, (gpointer) LVM_CONFIG);
  }
  else {
    g_ptr_array_add (argv, (gpointer) "--config");
    g_ptr_array_add (argv, (gpointer) LVM_CONFIG_NO_DEVICES);
  }
  for (size_t i = 1; args[i]; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);

  return ova_run ((const char *const *) argv->pdata, out, NULL, error);
}

void
stor_lv_info_free (stor_lv_info *lv)
{
  if (lv == NULL)
    return;
  g_free (lv->vg);
  g_free (lv->name);
  g_free (lv->attr);
  g_free (lv->tags);
  g_free (lv);
}

void
stor_vg_info_free (stor_vg_info *vg)
{
  if (vg == NULL)
    return;
  g_free (vg->name);
  g_free (vg->tags);
  g_free (vg);
}

/* Split one report line into exactly nfields fields; NULL if it does not
 * have that shape. LVM indents each line; the last field (tags) may be
 * empty. */
static char **
split_report_line (const char *line, guint nfields)
{
  g_auto (GStrv) fields = NULL;

  while (*line == ' ' || *line == '\t')
    line++;
  if (*line == '\0' || strlen (line) > LVM_LINE_MAX)
    return NULL;
  fields = g_strsplit (line, "|", -1);
  if (g_strv_length (fields) != nfields)
    return NULL;
  for (guint i = 0; i < nfields; i++)
    g_strstrip (fields[i]);
  return g_steal_pointer (&fields);
}

GPtrArray *
stor_lvm_vgs (const stor_env *env, GError **error)
{
  static const char *const args[] = {
    "vgs", "--noheadings", "--units", "b", "--nosuffix",
    "--separator", "|", "-o", "vg_name,tags", NULL
  };
  g_autoptr (GPtrArray) vgs = NULL;
  g_autofree char *out = NULL;
  g_auto (GStrv) lines = NULL;

  if (!stor_lvm_run (env, args, &out, error))
    return NULL;

  vgs = g_ptr_array_new_with_free_func ((GDestroyNotify) stor_vg_info_free);
  lines = g_strsplit (out, "\n", -1);
  for (char **l = lines; *l; l++) {
    g_auto (GStrv) f = NULL;
    stor_vg_info *vg;

    if (**l == '\0')
      continue;
    f = split_report_line (*l, 2);
    if (f == NULL || !lvm_name_is_valid (f[0])) {
      ova_warn ("ignoring unexpected vgs output line: %.200s", *l);
      continue;
    }
    vg = g_new0 (stor_vg_info, 1);
    vg->name = g_strdup (f[0]);
    vg->tags = g_strdup (f[1]);
    g_ptr_array_add (vgs, vg);
  }
  return g_steal_pointer (&vgs);
}

GPtrArray *
stor_lvm_lvs (const stor_env *env, const char *vg, GError **error)
{
  g_autoptr (GPtrArray) lvs = NULL;
  g_autofree char *out = NULL;
  g_auto (GStrv) lines = NULL;
  const char *args[] = {
    "lvs", "--noheadings", "--units", "b", "--nosuffix",
    "--separator", "|", "-o", "vg_name,lv_name,attr,size,tags", vg, NULL
  };

  if (!lvm_name_is_valid (vg)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "invalid volume group name '%s'", vg ? vg : "");
    return NULL;
  }
  if (!stor_lvm_run (env, args, &out, error))
    return NULL;

  lvs = g_ptr_array_new_with_free_func ((GDestroyNotify) stor_lv_info_free);
  lines = g_strsplit (out, "\n", -1);
  for (char **l = lines; *l; l++) {
    g_auto (GStrv) f = NULL;
    guint64 size;
    stor_lv_info *lv;

    if (**l == '\0')
      continue;
    f = split_report_line (*l, 5);
    if (f == NULL || !lvm_name_is_valid (f[0]) || !lvm_name_is_valid (f[1]) ||
        strlen (f[2]) > 32 ||
        !g_ascii_string_to_unsigned (f[3], 10, 0, G_MAXUINT64, &size, NULL)) {
      ova_warn ("ignoring unexpected lvs output line for %s: %.200s", vg, *l);
      continue;
    }
    lv = g_new0 (stor_lv_info, 1);
    lv->vg = g_strdup (f[0]);
    lv->name = g_strdup (f[1]);
    lv->attr = g_strdup (f[2]);
    lv->size = size;
    lv->tags = g_strdup (f[4]);
    g_ptr_array_add (lvs, lv);
  }
  return g_steal_pointer (&lvs);
}

gboolean
stor_lv_is_active (const char *vg, const char *lv)
{
  g_autofree char *path = NULL;
  struct stat st;

  if (!lvm_name_is_valid (vg) || !lvm_name_is_valid (lv))
    return FALSE;
  path = g_build_filename ("/dev", vg, lv, NULL);
  return stat (path, &st) == 0;
}

/* ---- activation records ---- */

static char *
activations_dir (const stor_env *env)
{
  return g_build_filename (env->state_dir ? env->state_dir : "",
                           ACTIVATIONS_DIR, NULL);
}

static char *
record_path (const stor_env *env, const char *vg, const char *lv)
{
  g_autofree char *dir = activations_dir (env);
  g_autofree char *name = g_strdup_printf ("%s.%s", vg, lv);

  return g_build_filename (dir, name, NULL);
}

static gboolean
write_record (const stor_env *env, const char *vg, const char *lv,
              GError **error)
{
  g_autofree char *dir = NULL;
  g_autofree char *path = NULL;
  g_autofree char *text = NULL;
  gssize len;
  ssize_t r;
  int err = 0;
  int fd;

  if (env->state_dir == NULL || *env->state_dir == '\0') {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot activate %s/%s: no state_dir configured for "
                 "activation records", vg, lv);
    return FALSE;
  }
  /* stor_lv_cleanup_stale splits <vg>.<lv> at the first dot. */
  if (strchr (vg, '.') != NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "cannot activate %s/%s: volume group names with a '.' are "
                 "not storage domains", vg, lv);
    return FALSE;
  }
  dir = activations_dir (env);
  /* state_dir itself stays searchable: QEMU reaches the default
   * scratch_dir under it. The records are private. */
  if (g_mkdir_with_parents (dir, 0711) < 0 || chmod (dir, 0700) < 0) {
    err = errno;
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot create %s for activation records (config key "
                 "state_dir = %s): %s", dir, env->state_dir, g_strerror (err));
    return FALSE;
  }

  path = record_path (env, vg, lv);
  text = g_strdup_printf ("%ld\n", (long) getpid ());
  len = strlen (text);
  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    err = errno;
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot write activation record %s (config key state_dir = "
                 "%s): %s", path, env->state_dir, g_strerror (err));
    return FALSE;
  }
  do
    r = write (fd, text, len);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    err = errno;
  else if (r != len)
    err = ENOSPC;
  else if (fsync (fd) < 0)
    err = errno;
  if (err != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot write activation record %s (config key state_dir = "
                 "%s): %s", path, env->state_dir, g_strerror (err));
    close (fd);
    unlink (path);
    return FALSE;
  }
  if (close (fd) < 0) {
    err = errno;
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot write activation record %s: %s", path, g_strerror (err));
    unlink (path);
    return FALSE;
  }
  return TRUE;
}

static void
remove_record (const stor_env *env, const char *vg, const char *lv)
{
  g_autofree char *path = record_path (env, vg, lv);

  if (unlink (path) < 0 && errno != ENOENT)
    ova_warn ("cannot remove activation record %s: %s",
              path, g_strerror (errno));
}

static gboolean
lv_change (const stor_env *env, const char *vg, const char *lv,
           const char *const *options, GError **error)
{
  g_autofree char *target = g_strdup_printf ("%s/%s", vg, lv);
  const char *args[8];
  size_t n = 0;

  args[n++] = "lvchange";
  for (size_t i = 0; options[i] && n < G_N_ELEMENTS (args) - 2; i++)
    args[n++] = options[i];
  args[n++] = target;
  args[n] = NULL;
  return stor_lvm_run (env, args, NULL, error);
}

static gboolean
lv_activate (const stor_env *env, const char *vg, const char *lv,
             GError **error)
{
  static const char *const opts[] = {
    "--autobackup", "n", "--available", "y", NULL
  };
  return lv_change (env, vg, lv, opts, error);
}

static gboolean
lv_refresh (const stor_env *env, const char *vg, const char *lv,
            GError **error)
{
  static const char *const opts[] = { "--refresh", NULL };
  return lv_change (env, vg, lv, opts, error);
}

/* Deactivate; an LV still open somewhere is left active with a warning,
 * as VDSM does. Returns TRUE only if the LV is no longer active. */
static gboolean
lv_deactivate (const stor_env *env, const char *vg, const char *lv)
{
  static const char *const opts[] = {
    "--autobackup", "n", "--available", "n", NULL
  };
  g_autoptr (GError) err = NULL;

  if (lv_change (env, vg, lv, opts, &err))
    return TRUE;
  if (strstr (err->message, "in use") != NULL)
    ova_warn ("logical volume %s/%s is in use, leaving it active", vg, lv);
  else
    ova_warn ("cannot deactivate logical volume %s/%s: %s",
              vg, lv, err->message);
  return FALSE;
}

/* ---- the guard ---- */

typedef struct {
  char *vg, *lv;
} guard_entry;

struct stor_lv_guard {
  const stor_env *env;  /* borrowed: must outlive the guard */
  GArray *activated;    /* guard_entry, in activation order */
};

static void
guard_entry_clear (gpointer p)
{
  guard_entry *e = p;

  g_free (e->vg);
  g_free (e->lv);
}

stor_lv_guard *
stor_lv_guard_new (const stor_env *env)
{
  stor_lv_guard *g = g_new0 (stor_lv_guard, 1);

  g->env = env;
  g->activated = g_array_new (FALSE, TRUE, sizeof (guard_entry));
  g_array_set_clear_func (g->activated, guard_entry_clear);
  return g;
}

gboolean
stor_lv_guard_activate (stor_lv_guard *g, const char *vg, const char *lv,
                        GError **error)
{
  guard_entry e;

  if (!check_names (vg, lv, error))
    return FALSE;

  for (guint i = 0; i < g->activated->len; i++) {
    guard_entry *a = &g_array_index (g->activated, guard_entry, i);
    if (strcmp (a->vg, vg) == 0 && strcmp (a->lv, lv) == 0)
      return TRUE;
  }

  /* Someone else's active LV: refresh it to see extensions made on other
   * hosts, but it is not ours to deactivate. */
  if (stor_lv_is_active (vg, lv)) {
    ova_debug ("%s/%s is already active, refreshing", vg, lv);
    return lv_refresh (g->env, vg, lv, error);
  }

  /* The record goes first, so a crash right after activation still leaves
   * a trace for stor_lv_cleanup_stale. */
  if (!write_record (g->env, vg, lv, error))
    return FALSE;
  if (!lv_activate (g->env, vg, lv, error)) {
    remove_record (g->env, vg, lv);
    return FALSE;
  }
  ova_debug ("activated %s/%s", vg, lv);

  e.vg = g_strdup (vg);
  e.lv = g_strdup (lv);
  g_array_append_val (g->activated, e);
  return TRUE;
}

void
stor_lv_guard_release (stor_lv_guard *g)
{
  if (g == NULL)
    return;
  for (guint i = g->activated->len; i > 0; i--) {
    guard_entry *e = &g_array_index (g->activated, guard_entry, i - 1);

    /* A failed deactivation keeps its record: the next run retries once
     * this process is gone. */
    if (lv_deactivate (g->env, e->vg, e->lv)) {
      remove_record (g->env, e->vg, e->lv);
      ova_debug ("deactivated %s/%s", e->vg, e->lv);
    }
  }
  g_array_set_size (g->activated, 0);
}

void
stor_lv_guard_free (stor_lv_guard *g)
{
  if (g == NULL)
    return;
  stor_lv_guard_release (g);
  g_array_unref (g->activated);
  g_free (g);
}

/* The pid in a record, or 0 if the record is unusable. */
static pid_t
read_record_pid (const char *path)
{
  g_autofree char *text = NULL;
  gsize len;
  guint64 pid;

  if (!g_file_get_contents (path, &text, &len, NULL) || len > 32)
    return 0;
  g_strstrip (text);
  if (!g_ascii_string_to_unsigned (text, 10, 1, G_MAXINT32, &pid, NULL))
    return 0;
  return (pid_t) pid;
}

void
stor_lv_cleanup_stale (const stor_env *env)
{
  g_autofree char *dir_path = NULL;
  g_autoptr (GDir) dir = NULL;
  g_autoptr (GError) err = NULL;
  const char *name;

  if (env->state_dir == NULL || *env->state_dir == '\0')
    return;
  dir_path = activations_dir (env);
  dir = g_dir_open (dir_path, 0, &err);
  if (dir == NULL) {
    if (!g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      ova_warn ("cannot read activation records: %s", err->message);
    return;
  }

  while ((name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = g_build_filename (dir_path, name, NULL);
    g_autofree char *vg = NULL;
    const char *dot;
    const char *lv;
    pid_t pid;

    /* Records are named <vg>.<lv>; storage-domain VG names (UUIDs) hold
     * no dot, so the first one separates them. */
    dot = strchr (name, '.');
    if (dot == NULL) {
      ova_warn ("ignoring unexpected file %s in activation records", path);
      continue;
    }
    vg = g_strndup (name, dot - name);
    lv = dot + 1;
    if (!lvm_name_is_valid (vg) || !lvm_name_is_valid (lv)) {
      ova_warn ("ignoring unexpected file %s in activation records", path);
      continue;
    }

    pid = read_record_pid (path);
    if (pid == 0) {
      ova_warn ("ignoring activation record %s: no valid pid in it", path);
      continue;
    }
    if (pid == getpid ())
      continue;
    if (kill (pid, 0) == 0 || errno != ESRCH)
      continue;  /* its run is still going (or not ours to signal) */

    ova_info ("deactivating %s/%s, left active by process %ld that died",
              vg, lv, (long) pid);
    if (stor_lv_is_active (vg, lv) && !lv_deactivate (env, vg, lv))
      continue;
    remove_record (env, vg, lv);
  }
}
