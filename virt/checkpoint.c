/* ovagent: the checkpoints of a libvirt domain: list, dump, save under the
 * state directory, redefine the saved ones libvirt forgot, delete. */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "checkpoint-xml.h"
#include "error.h"
#include "log.h"
#include "util.h"
#include "virt-priv.h"

GPtrArray *
virt_checkpoint_list (virDomainPtr dom, GError **error)
{
  virDomainCheckpointPtr *cps = NULL;
  GPtrArray *out;
  int n;

  virt_silence_libvirt ();
  n = virDomainListAllCheckpoints (dom, &cps, VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL);
  if (n < 0) {
    virt_set_libvirt_error (error, "cannot list the checkpoints of domain %s", virt_dom_name (dom));
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

  virt_silence_libvirt ();
  cp = virDomainCheckpointLookupByName (dom, name, 0);
  if (cp == NULL) {
    g_autofree char *q = ova_quote_untrusted (name, 64);

    virt_set_libvirt_error (error, "domain %s has no checkpoint %s", virt_dom_name (dom), q);
    return NULL;
  }
  xml = virDomainCheckpointGetXMLDesc (cp, VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN);
  virDomainCheckpointFree (cp);
  if (xml == NULL) {
    virt_set_libvirt_error (error, "cannot get the XML of checkpoint %s of domain %s",
                       name, virt_dom_name (dom));
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

gboolean
virt_checkpoint_save (virDomainPtr dom, const char *name, const char *state_dir,
                      GError **error)
{
  char uuid[VIR_UUID_STRING_BUFLEN];
  g_autofree char *path = NULL;
  g_autofree char *xml = NULL;

  if (!virt_dom_uuid (dom, uuid, error))
    return FALSE;
  path = virt_checkpoint_saved_path (state_dir, uuid, name, error);
  if (path == NULL)
    return FALSE;
  xml = virt_checkpoint_dump (dom, name, error);
  if (xml == NULL)
    return FALSE;
  return ova_write_private_file (path, xml, error);
}

/* A saved checkpoint to redefine: its XML and what it says. */
typedef struct saved_cp {
  char *xml;
  virt_checkpoint_doc *doc;
} saved_cp;

static void
saved_cp_free (saved_cp *s)
{
  if (s == NULL)
    return;
  g_free (s->xml);
  virt_checkpoint_doc_free (s->doc);
  g_free (s);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (saved_cp, saved_cp_free)

static saved_cp *
load_saved (const char *path, const char *expect_name, GError **error)
{
  g_autoptr (saved_cp) s = g_new0 (saved_cp, 1);
  gsize len;

  if (!ova_read_file_direct (path, VIRT_SAVED_XML_MAX, &s->xml, &len, error))
    return NULL;
  s->doc = virt_checkpoint_doc_parse (s->xml, len, expect_name, error);
  if (s->doc == NULL) {
    g_prefix_error (error, "%s: ", path);
    return NULL;
  }
  if (g_strcmp0 (s->doc->name, expect_name) != 0) {
    g_set_error (error, OVA_ERROR, OVA_ERROR_INTEGRITY,
                 "%s: not the checkpoint its file name says", path);
    return NULL;
  }
  return g_steal_pointer (&s);
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

  if (!virt_dom_uuid (dom, uuid, error))
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

      if (s->doc->parent &&
          !g_ptr_array_find_with_equal_func (known, s->doc->parent, g_str_equal, NULL))
        continue;
      cp = virDomainCheckpointCreateXML (dom, s->xml,
                                         VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE |
                                         VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE);
      if (cp == NULL) {
        virt_set_libvirt_error (error, "cannot redefine checkpoint %s of domain %s from %s/%s.xml",
                           s->doc->name, virt_dom_name (dom), dir, s->doc->name);
        return FALSE;
      }
      virDomainCheckpointFree (cp);
      ova_info ("redefined checkpoint %s of domain %s", s->doc->name, virt_dom_name (dom));
      g_ptr_array_add (known, g_strdup (s->doc->name));
      g_ptr_array_add (done, g_strdup (s->doc->name));
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
                 s->doc->name, virt_dom_name (dom), s->doc->parent, dir);
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

  virt_silence_libvirt ();
  cp = virDomainCheckpointLookupByName (dom, name, 0);
  if (cp == NULL) {
    g_autofree char *q = ova_quote_untrusted (name, 64);

    virt_set_libvirt_error (error, "domain %s has no checkpoint %s", virt_dom_name (dom), q);
    return FALSE;
  }
  rc = virDomainCheckpointDelete (cp, 0);
  virDomainCheckpointFree (cp);
  if (rc < 0) {
    virt_set_libvirt_error (error, "cannot delete checkpoint %s of domain %s",
                       name, virt_dom_name (dom));
    return FALSE;
  }
  if (state_dir == NULL || !ova_uuid_is_valid (name))
    return TRUE;

  if (!virt_dom_uuid (dom, uuid, error))
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

gboolean
virt_checkpoint_save_xml (const char *state_dir, const char *vm_uuid,
                          const char *name, const char *xml, GError **error)
{
  g_autofree char *path = virt_checkpoint_saved_path (state_dir, vm_uuid, name, error);

  if (path == NULL)
    return FALSE;
  return ova_write_private_file (path, xml, error);
}
