/* Static files: --static URL_PREFIX=DIR as GET/HEAD routes. The file is opened beneath DIR on
 * libuv's threadpool (openat2 RESOLVE_BENEATH: no `..`, no symlink out), answered with ETag,
 * Last-Modified, 304, a single Range (206/416) and a type from /etc/mime.types, and its bytes go
 * out by sendfile (net/sendfile.c). Not a directory lister, not multipart ranges (a request for
 * several ranges gets the whole file, as RFC 9110 §14.2 allows), not compression. */
#include "http/http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MIME_TYPES "/etc/mime.types"

typedef struct mount {
    struct mount *next;
    int root;        /* O_PATH descriptor of DIR: what paths resolve beneath */
    char *root_real; /* DIR's real path, for kernels without openat2 */
    char *tmpl;      /* "PREFIX/{path:path}" */
} mount_t;

typedef struct {
    strmap_t mime;           /* extension (lower case) -> type; read once at start-up */
    mount_t *mounts;         /* main thread until roost_run, then read only */
    _Atomic long open_files; /* opened for an answer and not yet closed; every loop */
    long max_open;
    roost_counter_t *c_limit, *c_files, *c_not_modified, *c_not_found;
} static_srv_t;

/* One request's file, from the handler until the file is closed (after the last byte, or when
 * the answer is dropped); malloc'd because it outlives the request when sendfile owns it. */
typedef struct {
    uv_work_t work;
    roost_req_t *req;
    static_srv_t *ss;
    const mount_t *m;
    const char *rel; /* the request's arena: valid while the request waits */
    int fd;
    int err; /* of the open: 0 or -errno */
    struct stat st;
    int index; /* the directory's index.html was opened */
} job_t;

/* ---- the server's state, in a core slot ---- */

static void mount_free(mount_t *m)
{
    if (m->root >= 0)
        close(m->root);
    free(m->root_real);
    free(m->tmpl);
    free(m);
}

static void static_srv_free(void *ctx)
{
    static_srv_t *ss = ctx;
    strmap_free(&ss->mime, free);
    while (ss->mounts) {
        mount_t *next = ss->mounts->next;
        mount_free(ss->mounts);
        ss->mounts = next;
    }
    free(ss);
}

static CORE_SLOT_FN(static_slot, .name = "static", .server_free = static_srv_free)

/* mime.types: "type ext ext ..." per line, '#' comments. The first type named for an
 * extension wins, as in nginx's types block built from it. */
static void mime_load(strmap_t *map)
{
    FILE *f = fopen(MIME_TYPES, "r");
    if (!f) {
        log_error("static: cannot read %s: every file is application/octet-stream", MIME_TYPES);
        return;
    }
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *type = strtok_r(line, " \t\r\n", &save);
        if (!type || type[0] == '#')
            continue;
        for (char *ext; (ext = strtok_r(NULL, " \t\r\n", &save));) {
            for (char *p = ext; *p; p++)
                *p = (char)tolower((unsigned char)*p);
            if (strmap_get(map, ext))
                continue;
            char *t = strdup(type);
            if (!t || strmap_put(map, ext, t) < 0) {
                free(t);
                break;
            }
        }
    }
    fclose(f);
}

static static_srv_t *static_srv(roost_server_t *srv)
{
    core_slot_t s = static_slot();
    if (s <= 0)
        return NULL;
    static_srv_t *ss = core_server_ctx(srv, s);
    if (ss)
        return ss;
    if (!(ss = calloc(1, sizeof *ss)))
        return NULL;
    mime_load(&ss->mime);
    ss->max_open = roost_server_config(srv)->files.max_open;
    ss->c_limit = roost_counter(srv, "roost_limit_hits_total", "limit=\"static_open_files\"",
                                "requests refused because a limit was reached");
    ss->c_files = roost_counter(srv, "roost_static_files_total", NULL,
                                "static files answered with their bytes (200, 206, HEAD)");
    ss->c_not_modified = roost_counter(srv, "roost_static_not_modified_total", NULL,
                                       "static file requests answered 304");
    ss->c_not_found = roost_counter(srv, "roost_static_not_found_total", NULL,
                                    "static file requests answered 404 (absent, outside, dir)");
    core_server_ctx_set(srv, s, ss);
    return ss;
}

static const char *mime_type(const static_srv_t *ss, const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash ? slash + 1 : name, '.');
    char ext[32];
    size_t n = dot ? strlen(dot + 1) : 0;
    if (n == 0 || n >= sizeof ext)
        return "application/octet-stream";
    for (size_t i = 0; i <= n; i++)
        ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    const char *t = strmap_get(&ss->mime, ext);
    return t ? t : "application/octet-stream";
}

