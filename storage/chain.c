/* ovagent: grouping a domain's volumes into images and ordering each image's
 * volumes base -> top from their parent links, every inconsistency reported. */
#include <config.h>

#include <string.h>

#include "chain.h"
#include "util.h"

/* Parent links come from untrusted metadata and LV tags: everything below
 * is iterative and linear in the number of volumes, so cycles and chains of
 * thousands of volumes cost nothing special.
 *
 * The rules follow `vdsm-tool dump-volume-chains`: a template parent living
 * in another image is added as the base of the chain, the volumes are
 * linked (parent, child) and walked from the blank parent, and duplicate
 * parents, a missing base, loops and unreachable volumes are errors.
 *
 * A parent that is in another image but is not a template is reported as
 * "unknown-parent" (naming that image) and is not followed: a disk's chain
 * never borrows another disk's volumes, whatever `Image.getChain` would
 * walk into. A template's own parent is not followed either: oVirt
 * templates are single collapsed volumes. */

/* Names listed in one message; the rest are counted. */
#define MAX_NAMES 8
/* Problems of one kind on one image, before a summary replaces the rest. */
#define MAX_PROBLEMS 8

/* VDSM renames a deleted image (file) or rewrites its IU_ tag (block) with
 * this prefix, "_remove_me_ZERO_" included; such remnants are no disks. */
#define REMOVED_IMAGE_PREFIX "_remove_me_"

#define PARENT_BASE     (-1)  /* blank parent, or a template's */
#define PARENT_DANGLING (-2)  /* parent unknown or not usable */

enum {
  STATE_NEW,
  STATE_ON_PATH,
  STATE_DONE,
};

enum {
  REACHES_BASE,   /* ancestry ends at a blank parent */
  IN_LOOP,        /* part of a cycle of parent links */
  DANGLING,       /* ancestry ends at an unknown parent or a loop */
};

typedef struct {
  stor_volume *vol;
  gint parent;            /* node index, PARENT_BASE or PARENT_DANGLING */
  gint first_child;       /* node index or -1 */
  guint state;
  guint reach;
  guint path_pos;
} chain_node;

typedef struct {
  const stor_domain *d;
  stor_image *img;
  GArray *nodes;          /* chain_node: members in UUID order, then the
                           * templates they lead to, from other images */
  guint n_members;
  GHashTable *index;      /* uuid -> node index + 1 */
} chain_ctx;

static chain_node *
node_at (chain_ctx *c, gint i)
{
  return &g_array_index (c->nodes, chain_node, i);
}

static gint
node_find (chain_ctx *c, const char *uuid)
{
  gpointer p = g_hash_table_lookup (c->index, uuid);

  return p ? GPOINTER_TO_INT (p) - 1 : -1;
}

static gint
node_add (chain_ctx *c, stor_volume *v)
{
  chain_node n = {
    .vol = v,
    .parent = PARENT_DANGLING,
    .first_child = -1,
  };
  gint i = c->nodes->len;

  g_array_append_val (c->nodes, n);
  g_hash_table_insert (c->index, v->uuid, GINT_TO_POINTER (i + 1));
  return i;
}

static void
add_problem (chain_ctx *c, stor_problem *p)
{
  g_ptr_array_add (c->img->problems, p);
}

/* "a", "a and b", "a, b and c", "a, b, ... h and 12 more". */
static char *
format_names (const char *const *names, guint n)
{
  GString *s = g_string_new (NULL);
  guint shown = MIN (n, MAX_NAMES);

  for (guint i = 0; i < shown; i++) {
    if (i > 0)
      g_string_append (s, i + 1 == shown && shown == n ? " and " : ", ");
    g_string_append (s, names[i]);
  }
  if (shown < n)
    g_string_append_printf (s, " and %u more", n - shown);
  return g_string_free (s, FALSE);
}

