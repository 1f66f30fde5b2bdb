/* ovagent: rendering of the storage model and of `info` details, as the JSON
 * the controller parses (names fixed by DESIGN §3) and as operator tables. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "json.h"
#include "util.h"
#include "agent/output.h"
#include "virt/vmusage.h"

/* Columns of a volume row in `list`. */
#define ROW_FORMAT "    %-36s  %-7s  %-8s  %-8s  %10s  %s\n"

void
ova_volume_info_free (ova_volume_info *vi)
{
  if (vi == NULL)
    return;
  stor_probe_free (vi->probe);
  if (vi->users != NULL)
    g_ptr_array_unref (vi->users);
  g_free (vi);
}

/* Metadata usable for its fields: a cleared record has none. */
static const stor_volmeta *
volume_md (const stor_volume *v)
{
  return v->md != NULL && !v->md->cleared ? v->md : NULL;
}

/* The parent UUID, NULL for a base (a BLANK PUUID included). */
static const char *
volume_parent (const stor_volume *v)
{
  if (v->parent == NULL || ova_uuid_is_blank (v->parent))
    return NULL;
  return v->parent;
}

static const char *
kind_name (stor_kind kind)
{
  return kind == STOR_KIND_BLOCK ? "block" : "file";
}

/* ---- JSON ---- */

void
ova_print_json (JsonNode *node)
{
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autofree char *text = NULL;

  if (isatty (STDOUT_FILENO)) {
    json_generator_set_pretty (gen, TRUE);
    json_generator_set_indent (gen, 2);
  }
  json_generator_set_root (gen, node);
  text = json_generator_to_data (gen, NULL);
  fputs (text, stdout);
  fputc ('\n', stdout);
  fflush (stdout);
}

static gboolean stdout_is_stream;

void
ova_output_stdout_is_stream (void)
{
  stdout_is_stream = TRUE;
}

void
ova_print_json_error (const GError *err)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;

  json_builder_begin_object (b);
  ova_json_add_string (b, "result", "error");
  ova_json_add_string (b, "code", ova_error_code_name (err));
  ova_json_add_string (b, "message", err->message);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  if (stdout_is_stream) {
    g_autoptr(JsonGenerator) gen = json_generator_new ();
    g_autofree char *text = NULL;

    json_generator_set_root (gen, root);
    text = json_generator_to_data (gen, NULL);
    fprintf (stderr, "%s\n", text);
    fflush (stderr);
    return;
  }
  ova_print_json (root);
}

