/* The roost server's own routes, each group registered through the public API only, exactly
 * as an embedder would. */
#ifndef ROOST_APP_H
#define ROOST_APP_H

#include "roost/roost.h"

/* /healthz, /plaintext, /json, /items, /slow-async, /slow-sync, /metrics, /debug/... */
int app_routes_basic(roost_server_t *srv);
/* /ws/{room}/{user}, /echo, /broadcast, /rooms... */
int app_routes_rooms(roost_server_t *srv);
/* GET / (the chat page), compiled in from web/ */
int app_routes_pages(roost_server_t *srv);

#endif