/* Names of the nodes in idx (node indexes). */
static char *
format_nodes (chain_ctx *c, GArray *idx)
{
  g_autofree const char **names = g_new0 (const char *, MIN (idx->len, MAX_NAMES) + 1);
  guint shown = MIN (idx->len, MAX_NAMES);

  for (guint i = 0; i < shown; i++)
    names[i] = node_at (c, g_array_index (idx, gint, i))->vol->uuid;
  /* format_names only reads the first MAX_NAMES entries. */
  return format_names (names, idx->len);
}

static const char *
both_or_all (guint n)
{
  return n == 2 ? "both" : "all";
}

static gboolean
is_blank_parent (const char *parent)
{
  return parent == NULL || *parent == '\0' || ova_uuid_is_blank (parent);
}

static gboolean
is_template (const stor_volume *v)
{
  return v->md != NULL && !v->md->cleared && v->md->voltype == STOR_VOLTYPE_SHARED;
}

static void
check_records (chain_ctx *c)
{
  const char *img = c->img->uuid;

  for (guint i = 0; i < c->n_members; i++) {
    const stor_volume *v = node_at (c, i)->vol;

    if (v->md == NULL)
      add_problem (c, stor_problem_new (STOR_CHAIN_INVALID_METADATA,
                                        "image %s: volume %s has no valid metadata record.",
                                        img, v->uuid));
    else if (v->md->cleared)
      add_problem (c, stor_problem_new (STOR_CHAIN_PARTLY_DELETED,
                                        "image %s: the metadata record of volume %s is cleared; "
                                        "the volume was being deleted.",
                                        img, v->uuid));
    else if (v->md->legality == STOR_LEGALITY_ILLEGAL)
      add_problem (c, stor_problem_new (STOR_CHAIN_ILLEGAL,
                                        "image %s: volume %s is ILLEGAL (an operation on it "
                                        "did not complete).",
                                        img, v->uuid));
  }
}

/* Link each member to its parent node, adding template parents. */
static void
resolve_parents (chain_ctx *c)
{
  const char *img = c->img->uuid;

  for (guint i = 0; i < c->n_members; i++) {
    stor_volume *v = node_at (c, i)->vol;
    stor_volume *pv;
    gint p;

    if (is_blank_parent (v->parent)) {
      node_at (c, i)->parent = PARENT_BASE;
      continue;
    }
    p = node_find (c, v->parent);
    if (p >= 0) {
      node_at (c, i)->parent = p;
      continue;
    }

    pv = c->d ? g_hash_table_lookup (c->d->volumes, v->parent) : NULL;
    if (pv != NULL && is_template (pv)) {
      p = node_add (c, pv);
      node_at (c, p)->parent = PARENT_BASE;
      node_at (c, i)->parent = p;
    }
    else if (pv != NULL) {
      add_problem (c, stor_problem_new (STOR_CHAIN_UNKNOWN_PARENT,
                                        "image %s: volume %s has parent %s of image %s, "
                                        "which is not a template (SHARED) volume.",
                                        img, v->uuid, v->parent,
                                        pv->image ? pv->image : "(unknown)"));
    }
    else {
      add_problem (c, stor_problem_new (STOR_CHAIN_UNKNOWN_PARENT,
                                        "image %s: volume %s has parent %s, which is in "
                                        "no image of domain %s.",
                                        img, v->uuid, v->parent,
                                        c->d && c->d->uuid ? c->d->uuid : "(unknown)"));
    }
  }
}

/* Record first children; report every parent claimed by several nodes.
 * Returns TRUE if there was any. */
