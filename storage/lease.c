/* ovagent: VDSM's sanlock volume leases: each volume's lease area, and taking,
 * syncing under and releasing a lease through the host's sanlock daemon. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sanlock.h>
#include <sanlock_admin.h>
#include <sanlock_resource.h>
#include <sanlock_rv.h>

#include "error.h"
#include "log.h"

#include "lease.h"

#define MiB (G_GUINT64_CONSTANT (1024) * 1024)
#define LEASES_LV "leases"
#define LEASE_FILE_EXT ".lease"
/* Where libsanlock looks for the daemon's socket (sanlock.sock). */
#define SANLOCK_RUN_DIR_VAR "SANLOCK_RUN_DIR"

struct stor_lease {
  char *label;            /* SD/IMG/VOL, for messages */
  char *volume_path;      /* synced before the release */
  int sock;               /* the registration holding it; -1: nothing held */
  struct sanlk_resource *res;
};

/* ---- where the lease is ---- */

/* ALIGNMENT of a version 5 domain; older ones are 1 MiB (sd.py). */
static gboolean
domain_alignment (const stor_domain *dom, guint64 *out, GError **error)
{
  gint64 v;

  *out = MiB;
  if (dom->version < 5 || stor_dommeta_get (dom->md, "ALIGNMENT") == NULL)
    return TRUE;
  if (!stor_dommeta_get_int (dom->md, "ALIGNMENT", &v) ||
      (v != 1 * MiB && v != 2 * MiB && v != 4 * MiB && v != 8 * MiB)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "storage domain %s: ALIGNMENT=%s in its metadata is not 1, 2, 4 "
                 "or 8 MiB; the place of its volume leases is unknown", dom->uuid,
                 stor_dommeta_get (dom->md, "ALIGNMENT"));
    return FALSE;
  }
  *out = (guint64) v;
  return TRUE;
}

gboolean
stor_lease_locate (const stor_domain *dom, const stor_volume *vol,
                   char **path, guint64 *offset, GError **error)
{
  guint64 alignment;

  *path = NULL;
  *offset = 0;
  if (dom->md == NULL || dom->version < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "the metadata of storage domain %s is unreadable (see 'ovagent "
                 "list --domain %s'): where the lease of volume %s is cannot be "
                 "told", dom->uuid, dom->uuid, vol->uuid);
    return FALSE;
  }
  /* LocalLock: a local domain is never shared, it has no volume leases. */
  if (strcmp (dom->storage, "localfs") == 0)
    return TRUE;
  if (dom->version < 3) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "storage domain %s is of format version %d, whose SafeLease "
                 "locking keeps no volume leases: ovagent cannot make sure that no "
                 "other host uses volume %s, and does not write into it; upgrade "
                 "the domain's format (the engine does it with the data center's "
                 "compatibility version)", dom->uuid, dom->version, vol->uuid);
    return FALSE;
  }
  if (dom->version > 5) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "storage domain %s is of format version %d, which ovagent does not "
                 "know: where the lease of volume %s is cannot be told", dom->uuid,
                 dom->version, vol->uuid);
    return FALSE;
  }
  if (dom->kind == STOR_KIND_FILE) {
    if (vol->path == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "volume %s of storage domain %s has no path", vol->uuid, dom->uuid);
      return FALSE;
    }
    *path = g_strconcat (vol->path, LEASE_FILE_EXT, NULL);
    return TRUE;
  }
  if (vol->slot < 0 || vol->slot > STOR_LEASE_MAX_SLOT) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "volume %s of storage domain %s has no MD_ tag from 0 to %d, so "
                 "where its lease is in the %s LV cannot be told", vol->uuid,
                 dom->uuid, STOR_LEASE_MAX_SLOT, LEASES_LV);
    return FALSE;
  }
  if (!domain_alignment (dom, &alignment, error))
    return FALSE;
  *path = g_build_filename (dom->path, LEASES_LV, NULL);
  *offset = (STOR_LEASE_RESERVED_SLOTS + (guint64) vol->slot) * alignment;
  return TRUE;
}

/* ---- the daemon ---- */

