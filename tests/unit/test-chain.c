/* ovagent tests: chain building and image grouping on small in-memory
 * domains (storage/chain.c, storage/model.c); no storage, no parser. */
#include <config.h>

#include <string.h>

#include "chain.h"
#include "model.h"
#include "util.h"

/* Volumes are named by one lower-case letter, images by one upper-case
 * letter; the UUIDs sort in letter order. "z" is never created. */
static char *
vol_uuid (char name)
{
  return g_strdup_printf ("%08x-1111-4111-8111-111111111111", (unsigned) name);
}

static char *
img_uuid (char name)
{
  return g_strdup_printf ("%08x-2222-4222-8222-222222222222", (unsigned) name);
}

#define DOM_UUID "d0d0d0d0-3333-4333-8333-333333333333"

typedef enum {
  MD_OK,
  MD_NONE,      /* no usable record: md == NULL */
  MD_CLEARED,   /* a NONE=### record */
} md_state;

typedef struct {
  char name;
  char image;
  char parent;             /* 0 for a base; '0' for an explicit blank UUID */
  stor_voltype voltype;
  stor_legality legality;  /* 0 means LEGAL */
  md_state md;
} vol_spec;

#define MAX_VOLS 8

typedef struct {
  const char *name;
  vol_spec vols[MAX_VOLS];
  char image;              /* the image checked */
  const char *order;       /* expected img->volumes, as letters */
  const char *codes;       /* expected problem codes, sorted, space separated */
  const char *mention_code;/* a problem with this code... */
  const char *mentions;    /* ...names these volumes ("I" etc: images) */
} chain_case;

#define LEAF STOR_VOLTYPE_LEAF
#define INTERNAL STOR_VOLTYPE_INTERNAL
#define SHARED STOR_VOLTYPE_SHARED
#define ILLEGAL STOR_LEGALITY_ILLEGAL

