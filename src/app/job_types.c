/* The built-in job types (payloads in docs/jobs-contract.md): sleep, hash, email, exec, noop.
 * Each is registered through the public API, as an embedder's would be. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/app.h"

extern char **environ;

/* A pydantic value_error at ["body", "payload", field], through the one item builder. */
static void bad(json_t *errors, const json_t *p, const char *field, const char *msg)
{
    json_t *loc = json_pack("[s,s,s]", "body", "payload", field);
    json_t *input = json_object_get(p, field);
    json_array_append_new(errors,
                          roost_error_item("value_error", loc, input ? json_incref(input) : NULL,
                                           json_pack("{s:s}", "error", msg), NULL));
}

/* A payload checked by the one validator against the schema in ud. */
static void payload_validate(const json_t *p, json_t *errors, void *ud)
{
    json_t *prefix = json_pack("[s,s]", "body", "payload");
    json_decref(roost_schema_check(ud, p, prefix, errors));
    json_decref(prefix);
}

/* A number of a payload its schema validated, or def when absent. */
static double num(const json_t *p, const char *k, double def)
{
    json_t *v = json_object_get(p, k);
    return json_is_number(v) ? json_number_value(v) : def;
}

static int email_ok(const char *s)
{
    const char *at = s ? strchr(s, '@') : NULL;
    size_t len = s ? strlen(s) : 0;
    return at && at > s && len <= 254 && !strchr(at + 1, '@') && strchr(at + 1, '.') &&
           at[1] != '.' && s[len - 1] != '.' && !strpbrk(s, " \t\r\n");
}

int app_email_valid(const char *s)
{
    return email_ok(s);
}

/* ---- sleep: the seeds' long task ---- */

static const roost_field_t sleep_fields[] = {
    {.name = "steps", .type = ROOST_T_INT, .has_ge = 1, .ge = 1, .has_le = 1, .le = 1000},
    {.name = "seconds", .type = ROOST_T_NUM, .has_ge = 1, .ge = 0, .has_le = 1, .le = 60},
};
static const roost_schema_t sleep_schema = {.fields = sleep_fields, .nfields = 2};

static json_t *sleep_job(roost_job_t *job, const json_t *p, void *ud)
{
    long steps = (long)num(p, "steps", 5);
    double seconds = num(p, "seconds", 1);
    roost_job_progress(job, 0, steps);
    for (long i = 1; i <= steps; i++) {
        if (roost_job_sleep(job, (long)(seconds * 1000)) < 0 ||
            roost_job_progress(job, i, steps) < 0)
            return NULL;
    }
    return json_pack("{s:f}", "slept", (double)steps * seconds);
}

/* ---- hash: CPU work ---- */

static const roost_field_t hash_fields[] = {
    {.name = "data", .type = ROOST_T_STR, .required = 1},
    {.name = "rounds", .type = ROOST_T_INT, .has_ge = 1, .ge = 1, .has_le = 1, .le = 10000000},
};
static const roost_schema_t hash_schema = {.fields = hash_fields, .nfields = 2};

static json_t *hash_job(roost_job_t *job, const json_t *p, void *ud)
{
    const json_t *data = json_object_get(p, "data");
    long rounds = (long)num(p, "rounds", 1);
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(json_string_value(data), json_string_length(data), md, &mdlen, EVP_sha256(), NULL);
    long step = rounds / 10 > 0 ? rounds / 10 : 1;
    for (long i = 1; i < rounds; i++) {
        EVP_Digest(md, sizeof md, md, &mdlen, EVP_sha256(), NULL);
        if (i % step == 0 && roost_job_progress(job, i, rounds) < 0)
            return NULL;
    }
    roost_job_progress(job, rounds, rounds);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return json_pack("{s:s}", "hex", hex);
}

/* ---- email: the seeds' notification, to an outbox file ---- */

static void check_email(const json_t *v, const json_t *loc, json_t *errors)
{
    if (!email_ok(json_string_value(v)))
        json_array_append_new(
            errors, roost_error_item(
                        "value_error", json_copy((json_t *)loc), json_incref((json_t *)v),
                        json_pack("{s:s}", "error", "value is not a valid email address"), NULL));
}

