/* ovagent: the one parser of a libvirt domain's XML (GMarkup): every <disk>
 * under <devices> and the domain's DAC label; nothing here talks to libvirt. */
#include <config.h>

#include <limits.h>
#include <string.h>

#include "domain-xml.h"
#include "error.h"
#include "qemu-img.h"
#include "virt-priv.h"

/* The longest <serial> kept: a longer one is no image UUID. */
#define SERIAL_MAX 256

/* A disk being read, with what only the parse needs. */
typedef struct parse_disk {
  virt_xml_disk *disk;
  GPtrArray *chain;     /* stor_layer*: each <backingStore type=…>, outermost
                         * first; path or format NULL where not given */
  gboolean chain_bad;   /* a <backingStore> that is not a local file or device */
} parse_disk;

typedef struct parse_ctx {
  GPtrArray *stack;     /* char*: names of the open elements */
  parse_disk *cur;      /* the <disk> being read, if any */
  virt_domain_xml *out;
  gboolean in_dac;      /* inside <seclabel model='dac'> of the domain */
} parse_ctx;

static void
xml_disk_free (virt_xml_disk *d)
{
  if (d == NULL)
    return;
  g_free (d->type);
  g_free (d->device);
  g_free (d->target);
  g_free (d->path);
  g_free (d->format);
  g_free (d->serial);
  if (d->layers)
    g_ptr_array_unref (d->layers);
  g_ptr_array_unref (d->writes);
  g_ptr_array_unref (d->backing);
  g_free (d);
}

static void
parse_disk_free (parse_disk *p)
{
  if (p == NULL)
    return;
  xml_disk_free (p->disk);
  if (p->chain)
    g_ptr_array_unref (p->chain);
  g_free (p);
}

void
virt_domain_xml_free (virt_domain_xml *x)
{
  if (x == NULL)
    return;
  g_ptr_array_unref (x->disks);
  g_free (x->dac_label);
  g_free (x);
}

/* A local path from <source file=…> or <source dev=…>, else NULL. */
static const char *
source_path (const char **names, const char **values)
{
  const char *p = virt_xml_attr (names, values, "file");

  if (p == NULL)
    p = virt_xml_attr (names, values, "dev");
  return p && p[0] == '/' && strlen (p) < PATH_MAX ? p : NULL;
}

static void
add_path (GPtrArray *paths, const char **names, const char **values)
{
  const char *p = source_path (names, values);

  if (p)
    g_ptr_array_add (paths, g_strdup (p));
}

/* <backingStore> elements nest, one per layer under the disk's image: the
 * one at depth d (the disk's own at 3) is layer d - 3 of p->chain, and
 * its <format> and <source> sit at depth d + 1. An empty <backingStore/>
 * (no type) ends the chain. Returns TRUE if the element was one of these. */
static gboolean
backing_start (parse_ctx *ctx, guint depth, const char *name, const char **names,
               const char **values)
{
  parse_disk *p = ctx->cur;
  const char *parent = virt_xml_stack_at (ctx->stack, depth - 1);
  stor_layer *l;

  if (strcmp (name, "backingStore") == 0 &&
      (depth == 3 || strcmp (parent, "backingStore") == 0)) {
    const char *type = virt_xml_attr (names, values, "type");

    if (p->chain == NULL)
      p->chain = g_ptr_array_new_with_free_func ((GDestroyNotify) stor_layer_free);
    if (type == NULL)
      return TRUE;
    if (depth - 3 != p->chain->len ||
        (strcmp (type, "file") != 0 && strcmp (type, "block") != 0))
      p->chain_bad = TRUE;
    g_ptr_array_add (p->chain, stor_layer_new (NULL, NULL));
    return TRUE;
  }
  if (depth < 4 || strcmp (parent, "backingStore") != 0 || p->chain == NULL)
    return FALSE;
  if (depth - 4 < p->chain->len) {
    l = g_ptr_array_index (p->chain, depth - 4);
    if (strcmp (name, "format") == 0 && l->format == NULL)
      l->format = g_strdup (virt_xml_attr (names, values, "type"));
    else if (strcmp (name, "source") == 0 && l->path == NULL)
      l->path = g_strdup (source_path (names, values));
  }
  return TRUE;
}

