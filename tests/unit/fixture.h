/* ovagent tests: run a qemu tool as a unit test's own fixture (making images,
 * comparing them), which the suite's qemu guard lets through unchecked. */
#ifndef TEST_FIXTURE_H
#define TEST_FIXTURE_H

#include <glib.h>

#include "util.h"

/* argv (NULL-terminated) through env(1) with OVAGENT_QEMU_GUARD_FIXTURE=1 in
 * that command's environment alone: what ovagent's own code launches in the
 * same test stays checked (tests/qemu-guard/guard.sh). */
static inline gboolean
fixture_run (const char *const *argv, char **stdout_out, GError **error)
{
  g_autoptr (GPtrArray) a = g_ptr_array_new ();

  g_ptr_array_add (a, (gpointer) "env");
  g_ptr_array_add (a, (gpointer) "OVAGENT_QEMU_GUARD_FIXTURE=1");
  for (gsize i = 0; argv[i] != NULL; i++)
    g_ptr_array_add (a, (gpointer) argv[i]);
  g_ptr_array_add (a, NULL);
  return ova_run ((const char *const *) a->pdata, stdout_out, NULL, error);
}

#endif
