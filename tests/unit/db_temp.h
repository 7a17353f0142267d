/* A SQLite database in a temporary folder of its own, for the data store's unit tests (test_db.c,
 * test_db_group.c): opened over the test's statements, migrated, and removed with its folder.
 * Not a test itself. */
#ifndef ROOST_UNIT_DB_TEMP_H
#define ROOST_UNIT_DB_TEMP_H

#include "db/db.h"

/* Fills path (the file); NULL on failure. Close with db_close, then unit_db_remove(path). */
db_t *unit_db_open(char path[128], const db_pool_opts_t *opts, const char *const *sql, int nsql,
                   const char *const *migrations, int nmigrations);
void unit_db_remove(const char *path);

#endif
