/* ovagent: where the storage of this host is: the settings storage/ needs,
 * filled by agent/config.c from the config file, environment and options. */
#ifndef STOR_ENV_H
#define STOR_ENV_H

#include <glib.h>

typedef struct stor_env {
  char *data_center;    /* /rhev/data-center: file domains under <dc>/mnt */
  char **lvm_devices;   /* devices LVM may scan for SD VGs; NULL = detect
                         * multipath devices (/dev/mapper/<wwid>) as VDSM */
  char *lvm_command;    /* "lvm": every LVM call goes through it */
  char *run_dir;        /* /run/ovagent */
  char *state_dir;      /* /var/lib/ovagent: activation records */
  char *libvirt_uri;    /* qemu:///system */
  char *sanlock_run_dir; /* /run/sanlock: the sanlock daemon's socket */
} stor_env;

#endif
