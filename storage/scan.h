/* ovagent: discovering the storage domains of this host: file domains under
 * <data_center>/mnt and block domains in the VGs LVM sees on lvm_devices. */
#ifndef STOR_SCAN_H
#define STOR_SCAN_H

#include <glib.h>

#include "env.h"
#include "model.h"

/* All domains, or only the one named only_sd (NULL for all), each with its
 * images and chains built. Per-domain problems are recorded on the domain;
 * fails (OVA_ERROR_INTERNAL naming the path) only if <data_center> itself
 * cannot be read, or LVM cannot be run while block devices are configured.
 * Returns stor_domain*, sorted by UUID. */
GPtrArray *stor_scan_domains (const stor_env *env, const char *only_sd, GError **error);

/* One file domain from its directory (the one holding dom_md/). */
stor_domain *stor_scan_file_domain (const char *sd_dir, GError **error);

/* One block domain from its VG (tags already read). The metadata LV is
 * activated for reading if needed, and deactivated again if so. */
stor_domain *stor_scan_block_domain (const stor_env *env, const char *vg,
                                     const char *const *vg_tags, GError **error);

/* Resolve DISK ("IMG" or "SD/IMG") among domains. Fails with
 * OVA_ERROR_USAGE for a malformed UUID or an image found in several domains
 * (the message lists SD/IMG for each), OVA_ERROR_NOT_FOUND if absent. */
gboolean stor_find_disk (GPtrArray *domains, const char *disk,
                         stor_domain **dom, stor_image **img, GError **error);

/* Read one volume's metadata record again, from storage and not from a
 * cache: the <vol>.meta next to a file volume, or the volume's MD_ slot in
 * the metadata LV of a block domain (activated for the read if needed, and
 * deactivated again). raw_out, if not NULL, gets the record's text up to its
 * EOF line. Fails with OVA_ERROR_INTEGRITY if the record is unusable. */
stor_volmeta *stor_reread_volmeta (const stor_env *env, const stor_domain *d,
                                   const stor_volume *v, char **raw_out,
                                   GError **error);

#endif
