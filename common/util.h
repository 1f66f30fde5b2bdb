/* ovagent: small helpers shared by all modules: UUIDs, bounded file reads,
 * and the one command runner (argv vectors, never a shell). */
#ifndef OVA_UTIL_H
#define OVA_UTIL_H

#include <glib.h>
#include <signal.h>
#include <sys/stat.h>

#define OVA_UUID_LEN 36
#define OVA_BLANK_UUID "00000000-0000-0000-0000-000000000000"

/* 8-4-4-4-12 hex digits, any case. */
gboolean ova_uuid_is_valid (const char *s);
gboolean ova_uuid_is_blank (const char *s);

/* Read at most max_len bytes of a file, with O_DIRECT where the file system
 * allows it (metadata written by other hosts must not come from our cache).
 * Fails with OVA_ERROR_NOT_FOUND if missing, OVA_ERROR_INTEGRITY if larger
 * than max_len, OVA_ERROR_INTERNAL otherwise; messages name the path. */
gboolean ova_read_file_direct (const char *path, gsize max_len,
                               char **contents, gsize *len, GError **error);

/* Open a regular file or a block device read-only (O_CLOEXEC): its stat
 * and its size (st_size, or the device's size). Returns the descriptor, or
 * -1 with OVA_ERROR_NOT_FOUND if missing, OVA_ERROR_UNSUPPORTED if it is
 * something else, OVA_ERROR_INTERNAL otherwise; messages name the path. */
int ova_open_sized (const char *path, struct stat *st, guint64 *size,
                    GError **error);

/* Read len bytes at offset of a file or block device, O_DIRECT when possible. */
gboolean ova_pread_direct (const char *path, guint64 offset, gsize len,
                           char **contents, GError **error);

/* Run argv (argv[0] searched in PATH), capture stdout (and stderr) and wait.
 * Returns FALSE with an OVA_ERROR_INTERNAL error naming the command and its
 * stderr if it could not run or exited non-zero. stdout_out may be NULL. */
gboolean ova_run (const char *const *argv, char **stdout_out, char **stderr_out,
                  GError **error);
/* The same, with the descriptor keep_fd (>= 0) left open in the command, so
 * that an argument "/dev/fd/N" reaches the very file the caller opened. */
gboolean ova_run_fd (const char *const *argv, int keep_fd, char **stdout_out,
                     char **stderr_out, GError **error);

/* The same for programs whose exit status is an answer (qemu-img check
 * exits 3 for leaked clusters and still prints its report): any exit is
 * success and sets *exit_status; only failing to run or being killed by a
 * signal is an error. */
gboolean ova_run_status (const char *const *argv, char **stdout_out,
                         char **stderr_out, int *exit_status, GError **error);

/* GCompareFunc for a GPtrArray of strings (byte order). */
gint ova_compare_strings (gconstpointer a, gconstpointer b);

/* Entry names of a directory, sorted, so that scans see the same order on
 * every run (the first of several hard links is always the same one). */
GPtrArray *ova_list_dir_sorted (const char *path, GError **error);

/* stat() says directory (following links). */
gboolean ova_is_directory (const char *path);

/* An untrusted string for an error message: quoted, escaped, at most max
 * bytes of it, "..." when cut. */
char *ova_quote_untrusted (const char *value, gsize max);

/* A new regular file at path, created by this process with mode 0600 and
 * O_EXCL|O_NOFOLLOW: never an existing file, never through a link someone
 * planted. Returns the descriptor (read-write, close-on-exec) or -1:
 * OVA_ERROR_USAGE if something is there, else why not. */
int ova_create_new_file (const char *path, GError **error);

/* Make a finished file durable under its final name: fsync part, rename it
 * to path unless path exists by then (OVA_ERROR_USAGE), fsync the directory
 * so that the name survives a crash. */
gboolean ova_commit_file (const char *part, const char *path, GError **error);

/* Write contents to path atomically (temporary file, fsync, rename, fsync
 * of the directory) with mode 0600, in a private directory (0700) whose
 * missing parents are made searchable (0711): QEMU must reach the default
 * scratch_dir under state_dir. */
gboolean ova_write_private_file (const char *path, const char *contents,
                                 GError **error);

/* ---- idle limits on stream I/O ---- */

/* The monotonic time (µs) seconds from now; 0 (no deadline) for 0. */
gint64 ova_deadline_in (guint seconds);

/* Wait until fd is ready for events (POLLIN, POLLOUT), the deadline (from
 * ova_deadline_in; 0: none) has passed or *cancel (a signal handler's
 * flag; may be NULL) is set. 1: ready (an error or a hang-up counts: the
 * next read or write reports it); 0: the deadline passed first; -1 with
 * errno set, EINTR when *cancel is set. The flag is looked at between
 * waits of at most OVA_WAIT_SLICE_MS too: a signal another thread took, or
 * one that came just before the wait, is seen that late at the most. */
#define OVA_WAIT_SLICE_MS 250
int ova_wait_fd (int fd, short events, gint64 deadline, volatile sig_atomic_t *cancel);

/* If fd is a pipe, ask for a 1 MiB pipe buffer (what a pipe may have by
 * default, /proc/sys/fs/pipe-max-size): a stream then moves in reads and
 * writes sixteen times larger than the usual 64 KiB, with as many fewer
 * wake-ups of the two sides. Nothing happens otherwise or on failure. */
void ova_pipe_grow (int fd);

/* Read up to len bytes from fd, the input of a stream (a pipe, a socket or
 * a file), waiting at most timeout seconds (0: no limit) for the first of
 * them. Returns the count, 0 at the end of the input, or -1 with errno
 * set: ETIMEDOUT when nothing came in time, EINTR when *cancel (may be
 * NULL) is set. */
gssize ova_read_idle (int fd, void *buf, size_t len, guint timeout,
                      volatile sig_atomic_t *cancel);

/* ---- stream bytes moved ---- */

/* The stream bytes this process moved: in, what ova_read_idle read; out,
 * what a stream encoder handed its sink. serve audits them. */
typedef struct {
  guint64 in;
  guint64 out;
} ova_io_totals;

/* Count into where from now on (serve's command runs in a child process:
 * the counts go to memory its parent shares, so that they outlive it). */
void ova_io_totals_share (ova_io_totals *where);
void ova_io_count_in (gsize n);
void ova_io_count_out (gsize n);

/* "1.5 GiB", "512 B". */
char *ova_format_size (guint64 bytes);

#endif
