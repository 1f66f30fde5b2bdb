/* ovagent: builders of the backup and checkpoint XML libvirt takes, every
 * value escaped; nothing here parses or talks to libvirt. */
#include <config.h>

#include "xml-build.h"

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
