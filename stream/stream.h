/* ovagent: the stream that carries disks from a host to a backup target:
 * frame layout, limits, the encoder, the decoder and the sink ops table. */
#ifndef STRM_STREAM_H
#define STRM_STREAM_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <stdint.h>

/*
 * Wire format, version 1 (docs/stream-format.md is the full specification).
 * All integers little-endian.
 *
 *   stream  := header frame* end-frame
 *   header  := "OVSTREAM" (8 bytes) u32 version u32 flags        (16 bytes)
 *   frame   := frame-header payload[payload_len]
 *   frame-header (48 bytes):
 *      0 u32 type        STRM_FRAME_*
 *      4 u32 flags       STRM_FLAG_*
 *      8 u64 offset      byte offset in the current volume or disk
 *     16 u64 length      bytes of the volume/disk the frame covers; for
 *                        META/BEGIN/END frames the uncompressed payload size
 *     24 u32 payload_len bytes that follow the header (compressed size if
 *                        STRM_FLAG_ZSTD), 0 for ZERO and HOLE frames
 *     28 u32 reserved    0
 *     32 u64 payload_hash  XXH3-64 of the uncompressed payload (0 if none)
 *     40 u64 header_hash   XXH3-64 of bytes 0..39 of this header
 *
 *   Order: META, then per volume BEGIN, DATA|ZERO|HOLE covering [0, size)
 *   contiguously in increasing offset order, END; then STREAM_END whose JSON
 *   holds totals and the XXH3-128 digest of every byte before that frame.
 */
#define STRM_MAGIC "OVSTREAM"
#define STRM_VERSION 1
#define STRM_HEADER_SIZE 16
#define STRM_FRAME_HEADER_SIZE 48

enum {
  STRM_FRAME_META = 1,        /* JSON: what the stream holds (first frame) */
  STRM_FRAME_BEGIN = 2,       /* JSON {"uuid", "index", "size"}: a volume or disk begins */
  STRM_FRAME_DATA = 3,        /* payload: bytes [offset, offset+length) */
  STRM_FRAME_ZERO = 4,        /* [offset, offset+length) reads as zeros */
  STRM_FRAME_HOLE = 5,        /* [offset, offset+length) unallocated in the source */
  STRM_FRAME_END = 6,         /* JSON {"uuid", "data_bytes", "zero_bytes", "hole_bytes", "digest"} */
  STRM_FRAME_STREAM_END = 7,  /* JSON totals and the stream digest (last frame) */
};

#define STRM_FLAG_ZSTD 0x1    /* payload is one zstd frame */

/* Bounds the decoder enforces on untrusted input. */
#define STRM_MAX_DATA_PAYLOAD (16u * 1024 * 1024)  /* one DATA frame */
#define STRM_MAX_JSON_PAYLOAD (4u * 1024 * 1024)   /* META/BEGIN/END/STREAM_END */
#define STRM_MAX_VOLUMES 4096
#define STRM_MAX_JSON_DEPTH 64                     /* arrays and objects */
#define STRM_DEFAULT_FRAME_SIZE (4u * 1024 * 1024)   /* what the encoder sends */

/* Bounds on what a stream can make the backup target store, checked by
 * receive before it writes anything (docs/stream-format.md §7). Breaking
 * one is an integrity error (exit 6), like any other unusable META. */
#define STRM_MAX_CHAIN_VOLUMES 256    /* volumes of one chain export */
#define STRM_MAX_BACKUP_DISKS 256     /* disks of one changed-block backup */
/* A disk's guest-visible size: capacity, virtual size. */
#define STRM_MAX_DISK_SIZE ((guint64) 64 << 40)
/* A chain volume's file (its "size"): a qcow2 file holds the capacity in
 * data clusters and its tables: with the smallest clusters (512 bytes),
 * extended L2 entries (16 bytes per cluster: 1/32) and 64-bit refcounts
 * (8 bytes per cluster of the file: 1/64) about 1/21 more, which leaves
 * 1/8 room for the header and bitmaps. */
#define STRM_MAX_VOLUME_SIZE (STRM_MAX_DISK_SIZE + STRM_MAX_DISK_SIZE / 8)
#define STRM_MAX_TEXT 255             /* bytes of a name, host, time, type... */
#define STRM_MAX_BACKING 1023         /* qcow2's own limit on a backing name */
/* One value of a VDSM volume metadata record: VDSM writes the whole record
 * in at most 512 bytes. */
#define STRM_MAX_VDSM_VALUE 512
#define STRM_MAX_CHECKPOINT_XML (64u * 1024)

/* Small writes gathered for one larger write (the encoder's, the SSH
 * sink's) are held at most this long (µs) once more comes: a sender that
 * produces small frames slowly still shows the receiver's idle limit
 * (io_timeout) that it is alive. */
#define STRM_GATHER_MAX_AGE G_USEC_PER_SEC

/* ---- the volumes a META frame declares ---- */

typedef struct strm_meta_volume {
  char uuid[37];    /* as written in META, a valid UUID */
  guint64 size;     /* bytes its BEGIN ... END frames cover */
} strm_meta_volume;

/* Check META JSON as the decoder does (an object with "format":
 * "ovagent-stream", "version": 1 and 1..STRM_MAX_VOLUMES "volumes" with
 * distinct "uuid" and a "size") and return its volumes in order, as a GArray
 * of strm_meta_volume. Fails with OVA_ERROR_INTEGRITY. The encoder uses it to
 * refuse writing a stream its reader would reject. */
GArray *strm_meta_volumes_parse (const char *json, gsize len, GError **error);