/* ---- opening beneath the root, on a pool thread ---- */

/* realpath then a prefix check, for kernels before 5.6 (no openat2). Racy against a tree that
 * changes between the two steps; openat2 is not. */
static int open_by_realpath(const mount_t *m, const char *rel, int flags)
{
    char path[PATH_MAX], real[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", m->root_real, rel) >= (int)sizeof path)
        return -ENAMETOOLONG;
    if (!realpath(path, real))
        return -errno;
    size_t rl = strlen(m->root_real);
    if (strncmp(real, m->root_real, rl) || (real[rl] != '/' && real[rl] != '\0'))
        return -EXDEV;
    int fd = open(real, flags | O_NOFOLLOW);
    return fd < 0 ? -errno : fd;
}

static int open_beneath(const mount_t *m, const char *rel, int flags)
{
    static _Atomic int no_openat2;
    if (!atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
        /* RESOLVE_BENEATH: a `..` or a symlink that would leave the root fails (EXDEV). */
        struct open_how how = {.flags = (uint64_t)flags,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
        long fd = syscall(SYS_openat2, m->root, rel, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS)
            return -errno;
        atomic_store_explicit(&no_openat2, 1, memory_order_relaxed);
    }
    return open_by_realpath(m, rel, flags);
}

/* A path the router gave, already decoded and cleaned: still, refuse any segment that is `.`
 * or `..`, so that nothing here depends on the cleaning upstream. */
static int rel_ok(const char *rel)
{
    for (const char *p = rel; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += n + (e != NULL);
    }
    return rel[0] != '/';
}

static void open_file(job_t *j)
{
    /* O_NONBLOCK: a FIFO put in DIR must not hang a pool thread (it is refused below). */
    const int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    const char *rel = j->rel[0] ? j->rel : ".";
    j->fd = -1;
    if (!rel_ok(j->rel)) {
        j->err = -ENOENT;
        return;
    }
    int fd = open_beneath(j->m, rel, flags);
    if (fd >= 0 && fstat(fd, &j->st) < 0) {
        close(fd);
        fd = -errno;
    }
    if (fd >= 0 && S_ISDIR(j->st.st_mode)) {
        close(fd);
        char idx[PATH_MAX];
        if (snprintf(idx, sizeof idx, "%s%sindex.html", j->rel,
                     j->rel[0] && j->rel[strlen(j->rel) - 1] != '/' ? "/" : "") >= (int)sizeof idx)
            fd = -ENAMETOOLONG;
        else
            fd = open_beneath(j->m, idx, flags);
        if (fd >= 0 && fstat(fd, &j->st) < 0) {
            close(fd);
            fd = -errno;
        }
        j->index = 1;
    }
    if (fd >= 0 && !S_ISREG(j->st.st_mode)) {
        close(fd);
        fd = -ENOENT;
    }
    if (fd < 0)
        j->err = fd;
    else
        j->fd = fd;
}

static void open_work(uv_work_t *w)
{
    job_t *j = CONTAINER_OF(w, job_t, work);
    HANDOFF_ACQUIRE(j);
    open_file(j);
    HANDOFF_RELEASE(j);
}

/* ---- the answer, on the loop ---- */

static void job_free(job_t *j)
{
    if (j->fd >= 0)
        close(j->fd);
    atomic_fetch_sub(&j->ss->open_files, 1);
    free(j);
}

/* The file's done (net/sendfile.c or the request letting go). */
static void file_done(void *arg, int status)
{
    (void)status;
    job_free(arg);
}

static void http_date(time_t t, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* RFC 9110 §13.1.2: weak comparison; `*` matches any current file. */
static int etag_matches(roost_str_t list, const char *etag)
{
    size_t el = strlen(etag);
    roost_str_t item;
    for (const char *p = list.ptr; p && str_list_next(&p, list.ptr + list.len, &item);) {
        const char *s = item.ptr, *e = item.ptr + item.len;
        if (e - s == 1 && *s == '*')
            return 1;
        if (e - s > 2 && s[0] == 'W' && s[1] == '/')
            s += 2;
        if ((size_t)(e - s) == el && !memcmp(s, etag, el))
            return 1;
    }
    return 0;
}

static int parse_http_date(roost_str_t v, time_t *out)
{
    char buf[64];
    if (!v.ptr || v.len >= sizeof buf)
        return -EINVAL;
    memcpy(buf, v.ptr, v.len);
    buf[v.len] = '\0';
    struct tm tm = {0};
    const char *end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return -EINVAL;
    *out = timegm(&tm);
    return 0;
}

/* RFC 9110 §13.2.2: If-None-Match, when present, decides alone; else If-Modified-Since. */
static int not_modified(roost_req_t *req, const char *etag, time_t mtime)
{
    roost_str_t inm = roost_req_header(req, "If-None-Match");
    if (inm.ptr)
        return etag_matches(inm, etag);
    time_t ims;
    if (parse_http_date(roost_req_header(req, "If-Modified-Since"), &ims) == 0)
        return mtime <= ims;
    return 0;
}

static int parse_u64(const char *s, const char *e, uint64_t *out)
{
    if (s == e || e - s > 19)
        return -EINVAL;
    uint64_t v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

enum { RANGE_NONE, RANGE_ONE, RANGE_BAD };

/* A single `bytes=` range of RFC 9110 §14.1.2 against size: RANGE_ONE with [*first, *last],
 * RANGE_BAD when unsatisfiable (416), RANGE_NONE when absent, malformed, of another unit or a
 * list of several (then the whole file is the answer). */
static int parse_range(roost_str_t v, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (!v.ptr || v.len < 7 || strncasecmp(v.ptr, "bytes=", 6))
        return RANGE_NONE;
    const char *s = v.ptr + 6, *e = v.ptr + v.len;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    if (memchr(s, ',', (size_t)(e - s)))
        return RANGE_NONE;
    const char *dash = memchr(s, '-', (size_t)(e - s));
    if (!dash)
        return RANGE_NONE;
    uint64_t a, b;
    if (dash == s) { /* -N: the last N bytes */
        if (parse_u64(dash + 1, e, &b) < 0)
            return RANGE_NONE;
        if (b == 0 || size == 0)
            return RANGE_BAD;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return RANGE_ONE;
    }
    if (parse_u64(s, dash, &a) < 0)
        return RANGE_NONE;
    if (dash + 1 == e) {
        b = UINT64_MAX;
    } else if (parse_u64(dash + 1, e, &b) < 0 || b < a) {
        return RANGE_NONE; /* an invalid range-spec: the field is ignored */
    }
    if (a >= size)
        return RANGE_BAD;
    *first = a;
    *last = b >= size ? size - 1 : b;
    return RANGE_ONE;
}

/* RFC 9110 §13.1.5: a Range counts only while If-Range still names this file. */
static int if_range_ok(roost_req_t *req, const char *etag, const char *lastmod)
{
    roost_str_t v = roost_req_header(req, "If-Range");
    if (!v.ptr)
        return 1;
    if (v.len && v.ptr[0] == '"')
        return v.len == strlen(etag) && !memcmp(v.ptr, etag, v.len);
    return v.len == strlen(lastmod) && !memcmp(v.ptr, lastmod, v.len);
}

static void answer(roost_req_t *req, void *arg)
{
    job_t *j = arg;
    static_srv_t *ss = j->ss;
    if (roost_req_gone(req)) {
        job_free(j);
        return;
    }
    if (j->err) {
        roost_counter_add(ss->c_not_found, 1);
        if (j->err != -ENOENT && j->err != -EXDEV && j->err != -ENOTDIR && j->err != -ELOOP &&
            j->err != -EACCES && j->err != -ENAMETOOLONG)
            log_error("static: %s: %s", j->rel, strerror(-j->err));
        job_free(j);
        roost_respond_error(req, 404, "Not Found");
        return;
    }
    uint64_t size = (uint64_t)j->st.st_size;
    time_t mtime = j->st.st_mtim.tv_sec;
    char etag[48], lastmod[32];
    /* nginx's ETag: hex mtime and hex size. Strong: the pair changes when the file does
     * (unless rewritten within one second at the same size, a risk nginx takes as well). */
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)mtime,
             (unsigned long long)size);
    http_date(mtime, lastmod);
    roost_res_header(req, "ETag", etag);
    roost_res_header(req, "Last-Modified", lastmod);
    roost_res_header(req, "Accept-Ranges", "bytes");
    if (not_modified(req, etag, mtime)) {
        roost_counter_add(ss->c_not_modified, 1);
        job_free(j);
        roost_respond(req, 304, NULL, NULL, 0);
        return;
    }
    const char *type = mime_type(ss, j->index ? "index.html" : j->rel);
    uint64_t first = 0, last = size ? size - 1 : 0;
    int range = RANGE_NONE;
    if (req->method == HTTP_GET && if_range_ok(req, etag, lastmod))
        range = parse_range(roost_req_header(req, "Range"), size, &first, &last);
    char cr[80];
    if (range == RANGE_BAD) {
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
        roost_res_header(req, "Content-Range", cr);
        job_free(j);
        roost_respond_error(req, 416, "Range Not Satisfiable");
        return;
    }
    int status = 200;
    uint64_t len = size;
    if (range == RANGE_ONE) {
        status = 206;
        len = last - first + 1;
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)size);
        roost_res_header(req, "Content-Range", cr);
    }
    roost_counter_add(ss->c_files, 1);
    j->req = NULL; /* the job now lives until the file is closed (file_done), maybe longer */
    http_respond_file(req, status, type, j->fd, first, len, file_done, j);
}

