/* ovagent: checkpoints and pull-mode backup jobs of running libvirt domains,
 * the XML they take (VDSM's form), and the qcow2 bitmap chain rules. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-glib/json-glib.h>
#include <libvirt/virterror.h>

#include "checkpoint.h"
#include "error.h"
#include "log.h"
#include "probe.h"
#include "qemu-img.h"
#include "util.h"

/* The longest <serial> kept: a longer one is no image UUID. */
#define SERIAL_MAX 256
/* libvirt's XML of one domain, one backup job or one checkpoint. */
#define LIBVIRT_XML_MAX (16 * 1024 * 1024)

/* A saved checkpoint: a name, a parent, a description, disks. */
#define SAVED_XML_MAX (1024 * 1024)

/* `qemu-img info --backing-chain` of a long chain with many bitmaps. */
#define CHAIN_JSON_MAX (16 * 1024 * 1024)

#define CHECKPOINT_NAME_MAX 255

/* What QEMU runs as when neither the domain nor qemu.conf says (Debian). */
#define QEMU_USER_DEFAULT "libvirt-qemu"
#define QEMU_GROUP_DEFAULT "kvm"
#define QEMU_CONF "/etc/libvirt/qemu.conf"

#define SOCKET_NAME "nbd.sock"

/* ------------------------------------------------------------------ */
/* Errors */

static void
ignore_libvirt_error (void *opaque, virErrorPtr err)
{
}

/* libvirt prints every error on stderr unless told otherwise; ours are
 * reported once, as GErrors. */
static void
silence_libvirt (void)
{
  static gsize silenced = 0;

  if (g_once_init_enter (&silenced)) {
    virSetErrorFunc (NULL, ignore_libvirt_error);
    g_once_init_leave (&silenced, 1);
  }
}

static int
code_for_libvirt_error (int code)
{
  switch (code) {
  case VIR_ERR_NO_DOMAIN:
  case VIR_ERR_NO_DOMAIN_CHECKPOINT:
  case VIR_ERR_NO_DOMAIN_BACKUP:
    return OVA_ERROR_NOT_FOUND;
  case VIR_ERR_OPERATION_INVALID:
    return OVA_ERROR_BUSY;
  case VIR_ERR_CHECKPOINT_INCONSISTENT:
  case VIR_ERR_OPERATION_UNSUPPORTED:
  case VIR_ERR_NO_SUPPORT:
    return OVA_ERROR_UNSUPPORTED;
  default:
    return OVA_ERROR_INTERNAL;
  }
}

static void set_libvirt_error_saved (GError **error, virErrorPtr saved,
                                    const char *fmt, ...) G_GNUC_PRINTF (3, 4);

/* "<context>: <libvirt's message>", coded by what libvirt said. */
static void
set_libvirt_error_saved (GError **error, virErrorPtr saved, const char *fmt, ...)
{
  g_autofree char *context = NULL;
  va_list ap;

  va_start (ap, fmt);
  context = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OVA_ERROR,
               code_for_libvirt_error (saved ? saved->code : VIR_ERR_OK),
               "%s: %s", context,
               saved && saved->message ? saved->message : "unknown libvirt error");
}

/* The error is saved before the message arguments are evaluated: any
 * libvirt call among them (virDomainGetName) resets it. */
#define set_libvirt_error(error, ...)                                   \
  do {                                                                  \
    virErrorPtr saved_ = virSaveLastError ();                           \
    set_libvirt_error_saved ((error), saved_, __VA_ARGS__);             \
    virFreeError (saved_);                                              \
  } while (0)

static const char *
dom_name (virDomainPtr dom)
{
  const char *name = virDomainGetName (dom);

  return name ? name : "(unnamed)";
}

/* ------------------------------------------------------------------ */
/* Connection, domain, disks */

virConnectPtr
virt_connect (const char *uri, GError **error)
{
  virConnectPtr conn;

  silence_libvirt ();
  conn = virConnectOpen (uri);
  if (conn == NULL)
    set_libvirt_error (error, "cannot connect to libvirt at %s",
                       uri ? uri : "the default URI");
  return conn;
}

virDomainPtr
virt_find_domain (virConnectPtr conn, const char *vm, GError **error)
{
  virDomainPtr dom;

  silence_libvirt ();
  if (vm == NULL || *vm == '\0' || strlen (vm) > 1024) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "invalid VM name or UUID");
    return NULL;
  }
  if (ova_uuid_is_valid (vm)) {
    dom = virDomainLookupByUUIDString (conn, vm);
    if (dom)
      return dom;
    /* A domain may be named like a UUID. */
  }
  dom = virDomainLookupByName (conn, vm);
  if (dom == NULL) {
    g_autofree char *q = ova_quote_untrusted (vm, 128);

    set_libvirt_error (error, "no domain %s", q);
  }
  return dom;
}

void
virt_disk_free (virt_disk *d)
{
  if (d == NULL)
    return;
  g_free (d->target);
  g_free (d->path);
  g_free (d->format);
  g_free (d->unsupported);
  g_free (d->serial);
  if (d->layers)
    g_ptr_array_unref (d->layers);
  g_free (d);
}

/* What the parse of a domain's live XML keeps. */
typedef struct parsed_disk {
  virt_disk *disk;
  char *type;           /* file, block, network ... */
  char *device;         /* disk, cdrom, floppy, lun */
  gboolean readonly;
  gboolean shareable;
  gboolean transient;
  GPtrArray *backing;   /* stor_layer*: each <backingStore type=…>, outermost
                         * first; path or format NULL where not given */
  gboolean backing_bad; /* a <backingStore> that is not a local file or device */
} parsed_disk;

typedef struct dom_ctx {
  GPtrArray *stack;     /* char*: open elements */
  parsed_disk *cur;
  GPtrArray *disks;     /* parsed_disk* */
  gboolean in_dac;      /* inside <seclabel model='dac'> of the domain */
  char *dac_label;      /* "+64055:+994" or "user:group" */
} dom_ctx;

static void
parsed_disk_free (parsed_disk *p)
{
  if (p == NULL)
    return;
  virt_disk_free (p->disk);
  g_free (p->type);
  g_free (p->device);
  if (p->backing)
    g_ptr_array_unref (p->backing);
  g_free (p);
}

static const char *
attr (const char **names, const char **values, const char *name)
{
  for (gsize i = 0; names[i]; i++)
    if (strcmp (names[i], name) == 0)
      return values[i];
  return NULL;
}

static const char *
stack_at (GPtrArray *stack, guint i)
{
  return i < stack->len ? g_ptr_array_index (stack, i) : "";
}

/* A local path from <source file=…> or <source dev=…>, else NULL. */
static const char *
source_path (const char **names, const char **values)
{
  const char *p = attr (names, values, "file");

  if (p == NULL)
    p = attr (names, values, "dev");
  return p && p[0] == '/' && strlen (p) < PATH_MAX ? p : NULL;
}

/* <backingStore> elements nest, one per layer under the disk's image: the
 * one at depth d (the disk's own at 3) is layer d - 3 of p->backing, and
 * its <format> and <source> sit at depth d + 1. An empty <backingStore/>
 * (no type) ends the chain. Returns TRUE if the element was one of these. */
static gboolean
backing_start (dom_ctx *ctx, guint depth, const char *name, const char **names,
               const char **values)
{
  parsed_disk *p = ctx->cur;
  const char *parent = stack_at (ctx->stack, depth - 1);
  stor_layer *l;

  if (strcmp (name, "backingStore") == 0 &&
      (depth == 3 || strcmp (parent, "backingStore") == 0)) {
    const char *type = attr (names, values, "type");

    if (p->backing == NULL)
      p->backing = g_ptr_array_new_with_free_func ((GDestroyNotify) stor_layer_free);
    if (type == NULL)
      return TRUE;
    if (depth - 3 != p->backing->len ||
        (strcmp (type, "file") != 0 && strcmp (type, "block") != 0))
      p->backing_bad = TRUE;
    g_ptr_array_add (p->backing, stor_layer_new (NULL, NULL));
    return TRUE;
  }
  if (depth < 4 || strcmp (parent, "backingStore") != 0 || p->backing == NULL)
    return FALSE;
  if (depth - 4 < p->backing->len) {
    l = g_ptr_array_index (p->backing, depth - 4);
    if (strcmp (name, "format") == 0 && l->format == NULL)
      l->format = g_strdup (attr (names, values, "type"));
    else if (strcmp (name, "source") == 0 && l->path == NULL)
      l->path = g_strdup (source_path (names, values));
  }
  return TRUE;
}

