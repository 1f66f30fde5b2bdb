/* ovagent: the pull-mode backup job of a running domain: its socket and
 * scratch directories, the scratch files QEMU writes, begin, read back, end. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include "backup-job.h"
#include "error.h"
#include "libvirt.h"
#include "log.h"
#include "qemu-img.h"
#include "util.h"
#include "virt-priv.h"
#include "xml-build.h"

/* What QEMU runs as when neither the domain nor qemu.conf says (Debian). */
#define QEMU_USER_DEFAULT "libvirt-qemu"
#define QEMU_GROUP_DEFAULT "kvm"
#define QEMU_CONF "/etc/libvirt/qemu.conf"

#define SOCKET_NAME "nbd.sock"

char *
virt_nbd_uri (const char *export_name, const char *socket_path)
{
  g_autofree char *e = g_uri_escape_string (export_name, NULL, FALSE);
  g_autofree char *p = g_uri_escape_string (socket_path, "/", FALSE);

  return g_strdup_printf ("nbd+unix:///%s?socket=%s", e, p);
}


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
    const char *s = virt_xml_attr (names, values, "socket");

    j->socket = s ? g_strdup (s) : NULL;
  }
  else if (depth == 2 && strcmp (name, "disk") == 0 &&
           strcmp (virt_xml_stack_at (j->stack, 1), "disks") == 0 &&
           g_strcmp0 (virt_xml_attr (names, values, "backup"), "no") != 0) {
    const char *n = virt_xml_attr (names, values, "name");
    const char *e = virt_xml_attr (names, values, "exportname");
    const char *bm = virt_xml_attr (names, values, "exportbitmap");
    virt_backup_disk *d;

    if (n == NULL)
      return;
    d = g_new0 (virt_backup_disk, 1);
    d->target = g_strdup (n);
    d->export_name = g_strdup (e ? e : n);
    d->bitmap_context = bm ? g_strconcat ("qemu:dirty-bitmap:", bm, NULL) : NULL;
    d->incremental = g_strcmp0 (virt_xml_attr (names, values, "backupmode"), "incremental") == 0;
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
  ok = strlen (xml) <= VIRT_LIBVIRT_XML_MAX &&
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
    virt_set_libvirt_error (error, "cannot read the backup job of domain %s", virt_dom_name (dom));
    return FALSE;
  }
  if (!parse_job_xml (xml, virt_dom_name (dom), &j, error))
    goto out;
  if (g_strcmp0 (j.socket, b->socket_path) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                 "the backup job of domain %s serves socket %s, not %s",
                 virt_dom_name (dom), j.socket ? j.socket : "(none)", b->socket_path);
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
                   virt_dom_name (dom), want[i].name);
      goto out;
    }
    if (want[i].incremental && d->bitmap_context == NULL) {
      g_set_error (error, OVA_ERROR, OVA_ERROR_INTERNAL,
                   "the backup job of domain %s exports disk %s without a bitmap",
                   virt_dom_name (dom), want[i].name);
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

/* The ids and names the request gives, before anything is looked up. */
static gboolean
check_checkpoints (const virt_backup_request *req, GError **error)
{
  if (req->checkpoint_id && !ova_uuid_is_valid (req->checkpoint_id)) {
    g_autofree char *q = ova_quote_untrusted (req->checkpoint_id, 64);

    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "invalid checkpoint id %s", q);
    return FALSE;
  }
  if (req->from_checkpoint &&
      (*req->from_checkpoint == '\0' || strlen (req->from_checkpoint) > VIRT_CHECKPOINT_NAME_MAX)) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, "invalid checkpoint name to start from");
    return FALSE;
  }
  return TRUE;
}

/* The disks to back up (virt_disk*, borrowed from disks) into chosen, and
 * the scratch space they need into *need. */