static void after_open(uv_work_t *w, int status)
{
    job_t *j = CONTAINER_OF(w, job_t, work);
    HANDOFF_ACQUIRE(j);
    if (status < 0 && !j->err)
        j->err = status; /* cancelled: the loop is closing */
    roost_req_resume(j->req, answer, j);
}

static void static_handler(roost_req_t *req, void *ud)
{
    const mount_t *m = ud;
    static_srv_t *ss = static_srv(req->srv);
    if (atomic_fetch_add(&ss->open_files, 1) >= ss->max_open) {
        atomic_fetch_sub(&ss->open_files, 1);
        roost_counter_add(ss->c_limit, 1);
        roost_respond_error(req, 503, "Too many files open");
        return;
    }
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        atomic_fetch_sub(&ss->open_files, 1);
        roost_respond_error(req, 503, "Out of memory");
        return;
    }
    roost_str_t rel = roost_req_param(req, "path");
    j->req = req;
    j->ss = ss;
    j->m = m;
    j->rel = rel.ptr ? rel.ptr : "";
    j->fd = -1;
    roost_req_wait(req);
    HANDOFF_RELEASE(j);
    if (uv_queue_work(&req->loop->uv, &j->work, open_work, after_open) < 0) {
        job_free(j);
        roost_respond_error(req, 503, "Cannot open the file now");
        roost_req_resume(req, NULL, NULL);
    }
}