static gboolean
link_children (chain_ctx *c, gint *base)
{
  const char *img = c->img->uuid;
  g_autoptr (GHashTable) extra = NULL;  /* parent key -> GArray of node indexes */
  g_autoptr (GArray) order = g_array_new (FALSE, FALSE, sizeof (gint));
  guint reported = 0;

  *base = -1;
  extra = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                 (GDestroyNotify) g_array_unref);
  for (guint i = 0; i < c->nodes->len; i++) {
    gint parent = node_at (c, i)->parent;
    gint *first;
    GArray *children;
    gint key;

    if (parent == PARENT_DANGLING)
      continue;
    first = parent == PARENT_BASE ? base : &node_at (c, parent)->first_child;
    if (*first < 0) {
      *first = i;
      continue;
    }
    /* Keys shifted so that PARENT_BASE is not the NULL pointer. */
    key = parent + 2;
    children = g_hash_table_lookup (extra, GINT_TO_POINTER (key));
    if (children == NULL) {
      children = g_array_new (FALSE, FALSE, sizeof (gint));
      g_array_append_val (children, *first);
      g_hash_table_insert (extra, GINT_TO_POINTER (key), children);
      g_array_append_val (order, key);
    }
    g_array_append_val (children, i);
  }

  for (guint k = 0; k < order->len; k++) {
    gint key = g_array_index (order, gint, k);
    GArray *children = g_hash_table_lookup (extra, GINT_TO_POINTER (key));
    gint parent = key - 2;
    g_autofree char *names = NULL;

    if (reported == MAX_PROBLEMS) {
      add_problem (c, stor_problem_new (STOR_CHAIN_DUPLICATE_PARENT,
                                        "image %s: %u more parents have several children.",
                                        img, order->len - k));
      break;
    }
    reported++;
    names = format_nodes (c, children);
    if (parent == PARENT_BASE)
      add_problem (c, stor_problem_new (STOR_CHAIN_DUPLICATE_PARENT,
                                        "image %s: volumes %s are %s base volumes "
                                        "(blank parent or template parent).",
                                        img, names, both_or_all (children->len)));
    else
      add_problem (c, stor_problem_new (STOR_CHAIN_DUPLICATE_PARENT,
                                        "image %s: volumes %s %s have parent %s.",
                                        img, names, both_or_all (children->len),
                                        node_at (c, parent)->vol->uuid));
  }
  return order->len > 0;
}

/* Classify every node by where its parent links lead, one walk per node
 * at most; report each cycle. Returns the number of loops. */
static guint
find_loops (chain_ctx *c)
{
  const char *img = c->img->uuid;
  g_autoptr (GArray) path = g_array_new (FALSE, FALSE, sizeof (gint));
  guint loops = 0;

  for (guint start = 0; start < c->nodes->len; start++) {
    guint outcome;
    gint cur = start;

    if (node_at (c, start)->state != STATE_NEW)
      continue;
    g_array_set_size (path, 0);

    for (;;) {
      chain_node *n = node_at (c, cur);

      n->state = STATE_ON_PATH;
      n->path_pos = path->len;
      g_array_append_val (path, cur);

      if (n->parent == PARENT_BASE) {
        outcome = REACHES_BASE;
        break;
      }
      if (n->parent == PARENT_DANGLING) {
        outcome = DANGLING;
        break;
      }
      cur = n->parent;
      if (node_at (c, cur)->state == STATE_DONE) {
        outcome = node_at (c, cur)->reach == REACHES_BASE ? REACHES_BASE : DANGLING;
        break;
      }
      if (node_at (c, cur)->state == STATE_ON_PATH) {
        /* The cycle is the tail of the path from cur's position. */
        guint from = node_at (c, cur)->path_pos;
        g_autoptr (GArray) cycle = g_array_new (FALSE, FALSE, sizeof (gint));

        for (guint k = from; k < path->len; k++) {
          gint m = g_array_index (path, gint, k);

          node_at (c, m)->state = STATE_DONE;
          node_at (c, m)->reach = IN_LOOP;
          g_array_append_val (cycle, m);
        }
        g_array_set_size (path, from);
        loops++;
        if (loops <= MAX_PROBLEMS) {
          g_autofree char *names = format_nodes (c, cycle);

          if (cycle->len == 1)
            add_problem (c, stor_problem_new (STOR_CHAIN_LOOP,
                                              "image %s: volume %s is its own parent.",
                                              img, names));
          else
            add_problem (c, stor_problem_new (STOR_CHAIN_LOOP,
                                              "image %s: the parent links of volumes %s "
                                              "form a loop (each one's parent is the "
                                              "next one).",
                                              img, names));
        }
        outcome = DANGLING;
        break;
      }
    }

    for (guint k = 0; k < path->len; k++) {
      chain_node *m = node_at (c, g_array_index (path, gint, k));

      m->state = STATE_DONE;
      m->reach = outcome;
    }
  }
  if (loops > MAX_PROBLEMS)
    add_problem (c, stor_problem_new (STOR_CHAIN_LOOP,
                                      "image %s: %u more loops of parent links.",
                                      img, loops - MAX_PROBLEMS));
  return loops;
}

