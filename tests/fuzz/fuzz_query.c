/* libFuzzer target for the URL decoders: percent-decoding, path cleaning and query lookup. A
 * cleaned path starts with "/", holds no "." or ".." segment and no NUL; decoding never writes
 * more than it read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    /* llhttp lets no raw NUL into a target; with one in the input, only memory safety counts */
    int raw_nul = memchr(in, '\0', size) != NULL;
    char *out = malloc(size + 1);
    ssize_t n = url_decode(out, in, size, 1);
    REQUIRE(n <= (ssize_t)size);
    if (n >= 0 && !raw_nul)
        REQUIRE(memchr(out, '\0', (size_t)n) == NULL); /* %00 is refused */
    free(out);

    arena_t a = {0};
    roost_str_t p = url_clean_path(&a, in, size);
    if (p.ptr && !raw_nul) {
        REQUIRE(p.len >= 1 && p.ptr[0] == '/');
        REQUIRE(strlen(p.ptr) == p.len);
        for (const char *s = p.ptr; s; s = strchr(s + 1, '/')) {
            REQUIRE(strncmp(s, "/../", 4) != 0 && strcmp(s, "/..") != 0);
            REQUIRE(strncmp(s, "/./", 3) != 0 && strcmp(s, "/.") != 0);
        }
    }
    static const char *const names[] = {"a", "seconds", "since", "", "x=y"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        roost_str_t v = url_query_get(&a, str_make(in, size), names[i]);
        if (v.ptr && !raw_nul)
            REQUIRE(v.len <= size && strlen(v.ptr) == v.len);
    }
    arena_free(&a);
    return 0;
}
