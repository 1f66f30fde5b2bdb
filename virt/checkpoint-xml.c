/* ovagent: the one parser (GMarkup) of a checkpoint's XML, libvirt's dump or
 * the copy saved under the state directory; nothing here talks to libvirt. */
#include <config.h>

#include <string.h>

#include "checkpoint-xml.h"
#include "error.h"
#include "virt-priv.h"

typedef struct parse_ctx {
  virt_checkpoint_doc *doc;
  const char *known_as;
  GPtrArray *stack;           /* char*: names of the open elements */
  GString *text;              /* of the innermost element, capped */
} parse_ctx;

void
virt_checkpoint_disk_free (virt_checkpoint_disk *d)
{
  if (d == NULL)
    return;
  g_free (d->target);
  g_free (d->bitmap);
  g_free (d);
}

void
virt_checkpoint_doc_free (virt_checkpoint_doc *doc)
{
  if (doc == NULL)
    return;
  g_free (doc->name);
  g_free (doc->parent);
  g_ptr_array_unref (doc->disks);
  g_free (doc);
}

static void
on_start (GMarkupParseContext *pc, const char *name, const char **names,
          const char **values, gpointer data, GError **error)
{
  parse_ctx *x = data;
  guint depth = x->stack->len;
  const char *target, *bitmap;
  virt_checkpoint_disk *d;

  g_ptr_array_add (x->stack, g_strdup (name));
  g_string_truncate (x->text, 0);
  if (depth != 2 || strcmp (name, "disk") != 0 ||
      strcmp (virt_xml_stack_at (x->stack, 1), "disks") != 0)
    return;
  target = virt_xml_attr (names, values, "name");
  bitmap = virt_xml_attr (names, values, "bitmap");
  if (target == NULL || strlen (target) > VIRT_CHECKPOINT_NAME_MAX ||
      (bitmap && strlen (bitmap) > VIRT_CHECKPOINT_NAME_MAX))
    return;
  d = g_new0 (virt_checkpoint_disk, 1);
  d->target = g_strdup (target);
  if (g_strcmp0 (virt_xml_attr (names, values, "checkpoint"), "no") != 0)
    d->bitmap = g_strdup (bitmap ? bitmap : x->known_as);
  g_ptr_array_add (x->doc->disks, d);
}

/* The element's text, trimmed, if it can be a checkpoint name. */
static char *
name_text (const parse_ctx *x)
{
  g_autofree char *text = g_strstrip (g_strdup (x->text->str));

  if (*text == '\0' || strlen (text) > VIRT_CHECKPOINT_NAME_MAX)
    return NULL;
  return g_steal_pointer (&text);
}

static void
on_end (GMarkupParseContext *pc, const char *name, gpointer data, GError **error)
{
  parse_ctx *x = data;
  virt_checkpoint_doc *doc = x->doc;
  guint depth = x->stack->len;

  if (depth == 2 && strcmp (name, "name") == 0 && doc->name == NULL)
    doc->name = name_text (x);
  else if (depth == 3 && strcmp (name, "name") == 0 &&
           strcmp (virt_xml_stack_at (x->stack, 1), "parent") == 0 && doc->parent == NULL)
    doc->parent = name_text (x);
  else if (depth == 2 && strcmp (name, "creationTime") == 0) {
    g_autofree char *text = g_strstrip (g_strdup (x->text->str));
    guint64 t;

    if (g_ascii_string_to_unsigned (text, 10, 0, G_MAXINT64, &t, NULL))
      doc->created = (gint64) t;
  }
  g_ptr_array_remove_index (x->stack, depth - 1);
  g_string_truncate (x->text, 0);
}

static void
on_text (GMarkupParseContext *pc, const char *text, gsize len, gpointer data,
         GError **error)
{
  parse_ctx *x = data;

  /* Room for a name and the blanks around it; longer is no name. */
  if (x->text->len + len <= VIRT_CHECKPOINT_NAME_MAX + 64)
    g_string_append_len (x->text, text, len);
}

static const GMarkupParser checkpoint_parser = {
  .start_element = on_start,
  .end_element = on_end,
  .text = on_text,
};

virt_checkpoint_doc *
virt_checkpoint_doc_parse (const char *xml, gssize len, const char *known_as,
                           GError **error)
{
  g_autoptr (virt_checkpoint_doc) doc = g_new0 (virt_checkpoint_doc, 1);
  g_autoptr (GError) perr = NULL;
  parse_ctx x = { doc, known_as, NULL, NULL };
  GMarkupParseContext *pc;
  gsize n = len < 0 ? strlen (xml) : (gsize) len;
  gboolean ok;

  doc->created = -1;
  doc->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) virt_checkpoint_disk_free);
  if (n > VIRT_LIBVIRT_XML_MAX) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY, "too large");
    return NULL;
  }
  x.stack = g_ptr_array_new_with_free_func (g_free);
  x.text = g_string_new (NULL);
  pc = g_markup_parse_context_new (&checkpoint_parser, 0, &x, NULL);
  ok = g_markup_parse_context_parse (pc, xml, n, &perr) &&
       g_markup_parse_context_end_parse (pc, &perr);
  g_markup_parse_context_free (pc);
  g_ptr_array_unref (x.stack);
  g_string_free (x.text, TRUE);
  if (!ok) {
    /* GMarkup quotes the offending bytes, which need not be UTF-8. */
    g_autofree char *why = g_utf8_make_valid (perr->message, -1);

    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY, "%s", why);
    return NULL;
  }
  return g_steal_pointer (&doc);
}
