/* The data endpoints that are transactions, ROOST_BLOCKING (a worker holds the connection for
 * the whole transaction; a data thread must not wait on row locks): POST /transfer (one write
 * transaction, run again when the database reports a deadlock or a serialization race), POST
 * /batch (one transaction, each operation in its own savepoint) and POST /users/batch (one
 * INSERT for up to 1,000 users, all or none). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "app/routes_data.h"

#define BULK_MAX    1000
#define BATCH_MAX   1000
#define TX_ATTEMPTS 5

/* Runs `call` with a pooled connection `c`, or fails o with 503. */
#define WITH_CONN(db, o, call)                                                                     \
    do {                                                                                           \
        roost_dbconn_t *c;                                                                         \
        int rc_ = roost_db_acquire((db), &c);                                                      \
        if (rc_ < 0) {                                                                             \
            data_failed(&(o), rc_, NULL);                                                          \
        } else {                                                                                   \
            call;                                                                                  \
            roost_db_release(c);                                                                   \
        }                                                                                          \
    } while (0)

/* ---- POST /transfer ---- */

static void transfer_tx(roost_dbconn_t *c, const json_t *in, data_outcome_t *o)
{
    for (int attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
        memset(o, 0, sizeof *o);
        int rc = roost_db_begin(c, ROOST_DB_WRITE);
        if (rc < 0) {
            data_failed(o, rc, NULL);
            return;
        }
        data_transfer_op(c, in, o);
        if (o->status == 200 && (rc = roost_db_commit(c)) < 0) {
            json_decref(o->body);
            o->body = NULL;
            data_failed(o, rc, NULL);
        } else if (o->status != 200) {
            roost_db_rollback(c);
        }
        if (o->rc != -EDEADLK)
            return;
    }
}

static void transfer(roost_req_t *req, void *ud)
{
    json_t *in = roost_req_json_body(req); /* checked by data_transfer_schema */
    data_outcome_t o = {0};
    WITH_CONN(ud, o, transfer_tx(c, in, &o));
    data_respond(req, &o);
}

/* ---- POST /users/batch {"users": [...]}: one INSERT, all or none ---- */

static int by_id(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "id"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "id"));
    return (x > y) - (x < y);
}

/* The users as the JSON text the statement takes, or NULL after appending errors. */
static char *bulk_rows(const json_t *users, json_t *errors)
{
    json_t *rows = json_array();
    for (size_t i = 0; i < json_array_size(users); i++) {
        json_t *u = json_array_get(users, i);
        json_t *prefix = json_pack("[s,s,I]", "body", "users", (json_int_t)i);
        if (!json_is_object(u)) {
            data_add_error(errors, prefix, NULL, "dict_type", u, NULL);
        } else {
            /* is_active (last) is not taken here: bulk users start active */
            data_check_fields(u, data_user_create, DATA_USER_FIELDS - 1, errors, prefix);
            json_t *full_name = json_object_get(u, "full_name");
            json_array_append_new(rows, json_pack("{s:O,s:O,s:O}", "username",
                                                  json_object_get(u, "username"), "email",
                                                  json_object_get(u, "email"), "full_name",
                                                  full_name ? full_name : json_null()));
        }
        json_decref(prefix);
    }
    char *text = json_array_size(errors) ? NULL : json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    return text;
}

static void bulk_users(roost_req_t *req, void *ud)
{
    json_t *users = json_object_get(roost_req_json_body(req), "users"), *errors = json_array();
    char *text = bulk_rows(users, errors); /* the list's type and size: bulk_schema */
    if (!text) {
        if (json_array_size(errors) == 0) {
            json_decref(errors);
            roost_respond_error(req, 500, "Out of memory");
            return;
        }
        roost_respond_422(req, errors);
        return;
    }
    json_decref(errors);
    data_outcome_t o = {0};
    json_t *items = json_array();
    WITH_CONN(ud, o, {
        int rc = roost_db_query(c, S_USER_BULK, "si", text, data_now_ms());
        while (rc >= 0 && (rc = roost_db_next(c)) == 1)
            json_array_append_new(items, data_user_json(c));
        if (rc < 0)
            data_failed(&o, rc, data_user_conflict(c));
    });
    free(text);
    if (o.status) {
        json_decref(items);
        data_respond(req, &o);
        return;
    }
    /* RETURNING promises no order; the ids were given in list order. */
    size_t count = json_array_size(items);
    json_t **v = malloc(count * sizeof *v + 1);
    for (size_t i = 0; v && i < count; i++)
        v[i] = json_incref(json_array_get(items, i));
    if (v) {
        qsort(v, count, sizeof *v, by_id);
        json_array_clear(items);
        for (size_t i = 0; i < count; i++)
            json_array_append_new(items, v[i]);
        free(v);
    }
    roost_respond_json(req, 201,
                       json_pack("{s:I,s:o}", "created", (json_int_t)count, "items", items));
}