/* The disk's image and its backing chain, when libvirt gave all of it. */
static GPtrArray *
disk_layers (const parse_disk *p)
{
  g_autoptr (GPtrArray) layers = stor_layers_new ();
  const virt_xml_disk *d = p->disk;

  if (p->chain == NULL || p->chain_bad || d->path == NULL)
    return NULL;
  stor_layers_add (layers, d->path, d->format);
  for (guint i = 0; i < p->chain->len; i++) {
    const stor_layer *l = g_ptr_array_index (p->chain, i);

    stor_layers_add (layers, l->path, l->format);
  }
  for (guint i = 0; i < layers->len; i++) {
    const stor_layer *l = g_ptr_array_index (layers, i);

    if (l->path == NULL || l->format == NULL ||
        !(strcmp (l->format, "qcow2") == 0 ||
          (strcmp (l->format, "raw") == 0 && i + 1 == layers->len)))
      return NULL;
  }
  return g_steal_pointer (&layers);
}

/* What the guest writes and what it only reads below. */
static void
usage_start (virt_xml_disk *d, guint depth, const char *name, const char *parent,
             const char **names, const char **values)
{
  if (depth == 3) {
    /* The older form of a block copy: <mirror file=…>. */
    if (strcmp (name, "source") == 0 || strcmp (name, "mirror") == 0)
      add_path (d->writes, names, values);
  }
  else if (strcmp (name, "source") == 0) {
    /* A block copy writes its destination while the guest runs. */
    if (strcmp (parent, "mirror") == 0 && depth == 4)
      add_path (d->writes, names, values);
    else if (strcmp (parent, "backingStore") == 0)
      add_path (d->backing, names, values);
  }
}

static void
disk_start (parse_ctx *ctx, guint depth, const char *name, const char **names,
            const char **values)
{
  virt_xml_disk *d = ctx->cur->disk;

  usage_start (d, depth, name, virt_xml_stack_at (ctx->stack, depth - 1), names, values);
  if (backing_start (ctx, depth, name, names, values) || depth != 3)
    return;
  if (strcmp (name, "source") == 0 && d->path == NULL)
    d->path = g_strdup (source_path (names, values));
  else if (strcmp (name, "driver") == 0 && d->format == NULL)
    d->format = g_strdup (virt_xml_attr (names, values, "type"));
  else if (strcmp (name, "target") == 0 && d->target == NULL)
    d->target = g_strdup (virt_xml_attr (names, values, "dev"));
  else if (strcmp (name, "readonly") == 0)
    d->readonly = TRUE;
  else if (strcmp (name, "shareable") == 0)
    d->shareable = TRUE;
  else if (strcmp (name, "transient") == 0)
    d->transient = TRUE;
}

static void
on_start (GMarkupParseContext *pc, const char *name, const char **names,
          const char **values, gpointer data, GError **error)
{
  parse_ctx *ctx = data;
  guint depth = ctx->stack->len;

  g_ptr_array_add (ctx->stack, g_strdup (name));
  if (depth == 1 && strcmp (name, "seclabel") == 0 &&
      g_strcmp0 (virt_xml_attr (names, values, "model"), "dac") == 0) {
    ctx->in_dac = TRUE;
    return;
  }
  if (depth == 2 && strcmp (name, "disk") == 0 &&
      strcmp (virt_xml_stack_at (ctx->stack, 0), "domain") == 0 &&
      strcmp (virt_xml_stack_at (ctx->stack, 1), "devices") == 0) {
    virt_xml_disk *d = g_new0 (virt_xml_disk, 1);

    d->type = g_strdup (virt_xml_attr (names, values, "type"));
    d->device = g_strdup (virt_xml_attr (names, values, "device"));
    d->writes = g_ptr_array_new_with_free_func (g_free);
    d->backing = g_ptr_array_new_with_free_func (g_free);
    ctx->cur = g_new0 (parse_disk, 1);
    ctx->cur->disk = d;
    return;
  }
  if (ctx->cur != NULL && depth >= 3)
    disk_start (ctx, depth, name, names, values);
}