static const chain_case cases[] = {
  { "single",
    { { 'a', 'I', 0, LEAF } }, 'I', "a", "" },
  { "explicit-blank-parent",
    { { 'a', 'I', '0', LEAF } }, 'I', "a", "" },
  { "raw-base-two-cow",
    { { 'c', 'I', 'b', LEAF }, { 'a', 'I', 0, INTERNAL }, { 'b', 'I', 'a', INTERNAL } },
    'I', "abc", "" },
  { "template-child",
    { { 't', 'T', 0, SHARED }, { 'a', 'I', 't', LEAF } }, 'I', "ta", "" },
  { "template-own-image",
    { { 't', 'T', 0, SHARED }, { 'a', 'I', 't', LEAF } }, 'T', "t", "" },
  { "template-two-layers",
    { { 't', 'T', 0, SHARED }, { 'b', 'I', 'a', LEAF }, { 'a', 'I', 't', INTERNAL } },
    'I', "tab", "" },
  { "no-base",
    { { 'a', 'I', 'z', INTERNAL }, { 'b', 'I', 'a', LEAF } },
    'I', "ab", "no-base unknown-parent", "unknown-parent", "a z" },
  { "duplicate-parent",
    { { 'a', 'I', 0, INTERNAL }, { 'b', 'I', 'a', LEAF }, { 'c', 'I', 'a', INTERNAL } },
    'I', "abc", "duplicate-parent", "duplicate-parent", "a b c" },
  { "two-bases",
    { { 'a', 'I', 0, LEAF }, { 'b', 'I', 0, INTERNAL } },
    'I', "ab", "duplicate-parent", "duplicate-parent", "a b" },
  { "template-and-blank-base",
    { { 't', 'T', 0, SHARED }, { 'a', 'I', 't', LEAF }, { 'b', 'I', 0, INTERNAL } },
    'I', "tab", "duplicate-parent", "duplicate-parent", "t b" },
  { "two-children-of-template",
    { { 't', 'T', 0, SHARED }, { 'a', 'I', 't', LEAF }, { 'b', 'I', 't', INTERNAL } },
    'I', "tab", "duplicate-parent", "duplicate-parent", "t a b" },
  { "loop-without-base",
    { { 'a', 'I', 'c', INTERNAL }, { 'b', 'I', 'a', INTERNAL }, { 'c', 'I', 'b', LEAF } },
    'I', "abc", "loop no-base", "loop", "a b c" },
  { "self-loop",
    { { 'a', 'I', 'a', LEAF } }, 'I', "a", "loop no-base", "loop", "a" },
  { "loop-beside-base",
    { { 'a', 'I', 0, LEAF }, { 'b', 'I', 'c', INTERNAL }, { 'c', 'I', 'b', INTERNAL } },
    'I', "abc", "loop", "loop", "b c" },
  { "orphans",
    { { 'a', 'I', 0, LEAF }, { 'd', 'I', 'z', INTERNAL }, { 'e', 'I', 'd', INTERNAL } },
    'I', "ade", "orphans unknown-parent", "orphans", "d e" },
  { "hanging-off-a-loop",
    { { 'a', 'I', 0, LEAF }, { 'b', 'I', 'c', INTERNAL }, { 'c', 'I', 'b', INTERNAL },
      { 'd', 'I', 'b', INTERNAL } },
    'I', "abcd", "duplicate-parent loop orphans", "orphans", "d" },
  { "unknown-parent",
    { { 'a', 'I', 0, INTERNAL }, { 'b', 'I', 'a', LEAF }, { 'c', 'I', 'z', INTERNAL } },
    'I', "abc", "orphans unknown-parent", "unknown-parent", "I c z" },
  { "parent-in-other-image-not-template",
    { { 'x', 'J', 0, LEAF }, { 'a', 'I', 'x', LEAF } },
    'I', "a", "no-base unknown-parent", "unknown-parent", "I J a x" },
  { "parent-in-other-image-no-metadata",
    { { 'x', 'J', 0, SHARED, 0, MD_NONE }, { 'a', 'I', 'x', LEAF } },
    'I', "a", "no-base unknown-parent", "unknown-parent", "a x" },
  { "two-leaves",
    { { 'a', 'I', 0, LEAF }, { 'b', 'I', 'a', LEAF } },
    'I', "ab", "multiple-leaves", "multiple-leaves", "a b" },
  { "no-leaf",
    { { 'a', 'I', 0, INTERNAL }, { 'b', 'I', 'a', INTERNAL } },
    'I', "ab", "no-leaf", "no-leaf", "b" },
  { "no-leaf-lone-internal",
    { { 'a', 'I', 0, INTERNAL } }, 'I', "a", "no-leaf", "no-leaf", "a" },
  { "leaf-in-the-middle",
    { { 'a', 'I', 0, INTERNAL }, { 'b', 'I', 'a', LEAF }, { 'c', 'I', 'b', INTERNAL } },
    'I', "abc", "no-leaf", "no-leaf", "c" },
  { "illegal-in-the-middle",
    { { 'a', 'I', 0, INTERNAL }, { 'b', 'I', 'a', INTERNAL, ILLEGAL },
      { 'c', 'I', 'b', LEAF } },
    'I', "abc", "illegal-volume", "illegal-volume", "b" },
  { "invalid-metadata",
    { { 'a', 'I', 0, INTERNAL }, { 'b', 'I', 'a', LEAF, 0, MD_NONE } },
    'I', "ab", "invalid-metadata", "invalid-metadata", "b" },
  { "cleared-record",
    { { 'a', 'I', 0, INTERNAL }, { 'b', 'I', 'a', LEAF, 0, MD_CLEARED } },
    'I', "ab", "partly-deleted", "partly-deleted", "b" },
  { "cleared-base",
    { { 'a', 'I', 0, INTERNAL, 0, MD_CLEARED }, { 'b', 'I', 'a', LEAF } },
    'I', "ab", "partly-deleted", "partly-deleted", "a" },
  { "many-problems",
    { { 'a', 'I', 0, LEAF, ILLEGAL }, { 'b', 'I', 0, LEAF }, { 'c', 'I', 'z', INTERNAL, 0, MD_NONE },
      { 'd', 'I', 'd', INTERNAL } },
    'I', "abcd",
    "duplicate-parent illegal-volume invalid-metadata loop multiple-leaves orphans unknown-parent" },
};

static stor_volume *
make_volume (const vol_spec *s)
{
  stor_volume *v;
  g_autofree char *uuid = vol_uuid (s->name);

  v = stor_volume_new (uuid);
  v->image = img_uuid (s->image);
  if (s->parent == '0')
    v->parent = g_strdup (OVA_BLANK_UUID);
  else if (s->parent != 0)
    v->parent = vol_uuid (s->parent);
  v->path = g_strdup_printf ("/rhev/images/%s/%s", v->image, v->uuid);

  if (s->md == MD_NONE)
    return v;
  v->md = g_new0 (stor_volmeta, 1);
  if (s->md == MD_CLEARED) {
    v->md->cleared = TRUE;
    return v;
  }
  v->md->domain = g_strdup (DOM_UUID);
  v->md->image = g_strdup (v->image);
  v->md->parent = g_strdup (v->parent ? v->parent : OVA_BLANK_UUID);
  v->md->capacity = 1 << 30;
  v->md->format = v->parent ? STOR_FORMAT_COW : STOR_FORMAT_RAW;
  v->md->voltype = s->voltype;
  v->md->legality = s->legality ? s->legality : STOR_LEGALITY_LEGAL;
  v->md->type = g_strdup ("SPARSE");
  v->md->disktype = g_strdup ("DATA");
  v->md->description = g_strdup ("");
  return v;
}

