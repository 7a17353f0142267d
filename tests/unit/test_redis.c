/* Unit tests of src/redis: redis:// URLs, script SHA1s, and the client against a real
 * redis-server started here on a free loopback port (skipped when it is not installed):
 * replies, EVALSHA falling back to EVAL after SCRIPT FLUSH, pub/sub, what happens while Redis
 * is down (bounded queue, timeouts) and the reconnection that re-subscribes. */
#include "unit.h"

#include "redis/redis.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(redis_url_parses_host_port_db_and_password)
{
    redis_url_t u;
    CHECK_EQ_INT(redis_url_parse("redis://127.0.0.1:6390/3", &u), 0);
    CHECK_EQ_STR(u.host, "127.0.0.1");
    CHECK_EQ_INT(u.port, 6390);
    CHECK_EQ_INT(u.db, 3);
    CHECK(!u.password && !u.user);
    redis_url_free(&u);
    CHECK_EQ_INT(redis_url_parse("redis://cache", &u), 0);
    CHECK_EQ_STR(u.host, "cache");
    CHECK_EQ_INT(u.port, 6379);
    CHECK_EQ_INT(u.db, 0);
    redis_url_free(&u);
    CHECK_EQ_INT(redis_url_parse("redis://:s3cret@h:1/", &u), 0);
    CHECK_EQ_STR(u.password, "s3cret");
    CHECK(!u.user);
    redis_url_free(&u);
    CHECK_EQ_INT(redis_url_parse("redis://app:pw@h", &u), 0);
    CHECK_EQ_STR(u.user, "app");
    CHECK_EQ_STR(u.password, "pw");
    redis_url_free(&u);
}

TEST(redis_url_refuses_what_it_cannot_connect_to)
{
    redis_url_t u;
    CHECK_EQ_INT(redis_url_parse("http://h:1", &u), -EINVAL);
    CHECK_EQ_INT(redis_url_parse("redis://", &u), -EINVAL);
    CHECK_EQ_INT(redis_url_parse("redis://h:0", &u), -EINVAL);
    CHECK_EQ_INT(redis_url_parse("redis://h:70000", &u), -EINVAL);
    CHECK_EQ_INT(redis_url_parse("redis://h:12/x", &u), -EINVAL);
    CHECK_EQ_INT(redis_url_parse(NULL, &u), -EINVAL);
}

