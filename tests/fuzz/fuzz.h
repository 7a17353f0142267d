/* What every libFuzzer target shares: REQUIRE, a check that names itself and aborts, so that
 * libFuzzer keeps the input and the log says which property failed. */
#ifndef ROOST_FUZZ_H
#define ROOST_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c);                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
