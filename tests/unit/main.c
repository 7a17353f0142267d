/* Runs every registered unit test (or those whose name contains argv[1]) and prints a closing
 * "N passed, N failed" line; exits non-zero when any failed. */
#include "unit.h"

#include <stdlib.h>

#define UNIT_MAX 1024

static struct {
    const char *name;
    unit_fn fn;
} tests[UNIT_MAX];
static int ntests;
static int current_failed;

void unit_register(const char *name, unit_fn fn)
{
    if (ntests < UNIT_MAX) {
        tests[ntests].name = name;
        tests[ntests].fn = fn;
        ntests++;
    }
}

void unit_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "    %s:%d: CHECK failed: %s\n", file, line, expr);
    current_failed = 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const typeof(tests[0]) *)a)->name, ((const typeof(tests[0]) *)b)->name);
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    qsort(tests, (size_t)ntests, sizeof tests[0], by_name);
    for (int i = 0; i < ntests; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1]))
            continue;
        current_failed = 0;
        tests[i].fn();
        printf("%s %s\n", current_failed ? "FAIL" : "ok  ", tests[i].name);
        if (current_failed)
            failed++;
        else
            passed++;
    }
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