/* libsanlock finds its daemon through SANLOCK_RUN_DIR, read at every
 * connection. Set before the first one; the commands that write volumes
 * take their leases before they start threads of their own. */
static void
use_daemon (const stor_env *env)
{
  if (env->sanlock_run_dir != NULL &&
      g_strcmp0 (g_getenv (SANLOCK_RUN_DIR_VAR), env->sanlock_run_dir) != 0)
    g_setenv (SANLOCK_RUN_DIR_VAR, env->sanlock_run_dir, TRUE);
}

/* A name of sanlock's, not always NUL-terminated, equal to s. */
static gboolean
sanlock_name_is (const char name[SANLK_NAME_LEN], const char *s)
{
  return strlen (s) <= SANLK_NAME_LEN && strncmp (name, s, SANLK_NAME_LEN) == 0;
}

/* libsanlock's errors are -errno or its own codes (sanlock_rv.h). */
static const char *
sanlock_error_text (int rv)
{
  return rv <= SANLK_ERROR ? sanlock_strerror (rv) : g_strerror (-rv);
}

static void
set_daemon_error (const stor_env *env, int rv, const char *label, GError **error)
{
  g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
               "cannot reach the sanlock daemon at %s/sanlock.sock (%s), so the "
               "lease of volume %s cannot be taken; ovagent writes into a volume "
               "only under its lease. VDSM runs the daemon on every host (the "
               "sanlock service); config key sanlock_run_dir says where it is",
               env->sanlock_run_dir ? env->sanlock_run_dir : "/run/sanlock",
               sanlock_error_text (rv), label);
}

static void
set_not_joined_error (const stor_domain *dom, const char *label, GError **error)
{
  g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
               "this host has not joined the sanlock lockspace of storage domain "
               "%s (it holds no host id there), so it cannot take the lease of "
               "volume %s and does not write into it. VDSM joins the lockspace of "
               "every domain that is active on the host: is this host Up in its "
               "data center, and the domain active?", dom->uuid, label);
}

/* This host's id in the domain's lockspace. */
static gboolean
our_host_id (const stor_env *env, const stor_domain *dom, const char *label,
             guint64 *host_id, GError **error)
{
  struct sanlk_lockspace *lss = NULL;
  int count = 0;
  int rv = sanlock_get_lockspaces (&lss, &count, 0);
  guint32 flags = 0;
  gboolean found = FALSE;

  /* -ENOSPC: more lockspaces than one reply holds; those sent are there. */
  if (rv < 0 && rv != -ENOSPC) {
    free (lss);
    set_daemon_error (env, rv, label, error);
    return FALSE;
  }
  for (int i = 0; lss != NULL && i < count && !found; i++)
    if (sanlock_name_is (lss[i].name, dom->uuid)) {
      found = TRUE;
      *host_id = lss[i].host_id;
      flags = lss[i].flags;
    }
  free (lss);
  if (!found) {
    set_not_joined_error (dom, label, error);
    return FALSE;
  }
  if (flags & SANLK_LSF_ADD) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                 "this host is still joining the sanlock lockspace of storage "
                 "domain %s (as host id %" G_GUINT64_FORMAT "); the lease of volume "
                 "%s can be taken once it has joined: try again in a minute",
                 dom->uuid, *host_id, label);
    return FALSE;
  }
  if (flags & SANLK_LSF_REM) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "this host is leaving the sanlock lockspace of storage domain %s "
                 "(the domain is being deactivated here), so it cannot take the "
                 "lease of volume %s", dom->uuid, label);
    return FALSE;
  }
  return TRUE;
}