/* The disk's image and its backing chain, when libvirt gave all of it. */
static GPtrArray *
disk_layers (const parsed_disk *p)
{
  g_autoptr (GPtrArray) layers = stor_layers_new ();
  const virt_disk *d = p->disk;

  if (p->backing == NULL || p->backing_bad || d->path == NULL)
    return NULL;
  stor_layers_add (layers, d->path, d->format);
  for (guint i = 0; i < p->backing->len; i++) {
    const stor_layer *l = g_ptr_array_index (p->backing, i);

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

static void
dom_start (GMarkupParseContext *pc, const char *name, const char **names,
           const char **values, gpointer data, GError **error)
{
  dom_ctx *ctx = data;
  guint depth = ctx->stack->len;

  g_ptr_array_add (ctx->stack, g_strdup (name));
  if (depth == 1 && strcmp (name, "seclabel") == 0 &&
      g_strcmp0 (attr (names, values, "model"), "dac") == 0) {
    ctx->in_dac = TRUE;
    return;
  }
  if (depth == 2 && strcmp (name, "disk") == 0 &&
      strcmp (stack_at (ctx->stack, 1), "devices") == 0) {
    ctx->cur = g_new0 (parsed_disk, 1);
    ctx->cur->disk = g_new0 (virt_disk, 1);
    ctx->cur->type = g_strdup (attr (names, values, "type"));
    ctx->cur->device = g_strdup (attr (names, values, "device"));
    return;
  }
  if (ctx->cur != NULL && depth >= 3 && backing_start (ctx, depth, name, names, values))
    return;
  if (ctx->cur == NULL || depth != 3)
    return;
  if (strcmp (name, "source") == 0 && ctx->cur->disk->path == NULL)
    ctx->cur->disk->path = g_strdup (source_path (names, values));
  else if (strcmp (name, "driver") == 0 && ctx->cur->disk->format == NULL)
    ctx->cur->disk->format = g_strdup (attr (names, values, "type"));
  else if (strcmp (name, "target") == 0 && ctx->cur->disk->target == NULL)
    ctx->cur->disk->target = g_strdup (attr (names, values, "dev"));
  else if (strcmp (name, "readonly") == 0)
    ctx->cur->readonly = TRUE;
  else if (strcmp (name, "shareable") == 0)
    ctx->cur->shareable = TRUE;
  else if (strcmp (name, "transient") == 0)
    ctx->cur->transient = TRUE;
}

static void
dom_end (GMarkupParseContext *pc, const char *name, gpointer data, GError **error)
{
  dom_ctx *ctx = data;

  g_ptr_array_remove_index (ctx->stack, ctx->stack->len - 1);
  if (ctx->stack->len == 1 && strcmp (name, "seclabel") == 0)
    ctx->in_dac = FALSE;
  if (ctx->cur && ctx->stack->len == 2 && strcmp (name, "disk") == 0) {
    if (ctx->cur->disk->serial && *g_strstrip (ctx->cur->disk->serial) == '\0')
      g_clear_pointer (&ctx->cur->disk->serial, g_free);
    ctx->cur->disk->layers = disk_layers (ctx->cur);
    g_ptr_array_add (ctx->disks, ctx->cur);
    ctx->cur = NULL;
  }
}

static void
dom_text (GMarkupParseContext *pc, const char *text, gsize len, gpointer data,
          GError **error)
{
  dom_ctx *ctx = data;

  if (ctx->in_dac && ctx->stack->len == 3 && ctx->dac_label == NULL &&
      strcmp (stack_at (ctx->stack, 2), "label") == 0 && len < 256)
    ctx->dac_label = g_strstrip (g_strndup (text, len));
  else if (ctx->cur && ctx->stack->len == 4 &&
           strcmp (stack_at (ctx->stack, 3), "serial") == 0) {
    /* Text may come in pieces; a serial this long is no UUID anyway. */
    virt_disk *d = ctx->cur->disk;

    if ((d->serial ? strlen (d->serial) : 0) + len <= SERIAL_MAX) {
      g_autofree char *more = g_strndup (text, len);
      char *joined = g_strconcat (d->serial ? d->serial : "", more, NULL);

      g_free (d->serial);
      d->serial = joined;
    }
  }
}

static const GMarkupParser dom_parser = {
  .start_element = dom_start,
  .end_element = dom_end,
  .text = dom_text,
};

static gboolean
parse_domain_xml (virDomainPtr dom, dom_ctx *ctx, GError **error)
{
  char *xml;
  GMarkupParseContext *pc;
  g_autoptr (GError) perr = NULL;
  gboolean ok;

  xml = virDomainGetXMLDesc (dom, 0);
  if (xml == NULL) {
    set_libvirt_error (error, "cannot get the XML of domain %s", dom_name (dom));
    return FALSE;
  }
  ctx->stack = g_ptr_array_new_with_free_func (g_free);
  ctx->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) parsed_disk_free);
  pc = g_markup_parse_context_new (&dom_parser, 0, ctx, NULL);
  ok = strlen (xml) <= LIBVIRT_XML_MAX &&
       g_markup_parse_context_parse (pc, xml, -1, &perr) &&
       g_markup_parse_context_end_parse (pc, &perr);
  g_markup_parse_context_free (pc);
  free (xml);
  g_clear_pointer (&ctx->cur, parsed_disk_free);
  if (!ok)
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot parse the XML of domain %s: %s", dom_name (dom),
                 perr ? perr->message : "too large");
  return ok;
}

static void
dom_ctx_clear (dom_ctx *ctx)
{
  g_clear_pointer (&ctx->stack, g_ptr_array_unref);
  g_clear_pointer (&ctx->disks, g_ptr_array_unref);
  g_clear_pointer (&ctx->dac_label, g_free);
}

/* Why a disk cannot be backed up through a checkpoint, as its XML says
 * (the image itself is looked at apart), or NULL. */
static char *
disk_unsupported (parsed_disk *p)
{
  virt_disk *d = p->disk;

  if (d->target == NULL)
    return g_strdup ("disk without a target device");
  if (g_strcmp0 (p->device, "lun") == 0)
    return g_strdup ("LUN passthrough disk");
  if (p->device && strcmp (p->device, "disk") != 0)
    return g_strdup_printf ("%s device", p->device);
  if (g_strcmp0 (p->type, "network") == 0)
    return g_strdup ("network disk");
  if (p->type == NULL || (strcmp (p->type, "file") != 0 && strcmp (p->type, "block") != 0))
    return g_strdup_printf ("%s disk", p->type ? p->type : "untyped");
  if (d->path == NULL)
    return g_strdup ("disk without a local source");
  if (p->readonly)
    return g_strdup ("read-only disk");
  if (p->shareable)
    return g_strdup ("shareable disk");
  if (p->transient)
    return g_strdup ("transient disk");
  return NULL;
}

char *
virt_image_unsupported (const char *path, const char *format, guint64 *size)
{
  g_autoptr (stor_probe) probe = NULL;
  g_autoptr (GError) err = NULL;

  if (g_strcmp0 (format, "qcow2") != 0)
    return g_strdup_printf ("%s disk", format ? format : "raw");
  probe = stor_probe_volume (path, STOR_FORMAT_COW, &err);
  if (probe == NULL)
    return g_strdup_printf ("cannot read its image: %s", err->message);
  *size = probe->virtual_size;
  if (g_strcmp0 (probe->qcow2_compat, "1.1") != 0)
    return g_strdup_printf ("qcow2 compat %s cannot hold persistent bitmaps",
                            probe->qcow2_compat ? probe->qcow2_compat : "(unknown)");
  return NULL;
}

GPtrArray *
virt_domain_disks (virDomainPtr dom, GError **error)
{
  dom_ctx ctx = { 0 };
  GPtrArray *out;
  gboolean active;

  if (!parse_domain_xml (dom, &ctx, error)) {
    dom_ctx_clear (&ctx);
    return NULL;
  }
  /* A running domain's images are what QEMU opened as libvirt says; a
   * stopped one's are described by VDSM's metadata, read by the caller. */
  active = virDomainIsActive (dom) == 1;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) virt_disk_free);
  for (guint i = 0; i < ctx.disks->len; i++) {
    parsed_disk *p = g_ptr_array_index (ctx.disks, i);
    virt_disk *d = p->disk;

    d->is_block = g_strcmp0 (p->type, "block") == 0;
    d->unsupported = disk_unsupported (p);
    if (d->unsupported == NULL && active)
      d->unsupported = virt_image_unsupported (d->path, d->format, &d->virtual_size);
    g_ptr_array_add (out, g_steal_pointer (&p->disk));
  }
  dom_ctx_clear (&ctx);
  return out;
}

