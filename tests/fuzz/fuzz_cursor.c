/* libFuzzer target for page cursors (src/http/cursor.c), which come from query strings: any
 * input decodes to -1 or an id, never reads out of bounds, and an id decoded from an input
 * encodes back to a cursor that decodes to the same id. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <roost/roost.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char tag = (char)data[0];
    char *copy = malloc(size - 1 ? size - 1 : 1); /* its own allocation: ASan sees overreads */
    memcpy(copy, data + 1, size - 1);
    long long id = roost_cursor_decode(tag, (roost_str_t){copy, size - 1});
    REQUIRE(id >= -1);
    if (id >= 0) {
        char c[ROOST_CURSOR_MAX];
        roost_cursor_encode(tag, id, c);
        REQUIRE(roost_cursor_decode(tag, (roost_str_t){c, strlen(c)}) == id); /* round trip */
    }
    free(copy);
    return 0;
}