static const roost_field_t email_fields[] = {
    {.name = "to", .type = ROOST_T_STR, .required = 1, .check = check_email},
    {.name = "subject", .type = ROOST_T_STR, .required = 1},
    {.name = "body", .type = ROOST_T_STR, .required = 1},
};
static const roost_schema_t email_schema = {.fields = email_fields, .nfields = 3};

/* The email job reads the app's settings through ud, so its validator names its schema. */
static void email_validate(const json_t *p, json_t *errors, void *ud)
{
    payload_validate(p, errors, (void *)&email_schema);
}

static json_t *email_job(roost_job_t *job, const json_t *p, void *ud)
{
    const app_config_t *cfg = ud;
    if (roost_job_sleep(job, (long)(cfg->email_delay_s * 1000)) < 0)
        return NULL;
    const char *to = json_string_value(json_object_get(p, "to"));
    char path[4096];
    snprintf(path, sizeof path, "%s/outbox.log",
             roost_server_config(roost_job_server(job))->data.dir);
    FILE *f = fopen(path, "a");
    if (!f) {
        roost_job_fail(job, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    fprintf(f, "To: %s\nSubject: %s\n\n%s\n.\n", to,
            json_string_value(json_object_get(p, "subject")),
            json_string_value(json_object_get(p, "body")));
    fclose(f);
    return json_pack("{s:s}", "delivered_to", to);
}

/* ---- exec: a configured command, never one from the request ---- */

#define EXEC_MAX_ARGS   32
#define EXEC_MAX_ARG    1000
#define EXEC_MAX_OUTPUT (64 * 1024)

/* "--exec name=/path args": the configured command line for name, split on spaces. */
static const char *exec_command(const app_config_t *cfg, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < cfg->exec.n; i++)
        if (!strncmp(cfg->exec.v[i], name, n) && cfg->exec.v[i][n] == '=')
            return cfg->exec.v[i] + n + 1;
    return NULL;
}

static void exec_validate(const json_t *p, json_t *errors, void *ud)
{
    const app_config_t *cfg = ud;
    const char *name = json_string_value(json_object_get(p, "command"));
    if (!name || !exec_command(cfg, name))
        bad(errors, p, "command", "not one of the commands configured with --exec");
    json_t *args = json_object_get(p, "args");
    if (args && (!json_is_array(args) || json_array_size(args) > EXEC_MAX_ARGS)) {
        bad(errors, p, "args", "must be a list of at most 32 strings");
        return;
    }
    size_t i;
    json_t *a;
    json_array_foreach(args, i, a)
    {
        if (!json_is_string(a) || json_string_length(a) > EXEC_MAX_ARG ||
            strlen(json_string_value(a)) != json_string_length(a)) {
            bad(errors, p, "args", "each argument is a string of at most 1000 characters");
            return;
        }
    }
}

static json_t *exec_job(roost_job_t *job, const json_t *p, void *ud)
{
    const app_config_t *cfg = ud;
    char *line = strdup(exec_command(cfg, json_string_value(json_object_get(p, "command"))));
    char *argv[EXEC_MAX_ARGS * 2 + 2];
    int argc = 0;
    for (char *save = NULL, *t = strtok_r(line, " ", &save); t && argc < EXEC_MAX_ARGS;
         t = strtok_r(NULL, " ", &save))
        argv[argc++] = t;
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(p, "args"), i, a) argv[argc++] =
        (char *)json_string_value(a);
    argv[argc] = NULL;

    int out[2];
    if (argc == 0 || pipe2(out, O_CLOEXEC) < 0) {
        free(line);
        roost_job_fail(job, "cannot start the command");
        return NULL;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    /* Its own process group, so a timeout or a cancel kills everything it started. */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(out[1]);
    if (rc != 0) {
        close(out[0]);
        roost_job_fail(job, "cannot run %s: %s", argv[0], strerror(rc));
        free(line);
        return NULL;
    }
    free(line);
    char *buf = malloc(EXEC_MAX_OUTPUT + 1);
    size_t len = 0;
    app_exec_progress_t prog = {.len = 0}; /* ffmpeg -progress lines, when it is ffmpeg */
    int status = 0, exited = 0, eof = 0;
    while (!exited) {
        if (roost_job_stopped(job)) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        struct pollfd pfd = {out[0], POLLIN, 0};
        if (!eof && poll(&pfd, 1, 20) > 0) {
            char tmp[4096];
            ssize_t n = read(out[0], tmp, sizeof tmp);
            if (n > 0)
                app_exec_progress(job, &prog, tmp, (size_t)n);
            if (n <= 0)
                eof = 1;
            else if (buf && len < EXEC_MAX_OUTPUT) {
                size_t take = (size_t)n < EXEC_MAX_OUTPUT - len ? (size_t)n : EXEC_MAX_OUTPUT - len;
                memcpy(buf + len, tmp, take);
                len += take;
            }
        } else if (eof) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (waitpid(pid, &status, WNOHANG) == pid)
            exited = 1;
    }
    if (exited) { /* the rest of its output, and nothing its children left behind */
        ssize_t n;
        char tmp[4096];
        while (!eof && buf && (n = read(out[0], tmp, sizeof tmp)) > 0)
            if (len < EXEC_MAX_OUTPUT) {
                size_t take = (size_t)n < EXEC_MAX_OUTPUT - len ? (size_t)n : EXEC_MAX_OUTPUT - len;
                memcpy(buf + len, tmp, take);
                len += take;
            }
        kill(-pid, SIGKILL);
    }
    close(out[0]);
    if (buf)
        buf[len] = '\0';
    json_t *result = NULL;
    if (!exited) {
        /* stopped: the queue knows why (cancel or timeout) */
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        result = json_pack("{s:i,s:s%}", "exit_code", 0, "output", buf ? buf : "", len);
        if (!result) /* output that is not UTF-8 */
            result = json_pack("{s:i,s:s}", "exit_code", 0, "output", "(binary output)");
    } else {
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        const char *tail = buf && len > 500 ? buf + len - 500 : buf ? buf : "";
        roost_job_fail(job, "exit code %d: %s", code, tail);
    }
    free(buf);
    return result;
}

/* ---- noop: for benchmarks ---- */

static json_t *noop_job(roost_job_t *job, const json_t *p, void *ud)
{
    return json_object();
}

/* ---- announce: publishes {"text": ...} to a room from the job, in the submitting request's
 * trace (the frame carries its trace_id) ---- */

static json_t *announce_job(roost_job_t *job, const json_t *p, void *ud)
{
    const char *room = json_string_value(json_object_get(p, "room"));
    json_t *text = json_object_get(p, "text");
    if (!room || !text) {
        roost_job_fail(job, "announce needs {\"room\": string, \"text\": any}");
        return NULL;
    }
    long long id = roost_room_publish(ud, room, "announce", json_pack("{s:O}", "text", text), NULL);
    if (id < 0) {
        roost_job_fail(job, "cannot publish to %s", room);
        return NULL;
    }
    return json_pack("{s:I}", "id", (json_int_t)id);
}

int app_job_types(roost_server_t *srv, const app_config_t *cfg)
{
    /* sleep, hash and email: the one validator, over their payload schemas */
    roost_job_opts_t sleep_o = {.validate = payload_validate, .ud = (void *)&sleep_schema},
                     hash_o = {.validate = payload_validate, .ud = (void *)&hash_schema},
                     email_o = {.validate = email_validate, .ud = (void *)cfg},
                     exec_o = {.validate = exec_validate, .ud = (void *)cfg};
    /* tick: a sleep that starts at most 5 times a second across all nodes (a type's rate) */
    roost_job_opts_t tick_o = {
        .validate = payload_validate, .ud = (void *)&sleep_schema, .rate_per_s = 5};
    int rc = 0;
    rc |= roost_job_type(srv, "sleep", sleep_job, &sleep_o);
    rc |= roost_job_type(srv, "hash", hash_job, &hash_o);
    rc |= roost_job_type(srv, "email", email_job, &email_o);
    rc |= roost_job_type(srv, "exec", exec_job, &exec_o);
    rc |= roost_job_type(srv, "noop", noop_job, NULL);
    rc |= roost_job_type(srv, "tick", sleep_job, &tick_o);
    roost_job_opts_t announce_o = {.ud = srv};
    rc |= roost_job_type(srv, "announce", announce_job, &announce_o);
    return rc < 0 ? -EINVAL : 0;
}