static stor_domain *
make_domain (const vol_spec *vols, size_t n)
{
  stor_domain *d = stor_domain_new (DOM_UUID, STOR_KIND_FILE);

  for (size_t i = 0; i < n && vols[i].name != 0; i++)
    g_assert_true (stor_domain_add_volume (d, make_volume (&vols[i])));
  return d;
}

static char *
volumes_as_letters (const stor_image *img)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < img->volumes->len; i++) {
    const stor_volume *v = g_ptr_array_index (img->volumes, i);

    g_string_append_c (s, (char) g_ascii_strtoull (v->uuid, NULL, 16));
  }
  return g_string_free (s, FALSE);
}

static gint
compare_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static char *
problem_codes (const GPtrArray *problems)
{
  g_autoptr (GPtrArray) codes = g_ptr_array_new ();
  g_autoptr (GPtrArray) uniq = g_ptr_array_new ();

  for (guint i = 0; i < problems->len; i++)
    g_ptr_array_add (codes, ((stor_problem *) g_ptr_array_index (problems, i))->code);
  g_ptr_array_sort (codes, compare_str);
  for (guint i = 0; i < codes->len; i++)
    if (uniq->len == 0 ||
        strcmp (g_ptr_array_index (uniq, uniq->len - 1), g_ptr_array_index (codes, i)) != 0)
      g_ptr_array_add (uniq, g_ptr_array_index (codes, i));
  g_ptr_array_add (uniq, NULL);
  return g_strjoinv (" ", (char **) uniq->pdata);
}

/* Every message is a sentence about its image. */
static void
check_messages (const stor_image *img)
{
  g_autofree char *prefix = g_strdup_printf ("image %s: ", img->uuid);

  for (guint i = 0; i < img->problems->len; i++) {
    const stor_problem *p = g_ptr_array_index (img->problems, i);

    g_assert_true (g_str_has_prefix (p->message, prefix));
    g_assert_true (g_str_has_suffix (p->message, "."));
  }
}

static void
check_mentions (const stor_image *img, const char *code, const char *mentions)
{
  g_auto (GStrv) names = g_strsplit (mentions, " ", -1);
  const stor_problem *found = NULL;

  for (guint i = 0; i < img->problems->len && found == NULL; i++) {
    const stor_problem *p = g_ptr_array_index (img->problems, i);

    if (strcmp (p->code, code) == 0)
      found = p;
  }
  g_assert_nonnull (found);
  for (char **n = names; *n != NULL; n++) {
    g_autofree char *uuid = g_ascii_isupper (**n) ? img_uuid (**n) : vol_uuid (**n);

    if (strstr (found->message, uuid) == NULL)
      g_error ("'%s' does not name %s", found->message, uuid);
  }
}

static void
test_case (gconstpointer data)
{
  const chain_case *tc = data;
  g_autoptr (stor_domain) d = make_domain (tc->vols, MAX_VOLS);
  g_autofree char *uuid = img_uuid (tc->image);
  g_autofree char *order = NULL;
  g_autofree char *codes = NULL;
  stor_image *img;

  stor_domain_build_images (d);
  img = stor_domain_find_image (d, uuid);
  g_assert_nonnull (img);

  order = volumes_as_letters (img);
  g_assert_cmpstr (order, ==, tc->order);
  codes = problem_codes (img->problems);
  g_assert_cmpstr (codes, ==, tc->codes);
  check_messages (img);
  if (tc->mention_code)
    check_mentions (img, tc->mention_code, tc->mentions);
  if (g_test_verbose ())
    for (guint i = 0; i < img->problems->len; i++)
      g_test_message ("%s", ((stor_problem *) g_ptr_array_index (img->problems, i))->message);
}

/* Deep enough to overflow a recursive walk; order must still be exact. */
#define LONG_CHAIN 2000

static char *
long_uuid (guint i)
{
  return g_strdup_printf ("%08x-4444-4444-8444-444444444444", i);
}