TEST(redis_script_sha_is_what_redis_computes)
{
    redis_script_t s = {.source = "return 1"};
    redis_script_init(&s);
    CHECK_EQ_STR(s.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

/* ---- against a real redis-server ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &n);
    close(fd);
    return ntohs(a.sin_port);
}

static pid_t redis_start(int port)
{
    if (access("/usr/bin/redis-server", X_OK) != 0)
        return -1;
    fflush(stdout); /* the child must not flush our buffered lines again */
    pid_t pid = fork();
    if (pid == 0) {
        char p[16];
        snprintf(p, sizeof p, "%d", port);
        freopen("/dev/null", "w", stdout);
        execl("/usr/bin/redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save",
              "", "--appendonly", "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void redis_stop(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

static int wait_for(atomic_int *flag, int want, int ms)
{
    for (int i = 0; i < ms / 5 && atomic_load(flag) != want; i++)
        usleep(5000);
    return atomic_load(flag) == want;
}

typedef struct {
    atomic_int done;
    int err;
    long long integer;
    char str[64];
} result_t;

static void on_reply(redis_t *r, const redisReply *reply, int err, void *ud)
{
    result_t *res = ud;
    res->err = err;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        res->integer = reply->integer;
    if (reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS ||
                  reply->type == REDIS_REPLY_ERROR))
        snprintf(res->str, sizeof res->str, "%s", reply->str);
    atomic_store(&res->done, 1);
}

static int run(redis_t *r, result_t *res, int argc, const char **argv)
{
    memset(res, 0, sizeof *res);
    int rc = redis_command(r, on_reply, res, argc, argv, NULL);
    return rc < 0 ? rc : wait_for(&res->done, 1, 3000) ? 0 : -ETIMEDOUT;
}

typedef struct {
    atomic_int got;
    char data[64];
} inbox_t;

static void on_message(redis_t *r, const char *channel, const char *data, size_t len, void *ud)
{
    inbox_t *in = ud;
    snprintf(in->data, sizeof in->data, "%s=%.*s", channel, (int)len, data);
    atomic_fetch_add(&in->got, 1);
}

static redis_t *client(int port, double timeout_s)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/2", port);
    return redis_new(&(redis_opts_t){.url = url,
                                     .command_timeout_s = timeout_s,
                                     .backoff_min_s = 0.05,
                                     .backoff_max_s = 0.2,
                                     .max_queued = 4});
}

static int wait_up(redis_t *r, int want, int ms)
{
    for (int i = 0; i < ms / 5 && redis_up(r) != want; i++)
        usleep(5000);
    return redis_up(r) == want;
}

TEST(redis_client_commands_scripts_and_pubsub)
{
    int port = free_port();
    pid_t pid = redis_start(port);
    if (pid < 0)
        return; /* no redis-server here */
    redis_t *r = client(port, 2);
    inbox_t in = {0};
    CHECK_EQ_INT(redis_on_message(r, "t:", on_message, &in), 0);
    CHECK(wait_up(r, 1, 5000));
    result_t res;
    CHECK_EQ_INT(run(r, &res, 3, (const char *[]){"SET", "k", "v"}), 0);
    CHECK_EQ_STR(res.str, "OK");
    CHECK_EQ_INT(run(r, &res, 2, (const char *[]){"INCR", "n"}), 0);
    CHECK_EQ_INT(res.integer, 1);
    /* SELECT 2 from the URL: the key is in db 2 */
    CHECK_EQ_INT(run(r, &res, 3, (const char *[]){"EVAL", "return redis.call('GET','k')", "0"}), 0);
    CHECK_EQ_STR(res.str, "v");

    static redis_script_t incr = {.source = "return redis.call('INCRBY', KEYS[1], ARGV[1])"};
    redis_script_init(&incr);
    memset(&res, 0, sizeof res);
    CHECK_EQ_INT(redis_eval(r, &incr, 1, 2, (const char *[]){"n", "10"}, NULL, on_reply, &res), 0);
    CHECK(wait_for(&res.done, 1, 3000));
    CHECK_EQ_INT(res.err, 0);
    CHECK_EQ_INT(res.integer, 11);
    CHECK_EQ_INT(run(r, &res, 2, (const char *[]){"SCRIPT", "FLUSH"}), 0);
    memset(&res, 0, sizeof res);
    CHECK_EQ_INT(redis_eval(r, &incr, 1, 2, (const char *[]){"n", "5"}, NULL, on_reply, &res), 0);
    CHECK(wait_for(&res.done, 1, 3000));
    CHECK_EQ_INT(res.integer, 16); /* NOSCRIPT, then EVAL: it ran once */

    CHECK_EQ_INT(redis_subscribe(r, "t:a"), 0);
    CHECK_EQ_INT(redis_subscribe(r, "u:b"), 0); /* no listener for u: */
    for (int i = 0; i < 200 && !atomic_load(&in.got); i++) {
        run(r, &res, 3, (const char *[]){"PUBLISH", "t:a", "hello"});
        usleep(10000);
    }
    CHECK(atomic_load(&in.got) >= 1);
    CHECK_EQ_STR(in.data, "t:a=hello");
    run(r, &res, 3, (const char *[]){"PUBLISH", "u:b", "x"});
    CHECK_EQ_INT(res.integer, 1);          /* subscribed ... */
    CHECK(strstr(in.data, "u:b") == NULL); /* ... but not handed to the t: listener */
    redis_free(r);
    redis_stop(pid);
}

TEST(redis_client_down_fails_fast_then_reconnects_and_resubscribes)
{
    int port = free_port();
    redis_t *r = client(port, 0.3);
    inbox_t in = {0};
    redis_on_message(r, "", on_message, &in);
    CHECK_EQ_INT(redis_subscribe(r, "room"), 0);
    usleep(100000);
    CHECK(!redis_up(r));
    /* held while down, up to max_queued (4); then refused at once */
    result_t held[4];
    for (int i = 0; i < 4; i++) {
        memset(&held[i], 0, sizeof held[i]);
        CHECK_EQ_INT(redis_command(r, on_reply, &held[i], 1, (const char *[]){"PING"}, NULL), 0);
    }
    CHECK_EQ_INT(redis_command(r, on_reply, NULL, 1, (const char *[]){"PING"}, NULL), -ENOTCONN);
    for (int i = 0; i < 4; i++) {
        CHECK(wait_for(&held[i].done, 1, 3000));
        CHECK_EQ_INT(held[i].err, -ETIMEDOUT);
    }
    pid_t pid = redis_start(port);
    if (pid < 0) {
        redis_free(r);
        return;
    }
    CHECK(wait_up(r, 1, 5000));
    result_t res;
    for (int i = 0; i < 200 && !atomic_load(&in.got); i++) {
        run(r, &res, 3, (const char *[]){"PUBLISH", "room", "back"});
        usleep(10000);
    }
    CHECK_EQ_STR(in.data, "room=back");
    /* Redis dies: down, then up again with the subscription restored */
    redis_stop(pid);
    CHECK(wait_up(r, 0, 3000));
    pid = redis_start(port);
    CHECK(wait_up(r, 1, 5000));
    atomic_store(&in.got, 0);
    for (int i = 0; i < 200 && !atomic_load(&in.got); i++) {
        run(r, &res, 3, (const char *[]){"PUBLISH", "room", "again"});
        usleep(10000);
    }
    CHECK_EQ_STR(in.data, "room=again");
    redis_free(r);
    redis_stop(pid);
}
