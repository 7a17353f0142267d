/* Per-address connection limits: open connections and new connections a second (a token bucket
 * with bursts of twice the rate) for each client address, in one table shared by every loop
 * (a client's connections spread over the loops by SO_REUSEPORT) with striped locks. Addresses
 * in the trusted CIDR list are never counted. Not what the refused client is told (the protocol's
 * busy_reply, sent by conn.c). */
#include "net/net.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS     4096
#define STRIPES     64 /* bucket i is guarded by lock i % STRIPES */
#define TRUSTED_MAX 64

typedef struct ip_entry {
    struct ip_entry *next;
    unsigned char ip[16];
    int conns;
    double tokens; /* new connections this address may open now */
    uint64_t at_ms;
} ip_entry_t;

struct net_iplimit {
    net_iplimit_opts_t o;
    struct {
        unsigned char addr[16];
        int bits;
    } trusted[TRUSTED_MAX];
    int ntrusted;
    pthread_mutex_t locks[STRIPES];
    ip_entry_t *buckets[BUCKETS];
};

int net_cidr_parse(const char *s, size_t len, unsigned char addr[16], int *bits)
{
    char buf[64];
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (!len || len >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    long n = -1;
    if (slash) {
        char *end;
        *slash = '\0';
        n = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || n < 0)
            return -EINVAL;
    }
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, buf, addr + 12) == 1) {
        if (n > 32)
            return -EINVAL;
        addr[10] = addr[11] = 0xff;
        *bits = 96 + (n < 0 ? 32 : (int)n);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        if (n > 128)
            return -EINVAL;
        *bits = n < 0 ? 128 : (int)n;
        return 0;
    }
    return -EINVAL;
}

void net_conn_peer_ip(net_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET6) {
        memcpy(c->ip, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    } else if (ss.ss_family == AF_INET) {
        c->ip[10] = c->ip[11] = 0xff;
        memcpy(c->ip + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    }
}

static int in_prefix(const unsigned char ip[16], const unsigned char net[16], int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(ip, net, (size_t)full))
        return 0;
    if (!rest)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (ip[full] & mask) == (net[full] & mask);
}

net_iplimit_t *net_iplimit_new(const net_iplimit_opts_t *o, int *err)
{
    *err = 0;
    if (o->max_conns <= 0 && o->new_per_s <= 0)
        return NULL;
    net_iplimit_t *l = calloc(1, sizeof *l);
    if (!l) {
        *err = -ENOMEM;
        return NULL;
    }
    l->o = *o;
    for (const char *p = o->trusted; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (l->ntrusted == TRUSTED_MAX ||
            net_cidr_parse(p, len, l->trusted[l->ntrusted].addr, &l->trusted[l->ntrusted].bits)) {
            log_error("--trusted-ips: '%.*s' is not an address or CIDR (at most %d)", (int)len, p,
                      TRUSTED_MAX);
            free(l);
            *err = -EINVAL;
            return NULL;
        }
        l->ntrusted++;
        p = comma ? comma + 1 : p + len;
    }
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&l->locks[i], NULL);
    return l;
}

void net_iplimit_free(net_iplimit_t *l)
{
    if (!l)
        return;
    for (int i = 0; i < BUCKETS; i++)
        for (ip_entry_t *e = l->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&l->locks[i]);
    free(l);
}

static unsigned bucket_of(const unsigned char ip[16])
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ ip[i]) * 16777619u;
    return h % BUCKETS;
}

static double burst(const net_iplimit_t *l)
{
    return 2.0 * l->o.new_per_s;
}

static void refill(const net_iplimit_t *l, ip_entry_t *e, uint64_t now_ms)
{
    if (l->o.new_per_s <= 0)
        return;
    e->tokens += (double)(now_ms - e->at_ms) * l->o.new_per_s / 1000.0;
    if (e->tokens > burst(l))
        e->tokens = burst(l);
    e->at_ms = now_ms;
}

/* An entry with no connection and a full bucket says nothing: it is freed on the way. */
static ip_entry_t *find(net_iplimit_t *l, ip_entry_t **head, const unsigned char ip[16],
                        uint64_t now_ms)
{
    ip_entry_t *found = NULL;
    for (ip_entry_t **p = head; *p;) {
        ip_entry_t *e = *p;
        if (!memcmp(e->ip, ip, 16)) {
            found = e;
        } else if (e->conns == 0) {
            refill(l, e, now_ms);
            if (l->o.new_per_s <= 0 || e->tokens >= burst(l)) {
                *p = e->next;
                free(e);
                continue;
            }
        }
        p = &e->next;
    }
    return found;
}

int net_iplimit_take(net_iplimit_t *l, const unsigned char ip[16], uint64_t now_ms)
{
    for (int i = 0; i < l->ntrusted; i++)
        if (in_prefix(ip, l->trusted[i].addr, l->trusted[i].bits))
            return 0;
    unsigned b = bucket_of(ip);
    pthread_mutex_t *lock = &l->locks[b % STRIPES];
    pthread_mutex_lock(lock);
    ip_entry_t *e = find(l, &l->buckets[b], ip, now_ms);
    if (!e && (e = calloc(1, sizeof *e))) {
        memcpy(e->ip, ip, 16);
        e->tokens = burst(l);
        e->at_ms = now_ms;
        e->next = l->buckets[b];
        l->buckets[b] = e;
    }
    int rc = 1;
    if (!e) {
        rc = 0; /* out of memory: not a reason to refuse a client */
    } else if (l->o.max_conns > 0 && e->conns >= l->o.max_conns) {
        roost_counter_add(l->o.c_conns, 1);
        rc = -EBUSY;
    } else {
        refill(l, e, now_ms);
        if (l->o.new_per_s > 0 && e->tokens < 1.0) {
            roost_counter_add(l->o.c_rate, 1);
            rc = -EBUSY;
        } else {
            e->tokens -= 1.0;
            e->conns++;
        }
    }
    pthread_mutex_unlock(lock);
    return rc;
}

void net_iplimit_release(net_iplimit_t *l, const unsigned char ip[16])
{
    unsigned b = bucket_of(ip);
    pthread_mutex_t *lock = &l->locks[b % STRIPES];
    pthread_mutex_lock(lock);
    for (ip_entry_t **p = &l->buckets[b]; *p; p = &(*p)->next) {
        ip_entry_t *e = *p;
        if (memcmp(e->ip, ip, 16))
            continue;
        if (--e->conns == 0 && l->o.new_per_s <= 0) {
            *p = e->next;
            free(e);
        }
        break;
    }
    pthread_mutex_unlock(lock);
}