/* ---- sinks: where an encoder writes (stdout, file, SSH channel) ---- */

typedef struct strm_sink strm_sink;
struct strm_sink_ops {
  const char *name;
  /* Write all of buf or fail (OVA_ERROR_TRANSPORT if the peer went away
   * or took nothing for io_timeout seconds, OVA_ERROR_NO_SPACE for ENOSPC,
   * OVA_ERROR_INTERRUPTED error once *cancel is set while it
   * waits). */
  gboolean (*write) (strm_sink *s, const void *buf, size_t len, GError **error);
  /* Flush and finish; for SSH, wait for the remote result. */
  gboolean (*close) (strm_sink *s, GError **error);
  void (*free) (strm_sink *s);
};
struct strm_sink {
  const struct strm_sink_ops *ops;
  guint io_timeout;                /* seconds a write may wait for the
                                    * reader to take a byte; 0: no limit */
  volatile sig_atomic_t *cancel;   /* a signal handler's flag; may be NULL */
};

/* How long a write may wait without progress, and the flag (may be NULL)
 * that stops a waiting write at once. New sinks have no limit. */
void strm_sink_set_io_limits (strm_sink *s, guint io_timeout,
                              volatile sig_atomic_t *cancel);

/* A sink writing to fd (not closed by the sink). A pipe is written through
 * a non-blocking descriptor of its own and a socket with MSG_DONTWAIT, so
 * that a reader that stops taking data is noticed after io_timeout; fd's
 * own flags are never changed (others may share them). */
strm_sink *strm_sink_fd_new (int fd, const char *what);
void strm_sink_free (strm_sink *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (strm_sink, strm_sink_free)

/* ---- encoder ---- */

typedef struct strm_encoder strm_encoder;

typedef struct strm_totals {
  guint64 frames;
  guint64 bytes_sent;     /* stream bytes written */
  guint64 data_bytes;     /* volume bytes carried in DATA frames */
  guint64 zero_bytes;
  guint64 hole_bytes;
  guint64 payload_bytes;  /* DATA payload bytes on the wire (after zstd) */
} strm_totals;

/* compress_level 0: no compression; 1..19 zstd level for DATA frames
 * (kept only when it makes the payload smaller). The encoder does not own
 * the sink. */
strm_encoder *strm_encoder_new (strm_sink *sink, int compress_level);
gboolean strm_encoder_meta (strm_encoder *e, const char *json, GError **error);
gboolean strm_encoder_begin (strm_encoder *e, const char *uuid, guint64 size,
                             GError **error);
/* len <= STRM_MAX_DATA_PAYLOAD. */
gboolean strm_encoder_data (strm_encoder *e, guint64 offset, const void *buf,
                            size_t len, GError **error);
gboolean strm_encoder_zero (strm_encoder *e, guint64 offset, guint64 len, GError **error);
gboolean strm_encoder_hole (strm_encoder *e, guint64 offset, guint64 len, GError **error);
gboolean strm_encoder_end (strm_encoder *e, GError **error);
/* Write STREAM_END with the totals and the digest. */
gboolean strm_encoder_finish (strm_encoder *e, GError **error);
const strm_totals *strm_encoder_totals (const strm_encoder *e);
void strm_encoder_free (strm_encoder *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (strm_encoder, strm_encoder_free)

/* Open the META object in b and write the members every stream has:
 * format, version, tool, host, created (UTC), mode. The caller adds the
 * members of its mode and closes the object. */
void strm_meta_begin (JsonBuilder *b, const char *mode);

/* What json-glib must not be given, in JSON text from elsewhere: nesting
 * deeper than max_depth (it recurses), \u escapes of UTF-16 surrogates
 * (it turns lone ones into invalid UTF-8; writers emit UTF-8 instead) and
 * escapes JSON does not have (it reads "\260" as the byte 0xb0). NULL if
 * the text has none, else what it has, with its byte offset in *where. */
const char *strm_json_text_problem (const char *text, gsize len, guint max_depth,
                                    gsize *where);

/* ---- decoder ---- */

typedef struct strm_decoder strm_decoder;

typedef struct strm_frame {
  guint32 type;
  guint64 offset;
  guint64 length;
  const guint8 *data;   /* DATA: uncompressed bytes; META/BEGIN/END/
                         * STREAM_END: the JSON text, NUL-terminated.
                         * Valid until the next call. */
  const char *uuid;     /* BEGIN/END: the volume named by BEGIN */
  guint64 size;         /* BEGIN: declared size of the volume */
} strm_frame;

/* Read function: fill buf with up to len bytes; return bytes read, 0 at
 * EOF, -1 with error set. */
typedef gssize (*strm_read_fn) (void *opaque, void *buf, size_t len, GError **error);

strm_decoder *strm_decoder_new (strm_read_fn read, void *opaque);
strm_decoder *strm_decoder_new_fd (int fd);
/* Next frame, checked: header and payload hashes, bounds, order and
 * contiguous coverage of each volume, sizes against BEGIN, totals and the
 * stream digest at STREAM_END. Returns FALSE with OVA_ERROR_INTEGRITY for
 * bad data, OVA_ERROR_TRANSPORT for a stream cut short. After STREAM_END
 * has been returned, the next call fails if any byte follows it. */
gboolean strm_decoder_next (strm_decoder *d, strm_frame *frame, GError **error);
/* Whether STREAM_END was read and checked. */
gboolean strm_decoder_complete (const strm_decoder *d);
const strm_totals *strm_decoder_totals (const strm_decoder *d);
void strm_decoder_free (strm_decoder *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (strm_decoder, strm_decoder_free)

#endif