/* Members whose parent links do not lead to a base: hanging off an unknown
 * parent or off a loop. Returns how many. */
static guint
find_orphans (chain_ctx *c, gboolean report)
{
  g_autoptr (GArray) orphans = g_array_new (FALSE, FALSE, sizeof (gint));

  for (guint i = 0; i < c->n_members; i++)
    if (node_at (c, i)->reach == DANGLING)
      g_array_append_val (orphans, i);

  if (report && orphans->len > 0) {
    g_autofree char *names = format_nodes (c, orphans);

    add_problem (c, stor_problem_new (STOR_CHAIN_ORPHANS,
                                      "image %s: %s %s %s not reachable from the base "
                                      "of the chain.",
                                      c->img->uuid,
                                      orphans->len == 1 ? "volume" : "volumes", names,
                                      orphans->len == 1 ? "is" : "are"));
  }
  return orphans->len;
}

static void
check_leaves (chain_ctx *c, gboolean ordered)
{
  const char *img = c->img->uuid;
  g_autoptr (GArray) leaves = g_array_new (FALSE, FALSE, sizeof (gint));
  GPtrArray *vols = c->img->volumes;
  g_autofree char *voltype = NULL;
  const stor_volume *top;

  for (guint i = 0; i < c->n_members; i++) {
    const stor_volume *v = node_at (c, i)->vol;

    if (v->md != NULL && !v->md->cleared && v->md->voltype == STOR_VOLTYPE_LEAF)
      g_array_append_val (leaves, i);
  }
  if (leaves->len > 1) {
    g_autofree char *names = format_nodes (c, leaves);

    add_problem (c, stor_problem_new (STOR_CHAIN_TWO_LEAVES,
                                      "image %s: volumes %s are %s LEAF volumes; "
                                      "a chain has one.",
                                      img, names, both_or_all (leaves->len)));
  }

  if (!ordered || vols->len == 0)
    return;
  top = g_ptr_array_index (vols, vols->len - 1);
  /* An unreadable or cleared top is reported already. */
  if (top->md == NULL || top->md->cleared)
    return;
  if (top->md->voltype == STOR_VOLTYPE_LEAF)
    return;
  if (vols->len == 1 && top->md->voltype == STOR_VOLTYPE_SHARED)
    return;
  voltype = g_ascii_strup (stor_voltype_name (top->md->voltype), -1);
  add_problem (c, stor_problem_new (STOR_CHAIN_NO_LEAF,
                                    "image %s: the top volume %s of the chain is not "
                                    "a LEAF volume (VOLTYPE %s).",
                                    img, top->uuid, voltype));
}

static gint
compare_volume_uuid (gconstpointer a, gconstpointer b)
{
  const stor_volume *va = *(stor_volume *const *) a;
  const stor_volume *vb = *(stor_volume *const *) b;

  return strcmp (va->uuid, vb->uuid);
}