/* ------------------------------------------------------------------ */
/* XML builders */

static void markup_append (GString *s, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
markup_append (GString *s, const char *fmt, ...)
{
  g_autofree char *text = NULL;
  va_list ap;

  va_start (ap, fmt);
  text = g_markup_vprintf_escaped (fmt, ap);
  va_end (ap);
  g_string_append (s, text);
}

/* The <disks> of a checkpoint: a bitmap of that name on each target. */
static void
append_checkpoint_disks (GString *s, const char *const *targets,
                         const char *bitmap)
{
  if (targets == NULL || targets[0] == NULL)
    return;
  g_string_append (s, "  <disks>\n");
  for (gsize i = 0; targets[i]; i++)
    markup_append (s, "    <disk name='%s' checkpoint='bitmap' bitmap='%s'/>\n",
                   targets[i], bitmap);
  g_string_append (s, "  </disks>\n");
}

char *
virt_checkpoint_xml (const char *checkpoint_id, const char *backup_id,
                     const char *const *disks)
{
  GString *s = g_string_new ("<domaincheckpoint>\n");

  markup_append (s, "  <name>%s</name>\n", checkpoint_id);
  markup_append (s, "  <description>checkpoint for backup '%s'</description>\n",
                 backup_id);
  append_checkpoint_disks (s, disks, checkpoint_id);
  g_string_append (s, "</domaincheckpoint>\n");
  return g_string_free (s, FALSE);
}

char *
virt_backup_xml (const char *from_checkpoint, const char *socket_path,
                 const virt_scratch_disk *disks, gsize n_disks)
{
  GString *s = g_string_new ("<domainbackup mode=\"pull\">\n");

  if (from_checkpoint)
    markup_append (s, "  <incremental>%s</incremental>\n", from_checkpoint);
  markup_append (s, "  <server transport=\"unix\" socket=\"%s\"/>\n", socket_path);
  g_string_append (s, "  <disks>\n");
  for (gsize i = 0; i < n_disks; i++) {
    const virt_scratch_disk *d = &disks[i];
    gboolean inc = d->incremental && from_checkpoint;

    markup_append (s, "    <disk name=\"%s\" type=\"%s\" backupmode=\"%s\"",
                   d->name, d->scratch_block ? "block" : "file",
                   inc ? "incremental" : "full");
    if (inc)
      markup_append (s, " incremental=\"%s\"", from_checkpoint);
    /* The scratch file's format named, never probed by libvirt. */
    g_string_append (s, ">\n      <driver type=\"qcow2\"/>\n");
    markup_append (s, "      <scratch %s=\"%s\"><seclabel model=\"dac\" relabel=\"no\"/></scratch>\n",
                   d->scratch_block ? "dev" : "file", d->scratch);
    g_string_append (s, "    </disk>\n");
  }
  g_string_append (s, "  </disks>\n</domainbackup>\n");
  return g_string_free (s, FALSE);
}

char *
virt_nbd_uri (const char *export_name, const char *socket_path)
{
  g_autofree char *e = g_uri_escape_string (export_name, NULL, FALSE);
  g_autofree char *p = g_uri_escape_string (socket_path, "/", FALSE);

  return g_strdup_printf ("nbd+unix:///%s?socket=%s", e, p);
}

/* ------------------------------------------------------------------ */
/* Backup jobs */

static void
backup_disk_free (virt_backup_disk *d)
{
  if (d == NULL)
    return;
  g_free (d->target);
  g_free (d->export_name);
  g_free (d->nbd_uri);
  g_free (d->bitmap_context);
  g_free (d->scratch);
  g_free (d);
}

void
virt_backup_free (virt_backup *b)
{
  if (b == NULL)
    return;
  g_free (b->backup_id);
  g_free (b->socket_dir);
  g_free (b->socket_path);
  g_free (b->scratch_dir);
  g_ptr_array_unref (b->disks);
  g_free (b);
}

virt_backup *
virt_backup_for_id (const char *run_dir, const char *scratch_dir,
                    const char *backup_id, GError **error)
{
  g_autoptr (virt_backup) b = NULL;
  g_autofree char *dirname = NULL;

  if (!ova_uuid_is_valid (backup_id)) {
    g_autofree char *q = ova_quote_untrusted (backup_id, 64);

    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "invalid backup id %s", q);
    return NULL;
  }
  if (run_dir == NULL || run_dir[0] != '/' || scratch_dir == NULL || scratch_dir[0] != '/') {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "run and scratch directories must be absolute paths");
    return NULL;
  }
  dirname = g_strconcat ("backup-", backup_id, NULL);
  b = g_new0 (virt_backup, 1);
  b->backup_id = g_ascii_strdown (backup_id, -1);
  b->socket_dir = g_build_filename (run_dir, dirname, NULL);
  b->socket_path = g_build_filename (b->socket_dir, SOCKET_NAME, NULL);
  b->scratch_dir = g_build_filename (scratch_dir, dirname, NULL);
  b->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) backup_disk_free);
  if (strlen (b->socket_path) >= sizeof ((struct sockaddr_un *) NULL)->sun_path) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "socket path %s is longer than a unix socket allows (%zu bytes)",
                 b->socket_path, sizeof ((struct sockaddr_un *) NULL)->sun_path - 1);
    return NULL;
  }
  return g_steal_pointer (&b);
}

static gboolean
lookup_user (const char *spec, uid_t *uid, GError **error)
{
  g_autofree char *buf = g_malloc (16384);
  struct passwd pw, *res = NULL;
  guint64 n;

  if (spec[0] == '+') {
    if (!g_ascii_string_to_unsigned (spec + 1, 10, 0, G_MAXINT32, &n, error)) {
      g_prefix_error (error, "QEMU user %s: ", spec);
      return FALSE;
    }
    *uid = n;
    return TRUE;
  }
  if (getpwnam_r (spec, &pw, buf, 16384, &res) != 0 || res == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "QEMU runs as user %s, which does not exist here", spec);
    return FALSE;
  }
  *uid = pw.pw_uid;
  return TRUE;
}

static gboolean
lookup_group (const char *spec, gid_t *gid, GError **error)
{
  g_autofree char *buf = g_malloc (65536);
  struct group gr, *res = NULL;
  guint64 n;

  if (spec[0] == '+') {
    if (!g_ascii_string_to_unsigned (spec + 1, 10, 0, G_MAXINT32, &n, error)) {
      g_prefix_error (error, "QEMU group %s: ", spec);
      return FALSE;
    }
    *gid = n;
    return TRUE;
  }
  if (getgrnam_r (spec, &gr, buf, 65536, &res) != 0 || res == NULL) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "QEMU runs as group %s, which does not exist here", spec);
    return FALSE;
  }
  *gid = gr.gr_gid;
  return TRUE;
}

/* `key = "value"` of qemu.conf, or NULL. */
static char *
qemu_conf_value (const char *conf, const char *key)
{
  g_auto (GStrv) lines = g_strsplit (conf, "\n", -1);

  for (gsize i = 0; lines[i]; i++) {
    char *l = g_strstrip (lines[i]);
    gsize klen = strlen (key);
    char *v, *end;

    if (strncmp (l, key, klen) != 0)
      continue;
    v = l + klen;
    while (*v == ' ' || *v == '\t')
      v++;
    if (*v++ != '=')
      continue;
    while (*v == ' ' || *v == '\t')
      v++;
    if (*v++ != '"' || (end = strchr (v, '"')) == NULL || end == v || end - v > 255)
      continue;
    return g_strndup (v, end - v);
  }
  return NULL;
}

/* Who QEMU runs as: the domain's DAC label, else qemu.conf, else the
 * Debian defaults. */