/* ---- registration ---- */

static const char *const static_tags[] = {"static files", NULL};

int roost_static(roost_server_t *srv, const char *url_prefix, const char *dir)
{
    static_srv_t *ss = static_srv(srv);
    if (!ss)
        return -ENOMEM;
    size_t pl = strlen(url_prefix);
    while (pl > 0 && url_prefix[pl - 1] == '/')
        pl--;
    if (url_prefix[0] != '/' || memchr(url_prefix, '{', pl) || memchr(url_prefix, '}', pl))
        return -EINVAL;
    mount_t *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    m->root_real = realpath(dir, NULL);
    if (m->root < 0 || !m->root_real) {
        mount_free(m);
        return -EINVAL;
    }
    if (asprintf(&m->tmpl, "%.*s/{path:path}", (int)pl, url_prefix) < 0) {
        m->tmpl = NULL;
        mount_free(m);
        return -ENOMEM;
    }
    int rc = roost_route_ex(srv, &(roost_route_opts_t){
                                     .method = "GET",
                                     .path = m->tmpl,
                                     .handler = static_handler,
                                     .ud = m,
                                     .summary = "Static files",
                                     .tags = static_tags,
                                 });
    if (rc < 0) {
        mount_free(m);
        return rc;
    }
    m->next = ss->mounts;
    ss->mounts = m;
    return 0;
}

int roost_static_init(roost_server_t *srv)
{
    const roost_strlist_t *l = &roost_server_config(srv)->files.mounts;
    for (int i = 0; i < l->n; i++) {
        const char *eq = strchr(l->v[i], '=');
        char prefix[1024];
        if (!eq || eq == l->v[i] || (size_t)(eq - l->v[i]) >= sizeof prefix) {
            log_error("--static '%s': expected URL_PREFIX=DIR", l->v[i]);
            return -EINVAL;
        }
        memcpy(prefix, l->v[i], (size_t)(eq - l->v[i]));
        prefix[eq - l->v[i]] = '\0';
        int rc = roost_static(srv, prefix, eq + 1);
        if (rc < 0) {
            log_error("--static '%s': %s", l->v[i],
                      rc == -EINVAL ? "the prefix must start with '/' and DIR be a directory"
                                    : strerror(-rc));
            return rc;
        }
    }
    return 0;
}
