/* ovagent: the one place that names an image to qemu and runs qemu-img: every
 * layer's driver and backing given, so that qemu probes nothing and follows nothing. */
#ifndef STOR_QEMU_IMG_H
#define STOR_QEMU_IMG_H

#include <glib.h>

/* The guest owns every byte of a raw volume and every data cluster of a
 * qcow2 one, and may write there what looks like an image header naming
 * any file as its backing. So qemu is never asked to guess: a format comes
 * from VDSM's metadata (or from the repository's manifest), and an image
 * is named to qemu as a "json:" spec in which every layer has its driver
 * and the chain below it is spelled out, ending in "backing": null. */

/* One layer of an image as qemu is to open it. */
typedef struct stor_layer {
  char *path;           /* file, block device, or /dev/fd/N */
  char *format;         /* "qcow2" or "raw" */
} stor_layer;

stor_layer *stor_layer_new (const char *path, const char *format);
void stor_layer_free (stor_layer *l);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_layer, stor_layer_free)

/* A new array of stor_layer* that frees them; layers are added top first. */
GPtrArray *stor_layers_new (void);
void stor_layers_add (GPtrArray *layers, const char *path, const char *format);

/* "json:{...}" naming layers[0] with layers[1..] as its backing chain, in
 * that order (top first); the last layer has no backing. Each layer's
 * protocol node is "host_device" for a block device, else "file". Only
 * "qcow2" layers can have a layer under them; a "raw" one must be last. */
char *stor_image_spec (GPtrArray *layers);
/* One image alone: a qcow2 gets "backing": null. */
char *stor_image_spec_alone (const char *path, const char *format);

/* "/dev/fd/N": how a command run with ova_run_fd reaches a file that this
 * process created (ova_create_new_file) rather than whatever a path names. */
char *stor_fd_path (int fd);

/* `qemu-img info -U --output=json` of one image alone (never its backing
 * chain); *json_out at most a few MiB. */
gboolean stor_qemu_img_info (const char *path, const char *format, char **json_out,
                             GError **error);

/* A persistent bitmap as qemu-img info lists it. */
typedef struct stor_bitmap {
  char *name;
  char **flags;         /* "auto", "in-use" ... */
  guint64 granularity;  /* 0 when not reported */
} stor_bitmap;
void stor_bitmap_free (stor_bitmap *b);

/* What stor_qemu_img_info printed, read once for every caller. Members
 * it does not report are NULL (or FALSE); each caller decides which ones
 * it needs and how to word their absence. */
typedef struct stor_img_info {
  char *format;
  gboolean has_virtual_size;
  guint64 virtual_size;
  char *compat;           /* qcow2: "0.10" or "1.1" as reported */
  char *backing;          /* "backing-filename" */
  char *backing_format;   /* "backing-filename-format" */
  gboolean data_file;     /* qcow2 with an external data file */
  GPtrArray *bitmaps;     /* stor_bitmap* */
} stor_img_info;
void stor_img_info_free (stor_img_info *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (stor_img_info, stor_img_info_free)

/* Parse json (from stor_qemu_img_info on path). Not a JSON object:
 * OVA_ERROR_INTERNAL; a bitmap without a name or flags: OVA_ERROR_INTEGRITY. */
stor_img_info *stor_img_info_parse (const char *path, const char *json, GError **error);

/* `qemu-img check -U --output=json` of one qcow2 image alone: the report,
 * what qemu-img said on stderr, and its exit status (0 clean, 2 corrupt,
 * 3 leaked clusters). */
gboolean stor_qemu_img_check (const char *path, char **json_out, char **stderr_out,
                              int *exit_status, GError **error);

/* `qemu-img create -f format [-o options] [-b backing -F backing_format -u]
 * FILE size`. FILE is file_fd (>= 0: the open file, through /dev/fd/N) or
 * path. qemu-img never opens the backing file (-u): its name and format are
 * written as given. backing may be NULL. */
gboolean stor_qemu_img_create (const char *path, int file_fd, const char *format,
                               const char *options, guint64 size, const char *backing,
                               const char *backing_format, GError **error);

/* `qemu-img rebase -u`: only the backing string and format in the header of
 * path (a file of this format) change; "" removes the backing file. */
gboolean stor_qemu_img_rebase_unsafe (const char *path, const char *format,
                                      const char *backing, const char *backing_format,
                                      GError **error);

/* A persistent bitmap name qemu-img and qemu-nbd take as an argument:
 * 1 to 1023 printable ASCII characters, not starting with '-', none of
 * ",=" (qemu's option syntax). */
gboolean stor_bitmap_name_is_valid (const char *name);

/* `qemu-img bitmap OP` on one qcow2 image alone (path; never its chain):
 * op "--add", "--remove", "--enable", "--disable", "--clear" or "--merge"
 * (with merge_from, a bitmap of the same image). Names are checked. */
gboolean stor_qemu_img_bitmap (const char *path, const char *op, const char *bitmap,
                               const char *merge_from, GError **error);

/* `qemu-img convert` of the image src (a chain, top first) into the file
 * open as target_fd, which this process created empty: target_format
 * "raw" (the file is sized first) or "qcow2" (created first); runs of
 * zeros become holes. */
gboolean stor_qemu_img_convert (GPtrArray *src, int target_fd, const char *target_format,
                                guint64 size, GError **error);

/* `qemu-img commit -d -b BASE` of the image layers[0..base] (a chain, top
 * first): every cluster allocated above layers[base] is written
 * into it as the top reads it, once (-d: the top is not emptied). qemu
 * opens layers[0] read-write, and rewrites a qcow2's persistent bitmaps
 * when it closes one so: callers put an empty file of their own on top. The one exception to naming every layer: the chain under a qcow2
 * layers[base] is opened from its header (qemu-img matches -b only so),
 * so the caller checks that chain's backing strings and formats first.
 * ENOSPC is OVA_ERROR_NO_SPACE. */
gboolean stor_qemu_img_commit (GPtrArray *layers, guint base, GError **error);

#endif