static gboolean
qemu_identity (const char *dac_label, uid_t *uid, gid_t *gid, GError **error)
{
  g_autofree char *user = NULL;
  g_autofree char *group = NULL;
  g_autofree char *conf = NULL;

  if (dac_label && strchr (dac_label, ':')) {
    const char *colon = strchr (dac_label, ':');

    user = g_strndup (dac_label, colon - dac_label);
    group = g_strdup (colon + 1);
  }
  else if (g_file_get_contents (QEMU_CONF, &conf, NULL, NULL) &&
           strlen (conf) < 4 * 1024 * 1024) {
    user = qemu_conf_value (conf, "user");
    group = qemu_conf_value (conf, "group");
  }
  if (user == NULL || *user == '\0') {
    g_free (user);
    user = g_strdup (QEMU_USER_DEFAULT);
  }
  if (group == NULL || *group == '\0') {
    g_free (group);
    group = g_strdup (QEMU_GROUP_DEFAULT);
  }
  return lookup_user (user, uid, error) && lookup_group (group, gid, error);
}

/* The directory of one backup's socket or scratch files under run_dir or
 * scratch_dir. QEMU binds the socket itself, so that directory is QEMU's
 * own, 0770; the scratch files are made here, so their directory stays
 * root's, 0711 (QEMU only passes through it): nothing QEMU writes can
 * plant a link where root later creates or changes a file. */
static gboolean
make_backup_dir (const char *path, gboolean qemu_owned, uid_t uid, gid_t gid,
                 GError **error)
{
  g_autofree char *parent = g_path_get_dirname (path);
  struct stat st;
  int fd;

  if (g_mkdir_with_parents (parent, 0711) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot create %s: %s",
                 parent, g_strerror (errno));
    return FALSE;
  }
  /* The configured run_dir or scratch_dir: QEMU must be able to search it
   * to reach its own directory inside; nothing in it is readable by
   * others (files 0600, directories 0700, 0711 or QEMU's 0770). */
  if (stat (parent, &st) == 0 && st.st_uid == geteuid () &&
      (st.st_mode & (S_IXGRP | S_IXOTH)) != (S_IXGRP | S_IXOTH) &&
      chmod (parent, (st.st_mode & 07777) | S_IXGRP | S_IXOTH) < 0)
    ova_warn ("cannot make %s searchable for QEMU: %s", parent, g_strerror (errno));
  if (mkdir (path, 0700) < 0) {
    g_set_error (error, OVA_ERROR, errno == EEXIST ? OVA_ERROR_BUSY : OVA_ERROR_INTERNAL,
                 "cannot create %s: %s", path, g_strerror (errno));
    return FALSE;
  }
  fd = open (path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 ||
      (qemu_owned ? fchown (fd, uid, gid) < 0 || fchmod (fd, 0770) < 0
                  : fchmod (fd, 0711) < 0)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot make %s reachable by QEMU's user %u:%u: %s", path,
                 (unsigned) uid, (unsigned) gid, g_strerror (errno));
    if (fd >= 0)
      close (fd);
    rmdir (path);
    return FALSE;
  }
  close (fd);
  return TRUE;
}

/* A directory above path that QEMU's user cannot search makes the bind
 * fail with a bare "Permission denied": say which one. Supplementary
 * groups are not known here, so this only warns. */
static void
warn_unreachable (const char *path, uid_t uid, gid_t gid)
{
  g_autofree char *dir = g_path_get_dirname (path);

  while (strcmp (dir, "/") != 0 && strcmp (dir, ".") != 0) {
    struct stat st;
    char *up;

    if (stat (dir, &st) == 0 &&
        !((st.st_uid == uid && (st.st_mode & S_IXUSR)) ||
          (st.st_gid == gid && (st.st_mode & S_IXGRP)) ||
          (st.st_mode & S_IXOTH)))
      ova_warn ("QEMU's user %u:%u may not be able to reach %s: %s is mode %04o",
                (unsigned) uid, (unsigned) gid, path, dir,
                (unsigned) (st.st_mode & 07777));
    up = g_path_get_dirname (dir);
    g_free (dir);
    dir = up;
  }
}

static gboolean
check_scratch_space (const char *scratch_dir, guint64 need, GError **error)
{
  struct statvfs sv;
  guint64 avail;

  if (g_mkdir_with_parents (scratch_dir, 0711) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot create %s: %s",
                 scratch_dir, g_strerror (errno));
    return FALSE;
  }
  if (statvfs (scratch_dir, &sv) < 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot stat file system of %s: %s",
                 scratch_dir, g_strerror (errno));
    return FALSE;
  }
  avail = (guint64) sv.f_bavail * sv.f_frsize;
  if (avail < need) {
    g_autofree char *a = ova_format_size (avail);
    g_autofree char *n = ova_format_size (need);

    g_set_error (error, OVA_ERROR, OVA_ERROR_NO_SPACE,
                 "scratch directory %s has %s free, the backup needs %s",
                 scratch_dir, a, n);
    return FALSE;
  }
  return TRUE;
}

/* The scratch file as VDSM makes it: qcow2 of the disk's size, QEMU's
 * own, 0660. Made here rather than by libvirt because the XML asks libvirt
 * not to relabel it, and a file libvirt creates would stay root's. Created
 * new (never through a link) and handed over by its descriptor. */
static gboolean
make_scratch (const char *path, guint64 size, uid_t uid, gid_t gid, GError **error)
{
  int fd = ova_create_new_file (path, error);
  gboolean ok;

  if (fd < 0)
    return FALSE;
  ok = stor_qemu_img_create (path, fd, "qcow2", "compat=1.1", size, NULL, NULL, error);
  if (ok && (fchown (fd, uid, gid) < 0 || fchmod (fd, 0660) < 0)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot give scratch file %s to QEMU's user %u:%u: %s", path,
                 (unsigned) uid, (unsigned) gid, g_strerror (errno));
    ok = FALSE;
  }
  close (fd);
  return ok;
}

static gboolean
strv_has (const char *const *v, const char *s)
{
  return v && g_strv_contains (v, s);
}

/* What virDomainBackupGetXMLDesc says. */
typedef struct job_xml {
  GPtrArray *stack;
  char *socket;
  GPtrArray *disks;     /* virt_backup_disk*, with target/export/bitmap */
} job_xml;

static void
job_start (GMarkupParseContext *pc, const char *name, const char **names,
           const char **values, gpointer data, GError **error)
{
  job_xml *j = data;
  guint depth = j->stack->len;

  g_ptr_array_add (j->stack, g_strdup (name));
  if (depth == 1 && strcmp (name, "server") == 0 && j->socket == NULL) {
    const char *s = attr (names, values, "socket");

    j->socket = s ? g_strdup (s) : NULL;
  }
  else if (depth == 2 && strcmp (name, "disk") == 0 &&
           strcmp (stack_at (j->stack, 1), "disks") == 0 &&
           g_strcmp0 (attr (names, values, "backup"), "no") != 0) {
    const char *n = attr (names, values, "name");
    const char *e = attr (names, values, "exportname");
    const char *bm = attr (names, values, "exportbitmap");
    virt_backup_disk *d;

    if (n == NULL)
      return;
    d = g_new0 (virt_backup_disk, 1);
    d->target = g_strdup (n);
    d->export_name = g_strdup (e ? e : n);
    d->bitmap_context = bm ? g_strconcat ("qemu:dirty-bitmap:", bm, NULL) : NULL;
    d->incremental = g_strcmp0 (attr (names, values, "backupmode"), "incremental") == 0;
    g_ptr_array_add (j->disks, d);
  }
}

static void
job_end (GMarkupParseContext *pc, const char *name, gpointer data, GError **error)
{
  job_xml *j = data;

  g_ptr_array_remove_index (j->stack, j->stack->len - 1);
}

static const GMarkupParser job_parser = {
  .start_element = job_start,
  .end_element = job_end,
};

static void
job_xml_clear (job_xml *j)
{
  g_clear_pointer (&j->stack, g_ptr_array_unref);
  g_clear_pointer (&j->socket, g_free);
  g_clear_pointer (&j->disks, g_ptr_array_unref);
}

static gboolean
parse_job_xml (const char *xml, const char *vm, job_xml *j, GError **error)
{
  GMarkupParseContext *pc;
  g_autoptr (GError) perr = NULL;
  gboolean ok;

  j->stack = g_ptr_array_new_with_free_func (g_free);
  j->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) backup_disk_free);
  pc = g_markup_parse_context_new (&job_parser, 0, j, NULL);
  ok = strlen (xml) <= LIBVIRT_XML_MAX &&
       g_markup_parse_context_parse (pc, xml, -1, &perr) &&
       g_markup_parse_context_end_parse (pc, &perr);
  g_markup_parse_context_free (pc);
  if (!ok)
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot parse the backup job XML of domain %s: %s", vm,
                 perr ? perr->message : "too large");
  return ok;
}

