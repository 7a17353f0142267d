/* --database, parsed: sqlite:PATH (also sqlite://PATH, or nothing: <data-dir>/roost.db) or
 * postgresql://... with its password masked for logs; and SQL written once with PostgreSQL's $n
 * placeholders, turned into SQLite's ?n. Pure string work: no connection, no pool. */
#include "db/db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *mask_password(const char *url)
{
    /* scheme://user:password@host... -> scheme://user:***@host... */
    url_parts_t parts;
    if (url_split(url, &parts) < 0 || !parts.has_password)
        return strdup(url);
    const char *rest = parts.password.ptr + parts.password.len;
    char *out = malloc((size_t)(parts.password.ptr - url) + 3 + strlen(rest) + 1);
    if (out)
        sprintf(out, "%.*s***%s", (int)(parts.password.ptr - url), url, rest);
    return out;
}

int db_url_parse(db_url_t *url, const char *spec, const char *data_dir)
{
    memset(url, 0, sizeof *url);
    if (!spec)
        spec = "";
    if (!strncmp(spec, "postgresql://", 13) || !strncmp(spec, "postgres://", 11)) {
        url->engine = DB_POSTGRES;
        url->target = strdup(spec);
        url->display = mask_password(spec);
    } else if (!*spec || !strncmp(spec, "sqlite:", 7)) {
        const char *path = *spec ? spec + 7 : "";
        if (!strncmp(path, "//", 2))
            path += 2; /* sqlite:///abs/path and sqlite://relative/path, as SQLAlchemy writes */
        /* Every pooled connection to ":memory:" would be a database of its own. */
        if (strstr(path, ":memory:"))
            return -EINVAL;
        url->engine = DB_SQLITE;
        if (*path) {
            url->target = strdup(path);
        } else {
            const char *dir = data_dir && *data_dir ? data_dir : ".";
            url->target = malloc(strlen(dir) + 10);
            if (url->target)
                sprintf(url->target, "%s/roost.db", dir);
        }
        if (url->target)
            url->display = malloc(strlen(url->target) + 8);
        if (url->display)
            sprintf(url->display, "sqlite:%s", url->target);
    } else {
        return -EINVAL;
    }
    if (!url->target || !url->display) {
        db_url_clear(url);
        return -ENOMEM;
    }
    return 0;
}

void db_url_clear(db_url_t *url)
{
    free(url->target);
    free(url->display);
    url->target = url->display = NULL;
}

char *db_sql_for_sqlite(const char *sql)
{
    char *out = strdup(sql);
    if (!out)
        return NULL;
    char quote = 0;
    for (char *p = out; *p; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '$' && p[1] >= '1' && p[1] <= '9') {
            *p = '?';
        }
    }
    return out;
}
