/* The articles' cursor pagination example: GET /items?cursor=&limit= over the items table (the
 * data schema's second migration seeds 100), one statement on a data thread. The articles' other
 * database examples are the data routes under their paths (routes_data*.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/routes_data.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX     100
#define ITEM_CURSOR  'i'

typedef struct {
    long long limit;
    int status;
    json_t *body;
} page_t;

static void page_rows(roost_dbconn_t *c, int rc, void *arg)
{
    page_t *p = arg;
    if (!c || rc < 0) {
        p->status = !c || rc == -EAGAIN ? 503 : 500;
        return;
    }
    json_t *items = json_array(); /* one more than a page: roost_page sees if there is more */
    while ((rc = roost_db_next(c)) == 1)
        json_array_append_new(items, json_pack("{s:I,s:s,s:f}", "id", roost_db_int(c, 0), "name",
                                               roost_db_text(c, 1), "price",
                                               (double)roost_db_int(c, 2) / 100.0));
    if (rc < 0) {
        json_decref(items);
        p->status = 500;
        return;
    }
    p->status = 200;
    p->body = roost_page(items, p->limit, ITEM_CURSOR, "id");
}

static void page_done(roost_req_t *req, void *arg)
{
    page_t *p = arg;
    if (p->status == 200)
        roost_respond_json(req, 200, p->body);
    else
        roost_respond_error(req, p->status,
                            p->status == 503 ? "Database unavailable" : "Database error");
}

static void list_items(roost_req_t *req, void *ud)
{
    page_t *p = roost_req_new(req, sizeof *p); /* zeroed; answers 500 itself when out of memory */
    if (!p)
        return;
    p->limit = roost_req_query_int(req, "limit");
    roost_db_run_query(ud, req, page_rows, page_done, p, S_ITEM_PAGE, "ii",
                       roost_req_query_int(req, "cursor"), p->limit + 1);
}

static const roost_field_t page_fields[] = {ROOST_PAGE_FIELDS(ITEM_CURSOR, PAGE_DEFAULT, PAGE_MAX)};
static const roost_schema_t page_schema = {.fields = page_fields, .nfields = 2};
static const char *const tags_items[] = {"articles: database", NULL};
static const roost_route_opts_t routes[] = {
    {"GET", "/items", list_items, .tags = tags_items, .query = &page_schema,
     .summary = "Items, a cursor page at a time"},
};

int app_routes_articles_data(roost_server_t *srv)
{
    roost_db_t *db = app_data_db(); /* after app_routes_data opened it */
    return db ? app_register(srv, routes, APP_COUNT_OF(routes), db) : -EIO;
}
