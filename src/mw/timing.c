/* X-Process-Time: seconds from the request's first byte to its answer, on every response, like
 * Starlette's timing middleware example. Not a metric (no histogram): just the header. Built
 * only on the public API. */
#include <stdint.h>

#include "roost/roost.h"

/* Writes us as seconds with 6 decimals ("0.000028") into out, NUL-terminated. By hand: snprintf
 * was a fifth of a /plaintext request's instructions. */
static void format_seconds(char out[32], uint64_t us)
{
    char rev[24];
    int n = 0;
    uint64_t whole = us / 1000000;
    do
        rev[n++] = (char)('0' + whole % 10);
    while (whole /= 10);
    int k = 0;
    while (n > 0)
        out[k++] = rev[--n];
    out[k++] = '.';
    uint32_t frac = (uint32_t)(us % 1000000); /* 32-bit: cheaper divisions */
    for (int i = 5; i >= 0; i--, frac /= 10)
        out[k + i] = (char)('0' + frac % 10);
    out[k + 6] = '\0';
}

static void timing_headers(roost_req_t *req, void *ctx, void *ud)
{
    char v[32];
    format_seconds(v, roost_req_elapsed_ns(req) / 1000);
    roost_res_header(req, "X-Process-Time", v);
}

const roost_middleware_t roost_mw_timing = {
    .name = "timing",
    .on_headers = timing_headers,
};