static gboolean
choose_disks (virDomainPtr dom, const virt_backup_request *req, GPtrArray *disks,
              GPtrArray *chosen, guint64 *need, GError **error)
{
  guint percent = req->scratch_percent ? req->scratch_percent : VIRT_SCRATCH_PERCENT_DEFAULT;

  for (gsize i = 0; req->disks && req->disks[i]; i++) {
    gboolean found = FALSE;

    for (guint k = 0; k < disks->len && !found; k++)
      found = g_strcmp0 (((virt_disk *) g_ptr_array_index (disks, k))->target,
                         req->disks[i]) == 0;
    if (!found) {
      g_autofree char *q = ova_quote_untrusted (req->disks[i], 64);

      g_set_error (error, OVA_ERROR, OVA_ERROR_NOT_FOUND, "domain %s has no disk %s",
                   virt_dom_name (dom), q);
      return FALSE;
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
                     d->target, virt_dom_name (dom), d->path ? d->path : "no path",
                     d->unsupported);
        return FALSE;
      }
      continue;
    }
    g_ptr_array_add (chosen, d);
    *need += d->virtual_size / 100 * percent;
  }
  if (chosen->len == 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_UNSUPPORTED,
                 "domain %s has no disk that can be backed up", virt_dom_name (dom));
    return FALSE;
  }
  return TRUE;
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
  g_autoptr (virt_domain_xml) x = NULL;
  guint64 need = 0;
  uid_t uid = 0;
  gid_t gid = 0;

  virt_silence_libvirt ();
  b = virt_backup_for_id (req->run_dir, req->scratch_dir, req->backup_id, error);
  if (b == NULL)
    return NULL;
  if (!check_checkpoints (req, error))
    return NULL;
  disks = virt_domain_disks (dom, error);
  if (disks == NULL || !choose_disks (dom, req, disks, chosen, &need, error))
    return NULL;
  for (guint k = 0; k < chosen->len; k++)
    g_ptr_array_add (names, ((virt_disk *) g_ptr_array_index (chosen, k))->target);
  g_ptr_array_add (names, NULL);

  if (!check_scratch_space (req->scratch_dir, need, error))
    return NULL;

  /* Who QEMU runs as comes from the live XML's DAC label. */
  x = virt_domain_xml_load (dom, error);
  if (x == NULL || !qemu_identity (x->dac_label, &uid, &gid, error))
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
  ova_debug ("backup XML for domain %s:\n%s", virt_dom_name (dom), bk_xml);

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
    virt_set_libvirt_error (error, "cannot begin backup %s of domain %s",
                       b->backup_id, virt_dom_name (dom));
    remove_dir_files (b->scratch_dir);
    remove_dir_files (b->socket_dir);
    return NULL;
  }

  if (!read_job (dom, b, spec, chosen->len, error)) {
    if (!virt_backup_end (dom, b, NULL))
      ova_warn ("backup %s of domain %s: the job could not be ended",
                b->backup_id, virt_dom_name (dom));
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
    virt_set_libvirt_error (error, "cannot read the backup job of domain %s", virt_dom_name (dom));
    return FALSE;
  }
  if (!parse_job_xml (xml, virt_dom_name (dom), &j, error)) {
    free (xml);
    job_xml_clear (&j);
    return FALSE;
  }
  free (xml);
  *ours = g_strcmp0 (j.socket, b->socket_path) == 0;
  if (!*ours)
    ova_warn ("domain %s runs a backup job on %s, not ours (%s): left alone",
              virt_dom_name (dom), j.socket ? j.socket : "(no socket)", b->socket_path);
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
  virt_silence_libvirt ();

  if (dom && job_is_ours (dom, b, &ours, &err) && ours &&
      virDomainAbortJob (dom) < 0) {
    int code = virGetLastErrorCode ();

    /* No job any more (it ended, or the domain went away). */
    if (code != VIR_ERR_OPERATION_INVALID && code != VIR_ERR_NO_DOMAIN)
      virt_set_libvirt_error (&err, "cannot end backup %s of domain %s",
                         b->backup_id, virt_dom_name (dom));
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
              virt_dom_name (dom), reason, b->backup_id);

  if (err) {
    g_propagate_error (error, g_steal_pointer (&err));
    return FALSE;
  }
  b->ended = TRUE;
  return TRUE;
}

