/* Services: what lives beside the loops for the whole run (the job queue, the data threads),
 * kept in a list in registration order. Started and drained in that order, stopped in reverse,
 * so a service may rely on any registered before it. Not the run itself (run.c). */
#include "core/core.h"

#include <errno.h>
#include <stdlib.h>

int core_service_add(roost_server_t *srv, const core_service_t *svc)
{
    if (srv->nservices == srv->services_cap) {
        int cap = srv->services_cap ? 2 * srv->services_cap : 4;
        core_service_t *s = realloc(srv->services, (size_t)cap * sizeof *s);
        if (!s)
            return -ENOMEM;
        srv->services = s;
        srv->services_cap = cap;
    }
    srv->services[srv->nservices++] = *svc;
    return 0;
}

void core_services_start(roost_server_t *srv)
{
    for (int i = 0; i < srv->nservices; i++)
        if (srv->services[i].start)
            srv->services[i].start(srv->services[i].ud);
}

void core_services_drain(roost_server_t *srv)
{
    for (int i = 0; i < srv->nservices; i++)
        if (srv->services[i].drain)
            srv->services[i].drain(srv->services[i].ud);
}

void core_services_stop(roost_server_t *srv)
{
    while (srv->nservices > 0) {
        core_service_t *s = &srv->services[--srv->nservices];
        if (s->stop)
            s->stop(s->ud);
    }
}