static void
add_problems (JsonBuilder *b, const GPtrArray *problems)
{
  json_builder_set_member_name (b, "problems");
  json_builder_begin_array (b);
  for (guint i = 0; problems != NULL && i < problems->len; i++) {
    const stor_problem *p = g_ptr_array_index (problems, i);

    json_builder_begin_object (b);
    ova_json_add_string (b, "code", p->code);
    ova_json_add_string (b, "message", p->message);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
}

/* The volume members `list` and `info` share; the object is left open. */
static void
add_volume_fields (JsonBuilder *b, const stor_domain *dom, const stor_volume *v)
{
  const stor_volmeta *md = volume_md (v);

  ova_json_add_string (b, "uuid", v->uuid);
  ova_json_add_string (b, "image", v->image);
  ova_json_add_string (b, "parent", volume_parent (v));
  ova_json_add_string (b, "format", stor_format_name (md ? md->format : STOR_FORMAT_UNKNOWN));
  ova_json_add_string (b, "voltype", stor_voltype_name (md ? md->voltype : STOR_VOLTYPE_UNKNOWN));
  ova_json_add_string (b, "legality", stor_legality_name (md ? md->legality : STOR_LEGALITY_UNKNOWN));
  if (md != NULL)
    ova_json_add_uint (b, "capacity", md->capacity);
  else
    ova_json_add_null (b, "capacity");
  ova_json_add_string (b, "path", v->path);
  if (md != NULL) {
    g_autofree char *allocation = md->type ? g_ascii_strdown (md->type, -1) : NULL;

    ova_json_add_uint (b, "generation", md->gen);
    ova_json_add_string (b, "disktype", md->disktype);
    ova_json_add_string (b, "description", md->description);
    ova_json_add_string (b, "allocation", allocation);
  }
  else {
    ova_json_add_null (b, "generation");
    ova_json_add_null (b, "disktype");
    ova_json_add_null (b, "description");
    ova_json_add_null (b, "allocation");
  }
  if (dom->kind == STOR_KIND_BLOCK) {
    ova_json_add_uint (b, "lv_size", v->lv_size);
    json_builder_set_member_name (b, "slot");
    if (v->slot >= 0)
      json_builder_add_int_value (b, v->slot);
    else
      json_builder_add_null_value (b);
  }
}

static void
add_image (JsonBuilder *b, const stor_domain *dom, const stor_image *img)
{
  json_builder_begin_object (b);
  ova_json_add_string (b, "uuid", img->uuid);
  json_builder_set_member_name (b, "volumes");
  json_builder_begin_array (b);
  for (guint i = 0; i < img->volumes->len; i++) {
    const stor_volume *v = g_ptr_array_index (img->volumes, i);

    json_builder_begin_object (b);
    add_volume_fields (b, dom, v);
    add_problems (b, v->problems);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  add_problems (b, img->problems);
  json_builder_end_object (b);
}

static void
add_domain (JsonBuilder *b, const stor_domain *dom)
{
  json_builder_begin_object (b);
  ova_json_add_string (b, "uuid", dom->uuid);
  ova_json_add_string (b, "kind", kind_name (dom->kind));
  ova_json_add_string (b, "storage", dom->storage ? dom->storage : "unknown");
  json_builder_set_member_name (b, "version");
  if (dom->version >= 0)
    json_builder_add_int_value (b, dom->version);
  else
    json_builder_add_null_value (b);
  ova_json_add_string (b, "path", dom->path);
  json_builder_set_member_name (b, "images");
  json_builder_begin_array (b);
  for (guint i = 0; dom->images != NULL && i < dom->images->len; i++)
    add_image (b, dom, g_ptr_array_index (dom->images, i));
  json_builder_end_array (b);
  add_problems (b, dom->problems);
  json_builder_end_object (b);
}

JsonNode *
ova_json_domains (GPtrArray *domains)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "domains");
  json_builder_begin_array (b);
  for (guint i = 0; i < domains->len; i++)
    add_domain (b, g_ptr_array_index (domains, i));
  json_builder_end_array (b);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

static void
add_probe_fields (JsonBuilder *b, const stor_probe *p)
{
  if (p == NULL) {
    static const char *const unknown[] = {
      "disk_format", "qcow2_compat", "backing", "backing_format",
      "virtual_size", "actual_size", "bitmaps",
    };

    for (size_t i = 0; i < G_N_ELEMENTS (unknown); i++)
      ova_json_add_null (b, unknown[i]);
    return;
  }

  ova_json_add_string (b, "disk_format", p->format);
  ova_json_add_string (b, "qcow2_compat", p->qcow2_compat);
  ova_json_add_string (b, "backing", p->backing);
  ova_json_add_string (b, "backing_format", p->backing_format);
  ova_json_add_uint (b, "virtual_size", p->virtual_size);
  ova_json_add_uint (b, "actual_size", p->actual_size);
  json_builder_set_member_name (b, "bitmaps");
  json_builder_begin_array (b);
  for (guint i = 0; p->bitmaps != NULL && i < p->bitmaps->len; i++) {
    const stor_bitmap *bm = g_ptr_array_index (p->bitmaps, i);

    json_builder_begin_object (b);
    ova_json_add_string (b, "name", bm->name);
    json_builder_set_member_name (b, "flags");
    json_builder_begin_array (b);
    for (size_t j = 0; bm->flags != NULL && bm->flags[j] != NULL; j++)
      json_builder_add_string_value (b, bm->flags[j]);
    json_builder_end_array (b);
    ova_json_add_uint (b, "granularity", bm->granularity);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
}

static void
add_users (JsonBuilder *b, const GPtrArray *users)
{
  json_builder_set_member_name (b, "used_by");
  if (users == NULL) {
    json_builder_add_null_value (b);
    return;
  }
  json_builder_begin_array (b);
  for (guint i = 0; i < users->len; i++) {
    const virt_disk_user *u = g_ptr_array_index (users, i);

    json_builder_begin_object (b);
    ova_json_add_string (b, "vm", u->vm_name);
    ova_json_add_string (b, "vm_uuid", u->vm_uuid);
    ova_json_add_string (b, "target", u->target);
    ova_json_add_bool (b, "writable", u->writable_top);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
}

JsonNode *
ova_json_image_info (const stor_domain *dom, const stor_image *img,
                     GPtrArray *infos)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();

  json_builder_begin_object (b);
  ova_json_add_string (b, "uuid", img->uuid);
  ova_json_add_string (b, "domain", dom->uuid);
  json_builder_set_member_name (b, "volumes");
  json_builder_begin_array (b);
  for (guint i = 0; i < infos->len; i++) {
    const ova_volume_info *vi = g_ptr_array_index (infos, i);

    json_builder_begin_object (b);
    add_volume_fields (b, dom, vi->vol);
    add_probe_fields (b, vi->probe);
    ova_json_add_bool (b, "active", vi->active);
    add_users (b, vi->users);
    add_problems (b, vi->vol->problems);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  add_problems (b, img->problems);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

/* ---- Tables ---- */

/* Problems stand out on a terminal; never colour a pipe or a file. */
static gboolean
use_colour (void)
{
  static int colour = -1;

  if (colour < 0) {
    const char *term = g_getenv ("TERM");

    colour = isatty (STDOUT_FILENO) && g_getenv ("NO_COLOR") == NULL &&
             term != NULL && strcmp (term, "dumb") != 0;
  }
  return colour;
}

static void
print_problems (const GPtrArray *problems, int indent)
{
  for (guint i = 0; problems != NULL && i < problems->len; i++) {
    const stor_problem *p = g_ptr_array_index (problems, i);

    if (use_colour ())
      printf ("%*s\033[1;31m! %s:\033[0m %s\n", indent, "", p->code, p->message);
    else
      printf ("%*s! %s: %s\n", indent, "", p->code, p->message);
  }
}

static void
print_domain_header (const stor_domain *dom)
{
  g_autofree char *version = dom->version >= 0
    ? g_strdup_printf ("v%d", dom->version) : g_strdup ("v?");

  printf ("SD %s  %s/%s  %s  %s\n", dom->uuid, kind_name (dom->kind),
          dom->storage ? dom->storage : "unknown", version,
          dom->path ? dom->path : "-");
}

/* First 8 hex digits: enough to tell the volumes of one chain apart. */
static char *
short_uuid (const char *uuid)
{
  return uuid ? g_strndup (uuid, 8) : g_strdup ("-");
}

void
ova_print_domains (GPtrArray *domains)
{
  if (domains->len == 0) {
    printf ("No storage domains found.\n");
    return;
  }

  for (guint i = 0; i < domains->len; i++) {
    const stor_domain *dom = g_ptr_array_index (domains, i);

    if (i > 0)
      putchar ('\n');
    print_domain_header (dom);
    print_problems (dom->problems, 2);
    if (dom->images == NULL || dom->images->len == 0) {
      printf ("  (no images)\n");
      continue;
    }
    for (guint j = 0; j < dom->images->len; j++) {
      const stor_image *img = g_ptr_array_index (dom->images, j);

      printf ("  IMG %s\n", img->uuid);
      print_problems (img->problems, 4);
      printf (ROW_FORMAT, "VOLUME", "FORMAT", "VOLTYPE", "LEGALITY",
              "CAPACITY", "PARENT");
      for (guint k = 0; k < img->volumes->len; k++) {
        const stor_volume *v = g_ptr_array_index (img->volumes, k);
        const stor_volmeta *md = volume_md (v);
        g_autofree char *cap = md ? ova_format_size (md->capacity) : g_strdup ("?");
        g_autofree char *parent = short_uuid (volume_parent (v));

        printf (ROW_FORMAT, v->uuid,
                stor_format_name (md ? md->format : STOR_FORMAT_UNKNOWN),
                stor_voltype_name (md ? md->voltype : STOR_VOLTYPE_UNKNOWN),
                stor_legality_name (md ? md->legality : STOR_LEGALITY_UNKNOWN),
                cap, parent);
        print_problems (v->problems, 6);
      }
    }
  }
}

static void
print_field (const char *name, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
print_field (const char *name, const char *fmt, ...)
{
  g_autofree char *value = NULL;
  va_list ap;

  va_start (ap, fmt);
  value = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  printf ("  %-14s %s\n", name, value);
}

static void
print_size_field (const char *name, guint64 bytes)
{
  g_autofree char *human = ova_format_size (bytes);

  print_field (name, "%s (%" G_GUINT64_FORMAT " bytes)", human, bytes);
}

static void
print_bitmaps (const stor_probe *p)
{
  if (p->bitmaps == NULL || p->bitmaps->len == 0) {
    print_field ("bitmaps", "none");
    return;
  }
  for (guint i = 0; i < p->bitmaps->len; i++) {
    const stor_bitmap *bm = g_ptr_array_index (p->bitmaps, i);
    g_autofree char *flags = bm->flags && bm->flags[0]
      ? g_strjoinv (",", bm->flags) : g_strdup ("no flags");
    g_autofree char *gran = ova_format_size (bm->granularity);

    print_field (i == 0 ? "bitmaps" : "", "%s (%s; granularity %s)",
                 bm->name, flags, gran);
  }
}

static void
print_users (const GPtrArray *users)
{
  if (users == NULL) {
    print_field ("used by", "unknown (libvirt not reachable)");
    return;
  }
  if (users->len == 0) {
    print_field ("used by", "no running VM");
    return;
  }
  for (guint i = 0; i < users->len; i++) {
    const virt_disk_user *u = g_ptr_array_index (users, i);

    print_field (i == 0 ? "used by" : "", "%s (%s) as %s, %s",
                 u->vm_name ? u->vm_name : "?", u->vm_uuid ? u->vm_uuid : "?",
                 u->target ? u->target : "?",
                 u->writable_top ? "writable top layer" : "read-only backing layer");
  }
}

static void
print_volume_info (const stor_domain *dom, const stor_image *img,
                   const ova_volume_info *vi, guint index, guint count)
{
  const stor_volume *v = vi->vol;
  const stor_volmeta *md = volume_md (v);
  const stor_probe *p = vi->probe;
  const char *parent = volume_parent (v);

  printf ("\nVolume %s (%u of %u%s)\n", v->uuid, index + 1, count,
          parent == NULL ? ", base" : index + 1 == count ? ", top" : "");
  print_field ("path", "%s", v->path ? v->path : "-");
  print_field ("parent", "%s", parent ? parent : "-");
  /* A template's base lives in another image. */
  if (v->image != NULL && strcmp (v->image, img->uuid) != 0)
    print_field ("image", "%s", v->image);
  if (md != NULL) {
    print_field ("format", "%s%s%s", stor_format_name (md->format),
                 p ? ", on disk " : "", p && p->format ? p->format : "");
    print_field ("voltype", "%s", stor_voltype_name (md->voltype));
    print_field ("legality", "%s", stor_legality_name (md->legality));
    print_size_field ("capacity", md->capacity);
    print_field ("generation", "%u", md->gen);
    if (md->type != NULL)
      print_field ("allocation", "%s", md->type);
    if (md->disktype != NULL && *md->disktype != '\0')
      print_field ("disk type", "%s", md->disktype);
    if (md->description != NULL && *md->description != '\0')
      print_field ("description", "%s", md->description);
  }
  else {
    print_field ("metadata", "unreadable");
    if (p != NULL)
      print_field ("format", "on disk %s", p->format ? p->format : "?");
  }
  if (p != NULL) {
    print_size_field ("virtual size", p->virtual_size);
    print_size_field ("actual size", p->actual_size);
    print_field ("qcow2 compat", "%s", p->qcow2_compat ? p->qcow2_compat : "-");
    if (p->backing != NULL)
      print_field ("backing", "%s%s%s%s", p->backing,
                   p->backing_format ? " (" : "",
                   p->backing_format ? p->backing_format : "",
                   p->backing_format ? ")" : "");
    else
      print_field ("backing", "-");
    print_bitmaps (p);
  }
  else
    print_field ("header", "not readable (see problems)");
  if (dom->kind == STOR_KIND_BLOCK) {
    g_autofree char *lv = ova_format_size (v->lv_size);

    print_field ("lv size", "%s", lv);
    if (v->slot >= 0)
      print_field ("slot", "%" G_GINT64_FORMAT, v->slot);
    else
      print_field ("slot", "?");
    print_field ("active", "%s", vi->active ? "yes" : "no (activated for this command only)");
  }
  print_users (vi->users);
  print_problems (v->problems, 2);
}

void
ova_print_image_info (const stor_domain *dom, const stor_image *img,
                      GPtrArray *infos)
{
  printf ("Image %s\n", img->uuid);
  print_field ("domain", "%s (%s/%s)", dom->uuid, kind_name (dom->kind),
               dom->storage ? dom->storage : "unknown");
  print_field ("domain path", "%s", dom->path ? dom->path : "-");
  print_field ("volumes", "%u, base first", infos->len);
  print_problems (img->problems, 2);
  for (guint i = 0; i < infos->len; i++)
    print_volume_info (dom, img, g_ptr_array_index (infos, i), i, infos->len);
}
