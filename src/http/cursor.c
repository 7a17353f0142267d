/* Page cursors and pages (roost.h): a cursor is opaque to clients, unpadded base64url of a tag
 * letter and a row id, so that it goes in a query string without escaping and a cursor of one
 * listing is refused by another. A page is {"items","next_cursor","has_more"} for every listing.
 * Validating ?cursor= and ?limit= is the schema's (ROOST_PAGE_FIELDS). */
#include <openssl/evp.h>
#include <stdio.h>

#include "http/http.h"

void roost_cursor_encode(char tag, long long id, char out[ROOST_CURSOR_MAX])
{
    char raw[32];
    int n = snprintf(raw, sizeof raw, "%c%lld", tag, id);
    int len = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)raw, n);
    while (len > 0 && out[len - 1] == '=')
        out[--len] = '\0';
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

long long roost_cursor_decode(char tag, roost_str_t s)
{
    unsigned char raw[48];
    if (!s.ptr || s.len == 0 || s.len > 40)
        return -1;
    int len = b64url_decode(s.ptr, s.len, raw, sizeof raw);
    if (len < 2 || raw[0] != (unsigned char)tag)
        return -1;
    long long id = 0;
    for (int i = 1; i < len; i++) {
        if (raw[i] < '0' || raw[i] > '9' || id > 100000000000000000LL)
            return -1;
        id = id * 10 + (raw[i] - '0');
    }
    return id;
}

json_t *roost_page(json_t *rows, long long limit, char tag, const char *id_key)
{
    if (!rows)
        return NULL;
    int more = limit >= 0 && json_array_size(rows) > (size_t)limit;
    while (more && json_array_size(rows) > (size_t)limit)
        json_array_remove(rows, json_array_size(rows) - 1);
    json_t *next = json_null();
    json_t *last = json_array_get(rows, json_array_size(rows) - 1);
    if (more && last) {
        char c[ROOST_CURSOR_MAX];
        roost_cursor_encode(tag, (long long)json_integer_value(json_object_get(last, id_key)), c);
        next = json_string(c);
    }
    return json_pack("{s:o,s:o,s:b}", "items", rows, "next_cursor", next, "has_more", more);
}
