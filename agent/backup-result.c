/* ovagent: backup: what the run tells: the stream's META (the VM, the job, each
 * disk's kind) and the result, as JSON or as lines for a person. */
/* The autoconf header: <config.h> would find agent/config.h first (-I.). */
#include <config.h>

#include <stdio.h>

#include <json-glib/json-glib.h>

#include "json.h"
#include "util.h"
#include "agent/backup-priv.h"
#include "agent/output.h"

char *
bk_build_meta (const run *r)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;

  strm_meta_begin (b, "backup");
  json_builder_set_member_name (b, "vm");
  json_builder_begin_object (b);
  ova_json_add_string (b, "uuid", r->vm_uuid);
  ova_json_add_string (b, "name", r->vm_name);
  ova_json_add_bool (b, "running", r->running);
  json_builder_end_object (b);
  ova_json_add_string (b, "job", r->job);
  ova_json_add_string (b, "checkpoint", r->checkpoint);
  ova_json_add_string (b, "checkpoint_xml", r->checkpoint_xml);
  json_builder_set_member_name (b, "volumes");
  json_builder_begin_array (b);
  for (guint i = 0; i < r->disks->len; i++) {
    const bdisk *d = r->disks->pdata[i];

    json_builder_begin_object (b);
    ova_json_add_string (b, "uuid", d->image);
    ova_json_add_string (b, "disk", d->image);
    ova_json_add_string (b, "target", d->target);
    ova_json_add_string (b, "domain", d->domain);
    ova_json_add_string (b, "volume", d->volume);
    ova_json_add_string (b, "kind", d->kind);
    ova_json_add_string (b, "from_checkpoint", d->from);
    ova_json_add_string (b, "format", "guest");
    ova_json_add_uint (b, "size", d->size);
    ova_json_add_uint (b, "capacity", d->size);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

void
bk_print_result (const run *r, const strm_totals *t, double seconds,
              const ova_stream_output *out)
{
  gboolean to_stdout = ova_stream_output_is_stdout (out);
  const char *backup_id = ova_stream_output_remote_backup_id (out);

  if (r->ctx->json) {
    g_autoptr (JsonBuilder) b = json_builder_new ();
    g_autoptr (JsonNode) root = NULL;

    json_builder_begin_object (b);
    ova_json_add_string (b, "result", "ok");
    ova_json_add_string (b, "vm", r->vm_uuid);
    ova_json_add_string (b, "name", r->vm_name);
    ova_json_add_bool (b, "running", r->running);
    ova_json_add_string (b, "job", r->job);
    ova_json_add_string (b, "checkpoint", r->checkpoint);
    ova_json_add_string (b, "backup_id", backup_id);
    json_builder_set_member_name (b, "disks");
    json_builder_begin_array (b);
    for (guint i = 0; i < r->disks->len; i++) {
      const bdisk *d = r->disks->pdata[i];

      json_builder_begin_object (b);
      ova_json_add_string (b, "target", d->target);
      ova_json_add_string (b, "disk", d->image);
      ova_json_add_string (b, "domain", d->domain);
      ova_json_add_string (b, "volume", d->volume);
      ova_json_add_string (b, "kind", d->kind);
      ova_json_add_string (b, "from_checkpoint", d->from);
      ova_json_add_string (b, "reason", d->reason);
      ova_json_add_uint (b, "virtual_size", d->size);
      ova_json_add_uint (b, "data_bytes", d->data);
      ova_json_add_uint (b, "zero_bytes", d->zero);
      ova_json_add_uint (b, "hole_bytes", d->hole);
      json_builder_end_object (b);
    }
    json_builder_end_array (b);
    json_builder_set_member_name (b, "skipped");
    json_builder_begin_array (b);
    for (guint i = 0; i < r->skipped->len; i++) {
      const skipped_disk *s = r->skipped->pdata[i];

      json_builder_begin_object (b);
      ova_json_add_string (b, "target", s->target);
      ova_json_add_string (b, "disk", s->image);
      ova_json_add_string (b, "reason", s->reason);
      json_builder_end_object (b);
    }
    json_builder_end_array (b);
    json_builder_set_member_name (b, "redefined");
    json_builder_begin_array (b);
    for (guint i = 0; r->redefined && i < r->redefined->len; i++)
      json_builder_add_string_value (b, r->redefined->pdata[i]);
    json_builder_end_array (b);
    ova_json_add_string (b, "recovered", r->recovered);
    ova_json_add_uint (b, "bytes_read", r->bytes_read);
    ova_json_add_uint (b, "bytes_sent", t->bytes_sent);
    ova_json_add_uint (b, "data_bytes", t->data_bytes);
    ova_json_add_uint (b, "zero_bytes", t->zero_bytes);
    ova_json_add_uint (b, "hole_bytes", t->hole_bytes);
    ova_json_add_double (b, "seconds", seconds);
    ova_stream_output_add_remote (b, out);
    json_builder_end_object (b);
    root = json_builder_get_root (b);
    if (to_stdout) {
      /* The stream owns stdout: the result is the last line of stderr. */
      g_autofree char *line = json_to_string (root, FALSE);

      fprintf (stderr, "%s\n", line);
    }
    else
      ova_print_json (root);
    return;
  }

  {
    FILE *fp = to_stdout ? stderr : stdout;
    g_autofree char *read = ova_format_size (r->bytes_read);
    g_autofree char *sent = ova_format_size (t->bytes_sent);
    g_autofree char *rate = ova_format_size (seconds > 0 ? r->bytes_read / seconds : 0);

    for (guint i = 0; i < r->disks->len; i++) {
      const bdisk *d = r->disks->pdata[i];
      g_autofree char *data = ova_format_size (d->data);

      fprintf (fp, "%s %s: %s, %s of data (%s)\n", d->target ? d->target : "-",
               d->image, d->kind, data, d->reason);
    }
    for (guint i = 0; i < r->skipped->len; i++) {
      const skipped_disk *s = r->skipped->pdata[i];

      fprintf (fp, "%s %s: skipped (%s)\n", s->target ? s->target : "-",
               s->image ? s->image : "-", s->reason);
    }
    fprintf (fp, "Backed up %u disk%s of VM %s to checkpoint %s: %s read, %s sent "
             "in %.1f s (%s/s)%s%s\n", r->disks->len, r->disks->len == 1 ? "" : "s",
             bk_vm_label (r), r->checkpoint, read, sent, seconds, rate,
             backup_id ? "; backup " : "", backup_id ? backup_id : "");
  }
}
