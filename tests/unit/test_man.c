/* roost_man_write: an embedder's flags and routes reach the page, and text that roff would
 * read as requests, escapes or non-ASCII bytes is written so that it prints as given. */
#include <stdlib.h>

#include "roost/roost.h"
#include "unit.h"

static void hello(roost_req_t *req, void *ud)
{
}

/* The page for one extra flag and the given route summary, as a string the caller frees. */
static char *page_with(const char *summary, const char *description)
{
    double delay = 2.5;
    const roost_flag_t extra[] = {
        {"email-delay-s", ROOST_FLAG_SECS, &delay, 0, 60, "delay of the email job"},
    };
    roost_config_t cfg;
    roost_config_init(&cfg);
    roost_server_t *srv = roost_server_new(&cfg);
    static const char *const tags[] = {"greetings", NULL};
    roost_route_opts_t route = {"GET", "/hello-world", hello, .summary = summary, .tags = tags};
    CHECK(srv && roost_route_ex(srv, &route) == 0);
    roost_man_t page = {.name = "demo",
                        .version = "1.2.3",
                        .summary = "a demo server",
                        .description = description,
                        .section = "demo",
                        .extra = extra,
                        .nextra = 1};
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    CHECK_EQ_INT(roost_man_write(out, &page, srv), 0);
    fclose(out);
    roost_server_free(srv);
    return text;
}

TEST(man_page_lists_the_extra_flags_and_routes)
{
    char *text = page_with("Say hello", "One paragraph.\n\nTwo.");
    CHECK(strncmp(text, ".TH DEMO 1 \"\" \"demo 1.2.3\" \"User Commands\"\n", 43) == 0);
    CHECK(strstr(text, ".SS demo\n.TP\n\\fB\\-\\-email\\-delay\\-s\\fR \\fIseconds\\fR\n") != NULL);
    CHECK(strstr(text, "Default: 2.5; environment: \\fBROOST_EMAIL_DELAY_S\\fR.") != NULL);
    CHECK(strstr(text, ".TP\n\\fBROOST_EMAIL_DELAY_S\\fR\n") != NULL);
    CHECK(strstr(text, ".SS greetings\n.TP\n\\fBGET /hello\\-world\\fR\nSay hello\n") != NULL);
    CHECK(strstr(text, ".PP\nOne paragraph.\n.PP\nTwo.\n") != NULL);
    /* a library flag too, with its default */
    CHECK(strstr(text, "\\fB\\-\\-port\\fR \\fIn\\fR\nTCP port.\n.br\nDefault: 8000;") != NULL);
    free(text);
}

TEST(man_page_text_cannot_become_roff_requests)
{
    char *text = page_with("\\fB bold? caf\xc3\xa9 \xe6\x94\xb6", ".SH NOT A SECTION\n'quote");
    CHECK(strstr(text, "\n\\&.SH NOT A SECTION\n\\&'quote\n") != NULL);
    CHECK(strstr(text, "\\efB bold? caf\\[u00E9] \\[u6536]\n") != NULL);
    CHECK(strstr(text, "\n.SH NOT") == NULL);
    free(text);
}
