/* Unit tests of src/db/db_url.c: --database URLs (the default SQLite file in the data folder,
 * sqlite: paths, postgresql:// URLs with their password masked for logs, what is refused) and
 * PostgreSQL's $n placeholders turned into SQLite's ?n. */
#include "unit.h"

#include "db/db.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

TEST(db_url_defaults_to_sqlite_in_the_data_dir)
{
    db_url_t u;
    CHECK_EQ_INT(db_url_parse(&u, "", "/srv/data"), 0);
    CHECK_EQ_INT(u.engine, DB_SQLITE);
    CHECK_EQ_STR(u.target, "/srv/data/roost.db");
    db_url_clear(&u);
    CHECK_EQ_INT(db_url_parse(&u, NULL, NULL), 0);
    CHECK_EQ_STR(u.target, "./roost.db");
    db_url_clear(&u);
}

TEST(db_url_accepts_sqlite_paths_and_postgresql_urls)
{
    db_url_t u;
    CHECK_EQ_INT(db_url_parse(&u, "sqlite:rel/x.db", "d"), 0);
    CHECK_EQ_STR(u.target, "rel/x.db");
    db_url_clear(&u);
    CHECK_EQ_INT(db_url_parse(&u, "sqlite:///abs/x.db", "d"), 0);
    CHECK_EQ_STR(u.target, "/abs/x.db");
    db_url_clear(&u);
    CHECK_EQ_INT(db_url_parse(&u, "postgresql://app:s3cret@db:5432/prod", "d"), 0);
    CHECK_EQ_INT(u.engine, DB_POSTGRES);
    CHECK_EQ_STR(u.target, "postgresql://app:s3cret@db:5432/prod");
    CHECK_EQ_STR(u.display, "postgresql://app:***@db:5432/prod");
    CHECK(!strstr(u.display, "s3cret"));
    db_url_clear(&u);
    CHECK_EQ_INT(db_url_parse(&u, "postgres://db/x", "d"), 0);
    CHECK_EQ_STR(u.display, "postgres://db/x");
    db_url_clear(&u);
}

TEST(db_url_rejects_other_schemes_and_memory_databases)
{
    db_url_t u;
    CHECK_EQ_INT(db_url_parse(&u, "mysql://x/y", "d"), -EINVAL);
    CHECK_EQ_INT(db_url_parse(&u, "sqlite::memory:", "d"), -EINVAL);
    CHECK_EQ_INT(db_url_parse(&u, "/just/a/path", "d"), -EINVAL);
}

TEST(db_sql_placeholders_become_numbered_sqlite_parameters_outside_quotes)
{
    char *s = db_sql_for_sqlite("SELECT '$1', \"$2\", $1, $12 FROM t WHERE a = $2 AND b = '$'");
    CHECK_EQ_STR(s, "SELECT '$1', \"$2\", ?1, ?12 FROM t WHERE a = ?2 AND b = '$'");
    free(s);
    s = db_sql_for_sqlite("json_extract(value, '$.name'), $0, $");
    CHECK_EQ_STR(s, "json_extract(value, '$.name'), $0, $");
    free(s);
}

TEST(db_url_masks_the_password_and_nothing_else)
{
    db_url_t u;
    CHECK_EQ_INT(db_url_parse(&u, "postgresql://db.internal:5432/prod", NULL), 0);
    CHECK_EQ_STR(u.display, "postgresql://db.internal:5432/prod"); /* a port is no password */
    db_url_clear(&u);
    CHECK_EQ_INT(db_url_parse(&u, "postgresql://app@db/prod", NULL), 0);
    CHECK_EQ_STR(u.display, "postgresql://app@db/prod");
    db_url_clear(&u);
    CHECK_EQ_INT(db_url_parse(&u, "postgres://app:p:w@db:5433/prod?sslmode=require", NULL), 0);
    CHECK_EQ_STR(u.target, "postgres://app:p:w@db:5433/prod?sslmode=require");
    CHECK_EQ_STR(u.display, "postgres://app:***@db:5433/prod?sslmode=require");
    db_url_clear(&u);
    /* libpq's socket-folder form (no host) and a password holding an '@' are masked whole */
    CHECK_EQ_INT(db_url_parse(&u, "postgresql://app:pw@/prod?host=/run/postgresql", NULL), 0);
    CHECK_EQ_STR(u.display, "postgresql://app:***@/prod?host=/run/postgresql");
    db_url_clear(&u);
    CHECK_EQ_INT(db_url_parse(&u, "postgresql://app:p@ss@db/prod", NULL), 0);
    CHECK_EQ_STR(u.display, "postgresql://app:***@db/prod");
    db_url_clear(&u);
}

TEST(db_url_sqlite_forms_name_the_same_file_as_the_default)
{
    db_url_t a, b;
    CHECK_EQ_INT(db_url_parse(&a, "", "/srv/data"), 0);
    CHECK_EQ_INT(db_url_parse(&b, "sqlite:///srv/data/roost.db", "elsewhere"), 0);
    CHECK_EQ_STR(a.target, b.target);
    CHECK_EQ_STR(b.display, "sqlite:/srv/data/roost.db");
    db_url_clear(&a);
    db_url_clear(&b);
}
