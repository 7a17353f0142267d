/* chat.c: the seeds' chat room server on libroost: WebSocket rooms at /ws/{room}/{user} (the
 * library sends the welcome, join and leave notices), POST /broadcast, GET /rooms/{room}/count
 * and a chat page at /. Run: ./chat --port 8000 (--help lists the flags). */
#include <roost/roost.h>

static const char page[] =
    "<!doctype html><meta charset=utf-8><title>roost chat</title><input id=room value=lobby>\n"
    "<input id=user value=guest><button id=go>Join</button><ul id=log></ul><input id=text>\n"
    "<script>let ws; go.onclick = () => {\n"
    "  ws = new WebSocket(`ws://${location.host}/ws/${room.value}/${user.value}`);\n"
    "  ws.onmessage = (e) => { const m = JSON.parse(e.data), li = document.createElement('li');\n"
    "    li.textContent = m.text ? `${m.user || '**'}: ${m.text}` : `(${m.type} ${m.user})`;\n"
    "    log.append(li); }; };\n"
    "text.onchange = () => { ws.send(text.value); text.value = ''; };</script>\n";

static void chat_page(roost_req_t *req, void *ud)
{
    roost_respond(req, 200, "text/html; charset=utf-8", page, sizeof page - 1);
}

static void member_open(roost_ws_t *ws, void *ud)
{
    json_t *who = ud; /* {"room", "user"} from the path; joining tells the room */
    const char *room = json_string_value(json_object_get(who, "room"));
    const char *user = json_string_value(json_object_get(who, "user"));
    if (!room || !user || roost_room_join(ws, room, user, -1, NULL) < 0)
        roost_ws_close(ws, 1011, "cannot join the room");
    json_decref(who); /* the library keeps the names: roost_ws_room(), roost_ws_user() */
}

static void member_says(roost_ws_t *ws, int binary, const char *data, size_t len, void *ud)
{
    if (!binary && roost_ws_room(ws)) /* to the whole room, the sender included */
        roost_room_publish(roost_ws_server(ws), roost_ws_room(ws), "message",
                           json_pack("{s:s,s:s%}", "user", roost_ws_user(ws), "text", data, len),
                           NULL);
}

static const roost_ws_handler_t member = {member_open, member_says, NULL}; /* leaving: told */

static void join(roost_req_t *req, void *ud)
{
    json_t *who = json_pack("{s:s,s:s}", "room", roost_req_param(req, "room").ptr, "user",
                            roost_req_param(req, "user").ptr);
    if (roost_ws_upgrade(req, &member, who) < 0)
        json_decref(who); /* not a WebSocket handshake: answered already */
}

static void broadcast(roost_req_t *req, void *ud)
{
    json_t *body = roost_req_json_body(req); /* the route's schema checked it */
    const char *room = json_string_value(json_object_get(body, "room"));
    json_t *said = json_pack("{s:O}", "text", json_object_get(body, "message"));
    long n = 0;
    long long id = roost_room_publish(roost_req_server(req), room, "broadcast", said, &n);
    if (id < 0)
        roost_respond_error(req, 503, "The message could not be published");
    else
        roost_respond_json(
            req, 200,
            json_pack("{s:s,s:i,s:I}", "sent_to", room, "online", (int)n, "id", (json_int_t)id));
}

static void count(roost_req_t *req, void *ud)
{
    const char *room = roost_req_param(req, "room").ptr;
    long n = roost_room_online(roost_req_server(req), room);
    roost_respond_json(req, 200, json_pack("{s:s,s:i}", "room", room, "online", (int)n));
}

static const roost_field_t fields[] = {
    /* user, room: the path; room, message: the body */
    {.name = "user", .type = ROOST_T_STR, .required = 1, .min_len = 1, .max_len = 64},
    {.name = "room", .type = ROOST_T_STR, .required = 1, .min_len = 1, .max_len = 64},
    {.name = "message", .type = ROOST_T_STR, .required = 1},
};
static const roost_schema_t member_path = {.fields = fields, .nfields = 2},
                            room_path = {.fields = fields + 1, .nfields = 1},
                            broadcast_body = {.fields = fields + 1, .nfields = 2};
static const roost_route_opts_t routes[] = {
    {"GET", "/", chat_page, .summary = "The chat page"},
    {"GET", "/ws/{room}/{user}", join, .summary = "Join a room", .path_params = &member_path},
    {"POST", "/broadcast", broadcast, .summary = "Say to a room", .body = &broadcast_body},
    {"GET", "/rooms/{room}/count", count, .summary = "Who is in", .path_params = &room_path},
};

int main(int argc, char **argv)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    int rc = roost_config_parse(&cfg, argc, argv); /* 1: --help or --version printed */
    roost_server_t *srv = rc == 0 ? roost_server_new(&cfg) : NULL;
    for (size_t i = 0; srv && i < sizeof routes / sizeof routes[0]; i++)
        if (roost_route_ex(srv, &routes[i]) < 0)
            return 1;
    return srv ? roost_run(srv) < 0 : rc < 0 ? 2 : 0;
}
