/* ovagent: the strict word splitter for one untrusted command line: quotes
 * undone, nothing expanded, every shell metacharacter refused (see cmdline.h). */
#include <config.h>

#include <string.h>

#include "cmdline.h"
#include "error.h"

/* Characters a shell gives a meaning to outside quotes. */
#define METACHARACTERS ";|&$`<>(){}*?[]~!#"

typedef struct {
  const char *line;
  gsize len;
  gsize pos;
  GPtrArray *words;
  GString *word;       /* the word being read */
  gboolean in_word;    /* a quote opened a word even if it stays empty */
} splitter;

/* A refusal at the splitter's position: an OVA_ERROR_USAGE; FALSE. */
#define refuse(s, error, ...) \
  (g_set_error (error, OVA_ERROR, OVA_ERROR_USAGE, __VA_ARGS__), \
   g_prefix_error (error, "the command line at byte %" G_GSIZE_FORMAT ": ", \
                   (s)->pos), \
   FALSE)

/* Bounds, UTF-8 and control characters: checked before anything else, so
 * that every later message can quote the line's characters as they are. */
static gboolean
check_characters (splitter *s, GError **error)
{
  const char *end = NULL;
  const char *p;

  if (s->len > OVA_CMDLINE_MAX) {
    s->pos = OVA_CMDLINE_MAX;
    return refuse (s, error, "longer than %d bytes", OVA_CMDLINE_MAX);
  }
  if (!g_utf8_validate (s->line, s->len, &end)) {
    s->pos = end - s->line;
    if (*end == '\0' && s->pos < s->len)
      return refuse (s, error, "a NUL byte");
    return refuse (s, error, "not valid UTF-8");
  }
  for (p = s->line; p < s->line + s->len; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);

    if (c == '\t')
      continue;
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
      s->pos = p - s->line;
      return refuse (s, error, "the control character U+%04X; the command must "
                     "be one line of printable text", c);
    }
  }
  return TRUE;
}

static gboolean
end_word (splitter *s, GError **error)
{
  if (!s->in_word)
    return TRUE;
  if (s->word->len == 0)
    return refuse (s, error, "an empty word ('' or \"\") is not allowed");
  if (s->words->len >= OVA_CMDLINE_MAX_WORDS)
    return refuse (s, error, "more than %d words", OVA_CMDLINE_MAX_WORDS);
  g_ptr_array_add (s->words, g_strndup (s->word->str, s->word->len));
  g_string_truncate (s->word, 0);
  s->in_word = FALSE;
  return TRUE;
}

static gboolean
add_byte (splitter *s, char c, GError **error)
{
  /* Between words a tab separates them; in a word it is a control
   * character like any other. */
  if (c == '\t')
    return refuse (s, error, "a tab inside quotes; a word holds printable "
                   "text only");
  if (s->word->len >= OVA_CMDLINE_MAX_WORD)
    return refuse (s, error, "a word is longer than %d bytes", OVA_CMDLINE_MAX_WORD);
  g_string_append_c (s->word, c);
  s->in_word = TRUE;
  return TRUE;
}

/* At the opening '; leaves pos after the closing one. */
static gboolean
read_single_quoted (splitter *s, GError **error)
{
  gsize open = s->pos;

  s->in_word = TRUE;
  for (s->pos++; s->pos < s->len; s->pos++) {
    if (s->line[s->pos] == '\'') {
      s->pos++;
      return TRUE;
    }
    if (!add_byte (s, s->line[s->pos], error))
      return FALSE;
  }
  s->pos = open;
  return refuse (s, error, "the single quote is never closed");
}

/* At the opening "; leaves pos after the closing one. */
static gboolean
read_double_quoted (splitter *s, GError **error)
{
  gsize open = s->pos;

  s->in_word = TRUE;
  for (s->pos++; s->pos < s->len; s->pos++) {
    char c = s->line[s->pos];

    if (c == '"') {
      s->pos++;
      return TRUE;
    }
    if (c == '$' || c == '`')
      return refuse (s, error, "'%c' inside double quotes would be expanded "
                     "by a shell; put the value in single quotes", c);
    if (c == '\\') {
      char next = s->pos + 1 < s->len ? s->line[s->pos + 1] : '\0';

      if (next != '"' && next != '\\')
        return refuse (s, error, "inside double quotes a backslash may only "
                       "escape \" or \\; put the value in single quotes");
      s->pos++;
      c = next;
    }
    if (!add_byte (s, c, error))
      return FALSE;
  }
  s->pos = open;
  return refuse (s, error, "the double quote is never closed");
}

static gboolean
read_unquoted (splitter *s, GError **error)
{
  char c = s->line[s->pos];

  if (c == '\\') {
    char next = s->pos + 1 < s->len ? s->line[s->pos + 1] : '\0';

    if (next != '\'' && next != '"')
      return refuse (s, error, "outside quotes a backslash may only escape a "
                     "quote (\\' or \\\"); quote the value instead");
    s->pos += 2;
    return add_byte (s, next, error);
  }
  if (strchr (METACHARACTERS, c) != NULL)
    return refuse (s, error, "'%c' is a shell metacharacter: serve runs one "
                   "ovagent command, never a shell; quote it if it belongs "
                   "to a value", c);
  s->pos++;
  return add_byte (s, c, error);
}

gboolean
ova_cmdline_split (const char *line, gsize len, char ***words, GError **error)
{
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GString) word = g_string_new (NULL);
  splitter s = { .line = line, .len = len, .words = out, .word = word };

  if (!check_characters (&s, error))
    return FALSE;
  while (s.pos < s.len) {
    gboolean ok;

    switch (line[s.pos]) {
    case ' ':
    case '\t':
      ok = end_word (&s, error);
      s.pos++;
      break;
    case '\'':
      ok = read_single_quoted (&s, error);
      break;
    case '"':
      ok = read_double_quoted (&s, error);
      break;
    default:
      ok = read_unquoted (&s, error);
      break;
    }
    if (!ok)
      return FALSE;
  }
  if (!end_word (&s, error))
    return FALSE;
  g_ptr_array_add (out, NULL);
  *words = (char **) g_ptr_array_free (g_steal_pointer (&out), FALSE);
  return TRUE;
}
