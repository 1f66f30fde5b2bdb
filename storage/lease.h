/* ovagent: VDSM's sanlock volume leases: where a volume's lease lives on its
 * domain, and holding it while ovagent writes into the volume. */
#ifndef STOR_LEASE_H
#define STOR_LEASE_H

#include <glib.h>

#include "env.h"
#include "model.h"

/* VDSM's layout (vdsm-storage.md §2.4, §3.5): <vol>.lease at offset 0 on a
 * file domain; on a block domain the leases LV at (100 + slot) * alignment,
 * alignment from ALIGNMENT (version 5) or 1 MiB, slot from the MD_ tag. */
#define STOR_LEASE_RESERVED_SLOTS 100
#define STOR_LEASE_MAX_SLOT 1947

/* Where the lease of vol (a volume of dom) is: *path (newly allocated) and
 * *offset. A LocalFS domain keeps no volume leases: TRUE with *path NULL.
 * Fails with OVA_ERROR_UNSUPPORTED for a domain whose format keeps none
 * (version 0 and 2, SafeLease) or that ovagent does not know, and with
 * OVA_ERROR_INTEGRITY when its metadata cannot say where the lease is. */
gboolean stor_lease_locate (const stor_domain *dom, const stor_volume *vol,
                            char **path, guint64 *offset, GError **error);

/* A volume lease held by this process: registered with the sanlock daemon
 * on a connection of its own, so that the daemon releases it when the
 * process ends, however it ends. */
typedef struct stor_lease stor_lease;

/* Take the lease of vol before writing into it, as VDSM does (lockspace:
 * the domain UUID; resource: the volume UUID), without waiting for another
 * holder. The daemon is the one in env->sanlock_run_dir. Fails with
 * OVA_ERROR_BUSY when another host (or another process of this host) holds
 * it, naming the volume and the holder's host id, or while this host is
 * still joining the domain's lockspace; OVA_ERROR_UNSUPPORTED when the
 * daemon cannot be reached or this host has not joined the lockspace, with
 * the reason and what to do; OVA_ERROR_INTEGRITY when the lease area holds
 * no lease for this volume. On a LocalFS domain nothing is held. */
stor_lease *stor_lease_acquire (const stor_env *env, const stor_domain *dom,
                                const stor_volume *vol, GError **error);

/* The writes are done: the volume is synced to storage (fsync), then the
 * lease released. FALSE when either fails; the lease is let go in any case
 * and lease stays to be freed. */
gboolean stor_lease_release (stor_lease *lease, GError **error);

/* Lets go of a lease still held (the daemon releases it). */
void stor_lease_free (stor_lease *lease);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_lease, stor_lease_free)

#endif
