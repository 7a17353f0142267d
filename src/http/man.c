/* roost_man_write: a server's manual page in roff (man(7) macros), written from the flag table
 * that makes --help (config_walk) and from the route table, so that neither can drift from the
 * binary. The page's prose comes from the caller. Not a roff renderer, and not --help itself
 * (src/base/config.c). */
#include "http/http.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

/* The length of the UTF-8 sequence at s (at most len bytes) and its code point; 0 when it is
 * not a well-formed sequence. */
static size_t utf8_decode(const unsigned char *s, size_t len, unsigned *cp)
{
    size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (n == 0 || n > len)
        return 0;
    *cp = s[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        *cp = *cp << 6 | (s[i] & 0x3f);
    }
    return n;
}

/* Plain text as roff text: a backslash is \e, every '-' is \- (so that flags copied from the
 * page are still hyphen-minus signs, as man-pages(7) asks), a line starting with '.' or '\''
 * gets \& so that it is not read as a request, and a non-ASCII character is \[uXXXX], so that
 * the page is ASCII and groff reads it without preconv. */
static void put_text(FILE *out, const char *s, size_t len)
{
    int line_start = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        unsigned cp;
        size_t n;
        if (line_start && (c == '.' || c == '\''))
            fputs("\\&", out);
        if (c == '\\')
            fputs("\\e", out);
        else if (c == '-')
            fputs("\\-", out);
        else if (c < 0x80)
            fputc(c, out);
        else if ((n = utf8_decode((const unsigned char *)s + i, len - i, &cp)) > 0) {
            fprintf(out, "\\[u%04X]", cp);
            i += n - 1;
        } else
            fputs("?", out); /* not UTF-8: nothing roff could print */
        line_start = c == '\n';
    }
}

static void put_str(FILE *out, const char *s)
{
    put_text(out, s, strlen(s));
}

/* Paragraphs split by a blank line; "TERM\tTEXT" is a tagged paragraph (.TP). */
static void put_paragraphs(FILE *out, const char *text)
{
    const char *p = text;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *tab = memchr(p, '\t', len);
        if (tab) {
            fputs(".TP\n\\fB", out);
            put_text(out, p, (size_t)(tab - p));
            fputs("\\fR\n", out);
            put_text(out, tab + 1, len - (size_t)(tab + 1 - p));
        } else {
            fputs(".PP\n", out);
            put_text(out, p, len);
        }
        fputc('\n', out);
        p += len;
        while (*p == '\n')
            p++;
    }
}

static const char *arg_name(roost_flag_kind_t kind)
{
    switch (kind) {
    case ROOST_FLAG_STR:
        return "\\fIstring\\fR";
    case ROOST_FLAG_INT:
        return "\\fIn\\fR";
    case ROOST_FLAG_SIZE:
        return "\\fIbytes\\fR";
    case ROOST_FLAG_SECS:
        return "\\fIseconds\\fR";
    case ROOST_FLAG_BOOL:
        return "[\\fBon\\fR|\\fBoff\\fR]";
    case ROOST_FLAG_LIST:
        return "\\fIvalue\\fR";
    }
    return "";
}

typedef struct {
    FILE *out;
    const char *section; /* the subsection open, NULL before the first */
} walk_state_t;

/* OPTIONS: one tagged paragraph per flag, a subsection per --help section. */
static void option_entry(const config_flag_info_t *f, void *ud)
{
    walk_state_t *w = ud;
    FILE *out = w->out;
    if (f->action) {
        if (w->section)
            fputs(".SS actions\n", out);
        w->section = NULL;
        fputs(".TP\n\\fB\\-\\-", out);
        put_str(out, f->name);
        fputs("\\fR\n", out);
        put_str(out, f->help);
        fputs(".\n", out);
        return;
    }
    if (!w->section || strcmp(w->section, f->section) != 0) {
        fputs(".SS ", out);
        put_str(out, f->section);
        fputc('\n', out);
    }
    w->section = f->section;
    char env[64];
    config_env_name(f->name, env, sizeof env);
    fputs(".TP\n\\fB\\-\\-", out);
    put_str(out, f->name);
    fprintf(out, "\\fR %s%s\n", arg_name(f->kind), f->kind == ROOST_FLAG_LIST ? " ..." : "");
    put_str(out, f->help);
    fputs(".\n.br\nDefault: ", out);
    put_str(out, *f->def ? f->def : "empty");
    fputs("; environment: \\fB", out);
    put_str(out, env);
    fputs("\\fR.\n", out);
}