/* Fill b->disks from the running job: the export names and bitmaps. */
static gboolean
read_job (virDomainPtr dom, virt_backup *b, const virt_scratch_disk *want,
          gsize n_want, GError **error)
{
  job_xml j = { 0 };
  char *xml = virDomainBackupGetXMLDesc (dom, 0);
  gboolean ok = FALSE;

  if (xml == NULL) {
    set_libvirt_error (error, "cannot read the backup job of domain %s", dom_name (dom));
    return FALSE;
  }
  if (!parse_job_xml (xml, dom_name (dom), &j, error))
    goto out;
  if (g_strcmp0 (j.socket, b->socket_path) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "the backup job of domain %s serves socket %s, not %s",
                 dom_name (dom), j.socket ? j.socket : "(none)", b->socket_path);
    goto out;
  }
  for (gsize i = 0; i < n_want; i++) {
    virt_backup_disk *d = NULL;

    for (guint k = 0; k < j.disks->len && d == NULL; k++) {
      virt_backup_disk *c = g_ptr_array_index (j.disks, k);

      if (c->target && strcmp (c->target, want[i].name) == 0)
        d = g_ptr_array_steal_index (j.disks, k);
    }
    if (d == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "the backup job of domain %s does not export disk %s",
                   dom_name (dom), want[i].name);
      goto out;
    }
    if (want[i].incremental && d->bitmap_context == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "the backup job of domain %s exports disk %s without a bitmap",
                   dom_name (dom), want[i].name);
      backup_disk_free (d);
      goto out;
    }
    if (!want[i].incremental)
      g_clear_pointer (&d->bitmap_context, g_free);
    d->incremental = want[i].incremental;
    d->nbd_uri = virt_nbd_uri (d->export_name, b->socket_path);
    d->scratch = g_strdup (want[i].scratch);
    g_ptr_array_add (b->disks, d);
  }
  ok = TRUE;
 out:
  free (xml);
  job_xml_clear (&j);
  return ok;
}

static void
remove_dir_files (const char *dir)
{
  g_autoptr (GPtrArray) names = ova_list_dir_sorted (dir, NULL);

  for (guint i = 0; names && i < names->len; i++) {
    g_autofree char *p = g_build_filename (dir, g_ptr_array_index (names, i), NULL);

    if (unlink (p) < 0 && errno != ENOENT)
      ova_warn ("cannot remove %s: %s", p, g_strerror (errno));
  }
  if (rmdir (dir) < 0 && errno != ENOENT)
    ova_warn ("cannot remove %s: %s", dir, g_strerror (errno));
}

virt_backup *
virt_backup_begin (virDomainPtr dom, const virt_backup_request *req, GError **error)
{
  g_autoptr (virt_backup) b = NULL;
  g_autoptr (GPtrArray) disks = NULL;
  g_autoptr (GPtrArray) chosen = g_ptr_array_new ();       /* virt_disk* */
  g_autoptr (GPtrArray) names = g_ptr_array_new ();        /* const char* */
  g_autoptr (GPtrArray) scratch = g_ptr_array_new_with_free_func (g_free);
  g_autofree virt_scratch_disk *spec = NULL;
  g_autofree char *cp_xml = NULL;
  g_autofree char *bk_xml = NULL;
  dom_ctx ctx = { 0 };
  guint percent = req->scratch_percent ? req->scratch_percent : VIRT_SCRATCH_PERCENT_DEFAULT;
  guint64 need = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  gboolean ok;

  silence_libvirt ();
  b = virt_backup_for_id (req->run_dir, req->scratch_dir, req->backup_id, error);
  if (b == NULL)
    return NULL;
  if (req->checkpoint_id && !ova_uuid_is_valid (req->checkpoint_id)) {
    g_autofree char *q = ova_quote_untrusted (req->checkpoint_id, 64);

    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "invalid checkpoint id %s", q);
    return NULL;
  }
  if (req->from_checkpoint &&
      (*req->from_checkpoint == '\0' || strlen (req->from_checkpoint) > CHECKPOINT_NAME_MAX)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "invalid checkpoint name to start from");
    return NULL;
  }

  disks = virt_domain_disks (dom, error);
  if (disks == NULL)
    return NULL;
  for (gsize i = 0; req->disks && req->disks[i]; i++) {
    gboolean found = FALSE;

    for (guint k = 0; k < disks->len && !found; k++)
      found = g_strcmp0 (((virt_disk *) g_ptr_array_index (disks, k))->target,
                         req->disks[i]) == 0;
    if (!found) {
      g_autofree char *q = ova_quote_untrusted (req->disks[i], 64);

      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND, "domain %s has no disk %s",
                   dom_name (dom), q);
      return NULL;
    }
  }
  for (guint k = 0; k < disks->len; k++) {
    virt_disk *d = g_ptr_array_index (disks, k);

    if (req->disks && !strv_has (req->disks, d->target))
      continue;
    if (d->unsupported) {
      /* Asked for by name: refuse. Picked by default: leave it out. */
      if (req->disks) {
        g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                     "disk %s of domain %s (%s) cannot be backed up: %s",
                     d->target, dom_name (dom), d->path ? d->path : "no path",
                     d->unsupported);
        return NULL;
      }
      continue;
    }
    g_ptr_array_add (chosen, d);
    g_ptr_array_add (names, d->target);
    need += d->virtual_size / 100 * percent;
  }
  if (chosen->len == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "domain %s has no disk that can be backed up", dom_name (dom));
    return NULL;
  }
  g_ptr_array_add (names, NULL);

  if (!check_scratch_space (req->scratch_dir, need, error))
    return NULL;

  /* Who QEMU runs as comes from the live XML's DAC label. */
  if (!parse_domain_xml (dom, &ctx, error)) {
    dom_ctx_clear (&ctx);
    return NULL;
  }
  ok = qemu_identity (ctx.dac_label, &uid, &gid, error);
  dom_ctx_clear (&ctx);
  if (!ok)
    return NULL;

  spec = g_new0 (virt_scratch_disk, chosen->len);
  for (guint k = 0; k < chosen->len; k++) {
    virt_disk *d = g_ptr_array_index (chosen, k);
    char *path = g_strdup_printf ("%s/%s.qcow2", b->scratch_dir, d->target);

    g_ptr_array_add (scratch, path);
    spec[k].name = d->target;
    spec[k].scratch = path;
    spec[k].incremental = req->from_checkpoint && !strv_has (req->full_disks, d->target);
  }
  cp_xml = req->checkpoint_id
    ? virt_checkpoint_xml (req->checkpoint_id, b->backup_id,
                           (const char *const *) names->pdata)
    : NULL;
  bk_xml = virt_backup_xml (req->from_checkpoint, b->socket_path, spec, chosen->len);

  if (!make_backup_dir (b->socket_dir, TRUE, uid, gid, error))
    return NULL;
  if (!make_backup_dir (b->scratch_dir, FALSE, uid, gid, error)) {
    rmdir (b->socket_dir);
    return NULL;
  }
  warn_unreachable (b->socket_path, uid, gid);
  warn_unreachable (b->scratch_dir, uid, gid);
  ova_debug ("backup XML for domain %s:\n%s", dom_name (dom), bk_xml);

  for (guint k = 0; k < chosen->len; k++) {
    virt_disk *d = g_ptr_array_index (chosen, k);

    if (!make_scratch (spec[k].scratch, d->virtual_size, uid, gid, error)) {
      remove_dir_files (b->scratch_dir);
      remove_dir_files (b->socket_dir);
      return NULL;
    }
  }

  if (virDomainBackupBegin (dom, bk_xml, cp_xml,
                            VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL) < 0) {
    set_libvirt_error (error, "cannot begin backup %s of domain %s",
                       b->backup_id, dom_name (dom));
    remove_dir_files (b->scratch_dir);
    remove_dir_files (b->socket_dir);
    return NULL;
  }

  if (!read_job (dom, b, spec, chosen->len, error)) {
    if (!virt_backup_end (dom, b, NULL))
      ova_warn ("backup %s of domain %s: the job could not be ended",
                b->backup_id, dom_name (dom));
    return NULL;
  }
  return g_steal_pointer (&b);
}

