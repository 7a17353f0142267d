/* roost_read_file: a whole small file read for a loop handler through libuv's file API (uv_fs_*
 * on the request's loop; libuv runs the system calls on its own threads), so that a slow disk
 * never stalls the loop. Not for large files: those stream (roost_stream_*). */
#include "http/http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>

typedef struct {
    uv_fs_t fs;
    roost_req_t *req;
    roost_file_fn done;
    void *arg;
    uv_file fd;
    int rc;
    size_t max, size, len;
    char *data;
} readfile_t;

static void rf_finish(roost_req_t *req, void *arg)
{
    readfile_t *f = arg;
    f->done(req, f->rc, f->data ? f->data : "", f->len, f->arg);
    free(f->data);
    free(f);
}

static void rf_closed(uv_fs_t *fs)
{
    readfile_t *f = CONTAINER_OF(fs, readfile_t, fs);
    uv_fs_req_cleanup(fs);
    roost_req_resume(f->req, rf_finish, f);
}

static void rf_close(readfile_t *f, int rc)
{
    f->rc = rc;
    if (uv_fs_close(&f->req->loop->uv, &f->fs, f->fd, rf_closed) < 0)
        roost_req_resume(f->req, rf_finish, f);
}

static void rf_read(uv_fs_t *fs)
{
    readfile_t *f = CONTAINER_OF(fs, readfile_t, fs);
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    if (n < 0) {
        rf_close(f, (int)n);
        return;
    }
    f->len += (size_t)n;
    if (n == 0 || f->len >= f->size) {
        rf_close(f, 0);
        return;
    }
    uv_buf_t b = uv_buf_init(f->data + f->len, (unsigned)(f->size - f->len));
    int rc = uv_fs_read(&f->req->loop->uv, &f->fs, f->fd, &b, 1, (int64_t)f->len, rf_read);
    if (rc < 0)
        rf_close(f, rc);
}

static void rf_stat(uv_fs_t *fs)
{
    readfile_t *f = CONTAINER_OF(fs, readfile_t, fs);
    int rc = (int)fs->result;
    uint64_t size = fs->statbuf.st_size;
    uv_fs_req_cleanup(fs);
    if (rc < 0) {
        rf_close(f, rc);
        return;
    }
    if (size > f->max) {
        rf_close(f, -EFBIG);
        return;
    }
    f->size = (size_t)size;
    f->data = malloc(f->size + 1);
    if (!f->data) {
        rf_close(f, -ENOMEM);
        return;
    }
    if (f->size == 0) {
        rf_close(f, 0);
        return;
    }
    uv_buf_t b = uv_buf_init(f->data, (unsigned)f->size);
    rc = uv_fs_read(&f->req->loop->uv, &f->fs, f->fd, &b, 1, 0, rf_read);
    if (rc < 0)
        rf_close(f, rc);
}

static void rf_open(uv_fs_t *fs)
{
    readfile_t *f = CONTAINER_OF(fs, readfile_t, fs);
    int rc = (int)fs->result;
    uv_fs_req_cleanup(fs);
    if (rc < 0) {
        f->rc = rc;
        roost_req_resume(f->req, rf_finish, f);
        return;
    }
    f->fd = rc;
    rc = uv_fs_fstat(&f->req->loop->uv, &f->fs, f->fd, rf_stat);
    if (rc < 0)
        rf_close(f, rc);
}

int roost_read_file(roost_req_t *req, const char *path, size_t max, roost_file_fn done, void *arg)
{
    readfile_t *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    *f = (readfile_t){.req = req, .done = done, .arg = arg, .max = max, .fd = -1};
    int rc = roost_req_wait(req);
    if (rc < 0) {
        free(f);
        return rc;
    }
    rc = uv_fs_open(&req->loop->uv, &f->fs, path, O_RDONLY | O_CLOEXEC, 0, rf_open);
    if (rc < 0) { /* the callback will not run: end the wait with the error */
        f->rc = rc;
        roost_req_resume(req, rf_finish, f);
    }
    return 0;
}
