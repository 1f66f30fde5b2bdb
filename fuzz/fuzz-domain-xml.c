/* ovagent: libFuzzer target for the libvirt XML parsers: a domain's live XML
 * (disks, chains, DAC label) and a checkpoint's XML, on the same bytes. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "qemu-img.h"
#include "virt/checkpoint-xml.h"
#include "virt/domain-xml.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_error (const GError *error, int code)
{
  if (error == NULL || error->domain != OVA_ERROR || error->code != code ||
      !g_utf8_validate (error->message, -1, NULL))
    abort ();
}

static void
check_local_paths (const GPtrArray *paths)
{
  for (guint i = 0; i < paths->len; i++) {
    const char *p = g_ptr_array_index (paths, i);

    if (p == NULL || p[0] != '/')
      abort ();
  }
}

static void
check_disk (const virt_xml_disk *d)
{
  g_autofree char *why = virt_xml_disk_unsupported (d);

  check_local_paths (d->writes);
  check_local_paths (d->backing);
  if (d->path && d->path[0] != '/')
    abort ();
  if (d->serial && (*d->serial == '\0' || strlen (d->serial) > 256))
    abort ();
  /* A disk the XML lets through has a target and a local image. */
  if (why == NULL && (d->target == NULL || d->path == NULL))
    abort ();
  if (d->layers == NULL)
    return;
  /* The chain starts at the disk's image; only the bottom may be raw. */
  for (guint i = 0; i < d->layers->len; i++) {
    const stor_layer *l = g_ptr_array_index (d->layers, i);

    if (l->path == NULL || l->path[0] != '/' || l->format == NULL ||
        (strcmp (l->format, "qcow2") != 0 &&
         !(strcmp (l->format, "raw") == 0 && i + 1 == d->layers->len)))
      abort ();
  }
  if (strcmp (((const stor_layer *) g_ptr_array_index (d->layers, 0))->path, d->path) != 0)
    abort ();
}

static void
fuzz_domain (const char *buf, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (virt_domain_xml) x = virt_domain_xml_parse (buf, size, &error);

  if (x == NULL) {
    check_error (error, OVA_ERROR_INTERNAL);
    return;
  }
  for (guint i = 0; i < x->disks->len; i++)
    check_disk (g_ptr_array_index (x->disks, i));
}

static void
check_name (const char *name)
{
  if (name && (*name == '\0' || strlen (name) > 255 || g_ascii_isspace (*name)))
    abort ();
}

static void
fuzz_checkpoint (const char *buf, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (virt_checkpoint_doc) doc = virt_checkpoint_doc_parse (buf, size, "cp", &error);

  if (doc == NULL) {
    check_error (error, OVA_ERROR_INTEGRITY);
    return;
  }
  check_name (doc->name);
  check_name (doc->parent);
  if (doc->created < -1)
    abort ();
  for (guint i = 0; i < doc->disks->len; i++) {
    const virt_checkpoint_disk *d = g_ptr_array_index (doc->disks, i);

    if (d->target == NULL || strlen (d->target) > 255 ||
        (d->bitmap && strlen (d->bitmap) > 255))
      abort ();
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *buf = (const char *) data;

  fuzz_domain (buf, size);
  fuzz_checkpoint (buf, size);
  return 0;
}