/* Is the domain running a backup job that serves our socket? */
static gboolean
job_is_ours (virDomainPtr dom, const virt_backup *b, gboolean *ours, GError **error)
{
  job_xml j = { 0 };
  char *xml = virDomainBackupGetXMLDesc (dom, 0);
  int code;

  *ours = FALSE;
  if (xml == NULL) {
    code = virGetLastErrorCode ();
    if (code == VIR_ERR_NO_DOMAIN_BACKUP || code == VIR_ERR_NO_DOMAIN ||
        code == VIR_ERR_OPERATION_INVALID)
      return TRUE;
    set_libvirt_error (error, "cannot read the backup job of domain %s", dom_name (dom));
    return FALSE;
  }
  if (!parse_job_xml (xml, dom_name (dom), &j, error)) {
    free (xml);
    job_xml_clear (&j);
    return FALSE;
  }
  free (xml);
  *ours = g_strcmp0 (j.socket, b->socket_path) == 0;
  if (!*ours)
    ova_warn ("domain %s runs a backup job on %s, not ours (%s): left alone",
              dom_name (dom), j.socket ? j.socket : "(no socket)", b->socket_path);
  job_xml_clear (&j);
  return TRUE;
}

gboolean
virt_backup_end (virDomainPtr dom, virt_backup *b, GError **error)
{
  g_autoptr (GError) err = NULL;
  gboolean ours = FALSE;
  gint64 deadline;
  int state = 0, reason = 0;

  if (b == NULL || b->ended)
    return TRUE;
  silence_libvirt ();

  if (dom && job_is_ours (dom, b, &ours, &err) && ours &&
      virDomainAbortJob (dom) < 0) {
    int code = virGetLastErrorCode ();

    /* No job any more (it ended, or the domain went away). */
    if (code != VIR_ERR_OPERATION_INVALID && code != VIR_ERR_NO_DOMAIN)
      set_libvirt_error (&err, "cannot end backup %s of domain %s",
                         b->backup_id, dom_name (dom));
  }

  /* The job is gone once QEMU has removed its socket. */
  deadline = g_get_monotonic_time () + VIRT_SOCKET_WAIT_MS * G_TIME_SPAN_MILLISECOND;
  while (g_file_test (b->socket_path, G_FILE_TEST_EXISTS)) {
    if (g_get_monotonic_time () > deadline) {
      if (err == NULL)
        g_set_error (&err, OVA_ERROR, OVA_ERROR_INTERNAL,
                     "backup %s: socket %s still exists %d s after the job was ended",
                     b->backup_id, b->socket_path, VIRT_SOCKET_WAIT_MS / 1000);
      break;
    }
    g_usleep (50 * 1000);
  }
  if (err == NULL)
    remove_dir_files (b->socket_dir);
  /* QEMU keeps an unlinked scratch file open as long as it needs it. */
  remove_dir_files (b->scratch_dir);

  if (dom && virDomainGetState (dom, &state, &reason, 0) == 0 &&
      state == VIR_DOMAIN_PAUSED)
    ova_warn ("domain %s is paused (reason %d) after backup %s",
              dom_name (dom), reason, b->backup_id);

  if (err) {
    g_propagate_error (error, g_steal_pointer (&err));
    return FALSE;
  }
  b->ended = TRUE;
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Checkpoints */

GPtrArray *
virt_checkpoint_list (virDomainPtr dom, GError **error)
{
  virDomainCheckpointPtr *cps = NULL;
  GPtrArray *out;
  int n;

  silence_libvirt ();
  n = virDomainListAllCheckpoints (dom, &cps, VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL);
  if (n < 0) {
    set_libvirt_error (error, "cannot list the checkpoints of domain %s", dom_name (dom));
    return NULL;
  }
  out = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < n; i++) {
    g_ptr_array_add (out, g_strdup (virDomainCheckpointGetName (cps[i])));
    virDomainCheckpointFree (cps[i]);
  }
  free (cps);
  return out;
}

char *
virt_checkpoint_dump (virDomainPtr dom, const char *name, GError **error)
{
  virDomainCheckpointPtr cp;
  char *xml;
  char *out;

  silence_libvirt ();
  cp = virDomainCheckpointLookupByName (dom, name, 0);
  if (cp == NULL) {
    g_autofree char *q = ova_quote_untrusted (name, 64);

    set_libvirt_error (error, "domain %s has no checkpoint %s", dom_name (dom), q);
    return NULL;
  }
  xml = virDomainCheckpointGetXMLDesc (cp, VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN);
  virDomainCheckpointFree (cp);
  if (xml == NULL) {
    set_libvirt_error (error, "cannot get the XML of checkpoint %s of domain %s",
                       name, dom_name (dom));
    return NULL;
  }
  out = g_strdup (xml);
  free (xml);
  return out;
}

char *
virt_checkpoint_saved_path (const char *state_dir, const char *vm_uuid,
                            const char *name, GError **error)
{
  g_autofree char *file = NULL;

  if (!ova_uuid_is_valid (vm_uuid) || !ova_uuid_is_valid (name)) {
    g_autofree char *q = ova_quote_untrusted (name, 64);

    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE,
                 "checkpoint %s: only checkpoints named by a UUID are saved", q);
    return NULL;
  }
  file = g_strconcat (name, ".xml", NULL);
  return g_build_filename (state_dir, "checkpoints", vm_uuid, file, NULL);
}

static gboolean
dom_uuid (virDomainPtr dom, char out[VIR_UUID_STRING_BUFLEN], GError **error)
{
  if (virDomainGetUUIDString (dom, out) < 0) {
    set_libvirt_error (error, "cannot get the UUID of domain %s", dom_name (dom));
    return FALSE;
  }
  return TRUE;
}

gboolean
virt_checkpoint_save (virDomainPtr dom, const char *name, const char *state_dir,
                      GError **error)
{
  char uuid[VIR_UUID_STRING_BUFLEN];
  g_autofree char *path = NULL;
  g_autofree char *xml = NULL;

  if (!dom_uuid (dom, uuid, error))
    return FALSE;
  path = virt_checkpoint_saved_path (state_dir, uuid, name, error);
  if (path == NULL)
    return FALSE;
  xml = virt_checkpoint_dump (dom, name, error);
  if (xml == NULL)
    return FALSE;
  return ova_write_private_file (path, xml, error);
}

/* Name and parent of a saved checkpoint. */
typedef struct saved_cp {
  GPtrArray *stack;
  GString *text;
  char *name;
  char *parent;
  char *xml;
} saved_cp;

static void
saved_start (GMarkupParseContext *pc, const char *name, const char **names,
             const char **values, gpointer data, GError **error)
{
  saved_cp *s = data;

  g_ptr_array_add (s->stack, g_strdup (name));
  g_string_truncate (s->text, 0);
}

static void
saved_end (GMarkupParseContext *pc, const char *name, gpointer data, GError **error)
{
  saved_cp *s = data;
  guint depth = s->stack->len;

  if (strcmp (name, "name") == 0 && s->text->len <= CHECKPOINT_NAME_MAX) {
    if (depth == 2 && s->name == NULL)
      s->name = g_strstrip (g_strdup (s->text->str));
    else if (depth == 3 && strcmp (stack_at (s->stack, 1), "parent") == 0 &&
             s->parent == NULL)
      s->parent = g_strstrip (g_strdup (s->text->str));
  }
  g_ptr_array_remove_index (s->stack, depth - 1);
}

static void
saved_text (GMarkupParseContext *pc, const char *text, gsize len, gpointer data,
            GError **error)
{
  saved_cp *s = data;

  if (s->text->len + len <= CHECKPOINT_NAME_MAX + 1)
    g_string_append_len (s->text, text, len);
}

static const GMarkupParser saved_parser = {
  .start_element = saved_start,
  .end_element = saved_end,
  .text = saved_text,
};

static void
saved_cp_free (saved_cp *s)
{
  if (s == NULL)
    return;
  if (s->stack)
    g_ptr_array_unref (s->stack);
  if (s->text)
    g_string_free (s->text, TRUE);
  g_free (s->name);
  g_free (s->parent);
  g_free (s->xml);
  g_free (s);
}

