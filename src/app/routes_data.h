/* What the two files of the data routes share: routes_data.c (the schema, validation, rows as
 * JSON, and the single-statement endpoints, run on data threads) and routes_data_tx.c (the
 * transactions: transfer, batch and bulk insert, run on workers). */
#ifndef ROOST_APP_ROUTES_DATA_H
#define ROOST_APP_ROUTES_DATA_H

#include "app/app.h"

#define DATA_COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Prepared statements (routes_data.c has their SQL). */
enum {
    S_USER_INSERT,
    S_USER_GET,
    S_USER_PAGE,
    S_USER_UPDATE,
    S_USER_DELETE,
    S_USER_BULK,
    S_ACCOUNT_INSERT,
    S_ACCOUNT_GET,
    S_ACCOUNT_LOCK,
    S_ACCOUNT_ADD,
    S_ITEM_PAGE, /* the articles' cursor pages (routes_articles_data.c) */
    S_COUNT
};

/* What an operation answers. */
typedef struct {
    int status;         /* HTTP status; 0 while nothing is decided */
    const char *detail; /* static text, when status >= 400 */
    json_t *body;       /* owned, when status < 400 (none for 204) */
    int rc;             /* the database's code when it failed */
} data_outcome_t;

/* Request bodies, as pydantic models would declare them. */
extern const roost_field_t data_user_create[4], data_user_update[4], data_account[2],
    data_transfer[3];
#define DATA_USER_FIELDS     4
#define DATA_ACCOUNT_FIELDS  2
#define DATA_TRANSFER_FIELDS 3
extern const roost_schema_t data_user_create_schema, data_user_update_schema, data_account_schema,
    data_transfer_schema;

/* Validation into FastAPI error items with loc = prefix + [field] (field may be NULL), through
 * roost_error_item: input is borrowed (NULL: null), ctx stolen. */
void data_add_error(json_t *errors, const json_t *prefix, const char *field, const char *type,
                    const json_t *input, json_t *ctx);
void data_check_fields(const json_t *obj, const roost_field_t *f, size_t n, json_t *errors,
                       const json_t *prefix);
/* A JSON number of currency units with at most 2 decimals (as the schemas checked), as cents:
 * 0, or -1 when it is not. */
int data_money(const json_t *obj, const char *field, int allow_negative, long long *cents);

json_t *data_user_json(roost_dbconn_t *c); /* the current row of a user statement */
long long data_now_ms(void);

/* Sets a failure from a database code (conflict: the 409 detail for -EEXIST). */
void data_failed(data_outcome_t *o, int rc, const char *conflict);
const char *data_user_conflict(roost_dbconn_t *c);
void data_respond(roost_req_t *req, data_outcome_t *o);

/* Operations on a checked-out connection, shared by the endpoints and POST /batch; the body
 * (in) is already validated. */
void data_create_user(roost_dbconn_t *c, const json_t *in, data_outcome_t *o);
void data_update_user(roost_dbconn_t *c, long long id, const json_t *in, data_outcome_t *o);
void data_delete_user(roost_dbconn_t *c, long long id, data_outcome_t *o);
void data_create_account(roost_dbconn_t *c, const json_t *in, data_outcome_t *o);
/* Inside a write transaction that the caller opens and ends. */
void data_transfer_op(roost_dbconn_t *c, const json_t *in, data_outcome_t *o);

/* routes_data_tx.c: POST /transfer, /batch, /users/batch. */
int app_routes_data_tx(roost_server_t *srv, roost_db_t *db);
/* routes_cache.c: GET /users/{id}/profile, cached; PUT and DELETE /users/{id} evict it. */
int app_routes_cache_data(roost_server_t *srv, roost_db_t *db);

#endif