/* ---- POST /batch: each operation in its own savepoint, the good ones committed ---- */

enum { OP_CREATE_USER, OP_UPDATE_USER, OP_DELETE_USER, OP_CREATE_ACCOUNT, OP_TRANSFER, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"create_user", "update_user", "delete_user",
                                               "create_account", "transfer"};

/* The operation's kind, or -1 after appending its errors (loc ["body","operations",i,...]). */
static int op_check(const json_t *op, size_t i, json_t *errors)
{
    json_t *prefix = json_pack("[s,s,I]", "body", "operations", (json_int_t)i);
    json_t *where = json_pack("[s,s,I,s]", "body", "operations", (json_int_t)i, "data");
    const char *name = json_string_value(json_object_get(op, "op"));
    json_t *data = json_object_get(op, "data"), *id = json_object_get(op, "id");
    int kind = -1;
    for (int k = 0; name && k < OP_COUNT; k++)
        if (!strcmp(name, op_names[k]))
            kind = k;
    if (!json_is_object(op)) {
        data_add_error(errors, prefix, NULL, "dict_type", op, NULL);
    } else if (kind < 0) {
        data_add_error(errors, prefix, "op", "enum", json_object_get(op, "op"),
                       json_pack("{s:s}", "expected",
                                 "'create_user', 'update_user', 'delete_user', 'create_account' "
                                 "or 'transfer'"));
    } else {
        if ((kind == OP_UPDATE_USER || kind == OP_DELETE_USER) && !json_is_integer(id))
            data_add_error(errors, prefix, "id", id ? "int_type" : "missing", id ? id : op, NULL);
        if (kind == OP_DELETE_USER) {
            /* no data */
        } else if (!json_is_object(data)) {
            data_add_error(errors, prefix, "data", data ? "dict_type" : "missing", data ? data : op,
                           NULL);
        } else if (kind == OP_CREATE_USER || kind == OP_UPDATE_USER) {
            data_check_fields(data, kind == OP_CREATE_USER ? data_user_create : data_user_update,
                              DATA_USER_FIELDS, errors, where);
        } else if (kind == OP_CREATE_ACCOUNT) {
            data_check_fields(data, data_account, DATA_ACCOUNT_FIELDS, errors, where);
        } else {
            data_check_fields(data, data_transfer, DATA_TRANSFER_FIELDS, errors, where);
        }
    }
    json_decref(where);
    json_decref(prefix);
    return json_array_size(errors) ? -1 : kind;
}

static void op_run(roost_dbconn_t *c, int kind, const json_t *op, data_outcome_t *o)
{
    const json_t *data = json_object_get(op, "data");
    long long id = json_integer_value(json_object_get(op, "id"));
    switch (kind) {
    case OP_CREATE_USER:
        data_create_user(c, data, o);
        break;
    case OP_UPDATE_USER:
        data_update_user(c, id, data, o);
        break;
    case OP_DELETE_USER:
        data_delete_user(c, id, o);
        break;
    case OP_CREATE_ACCOUNT:
        data_create_account(c, data, o);
        break;
    case OP_TRANSFER:
        data_transfer_op(c, data, o);
        break;
    }
}

/* One write transaction; each operation inside SAVEPOINT op: a failed one is rolled back to its
 * savepoint and reported, the others are committed together. Returns < 0 when the transaction
 * itself failed (then nothing is committed). */