static void
on_end (GMarkupParseContext *pc, const char *name, gpointer data, GError **error)
{
  parse_ctx *ctx = data;

  g_ptr_array_remove_index (ctx->stack, ctx->stack->len - 1);
  if (ctx->stack->len == 1 && strcmp (name, "seclabel") == 0)
    ctx->in_dac = FALSE;
  if (ctx->cur && ctx->stack->len == 2 && strcmp (name, "disk") == 0) {
    virt_xml_disk *d = ctx->cur->disk;

    if (d->serial && *g_strstrip (d->serial) == '\0')
      g_clear_pointer (&d->serial, g_free);
    d->layers = disk_layers (ctx->cur);
    g_ptr_array_add (ctx->out->disks, g_steal_pointer (&ctx->cur->disk));
    g_clear_pointer (&ctx->cur, parse_disk_free);
  }
}

static void
on_text (GMarkupParseContext *pc, const char *text, gsize len, gpointer data,
         GError **error)
{
  parse_ctx *ctx = data;

  if (ctx->in_dac && ctx->stack->len == 3 && ctx->out->dac_label == NULL &&
      strcmp (virt_xml_stack_at (ctx->stack, 2), "label") == 0 && len < 256)
    ctx->out->dac_label = g_strstrip (g_strndup (text, len));
  else if (ctx->cur && ctx->stack->len == 4 &&
           strcmp (virt_xml_stack_at (ctx->stack, 3), "serial") == 0) {
    /* Text may come in pieces; a serial this long is no UUID anyway. */
    virt_xml_disk *d = ctx->cur->disk;

    if ((d->serial ? strlen (d->serial) : 0) + len <= SERIAL_MAX) {
      g_autofree char *more = g_strndup (text, len);
      char *joined = g_strconcat (d->serial ? d->serial : "", more, NULL);

      g_free (d->serial);
      d->serial = joined;
    }
  }
}

static const GMarkupParser domain_parser = {
  .start_element = on_start,
  .end_element = on_end,
  .text = on_text,
};

virt_domain_xml *
virt_domain_xml_parse (const char *xml, gssize len, GError **error)
{
  g_autoptr (virt_domain_xml) out = g_new0 (virt_domain_xml, 1);
  parse_ctx ctx = { 0 };
  GMarkupParseContext *pc;
  g_autoptr (GError) perr = NULL;
  gsize n = len < 0 ? strlen (xml) : (gsize) len;
  gboolean ok;

  out->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) xml_disk_free);
  if (n > VIRT_LIBVIRT_XML_MAX) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "too large");
    return NULL;
  }
  ctx.stack = g_ptr_array_new_with_free_func (g_free);
  ctx.out = out;
  pc = g_markup_parse_context_new (&domain_parser, 0, &ctx, NULL);
  ok = g_markup_parse_context_parse (pc, xml, n, &perr) &&
       g_markup_parse_context_end_parse (pc, &perr);
  g_markup_parse_context_free (pc);
  g_ptr_array_unref (ctx.stack);
  parse_disk_free (ctx.cur);
  if (!ok) {
    /* GMarkup quotes the offending bytes, which need not be UTF-8. */
    g_autofree char *why = g_utf8_make_valid (perr->message, -1);

    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "%s", why);
    return NULL;
  }
  return g_steal_pointer (&out);
}

char *
virt_xml_disk_unsupported (const virt_xml_disk *d)
{
  if (d->target == NULL)
    return g_strdup ("disk without a target device");
  if (g_strcmp0 (d->device, "lun") == 0)
    return g_strdup ("LUN passthrough disk");
  if (d->device && strcmp (d->device, "disk") != 0)
    return g_strdup_printf ("%s device", d->device);
  if (g_strcmp0 (d->type, "network") == 0)
    return g_strdup ("network disk");
  if (d->type == NULL || (strcmp (d->type, "file") != 0 && strcmp (d->type, "block") != 0))
    return g_strdup_printf ("%s disk", d->type ? d->type : "untyped");
  if (d->path == NULL)
    return g_strdup ("disk without a local source");
  if (d->readonly)
    return g_strdup ("read-only disk");
  if (d->shareable)
    return g_strdup ("shareable disk");
  if (d->transient)
    return g_strdup ("transient disk");
  return NULL;
}
