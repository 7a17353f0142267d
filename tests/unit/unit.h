/* A minimal unit-test harness: TEST() registers a function at load time, CHECK() records a
 * failure without stopping the test, and tests/unit/main.c runs them all (or those whose name
 * contains argv[1]) and prints one line per test and a closing "N passed, N failed". */
#ifndef ROOST_UNIT_H
#define ROOST_UNIT_H

#include <stdio.h>
#include <string.h>

typedef void (*unit_fn)(void);
void unit_register(const char *name, unit_fn fn);
void unit_fail(const char *file, int line, const char *expr);

#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void name##_register(void)                                 \
    {                                                                                              \
        unit_register(#name, name);                                                                \
    }                                                                                              \
    static void name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            unit_fail(__FILE__, __LINE__, #cond);                                                  \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            char m_[160];                                                                          \
            snprintf(m_, sizeof m_, "%s == %s (%lld != %lld)", #a, #b, a_, b_);                    \
            unit_fail(__FILE__, __LINE__, m_);                                                     \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            char m_[256];                                                                          \
            snprintf(m_, sizeof m_, "%s == %s (\"%.80s\" != \"%.80s\")", #a, #b,                   \
                     a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                      \
            unit_fail(__FILE__, __LINE__, m_);                                                     \
        }                                                                                          \
    } while (0)

#endif