void
stor_chain_build (const stor_domain *d, stor_image *img, GPtrArray *members)
{
  g_autoptr (GPtrArray) sorted = g_ptr_array_new ();
  g_autoptr (GHashTable) index = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GArray) nodes = g_array_new (FALSE, TRUE, sizeof (chain_node));
  chain_ctx c = { .d = d, .img = img, .nodes = nodes, .index = index };
  gboolean duplicates, ordered;
  guint loops, orphans, n_base = 0;
  gint base;

  g_ptr_array_set_size (img->volumes, 0);

  for (guint i = 0; members != NULL && i < members->len; i++) {
    stor_volume *v = g_ptr_array_index (members, i);

    if (v != NULL && v->uuid != NULL)
      g_ptr_array_add (sorted, v);
  }
  g_ptr_array_sort (sorted, compare_volume_uuid);
  for (guint i = 0; i < sorted->len; i++) {
    stor_volume *v = g_ptr_array_index (sorted, i);

    if (node_find (&c, v->uuid) < 0)
      node_add (&c, v);
  }
  c.n_members = nodes->len;
  if (c.n_members == 0)
    return;

  check_records (&c);
  resolve_parents (&c);
  duplicates = link_children (&c, &base);
  loops = find_loops (&c);

  for (guint i = 0; i < nodes->len; i++)
    if (node_at (&c, i)->parent == PARENT_BASE)
      n_base++;
  if (n_base == 0)
    add_problem (&c, stor_problem_new (STOR_CHAIN_NO_BASE,
                                       "image %s: no volume is a base: none has a blank "
                                       "parent or a template parent.",
                                       img->uuid));
  /* Without a base every volume is unreachable; "no-base" says it all. */
  orphans = find_orphans (&c, n_base > 0);

  ordered = n_base > 0 && !duplicates && loops == 0 && orphans == 0;
  if (ordered) {
    /* Every node reaches the single base and no parent has two children:
     * the first-child links form one path over all nodes. */
    for (gint i = base; i >= 0 && img->volumes->len < nodes->len;
         i = node_at (&c, i)->first_child)
      g_ptr_array_add (img->volumes, node_at (&c, i)->vol);
    if (img->volumes->len != nodes->len) {
      g_ptr_array_set_size (img->volumes, 0);
      ordered = FALSE;
    }
  }
  if (!ordered) {
    /* Templates first, then the image's own volumes, in UUID order. */
    for (guint i = c.n_members; i < nodes->len; i++)
      g_ptr_array_add (img->volumes, node_at (&c, i)->vol);
    for (guint i = 0; i < c.n_members; i++)
      g_ptr_array_add (img->volumes, node_at (&c, i)->vol);
  }

  check_leaves (&c, ordered);
}

static gint
compare_image_uuid (gconstpointer a, gconstpointer b)
{
  const stor_image *ia = *(stor_image *const *) a;
  const stor_image *ib = *(stor_image *const *) b;

  return strcmp (ia->uuid, ib->uuid);
}

void
stor_domain_build_images (stor_domain *d)
{
  g_autoptr (GHashTable) groups = NULL;  /* image uuid -> GPtrArray of volumes */
  GHashTableIter iter;
  gpointer key, value;

  g_ptr_array_set_size (d->images, 0);
  groups = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                  (GDestroyNotify) g_ptr_array_unref);

  /* A template is grouped under its own image like any volume, so the
   * template image lists it even when no other volume lives there; images
   * made from it reach it through their base's parent (chain.c). */
  g_hash_table_iter_init (&iter, d->volumes);
  while (g_hash_table_iter_next (&iter, &key, &value)) {
    stor_volume *v = value;
    GPtrArray *members;

    /* The scanners always set the image; a volume without one cannot be
     * placed in any chain. */
    if (v->image == NULL || g_str_has_prefix (v->image, REMOVED_IMAGE_PREFIX))
      continue;
    members = g_hash_table_lookup (groups, v->image);
    if (members == NULL) {
      members = g_ptr_array_new ();
      g_hash_table_insert (groups, v->image, members);
    }
    g_ptr_array_add (members, v);
  }

  g_hash_table_iter_init (&iter, groups);
  while (g_hash_table_iter_next (&iter, &key, &value))
    g_ptr_array_add (d->images, stor_image_new (key));
  g_ptr_array_sort (d->images, compare_image_uuid);

  for (guint i = 0; i < d->images->len; i++) {
    stor_image *img = g_ptr_array_index (d->images, i);

    stor_chain_build (d, img, g_hash_table_lookup (groups, img->uuid));
  }
}
