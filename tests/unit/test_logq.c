/* The buffered log writer: lines reach the file in order, and a writer that cannot keep up
 * makes logq_write drop (and count) lines instead of blocking the caller. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "unit.h"

TEST(logq_writes_lines_in_order)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    logq_t *q = logq_new(fds[1], 4096);
    CHECK(q != NULL);
    CHECK_EQ_INT(logq_write(q, "one\n", 4), 0);
    CHECK_EQ_INT(logq_write(q, "two\n", 4), 0);
    logq_free(q); /* flushes */
    char buf[16] = {0};
    CHECK_EQ_INT(read(fds[0], buf, sizeof buf - 1), 8);
    CHECK(!strcmp(buf, "one\ntwo\n"));
    close(fds[0]);
    close(fds[1]);
}

TEST(logq_drops_and_counts_when_the_writer_is_stuck)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    fcntl(fds[1], F_SETPIPE_SZ, 4096); /* a small pipe nobody reads: the writer blocks */
    logq_t *q = logq_new(fds[1], 4096);
    CHECK(q != NULL);
    char line[128];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    int dropped = 0;
    uint64_t t0 = time_now_ns();
    for (int i = 0; i < 2000; i++)
        dropped += logq_write(q, line, sizeof line) == -ENOBUFS;
    CHECK(time_now_ns() - t0 < 2000000000ull); /* never waited for the writer */
    CHECK(dropped > 0);
    CHECK_EQ_INT(logq_dropped(q), dropped);
    CHECK_EQ_INT(logq_lines(q) + dropped, 2000);
    /* Drain the pipe so the writer can finish, then free. */
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    int flags = fcntl(fds[1], F_GETFL);
    fcntl(fds[1], F_SETFL, flags | O_NONBLOCK);
    char sink[65536];
    for (int i = 0; i < 200; i++) {
        while (read(fds[0], sink, sizeof sink) > 0)
            ;
        usleep(1000);
    }
    logq_free(q);
    close(fds[0]);
    close(fds[1]);
}
