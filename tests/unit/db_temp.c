/* Temporary SQLite databases for the data store's unit tests (db_temp.h). */
#include "db_temp.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

db_t *unit_db_open(char path[128], const db_pool_opts_t *opts, const char *const *sql, int nsql,
                   const char *const *migrations, int nmigrations)
{
    snprintf(path, 128, "/tmp/roost-test-db-%d-%ld/x.db", (int)getpid(), random());
    char spec[160];
    snprintf(spec, sizeof spec, "sqlite:%s", path);
    db_url_t url;
    if (db_url_parse(&url, spec, NULL) < 0)
        return NULL;
    db_t *db = db_open(&url, opts, sql, nsql);
    if (db && db_migrate(db, "test", migrations, nmigrations) < 0) {
        db_close(db);
        return NULL;
    }
    return db;
}

void unit_db_remove(const char *path)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf \"$(dirname '%s')\"", path);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", path);
}