static void env_entry(const config_flag_info_t *f, void *ud)
{
    walk_state_t *w = ud;
    if (f->action)
        return;
    char env[64];
    config_env_name(f->name, env, sizeof env);
    fputs(".TP\n\\fB", w->out);
    put_str(w->out, env);
    fputs("\\fR\nas \\fB\\-\\-", w->out);
    put_str(w->out, f->name);
    fputs("\\fR.\n", w->out);
}

static const char *first_tag(const route_t *r)
{
    return r->opts.tags && r->opts.tags[0] ? r->opts.tags[0] : "other";
}

/* ENDPOINTS: the routes in registration order, grouped by their first tag (the groups in the
 * order their first route was registered). */
static void put_routes(FILE *out, const router_t *r)
{
    int n = router_count(r);
    for (int i = 1; i <= n; i++) {
        const char *tag = first_tag(router_route(r, i));
        int seen = 0;
        for (int j = 1; j < i && !seen; j++)
            seen = !strcmp(first_tag(router_route(r, j)), tag);
        if (seen)
            continue;
        fputs(".SS ", out);
        put_str(out, tag);
        fputc('\n', out);
        for (int j = i; j <= n; j++) {
            const route_t *route = router_route(r, j);
            if (strcmp(first_tag(route), tag) != 0)
                continue;
            fputs(".TP\n\\fB", out);
            put_str(out, route->name);
            fputs("\\fR\n", out);
            const char *what = route->opts.summary ? route->opts.summary : route->opts.description;
            put_str(out, what ? what : "(no summary)");
            fputc('\n', out);
        }
    }
}

int roost_man_write(FILE *out, const roost_man_t *page, roost_server_t *srv)
{
    char upper[64];
    size_t i = 0;
    for (; page->name[i] && i + 1 < sizeof upper; i++)
        upper[i] = (char)toupper((unsigned char)page->name[i]);
    upper[i] = '\0';
    /* No date in the header: the page must be the same at every build of one version. */
    fputs(".TH ", out);
    put_str(out, upper);
    fputs(" 1 \"\" \"", out);
    put_str(out, page->name);
    fputc(' ', out);
    put_str(out, page->version ? page->version : "");
    fputs("\" \"User Commands\"\n.SH NAME\n", out);
    put_str(out, page->name);
    fputs(" \\- ", out);
    put_str(out, page->summary);
    fputs("\n.SH SYNOPSIS\n.B ", out);
    put_str(out, page->name);
    fputs("\n[\\fIflags\\fR]\n.SH DESCRIPTION\n", out);
    put_paragraphs(out, page->description);

    fputs(".SH OPTIONS\nEvery flag is also read from the environment variable named in its entry; "
          "a flag on the command line wins.\nA value follows the flag as the next argument or "
          "after \\fB=\\fR (\\fB\\-\\-port 9000\\fR, \\fB\\-\\-port=9000\\fR); a flag shown with "
          "\\fB...\\fR may be given more than once.\n",
          out);
    walk_state_t w = {out, NULL};
    config_walk(page->section, page->extra, page->nextra, NULL, option_entry, &w);

    fputs(".SH ENVIRONMENT\nEach flag's twin: \\fBROOST_\\fR and the flag's name in upper case, "
          "with \\fB_\\fR for \\fB\\-\\fR.\nBoolean values: on, off, true, false, 1, 0.\n",
          out);
    w.section = NULL;
    config_walk(page->section, page->extra, page->nextra, NULL, env_entry, &w);

    if (srv) {
        fputs(".SH ENDPOINTS\n", out);
        put_routes(out, http_server(srv)->router);
    }
    for (const roost_man_section_t *m = page->more; m && m->title; m++) {
        fputs(".SH ", out);
        put_str(out, m->title);
        fputc('\n', out);
        put_paragraphs(out, m->text);
    }
    return fflush(out) == 0 && !ferror(out) ? 0 : -EIO;
}
