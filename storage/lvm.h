/* ovagent: every LVM call, through the configured lvm_command with VDSM's
 * --config (device filter), and the guard that activates LVs and deactivates
 * only what this run activated, with a record in state_dir for crash cleanup. */
#ifndef STOR_LVM_H
#define STOR_LVM_H

#include <glib.h>

#include "env.h"

/* The device list LVM may scan: env->lvm_devices, else the multipath
 * devices found in /sys/block/dm-* (dm uuid "mpath-..."). Empty array (not
 * NULL) when there are none. */
GPtrArray *stor_lvm_devices (const stor_env *env);

/* Run `<lvm_command> <subcmd> --config '<vdsm cfg with filter>' args...`.
 * argv: subcommand and arguments, NULL-terminated. */
gboolean stor_lvm_run (const stor_env *env, const char *const *args,
                       char **out, GError **error);

typedef struct stor_lv_info {
  char *vg, *name, *attr, *tags;  /* tags: comma-separated */
  guint64 size;
} stor_lv_info;

typedef struct stor_vg_info {
  char *name, *tags;
} stor_vg_info;

/* vgs/lvs reports (--noheadings --units b --nosuffix --separator '|'). */
GPtrArray *stor_lvm_vgs (const stor_env *env, GError **error);  /* stor_vg_info* */
GPtrArray *stor_lvm_lvs (const stor_env *env, const char *vg, GError **error);  /* stor_lv_info* */
void stor_lv_info_free (stor_lv_info *lv);
void stor_vg_info_free (stor_vg_info *vg);

/* Active as VDSM sees it: /dev/<vg>/<lv> exists. */
gboolean stor_lv_is_active (const char *vg, const char *lv);

/* Activation guard. Activate (or refresh, if already active) the named LVs
 * of vg read-only for our use; remembers which ones this run activated and
 * writes state_dir/activations/<vg>.<lv> records before activating. */
typedef struct stor_lv_guard stor_lv_guard;

stor_lv_guard *stor_lv_guard_new (const stor_env *env);
gboolean stor_lv_guard_activate (stor_lv_guard *g, const char *vg,
                                 const char *lv, GError **error);
/* Deactivate what this guard activated (in reverse order); records removed.
 * An LV "in use" is left active with a warning, as VDSM does. */
void stor_lv_guard_release (stor_lv_guard *g);
void stor_lv_guard_free (stor_lv_guard *g);  /* releases first */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_lv_guard, stor_lv_guard_free)

/* Deactivate LVs recorded by runs that died (their pid is gone). */
void stor_lv_cleanup_stale (const stor_env *env);

#endif
