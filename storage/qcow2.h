/* ovagent: a qcow2 header read as untrusted bytes: parsed and bounded here
 * before libqcow or any qemu tool is let near the image. */
#ifndef STOR_QCOW2_H
#define STOR_QCOW2_H

#include <glib.h>

#define STOR_QCOW2_MAGIC "QFI\xfb"

/* The fixed header: 72 bytes in version 2, at least 104 in version 3. */
#define STOR_QCOW2_HEADER_V2_LEN 72
#define STOR_QCOW2_HEADER_V3_LEN 104

/* Incompatible feature bits (qcow2 spec). */
#define STOR_QCOW2_INCOMPAT_DIRTY ((guint64) 1 << 0)
#define STOR_QCOW2_INCOMPAT_CORRUPT ((guint64) 1 << 1)
#define STOR_QCOW2_INCOMPAT_DATA_FILE ((guint64) 1 << 2)
#define STOR_QCOW2_INCOMPAT_COMPRESSION ((guint64) 1 << 3)
#define STOR_QCOW2_INCOMPAT_EXTL2 ((guint64) 1 << 4)
#define STOR_QCOW2_INCOMPAT_KNOWN ((guint64) 0x1f)

/* Autoclear bit 0: the bitmaps extension is valid. */
#define STOR_QCOW2_AUTOCLEAR_BITMAPS ((guint64) 1 << 0)

/* The largest virtual size a volume may claim: oVirt's disks are far
 * smaller, and a stream cannot carry more (64 TiB). */
#define STOR_VIRTUAL_SIZE_MAX ((guint64) 64 << 40)

/* qemu refuses longer backing names and backing format names. */
#define STOR_QCOW2_BACKING_MAX 1023
#define STOR_QCOW2_BACKING_FORMAT_MAX 31

typedef struct stor_qcow2_header {
  guint32 version;          /* 2 or 3 */
  guint32 cluster_bits;     /* 9 ... 21 */
  guint64 size;             /* virtual size */
  guint64 incompatible;     /* feature bits (0 for version 2) */
  guint64 autoclear;
  char *backing;            /* the backing file name, NULL if none */
  char *backing_format;     /* the backing format extension, NULL if none */
  gboolean bitmaps;         /* it has the persistent bitmaps extension */
} stor_qcow2_header;

void stor_qcow2_header_clear (stor_qcow2_header *h);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (stor_qcow2_header, stor_qcow2_header_clear)

/* Parse the first len bytes of an image (what = its name in messages).
 * OVA_ERROR_INTEGRITY when it is not a qcow2 header or any field is out of
 * bounds (cluster size, virtual size over STOR_VIRTUAL_SIZE_MAX, a backing
 * name outside the first cluster or the bytes given, a header extension
 * running past its end); OVA_ERROR_UNSUPPORTED for an external data file
 * (a second file, named by the image, that qemu would open: VDSM never
 * makes one), qcow version 1, encryption and unknown incompatible
 * features. */
gboolean stor_qcow2_header_parse (const guint8 *buf, gsize len, const char *what,
                                  stor_qcow2_header *h, GError **error);

#endif