/* "host id 2" or "host ids 2, 5", this host marked; NULL if unknown. */
static char *
describe_owners (struct sanlk_resource *res, guint64 our_id)
{
  struct sanlk_host *hosts = NULL;
  int count = 0;
  g_autoptr (GString) s = g_string_new (NULL);

  if (sanlock_read_resource_owners (res, 0, &hosts, &count) < 0 || count <= 0) {
    free (hosts);
    return NULL;
  }
  g_string_append (s, count > 1 ? "host ids " : "host id ");
  for (int i = 0; i < count; i++)
    g_string_append_printf (s, "%s%" G_GUINT64_FORMAT "%s", i ? ", " : "",
                            (guint64) hosts[i].host_id,
                            hosts[i].host_id == our_id ? " (this host)" : "");
  free (hosts);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static void
set_acquire_error (const stor_lease *l, const stor_domain *dom, guint64 our_id,
                   int rv, GError **error)
{
  const struct sanlk_disk *disk = &l->res->disks[0];
  g_autofree char *owners = NULL;

  switch (rv) {
  case -EEXIST:
    g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                 "volume %s is in use on this host: another process (a VM's QEMU, "
                 "a VDSM storage job or another ovagent) holds its sanlock lease as "
                 "host id %" G_GUINT64_FORMAT "; try again when it is done",
                 l->label, our_id);
    return;
  case SANLK_ACQUIRE_IDLIVE:
  case SANLK_ACQUIRE_OWNED:
  case SANLK_ACQUIRE_OTHER:
  case SANLK_ACQUIRE_SHRETRY:
  case SANLK_ACQUIRE_OWNED_RETRY:
  case -EAGAIN:
    owners = describe_owners (l->res, our_id);
    g_set_error (error, OVA_ERROR, OVA_ERROR_BUSY,
                 "volume %s is in use by another host: %s holds its sanlock lease "
                 "in the lockspace of storage domain %s, where this host is host id "
                 "%" G_GUINT64_FORMAT "%s. ovagent writes into a volume only while it "
                 "holds its lease; try again when that host is done with it (a host's "
                 "id there is its SPM id in the engine)", l->label,
                 owners ? owners : "another host", dom->uuid, our_id,
                 rv == SANLK_ACQUIRE_OWNED_RETRY
                 ? "; that host has stopped renewing its host lease, and the lease "
                   "can be taken once that has expired" : "");
    return;
  case -ENOSPC:
    /* The lockspace went away since it was looked at. */
    set_not_joined_error (dom, l->label, error);
    return;
  case -ENOENT:
  case -EMSGSIZE:   /* a lease area shorter than a lease: read short */
  case SANLK_LEADER_MAGIC:
  case SANLK_LEADER_LOCKSPACE:
  case SANLK_LEADER_RESOURCE:
  case SANLK_LEADER_CHECKSUM:
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "volume %s has no usable lease at %s offset %" G_GUINT64_FORMAT
                 " (%s); VDSM writes the lease of every volume it creates on a "
                 "domain that keeps volume leases, so this volume is not as VDSM "
                 "made it", l->label, disk->path, (guint64) disk->offset,
                 sanlock_error_text (rv));
    return;
  default:
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot take the sanlock lease of volume %s at %s offset %"
                 G_GUINT64_FORMAT ": %s (%d)", l->label, disk->path,
                 (guint64) disk->offset, sanlock_error_text (rv), rv);
    return;
  }
}

/* ---- holding it ---- */

static stor_lease *
lease_new (const stor_domain *dom, const stor_volume *vol)
{
  stor_lease *l = g_new0 (stor_lease, 1);

  l->label = g_strdup_printf ("%s/%s/%s", dom->uuid, vol->image ? vol->image : "-",
                              vol->uuid);
  l->volume_path = g_strdup (vol->path);
  l->sock = -1;
  return l;
}

/* The resource as VDSM names it; FALSE if a name or the path does not fit. */
static gboolean
fill_resource (stor_lease *l, const stor_domain *dom, const stor_volume *vol,
               const char *path, guint64 offset, GError **error)
{
  struct sanlk_resource *res;

  if (strlen (dom->uuid) > SANLK_NAME_LEN || strlen (vol->uuid) > SANLK_NAME_LEN ||
      strlen (path) >= SANLK_PATH_LEN) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "the lease of volume %s (%s) does not fit sanlock's limits",
                 l->label, path);
    return FALSE;
  }
  res = g_malloc0 (sizeof (*res) + sizeof (struct sanlk_disk));
  memcpy (res->lockspace_name, dom->uuid, strlen (dom->uuid));
  memcpy (res->name, vol->uuid, strlen (vol->uuid));
  res->num_disks = 1;
  memcpy (res->disks[0].path, path, strlen (path) + 1);
  res->disks[0].offset = offset;
  l->res = res;
  return TRUE;
}

