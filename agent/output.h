/* ovagent: what commands print: JSON objects (json-glib) for the controller
 * and readable tables for the operator, for domains, images and volumes. */
#ifndef OVA_OUTPUT_H
#define OVA_OUTPUT_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "storage/model.h"
#include "storage/probe.h"

/* What `info` learned about one volume beyond the scan. */
typedef struct ova_volume_info {
  stor_volume *vol;         /* borrowed from the domain */
  stor_probe *probe;        /* owned; NULL if the header could not be read */
  gboolean active;          /* block: active before this run; file: TRUE */
  GPtrArray *users;         /* virt_disk_user*: the array owned, the users
                             * borrowed; NULL when libvirt was unreachable */
} ova_volume_info;

void ova_volume_info_free (ova_volume_info *vi);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ova_volume_info, ova_volume_info_free)

/* Print node to stdout: indented on a TTY, compact otherwise, always
 * followed by a newline. */
void ova_print_json (JsonNode *node);

/* Standard output carries a data stream (--output -): from now on a JSON
 * error goes to stderr, as its last line. */
void ova_output_stdout_is_stream (void);

/* {"result":"error","code":...,"message":...} on stdout, or as one line
 * on stderr once stdout carries a stream. */
void ova_print_json_error (const GError *err);

/* `list`: {"domains":[...]} or the table. */
JsonNode *ova_json_domains (GPtrArray *domains);
void ova_print_domains (GPtrArray *domains);

/* `info`: one image object with per-volume details (infos: ova_volume_info*,
 * in chain order), or the per-volume blocks. */
JsonNode *ova_json_image_info (const stor_domain *dom, const stor_image *img,
                               GPtrArray *infos);
void ova_print_image_info (const stor_domain *dom, const stor_image *img,
                           GPtrArray *infos);

#endif
