/* ovagent: where a data-moving command writes its stream: --output FILE, - or a
 * character device, or --target ssh://…; created files are removed on failure. */
#ifndef OVA_STREAM_OUTPUT_H
#define OVA_STREAM_OUTPUT_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "agent/command.h"
#include "stream/stream.h"

/* --output, --target, --compress and --io-timeout, taken by every command that writes a
 * stream: its option table lists OVA_STREAM_OPTION_ENTRIES where they go in
 * its --help. One command runs per process: the values live here. */
typedef struct {
  char *output;
  char *target;
  int compress;          /* zstd level; 0: none */
} ova_stream_options;

extern ova_stream_options ova_stream_opts;

/* --compress[=LEVEL]: a zstd level from 1 to OVA_COMPRESS_LEVEL_MAX, 3
 * without one. */
#define OVA_COMPRESS_LEVEL_MAX 19
gboolean ova_stream_opt_compress (const char *name, const char *value,
                                  gpointer data, GError **error);

#define OVA_STREAM_OPTION_ENTRIES \
  { "output", 'o', 0, G_OPTION_ARG_FILENAME, &ova_stream_opts.output, \
    "Write the stream to FILE (created, never overwritten), or to standard " \
    "output with -", "FILE|-" }, \
  { "target", 0, 0, G_OPTION_ARG_STRING, &ova_stream_opts.target, \
    "Push the stream over SSH and run 'ovagent receive --repo PATH' there", \
    "ssh://[USER@]HOST[:PORT]/PATH" }, \
  { "compress", 0, G_OPTION_FLAG_OPTIONAL_ARG, G_OPTION_ARG_CALLBACK, \
    ova_stream_opt_compress, \
    "Compress data frames with zstd (default level 3)", "LEVEL" }, \
  OVA_IO_TIMEOUT_OPTION_ENTRY

/* ova_command_parse for such a command; with --output - it also marks
 * standard output as the stream's, so that not even a usage error goes
 * into it. */
gboolean ova_stream_command_parse (ova_ctx *ctx, const GOptionEntry *entries,
                                   int *argc, char ***argv, GError **error);

typedef struct ova_stream_output {
  strm_sink *sink;
  int fd;                /* --output FILE: ours to close; -1 otherwise */
  char *created;         /* a file this run created: removed on failure */
  char *path;            /* --output as given, or NULL */
  gboolean ssh;          /* --target: the sink carries the remote result */
} ova_stream_output;

#define OVA_STREAM_OUTPUT_INIT { .fd = -1 }

/* Check the pair the user gave: exactly one of output ("-" or a file name)
 * and target (an ssh:// URL); no binary stream to a terminal. */
gboolean ova_stream_output_check (const ova_ctx *ctx, const char *output,
                                  const char *target, GError **error);

/* Open the sink: the SSH target (runs `receive` there), standard output, or
 * the file (created 0600 with O_EXCL; an existing device or FIFO is written
 * as it is). The fd is what the cancel handler redirects. */
gboolean ova_stream_output_open (const ova_ctx *ctx, ova_stream_output *o,
                                 const char *output, const char *target,
                                 GError **error);

/* Close the sink (for SSH: wait for the remote result) and keep the file. */
gboolean ova_stream_output_close (ova_stream_output *o, GError **error);

/* Whether the stream goes to standard output (JSON results go to stderr
 * then, or nowhere). */
gboolean ova_stream_output_is_stdout (const ova_stream_output *o);

/* The remote receive's "backup_id", or NULL (not SSH, or none reported). */
const char *ova_stream_output_remote_backup_id (const ova_stream_output *o);

/* The member "remote": the remote receive's result object, or null (not
 * SSH, or none reported). */
void ova_stream_output_add_remote (JsonBuilder *b, const ova_stream_output *o);

/* Free the sink, close the fd, remove a created file not yet kept. */
void ova_stream_output_clear (ova_stream_output *o);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (ova_stream_output, ova_stream_output_clear)

#endif