stor_lease *
stor_lease_acquire (const stor_env *env, const stor_domain *dom,
                    const stor_volume *vol, GError **error)
{
  g_autoptr (stor_lease) l = lease_new (dom, vol);
  g_autofree char *path = NULL;
  guint64 offset, host_id = 0;
  struct sanlk_resource *res[1];
  int rv;

  if (!stor_lease_locate (dom, vol, &path, &offset, error))
    return NULL;
  if (path == NULL) {
    ova_info ("storage domain %s is local (LocalFS): it keeps no volume leases, "
              "none is taken for volume %s", dom->uuid, l->label);
    return g_steal_pointer (&l);
  }
  if (!fill_resource (l, dom, vol, path, offset, error))
    return NULL;

  use_daemon (env);
  if (!our_host_id (env, dom, l->label, &host_id, error))
    return NULL;
  if (dom->kind == STOR_KIND_BLOCK && !g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "the %s LV of storage domain %s is not active on this host (no "
                 "%s), so the lease of volume %s cannot be taken; VDSM activates it "
                 "with the domain: is the domain active on this host?", LEASES_LV,
                 dom->uuid, path, l->label);
    return NULL;
  }

  l->sock = sanlock_register ();
  if (l->sock < 0) {
    set_daemon_error (env, l->sock, l->label, error);
    l->sock = -1;
    return NULL;
  }
  /* Held as long as this connection is open: never by a child of ours. */
  if (fcntl (l->sock, F_SETFD, FD_CLOEXEC) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot set close-on-exec on the sanlock connection: %s",
                 g_strerror (errno));
    return NULL;
  }
  res[0] = l->res;
  rv = sanlock_acquire (l->sock, -1, SANLK_ACQUIRE_OWNER_NOWAIT, 1, res, NULL);
  if (rv < 0) {
    set_acquire_error (l, dom, host_id, rv, error);
    return NULL;
  }
  ova_info ("holding the sanlock lease of volume %s (%s offset %" G_GUINT64_FORMAT
            ", host id %" G_GUINT64_FORMAT ")", l->label, path, offset, host_id);
  return g_steal_pointer (&l);
}

/* fsync of the volume, so that what was written is on storage before
 * another host may take the lease. */
static gboolean
sync_volume (const stor_lease *l, GError **error)
{
  int fd = open (l->volume_path, O_RDONLY | O_CLOEXEC);
  int e;

  if (fd >= 0 && fsync (fd) == 0) {
    close (fd);
    return TRUE;
  }
  e = errno;
  if (fd >= 0)
    close (fd);
  g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
               "cannot sync volume %s (%s) before releasing its lease: %s",
               l->label, l->volume_path, g_strerror (e));
  return FALSE;
}

gboolean
stor_lease_release (stor_lease *l, GError **error)
{
  struct sanlk_resource *res[1];
  gboolean ok;
  int rv;

  if (l == NULL || l->sock < 0)
    return TRUE;
  ok = sync_volume (l, error);
  res[0] = l->res;
  rv = sanlock_release (l->sock, -1, 0, 1, res);
  close (l->sock);
  l->sock = -1;
  if (rv < 0 && ok) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot release the sanlock lease of volume %s: %s (the daemon "
                 "released it when the connection closed)", l->label,
                 sanlock_error_text (rv));
    return FALSE;
  }
  if (ok)
    ova_debug ("released the sanlock lease of volume %s", l->label);
  return ok;
}

void
stor_lease_free (stor_lease *l)
{
  if (l == NULL)
    return;
  if (l->sock >= 0) {
    /* The daemon releases what a closed registration held. */
    close (l->sock);
    ova_debug ("let go of the sanlock lease of volume %s", l->label);
  }
  g_free (l->res);
  g_free (l->label);
  g_free (l->volume_path);
  g_free (l);
}
