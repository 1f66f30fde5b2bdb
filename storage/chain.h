/* ovagent: a domain's images and each one's volumes ordered base -> top, as
 * `vdsm-tool dump-volume-chains` does, each inconsistency reported, never fatal. */
#ifndef STOR_CHAIN_H
#define STOR_CHAIN_H

#include <glib.h>

#include "model.h"

/* Problem codes (stor_problem.code) the builder reports on an image. */
#define STOR_CHAIN_NO_BASE          "no-base"           /* no volume has a blank parent */
#define STOR_CHAIN_DUPLICATE_PARENT "duplicate-parent"  /* two children of one parent */
#define STOR_CHAIN_LOOP             "loop"              /* parent links form a cycle */
#define STOR_CHAIN_ORPHANS          "orphans"           /* volumes not reachable from the base */
#define STOR_CHAIN_UNKNOWN_PARENT   "unknown-parent"    /* parent missing, or in another image and not a template */
#define STOR_CHAIN_TWO_LEAVES       "multiple-leaves"   /* more than one LEAF volume */
#define STOR_CHAIN_NO_LEAF          "no-leaf"           /* top of chain is not LEAF */
#define STOR_CHAIN_ILLEGAL          "illegal-volume"    /* an ILLEGAL volume in the chain */
#define STOR_CHAIN_INVALID_METADATA "invalid-metadata"  /* a volume without a usable record */
#define STOR_CHAIN_PARTLY_DELETED   "partly-deleted"    /* a cleared (NONE=) record */

/* Group the domain's volumes into images (by ->image, skipping
 * _remove_me_ remnants) and build each image's chain. */
void stor_domain_build_images (stor_domain *d);

/* Order img's volumes into img->volumes and append problems to
 * img->problems. members: the stor_volume* whose ->image is this image
 * (any order). d->volumes resolves parents outside the image (a SHARED
 * template volume becomes the base of the chain). */
void stor_chain_build (const stor_domain *d, stor_image *img, GPtrArray *members);

#endif