static int batch_tx(roost_dbconn_t *c, json_t *ops, json_t *results, int *nfailed)
{
    int rc = roost_db_begin(c, ROOST_DB_WRITE);
    for (size_t i = 0; rc == 0 && i < json_array_size(ops); i++) {
        json_t *op = json_array_get(ops, i), *errors = json_array();
        data_outcome_t o = {0};
        int kind = op_check(op, i, errors);
        if (kind < 0) {
            o.status = 422;
            o.detail = json_string_value(json_object_get(json_array_get(errors, 0), "msg"));
        } else if ((rc = roost_db_savepoint(c, "op")) == 0) {
            op_run(c, kind, op, &o);
            if (o.status >= 400)
                rc = roost_db_rollback_to(c, "op");
            if (rc == 0)
                rc = roost_db_release_savepoint(c, "op");
            if (o.rc == -EAGAIN || o.rc == -EIO)
                rc = o.rc; /* the connection or the database failed, not the operation */
        }
        *nfailed += o.status >= 400;
        json_t *item = json_pack("{s:I,s:s,s:i,s:o,s:o}", "index", (json_int_t)i, "status",
                                 o.status < 400 ? "success" : "failed", "code", o.status, "error",
                                 o.status < 400 ? json_null() : json_string(o.detail), "result",
                                 o.body ? o.body : json_null());
        if (kind < 0)
            json_object_set(item, "errors", errors);
        json_decref(errors);
        json_array_append_new(results, item);
    }
    if (rc == 0)
        return roost_db_commit(c);
    roost_db_rollback(c);
    return rc;
}

static void batch(roost_req_t *req, void *ud)
{
    json_t *in = roost_req_json_body(req);
    json_t *ops = json_object_get(in, "operations"); /* a list of 1 to 1000: batch_schema */
    size_t n = json_array_size(ops);
    data_outcome_t o = {0};
    json_t *results = json_array();
    int nfailed = 0;
    WITH_CONN(ud, o, {
        int rc = batch_tx(c, ops, results, &nfailed);
        if (rc < 0)
            data_failed(&o, rc, NULL);
    });
    if (o.status) {
        json_decref(results);
        data_respond(req, &o);
        return;
    }
    roost_respond_json(req, 200,
                       json_pack("{s:o,s:I,s:I}", "results", results, "succeeded",
                                 (json_int_t)(n - (size_t)nfailed), "failed", (json_int_t)nfailed));
}

/* Each user and each operation is checked by the handler, so that every item's errors are
 * reported at its index (and a batch answers per operation). */
static const roost_field_t any_item = {.type = ROOST_T_ANY};
/* {"users": [1..BULK_MAX]} and {"operations": [1..BATCH_MAX]} */
#define LIST_OF_1_TO(field, max)                                                                   \
    {                                                                                              \
        .name = field, .type = ROOST_T_ARR, .required = 1, .min_len = 1, .max_len = max,           \
        .items = &any_item                                                                         \
    }
static const roost_field_t list_fields[] = {LIST_OF_1_TO("users", BULK_MAX),
                                            LIST_OF_1_TO("operations", BATCH_MAX)};
static const roost_schema_t bulk_schema = {.fields = &list_fields[0], .nfields = 1},
                            batch_schema = {.fields = &list_fields[1], .nfields = 1};
static const char *const tags_tx[] = {"transactions", NULL};

static const roost_route_opts_t routes[] = {
    {"POST", "/transfer", transfer, .flags = ROOST_BLOCKING, .tags = tags_tx,
     .summary = "Move money between two accounts in one transaction",
     .body = &data_transfer_schema},
    {"POST", "/batch", batch, .flags = ROOST_BLOCKING, .tags = tags_tx,
     .summary = "Run operations in one transaction, a savepoint each", .body = &batch_schema},
    {"POST", "/users/batch", bulk_users, .flags = ROOST_BLOCKING, .tags = tags_tx,
     .summary = "Create users, all or none", .body = &bulk_schema, .status = 201},
    /* the articles' paths for the same handlers */
    {"POST", "/batch-operation", batch, .flags = ROOST_BLOCKING, .tags = tags_tx,
     .summary = "As /batch: a savepoint per item", .body = &batch_schema},
    {"POST", "/batch-insert", bulk_users, .flags = ROOST_BLOCKING, .tags = tags_tx,
     .summary = "As /users/batch: one multi-row insert", .body = &bulk_schema, .status = 201},
};

int app_routes_data_tx(roost_server_t *srv, roost_db_t *db)
{
    return app_register(srv, routes, DATA_COUNT_OF(routes), db);
}