static void
test_long_chain (void)
{
  g_autoptr (stor_domain) d = stor_domain_new (DOM_UUID, STOR_KIND_BLOCK);
  g_autofree char *image = img_uuid ('L');
  stor_image *img;

  /* Added top first, so that neither hash nor insertion order helps. */
  for (guint i = LONG_CHAIN; i-- > 0;) {
    g_autofree char *uuid = long_uuid (i);
    stor_volume *v = stor_volume_new (uuid);

    v->image = g_strdup (image);
    v->parent = i > 0 ? long_uuid (i - 1) : NULL;
    v->md = g_new0 (stor_volmeta, 1);
    v->md->voltype = i + 1 == LONG_CHAIN ? STOR_VOLTYPE_LEAF : STOR_VOLTYPE_INTERNAL;
    v->md->legality = STOR_LEGALITY_LEGAL;
    g_assert_true (stor_domain_add_volume (d, v));
  }
  stor_domain_build_images (d);
  g_assert_cmpuint (d->images->len, ==, 1);
  img = g_ptr_array_index (d->images, 0);
  g_assert_cmpuint (img->problems->len, ==, 0);
  g_assert_cmpuint (img->volumes->len, ==, LONG_CHAIN);
  for (guint i = 0; i < LONG_CHAIN; i++) {
    g_autofree char *uuid = long_uuid (i);

    g_assert_cmpstr (((stor_volume *) g_ptr_array_index (img->volumes, i))->uuid, ==, uuid);
  }
}

/* A loop through thousands of volumes: one problem, bounded message. */
static void
test_long_loop (void)
{
  g_autoptr (stor_domain) d = stor_domain_new (DOM_UUID, STOR_KIND_BLOCK);
  g_autofree char *image = img_uuid ('L');
  stor_image *img;

  for (guint i = 0; i < LONG_CHAIN; i++) {
    g_autofree char *uuid = long_uuid (i);
    stor_volume *v = stor_volume_new (uuid);

    v->image = g_strdup (image);
    v->parent = long_uuid ((i + 1) % LONG_CHAIN);
    g_assert_true (stor_domain_add_volume (d, v));
  }
  stor_domain_build_images (d);
  img = g_ptr_array_index (d->images, 0);
  g_assert_cmpuint (img->volumes->len, ==, LONG_CHAIN);
  for (guint i = 0; i < img->problems->len; i++) {
    const stor_problem *p = g_ptr_array_index (img->problems, i);

    g_assert_cmpuint (strlen (p->message), <, 1024);
  }
  /* invalid-metadata for each volume, one loop, no base. */
  g_assert_cmpuint (img->problems->len, ==, LONG_CHAIN + 2);
}

static void
test_remove_me (void)
{
  static const vol_spec vols[] = {
    { 'a', 'I', 0, LEAF },
    { 'b', 'J', 0, INTERNAL },
    { 'c', 'J', 'b', LEAF },
    { 'd', 'K', 0, LEAF },
    { 'e', 'K', 0, LEAF },
  };
  g_autoptr (stor_domain) d = make_domain (vols, G_N_ELEMENTS (vols));
  g_autofree char *i_uuid = img_uuid ('I');
  g_autofree char *j_uuid = img_uuid ('J');
  g_autofree char *k_uuid = img_uuid ('K');
  g_autofree char *d_uuid = vol_uuid ('d');
  g_autofree char *e_uuid = vol_uuid ('e');
  stor_volume *v;

  /* K was deleted: a file domain renames the directory, a block domain
   * rewrites the IU_ tag; a zeroed one gets the longer prefix. */
  v = g_hash_table_lookup (d->volumes, d_uuid);
  g_free (v->image);
  v->image = g_strconcat ("_remove_me_", k_uuid, NULL);
  v = g_hash_table_lookup (d->volumes, e_uuid);
  g_free (v->image);
  v->image = g_strconcat ("_remove_me_ZERO_", k_uuid, NULL);

  stor_domain_build_images (d);
  g_assert_cmpuint (d->images->len, ==, 2);
  g_assert_cmpstr (((stor_image *) g_ptr_array_index (d->images, 0))->uuid, ==, i_uuid);
  g_assert_cmpstr (((stor_image *) g_ptr_array_index (d->images, 1))->uuid, ==, j_uuid);
  g_assert_null (stor_domain_find_image (d, k_uuid));
  g_assert_null (stor_domain_find_image (d, v->image));
  g_assert_cmpuint (stor_domain_find_image (d, j_uuid)->volumes->len, ==, 2);

  /* Building again starts over. */
  stor_domain_build_images (d);
  g_assert_cmpuint (d->images->len, ==, 2);
  g_assert_cmpuint (stor_domain_find_image (d, j_uuid)->problems->len, ==, 0);
}