static saved_cp *
load_saved (const char *path, const char *expect_name, GError **error)
{
  saved_cp *s = g_new0 (saved_cp, 1);
  GMarkupParseContext *pc;
  g_autoptr (GError) perr = NULL;
  gsize len;
  gboolean ok;

  if (!ova_read_file_direct (path, SAVED_XML_MAX, &s->xml, &len, error)) {
    saved_cp_free (s);
    return NULL;
  }
  s->stack = g_ptr_array_new_with_free_func (g_free);
  s->text = g_string_new (NULL);
  pc = g_markup_parse_context_new (&saved_parser, 0, s, NULL);
  ok = g_markup_parse_context_parse (pc, s->xml, len, &perr) &&
       g_markup_parse_context_end_parse (pc, &perr);
  g_markup_parse_context_free (pc);
  if (!ok || g_strcmp0 (s->name, expect_name) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: %s", path,
                 !ok ? perr->message : "not the checkpoint its file name says");
    saved_cp_free (s);
    return NULL;
  }
  return s;
}

gboolean
virt_checkpoint_redefine_missing (virDomainPtr dom, const char *state_dir,
                                  GPtrArray **redefined, GError **error)
{
  char uuid[VIR_UUID_STRING_BUFLEN];
  g_autofree char *dir = NULL;
  g_autoptr (GPtrArray) known = NULL;
  g_autoptr (GPtrArray) files = NULL;
  g_autoptr (GPtrArray) pending = g_ptr_array_new_with_free_func ((GDestroyNotify) saved_cp_free);
  g_autoptr (GPtrArray) done = g_ptr_array_new_with_free_func (g_free);
  gboolean progress = TRUE;

  if (!dom_uuid (dom, uuid, error))
    return FALSE;
  known = virt_checkpoint_list (dom, error);
  if (known == NULL)
    return FALSE;
  dir = g_build_filename (state_dir, "checkpoints", uuid, NULL);
  if (g_file_test (dir, G_FILE_TEST_IS_DIR)) {
    files = ova_list_dir_sorted (dir, error);
    if (files == NULL)
      return FALSE;
  }
  for (guint i = 0; files && i < files->len; i++) {
    const char *f = g_ptr_array_index (files, i);
    g_autofree char *name = NULL;
    g_autofree char *path = NULL;
    saved_cp *s;

    if (!g_str_has_suffix (f, ".xml"))
      continue;
    name = g_strndup (f, strlen (f) - 4);
    if (!ova_uuid_is_valid (name) ||
        g_ptr_array_find_with_equal_func (known, name, g_str_equal, NULL))
      continue;
    path = g_build_filename (dir, f, NULL);
    s = load_saved (path, name, error);
    if (s == NULL)
      return FALSE;
    g_ptr_array_add (pending, s);
  }

  /* Parents first: libvirt refuses a checkpoint whose parent it does not know. */
  while (pending->len > 0 && progress) {
    progress = FALSE;
    for (guint i = 0; i < pending->len; i++) {
      saved_cp *s = g_ptr_array_index (pending, i);
      virDomainCheckpointPtr cp;

      if (s->parent &&
          !g_ptr_array_find_with_equal_func (known, s->parent, g_str_equal, NULL))
        continue;
      cp = virDomainCheckpointCreateXML (dom, s->xml,
                                         VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE |
                                         VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE);
      if (cp == NULL) {
        set_libvirt_error (error, "cannot redefine checkpoint %s of domain %s from %s/%s.xml",
                           s->name, dom_name (dom), dir, s->name);
        return FALSE;
      }
      virDomainCheckpointFree (cp);
      ova_info ("redefined checkpoint %s of domain %s", s->name, dom_name (dom));
      g_ptr_array_add (known, g_strdup (s->name));
      g_ptr_array_add (done, g_strdup (s->name));
      g_ptr_array_remove_index (pending, i);
      progress = TRUE;
      break;
    }
  }
  if (pending->len > 0) {
    saved_cp *s = g_ptr_array_index (pending, 0);

    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "cannot redefine checkpoint %s of domain %s: its parent %s is "
                 "neither known to libvirt nor saved in %s",
                 s->name, dom_name (dom), s->parent, dir);
    return FALSE;
  }
  if (redefined)
    *redefined = g_steal_pointer (&done);
  return TRUE;
}

gboolean
virt_checkpoint_delete (virDomainPtr dom, const char *name, const char *state_dir,
                        GError **error)
{
  virDomainCheckpointPtr cp;
  char uuid[VIR_UUID_STRING_BUFLEN];
  g_autoptr (GPtrArray) left = NULL;
  int rc;

  silence_libvirt ();
  cp = virDomainCheckpointLookupByName (dom, name, 0);
  if (cp == NULL) {
    g_autofree char *q = ova_quote_untrusted (name, 64);

    set_libvirt_error (error, "domain %s has no checkpoint %s", dom_name (dom), q);
    return FALSE;
  }
  rc = virDomainCheckpointDelete (cp, 0);
  virDomainCheckpointFree (cp);
  if (rc < 0) {
    set_libvirt_error (error, "cannot delete checkpoint %s of domain %s",
                       name, dom_name (dom));
    return FALSE;
  }
  if (state_dir == NULL || !ova_uuid_is_valid (name))
    return TRUE;

  if (!dom_uuid (dom, uuid, error))
    return FALSE;
  {
    g_autofree char *path = virt_checkpoint_saved_path (state_dir, uuid, name, error);

    if (path == NULL)
      return FALSE;
    if (unlink (path) < 0 && errno != ENOENT) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL, "cannot remove %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
  }
  /* Its children now have its parent as theirs. */
  left = virt_checkpoint_list (dom, error);
  if (left == NULL)
    return FALSE;
  for (guint i = 0; i < left->len; i++) {
    const char *other = g_ptr_array_index (left, i);
    g_autofree char *path = NULL;

    if (!ova_uuid_is_valid (other))
      continue;
    path = virt_checkpoint_saved_path (state_dir, uuid, other, NULL);
    if (path && g_file_test (path, G_FILE_TEST_EXISTS) &&
        !virt_checkpoint_save (dom, other, state_dir, error))
      return FALSE;
  }
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Bitmap chains */

static const char *
json_str (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;

  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
    ? json_node_get_string (n) : NULL;
}

/* The bitmap object named name in one node of the chain, or NULL. */
static JsonObject *
find_bitmap (JsonObject *image, const char *name)
{
  JsonNode *fs = json_object_get_member (image, "format-specific");
  JsonObject *data = NULL;
  JsonNode *bms;
  JsonArray *arr;

  if (fs && JSON_NODE_HOLDS_OBJECT (fs)) {
    JsonNode *d = json_object_get_member (json_node_get_object (fs), "data");

    data = d && JSON_NODE_HOLDS_OBJECT (d) ? json_node_get_object (d) : NULL;
  }
  bms = data ? json_object_get_member (data, "bitmaps") : NULL;
  if (bms == NULL || !JSON_NODE_HOLDS_ARRAY (bms))
    return NULL;
  arr = json_node_get_array (bms);
  for (guint i = 0; i < json_array_get_length (arr); i++) {
    JsonNode *b = json_array_get_element (arr, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT (b) ? json_node_get_object (b) : NULL;

    if (o && g_strcmp0 (json_str (o, "name"), name) == 0)
      return o;
  }
  return NULL;
}

static gboolean
has_flag (JsonObject *bitmap, const char *flag)
{
  JsonNode *f = json_object_get_member (bitmap, "flags");
  JsonArray *arr;

  if (f == NULL || !JSON_NODE_HOLDS_ARRAY (f))
    return FALSE;
  arr = json_node_get_array (f);
  for (guint i = 0; i < json_array_get_length (arr); i++) {
    JsonNode *n = json_array_get_element (arr, i);

    if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING &&
        strcmp (json_node_get_string (n), flag) == 0)
      return TRUE;
  }
  return FALSE;
}

/* The features.md §5 rules on a chain of `qemu-img info` objects, top first. */
static char *
chain_problem (JsonArray *chain, const char *bitmap, gboolean running)
{
  g_autofree char *last_with = NULL;
  guint n = json_array_get_length (chain);
  gboolean ended = FALSE;

  /* Top first; bitmaps stop at the first node that is not qcow2. */
  for (guint i = 0; i < n; i++) {
    JsonNode *node = json_array_get_element (chain, i);
    JsonObject *img = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
    const char *file = img ? json_str (img, "filename") : NULL;
    JsonObject *bm;

    if (file == NULL)
      file = "(unnamed)";
    if (img == NULL || g_strcmp0 (json_str (img, "format"), "qcow2") != 0) {
      if (i == 0)
        return g_strdup_printf ("bitmap %s cannot be in the top volume %s: it is not qcow2",
                                bitmap, file);
      break;
    }
    bm = find_bitmap (img, bitmap);
    if (bm == NULL) {
      if (i == 0)
        return g_strdup_printf ("bitmap %s is not in the top volume %s", bitmap, file);
      ended = TRUE;
      continue;
    }
    if (ended)
      return g_strdup_printf ("bitmap %s is in %s but missing in a volume above it "
                              "(below %s): the chain has a gap", bitmap, file, last_with);
    if (!has_flag (bm, "auto"))
      return g_strdup_printf ("bitmap %s in %s is disabled (not auto): it did not "
                              "record every write", bitmap, file);
    if (!running && has_flag (bm, "in-use"))
      return g_strdup_printf ("bitmap %s in %s is in-use: it was not saved when the "
                              "image was last closed", bitmap, file);
    g_free (last_with);
    last_with = g_strdup (file);
  }
  return NULL;
}

char *
virt_bitmap_chain_problem_json (const char *json, const char *bitmap,
                                gboolean running, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) perr = NULL;
  JsonNode *root;

  if (strlen (json) > CHAIN_JSON_MAX || !json_parser_load_from_data (parser, json, -1, &perr)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot parse qemu-img info output: %s",
                 perr ? perr->message : "too large");
    return NULL;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_ARRAY (root) ||
      json_array_get_length (json_node_get_array (root)) == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "qemu-img info did not give a list of images");
    return NULL;
  }
  return chain_problem (json_node_get_array (root), bitmap, running);
}

