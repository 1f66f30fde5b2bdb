/* ovagent tests: where a volume's sanlock lease is (storage/lease.c
 * stor_lease_locate) for each kind, version and metadata of a domain. */
#include <config.h>

#include <string.h>

#include "error.h"
#include "lease.h"
#include "model.h"

#define SD "5c80c932-20ef-4c55-9e06-383c6152a0dc"
#define IMG "ae863f0d-0f24-41d4-b6ed-333c6634c7dc"
#define VOL "3fc4fd44-6d75-4b48-aafc-d72c7bba10d9"
#define MiB (G_GUINT64_CONSTANT (1024) * 1024)

typedef struct {
  const char *name;
  stor_kind kind;
  const char *type;        /* TYPE= of the domain metadata; NULL: unreadable */
  int version;
  const char *alignment;   /* ALIGNMENT=, or NULL for none */
  gint64 slot;             /* block: the MD_ tag, -1 for none */
  const char *path;        /* expected lease path; NULL: none taken */
  guint64 offset;          /* expected offset */
  int code;                /* expected OVA_ERROR code, 0 for success */
  const char *mentions;    /* ...and what its message names */
} lease_case;

static const lease_case cases[] = {
  { "file-v5", STOR_KIND_FILE, "NFS", 5, "1048576", -1,
    "/dc/mnt/srv:_export/" SD "/images/" IMG "/" VOL ".lease", 0 },
  { "file-v4", STOR_KIND_FILE, "POSIXFS", 4, NULL, -1,
    "/dc/mnt/srv:_export/" SD "/images/" IMG "/" VOL ".lease", 0 },
  { "file-v3", STOR_KIND_FILE, "GLUSTERFS", 3, NULL, -1,
    "/dc/mnt/srv:_export/" SD "/images/" IMG "/" VOL ".lease", 0 },
  /* vdsm's own example: slot 4 at 1 MiB alignment is at 109051904. */
  { "block-v5-slot-4", STOR_KIND_BLOCK, "ISCSI", 5, "1048576", 4,
    "/dev/" SD "/leases", 109051904 },
  { "block-v5-2m", STOR_KIND_BLOCK, "ISCSI", 5, "2097152", 17,
    "/dev/" SD "/leases", 117 * 2 * MiB },
  { "block-v5-no-alignment", STOR_KIND_BLOCK, "FCP", 5, NULL, 1,
    "/dev/" SD "/leases", 101 * MiB },
  /* Below version 5 the alignment is 1 MiB whatever the metadata says. */
  { "block-v4", STOR_KIND_BLOCK, "ISCSI", 4, "8388608", 18,
    "/dev/" SD "/leases", 118 * MiB },
  { "block-last-slot", STOR_KIND_BLOCK, "ISCSI", 5, "1048576", STOR_LEASE_MAX_SLOT,
    "/dev/" SD "/leases", 2047 * MiB },
  { "localfs", STOR_KIND_FILE, "LOCALFS", 5, "1048576", -1, NULL, 0 },
  { "safelease-v2", STOR_KIND_FILE, "NFS", 2, NULL, -1, NULL, 0,
    OVA_ERROR_UNSUPPORTED, "SafeLease" },
  { "safelease-v0", STOR_KIND_BLOCK, "ISCSI", 0, NULL, 4, NULL, 0,
    OVA_ERROR_UNSUPPORTED, "version 0" },
  { "future-version", STOR_KIND_FILE, "NFS", 6, NULL, -1, NULL, 0,
    OVA_ERROR_UNSUPPORTED, "version 6" },
  { "no-metadata", STOR_KIND_BLOCK, NULL, -1, NULL, 4, NULL, 0,
    OVA_ERROR_INTEGRITY, "unreadable" },
  { "block-no-slot", STOR_KIND_BLOCK, "ISCSI", 5, "1048576", -1, NULL, 0,
    OVA_ERROR_INTEGRITY, "MD_" },
  { "block-slot-too-high", STOR_KIND_BLOCK, "ISCSI", 5, "1048576",
    STOR_LEASE_MAX_SLOT + 1, NULL, 0, OVA_ERROR_INTEGRITY, "MD_" },
  { "block-bad-alignment", STOR_KIND_BLOCK, "ISCSI", 5, "3145728", 4, NULL, 0,
    OVA_ERROR_INTEGRITY, "ALIGNMENT=3145728" },
  { "block-alignment-not-a-number", STOR_KIND_BLOCK, "ISCSI", 5, "1M", 4, NULL, 0,
    OVA_ERROR_INTEGRITY, "ALIGNMENT=1M" },
};

static stor_domain *
make_domain (const lease_case *c)
{
  stor_domain *d = stor_domain_new (SD, c->kind);

  g_free (d->path);
  d->path = c->kind == STOR_KIND_BLOCK ? g_strdup ("/dev/" SD)
                                       : g_strdup ("/dc/mnt/srv:_export/" SD);
  d->version = -1;
  if (c->type != NULL) {
    g_autoptr (GString) text = g_string_new (NULL);
    g_autoptr (GError) err = NULL;
    stor_dommeta *md;

    if (c->alignment)
      g_string_append_printf (text, "ALIGNMENT=%s\n", c->alignment);
    g_string_append_printf (text, "SDUUID=%s\nTYPE=%s\nVERSION=%d\n", SD, c->type,
                            c->version);
    md = stor_dommeta_parse_text (text->str, text->len, &err);
    g_assert_no_error (err);
    stor_domain_set_metadata (d, md, "test");
  }
  return d;
}

static void
test_locate (gconstpointer data)
{
  const lease_case *c = data;
  g_autoptr (stor_domain) dom = make_domain (c);
  g_autoptr (stor_volume) vol = stor_volume_new (VOL);
  g_autoptr (GError) err = NULL;
  g_autofree char *path = NULL;
  guint64 offset = 1;
  gboolean ok;

  vol->image = g_strdup (IMG);
  vol->slot = c->slot;
  vol->path = c->kind == STOR_KIND_BLOCK ? g_strdup ("/dev/" SD "/" VOL)
                                         : g_build_filename (dom->path, "images", IMG,
                                                             VOL, NULL);
  ok = stor_lease_locate (dom, vol, &path, &offset, &err);
  if (c->code != 0) {
    g_assert_false (ok);
    g_assert_error (err, OVA_ERROR, c->code);
    g_assert_null (path);
    if (strstr (err->message, c->mentions) == NULL)
      g_error ("\"%s\" does not mention \"%s\"", err->message, c->mentions);
    if (strstr (err->message, SD) == NULL)
      g_error ("\"%s\" does not name the domain", err->message);
    return;
  }
  g_assert_no_error (err);
  g_assert_true (ok);
  g_assert_cmpstr (path, ==, c->path);
  g_assert_cmpuint (offset, ==, c->offset);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *name = g_strdup_printf ("/lease/locate/%s", cases[i].name);

    g_test_add_data_func (name, &cases[i], test_locate);
  }
  return g_test_run ();
}
