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
    char b64[48];
    unsigned char raw[48];
    if (!s.ptr || s.len == 0 || s.len > 40 || s.len % 4 == 1)
        return -1;
    size_t n = 0;
    for (; n < s.len; n++) {
        char ch = s.ptr[n];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return -1;
        b64[n] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
    }
    size_t pad = (4 - n % 4) % 4;
    for (size_t i = 0; i < pad; i++)
        b64[n++] = '=';
    int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
    if (len < 0)
        return -1;
    len -= (int)pad; /* EVP_DecodeBlock counts the padding as NUL bytes */
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