/* One layer's `qemu-img info`, named by its path rather than by its spec. */
static JsonNode *
layer_info (const stor_layer *l, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autofree char *out = NULL;
  g_autoptr (GError) perr = NULL;
  JsonNode *root;

  if (!stor_qemu_img_info (l->path, l->format, &out, error))
    return NULL;
  if (!json_parser_load_from_data (parser, out, -1, &perr) ||
      (root = json_parser_get_root (parser)) == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: cannot parse qemu-img info output: %s", l->path,
                 perr ? perr->message : "not a JSON object");
    return NULL;
  }
  json_object_set_string_member (json_node_get_object (root), "filename", l->path);
  return json_node_copy (root);
}

char *
virt_bitmap_chain_problem (GPtrArray *layers, const char *bitmap, gboolean running,
                           GError **error)
{
  g_autoptr (JsonArray) chain = json_array_new ();

  /* Bitmaps live only in qcow2 layers, and stop at the first other one. */
  for (guint i = 0; i < layers->len; i++) {
    const stor_layer *l = g_ptr_array_index (layers, i);
    JsonNode *info;

    if (strcmp (l->format, "qcow2") != 0) {
      JsonObject *o = json_object_new ();

      json_object_set_string_member (o, "filename", l->path);
      json_object_set_string_member (o, "format", l->format);
      json_array_add_object_element (chain, o);
      break;
    }
    info = layer_info (l, error);
    if (info == NULL)
      return NULL;
    json_array_add_element (chain, info);
  }
  return chain_problem (chain, bitmap, running);
}

/* ------------------------------------------------------------------ */
/* Bitmaps of a stopped domain's images */

gboolean
virt_image_bitmap_add (const char *image, const char *bitmap, GError **error)
{
  return stor_qemu_img_bitmap (image, "--add", bitmap, NULL, error);
}

gboolean
virt_image_bitmap_disable (const char *image, const char *bitmap, GError **error)
{
  return stor_qemu_img_bitmap (image, "--disable", bitmap, NULL, error);
}

gboolean
virt_image_bitmap_enable (const char *image, const char *bitmap, GError **error)
{
  return stor_qemu_img_bitmap (image, "--enable", bitmap, NULL, error);
}

gboolean
virt_image_bitmap_merge (const char *image, const char *from, const char *into,
                         GError **error)
{
  return stor_qemu_img_bitmap (image, "--merge", into, from, error);
}

gboolean
virt_image_bitmap_remove (const char *image, const char *bitmap, GError **error)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GPtrArray) bitmaps = NULL;

  if (stor_qemu_img_bitmap (image, "--remove", bitmap, NULL, &err))
    return TRUE;
  /* Only when the removal failed: was there nothing to remove? */
  bitmaps = virt_image_bitmaps (image, NULL);
  for (guint i = 0; bitmaps != NULL && i < bitmaps->len; i++)
    if (strcmp (((const virt_image_bitmap *) bitmaps->pdata[i])->name, bitmap) == 0) {
      g_propagate_error (error, g_steal_pointer (&err));
      return FALSE;
    }
  if (bitmaps == NULL) {
    g_propagate_error (error, g_steal_pointer (&err));
    return FALSE;
  }
  return TRUE;
}

void
virt_image_bitmap_free (virt_image_bitmap *b)
{
  if (b == NULL)
    return;
  g_free (b->name);
  g_free (b);
}

/* qemu-img info of one image: {"format-specific":{"data":{"bitmaps":[...]}}}. */
GPtrArray *
virt_image_bitmaps (const char *image, GError **error)
{
  g_autofree char *out = NULL;
  g_autoptr (GError) err = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GPtrArray) result =
    g_ptr_array_new_with_free_func ((GDestroyNotify) virt_image_bitmap_free);
  JsonNode *root;
  JsonNode *fs;
  JsonNode *data = NULL;
  JsonNode *bms = NULL;
  JsonArray *arr;

  if (!stor_qemu_img_info (image, "qcow2", &out, &err)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "cannot read the bitmaps: %s", err->message);
    return NULL;
  }
  if (strlen (out) > CHAIN_JSON_MAX ||
      !json_parser_load_from_data (parser, out, -1, &err) ||
      (root = json_parser_get_root (parser)) == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "%s: cannot parse qemu-img info output: %s", image,
                 err ? err->message : "not a JSON object");
    return NULL;
  }
  fs = json_object_get_member (json_node_get_object (root), "format-specific");
  if (fs && JSON_NODE_HOLDS_OBJECT (fs))
    data = json_object_get_member (json_node_get_object (fs), "data");
  if (data && JSON_NODE_HOLDS_OBJECT (data))
    bms = json_object_get_member (json_node_get_object (data), "bitmaps");
  if (bms == NULL || !JSON_NODE_HOLDS_ARRAY (bms))
    return g_steal_pointer (&result);
  arr = json_node_get_array (bms);
  for (guint i = 0; i < json_array_get_length (arr); i++) {
    JsonNode *n = json_array_get_element (arr, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
    const char *name = json_str (o, "name");
    virt_image_bitmap *b;

    if (name == NULL || *name == '\0' || strlen (name) > CHECKPOINT_NAME_MAX) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                   "%s: qemu-img info lists a bitmap without a valid name", image);
      return NULL;
    }
    b = g_new0 (virt_image_bitmap, 1);
    b->name = g_strdup (name);
    b->enabled = has_flag (o, "auto");
    b->in_use = has_flag (o, "in-use");
    g_ptr_array_add (result, b);
  }
  return g_steal_pointer (&result);
}

char *
virt_checkpoint_redefine_xml (const char *name, const char *parent, gint64 created,
                              const char *const *targets)
{
  GString *s = g_string_new ("<domaincheckpoint>\n");

  markup_append (s, "  <name>%s</name>\n", name);
  if (parent)
    markup_append (s, "  <parent>\n    <name>%s</name>\n  </parent>\n", parent);
  g_string_append_printf (s, "  <creationTime>%" G_GINT64_FORMAT "</creationTime>\n",
                          created);
  append_checkpoint_disks (s, targets, name);
  g_string_append (s, "</domaincheckpoint>\n");
  return g_string_free (s, FALSE);
}

gboolean
virt_checkpoint_save_xml (const char *state_dir, const char *vm_uuid,
                          const char *name, const char *xml, GError **error)
{
  g_autofree char *path = virt_checkpoint_saved_path (state_dir, vm_uuid, name, error);

  if (path == NULL)
    return FALSE;
  return ova_write_private_file (path, xml, error);
}
