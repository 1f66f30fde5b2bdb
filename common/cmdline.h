/* ovagent: splitting one untrusted command line (SSH_ORIGINAL_COMMAND) into
 * words with a strict quoting grammar that never expands anything. */
#ifndef OVA_CMDLINE_H
#define OVA_CMDLINE_H

#include <glib.h>

/* Bounds of a line and of what it may split into. */
#define OVA_CMDLINE_MAX 8192          /* bytes */
#define OVA_CMDLINE_MAX_WORDS 256
#define OVA_CMDLINE_MAX_WORD 4096     /* bytes of one word */

/* Split line (len bytes) into words, the way a POSIX shell would for the
 * lines this grammar accepts, refusing every line on which a shell would do
 * more than split and unquote:
 *
 *  - at most OVA_CMDLINE_MAX bytes of valid UTF-8 with no NUL, no control
 *    character (U+0000-U+001F, U+007F-U+009F) except tab between words, so
 *    no newline;
 *  - words are separated by spaces and tabs; a word is never empty and
 *    holds at most OVA_CMDLINE_MAX_WORD bytes; at most
 *    OVA_CMDLINE_MAX_WORDS words;
 *  - outside quotes, none of ; | & $ ` < > ( ) { } * ? [ ] ~ ! # and a
 *    backslash only before a quote (\' or \"), which stands for it;
 *  - '...' is taken literally up to the next ';
 *  - "..." is taken literally up to the next unescaped ", except that \"
 *    and \\ stand for " and \; any other backslash, $ or ` inside is
 *    refused (a shell would expand them);
 *  - quoted and unquoted parts next to each other make one word, so the
 *    output of g_shell_quote() reads back as what was quoted.
 *
 * A refused line fails with OVA_ERROR_USAGE naming the byte offset and
 * the character, and what to do instead. */
gboolean ova_cmdline_split (const char *line, gsize len, char ***words,
                            GError **error);

#endif