static void
test_images_sorted (void)
{
  static const vol_spec vols[] = {
    { 'a', 'Z', 0, LEAF },
    { 'b', 'B', 0, LEAF },
    { 'c', 'M', 0, LEAF },
    { 'd', 'A', 0, LEAF },
  };
  g_autoptr (stor_domain) d = make_domain (vols, G_N_ELEMENTS (vols));

  stor_domain_build_images (d);
  g_assert_cmpuint (d->images->len, ==, 4);
  for (guint i = 1; i < d->images->len; i++)
    g_assert_cmpint (strcmp (((stor_image *) g_ptr_array_index (d->images, i - 1))->uuid,
                             ((stor_image *) g_ptr_array_index (d->images, i))->uuid), <, 0);
}

static void
test_add_duplicate (void)
{
  static const vol_spec tmpl = { 't', 'T', 0, SHARED };
  g_autoptr (stor_domain) d = stor_domain_new (DOM_UUID, STOR_KIND_FILE);
  stor_volume *first = make_volume (&tmpl);
  stor_volume *second = make_volume (&tmpl);

  g_assert_true (stor_domain_add_volume (d, first));
  /* The same template seen in a second image directory. */
  g_free (second->path);
  second->path = g_strdup ("/elsewhere");
  g_assert_false (stor_domain_add_volume (d, second));
  g_assert_cmpuint (g_hash_table_size (d->volumes), ==, 1);
  g_assert_true (g_hash_table_lookup (d->volumes, first->uuid) == first);
  g_assert_false (stor_domain_add_volume (d, NULL));
}

static void
test_problem_new (void)
{
  g_autoptr (stor_problem) p = stor_problem_new ("checksum", "%s: %d of %u", "x", -1, 2u);

  g_assert_cmpstr (p->code, ==, "checksum");
  g_assert_cmpstr (p->message, ==, "x: -1 of 2");
}

static void
test_defaults (void)
{
  g_autoptr (stor_domain) d = stor_domain_new (DOM_UUID, STOR_KIND_BLOCK);
  g_autoptr (stor_volume) v = stor_volume_new ("v");
  g_autoptr (stor_image) img = stor_image_new ("i");

  g_assert_cmpstr (d->uuid, ==, DOM_UUID);
  g_assert_cmpint (d->kind, ==, STOR_KIND_BLOCK);
  g_assert_cmpint (d->version, ==, -1);
  g_assert_cmpstr (d->storage, ==, "unknown");
  g_assert_cmpuint (d->images->len, ==, 0);
  g_assert_cmpint (v->slot, ==, -1);
  g_assert_cmpuint (v->problems->len, ==, 0);
  g_assert_cmpuint (img->volumes->len, ==, 0);
  g_assert_null (stor_domain_find_image (d, "i"));
  g_assert_null (stor_domain_find_image (d, NULL));

  /* An image without members: nothing to order, nothing to report. */
  stor_chain_build (d, img, NULL);
  g_assert_cmpuint (img->volumes->len, ==, 0);
  g_assert_cmpuint (img->problems->len, ==, 0);
}

static void
test_storage_from_type (void)
{
  static const struct {
    const char *type;
    const char *storage;
  } types[] = {
    { "NFS", "nfs" },
    { "GLUSTERFS", "glusterfs" },
    { "POSIXFS", "posix" },
    { "LOCALFS", "localfs" },
    { "ISCSI", "iscsi" },
    { "FCP", "fcp" },
    { "nfs", "nfs" },
    { "CIFS", "unknown" },
    { "", "unknown" },
    { "NFSX", "unknown" },
    { "NF", "unknown" },
    { NULL, "unknown" },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (types); i++)
    g_assert_cmpstr (stor_storage_from_type (types[i].type), ==, types[i].storage);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *path = g_strdup_printf ("/chain/%s", cases[i].name);

    g_test_add_data_func (path, &cases[i], test_case);
  }
  g_test_add_func ("/chain/long-chain", test_long_chain);
  g_test_add_func ("/chain/long-loop", test_long_loop);
  g_test_add_func ("/model/remove-me", test_remove_me);
  g_test_add_func ("/model/images-sorted", test_images_sorted);
  g_test_add_func ("/model/add-duplicate", test_add_duplicate);
  g_test_add_func ("/model/problem-new", test_problem_new);
  g_test_add_func ("/model/defaults", test_defaults);
  g_test_add_func ("/model/storage-from-type", test_storage_from_type);
  return g_test_run ();
}
