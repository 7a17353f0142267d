/* Chat rooms over WebSocket and their HTTP side: GET /ws/{room}/{user}, GET /echo,
 * POST /broadcast, GET /rooms, /rooms/{room}/count and /rooms/{room}/users. The wire contract
 * is docs/ws-contract.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

#define NAME_MAX_LEN 64

/* Room and user names: 1-64 of A-Z a-z 0-9 - _ . */
static int valid_name(roost_str_t s)
{
    if (!s.ptr || s.len < 1 || s.len > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

/* A room may also be a task's: "task:" and digits, where the jobs publish progress. */
static int valid_room(roost_str_t s)
{
    if (s.ptr && s.len > 5 && s.len <= NAME_MAX_LEN && !memcmp(s.ptr, "task:", 5)) {
        for (size_t i = 5; i < s.len; i++)
            if (s.ptr[i] < '0' || s.ptr[i] > '9')
                return 0;
        return 1;
    }
    return valid_name(s);
}

/* What valid_name accepts, as pydantic would say it of a constr(pattern=...). */
static json_t *name_error(const char *where, const char *field, roost_str_t input)
{
    return roost_error_item("string_pattern_mismatch", roost_loc(where, field),
                            input.ptr ? json_stringn(input.ptr, input.len) : NULL,
                            json_pack("{s:s}", "pattern", "^[A-Za-z0-9._-]{1,64}$"), NULL);
}

/* ---- the chat connection ---- */

typedef struct {
    long long since; /* -1: none */
    char epoch[40];
    char room[NAME_MAX_LEN + 1];
    char user[NAME_MAX_LEN + 1];
} chat_t;

static void send_error(roost_ws_t *ws, const char *detail)
{
    roost_ws_send_json(ws, json_pack("{s:s,s:s}", "type", "error", "detail", detail));
}

static void chat_open(roost_ws_t *ws, void *ud)
{
    chat_t *c = ud;
    int rc = roost_room_join(ws, c->room, c->user, c->since, c->epoch[0] ? c->epoch : NULL);
    if (rc == -ENOSPC) /* another connection took the last room since the upgrade */
        roost_ws_close(ws, 1013, "too many rooms");
    else if (rc < 0)
        roost_ws_close(ws, 1011, "cannot join the room");
}

static void publish_chat(roost_ws_t *ws, chat_t *c, const char *text, size_t len)
{
    json_t *f = json_pack("{s:s,s:s%}", "user", c->user, "text", text, len);
    if (!f || roost_room_publish(roost_ws_server(ws), c->room, "message", f, NULL) < 0)
        send_error(ws, "the message could not be published");
}

static void chat_message(roost_ws_t *ws, int binary, const char *data, size_t len, void *ud)
{
    chat_t *c = ud;
    if (binary) {
        send_error(ws, "binary messages are not understood here; send text or JSON");
        return;
    }
    json_t *msg = json_loadb(data, len, 0, NULL);
    if (!json_is_object(msg)) { /* plain text is a chat message */
        json_decref(msg);
        publish_chat(ws, c, data, len);
        return;
    }
    const char *type = json_string_value(json_object_get(msg, "type"));
    json_t *text = json_object_get(msg, "message");
    if (type && !strcmp(type, "ping")) {
        roost_ws_send_json(ws, json_pack("{s:s}", "type", "pong"));
    } else if (type && !strcmp(type, "chat")) {
        if (json_is_string(text))
            publish_chat(ws, c, json_string_value(text), json_string_length(text));
        else
            send_error(ws, "chat needs \"message\": a string");
    } else if (type && !strcmp(type, "direct")) {
        const char *to = json_string_value(json_object_get(msg, "to"));
        if (!to || !json_is_string(text))
            send_error(ws, "direct needs \"to\" and \"message\": strings");
        else if (roost_room_direct(ws, to, json_string_value(text), json_string_length(text)) < 0)
            send_error(ws, "that user is not in this room");
    } else {
        send_error(ws, "unknown message type; use chat, direct or ping");
    }
    json_decref(msg);
}

static void chat_close(roost_ws_t *ws, int code, void *ud)
{
    free(ud);
}

static const roost_ws_handler_t chat_handler = {chat_open, chat_message, chat_close};

static void ws_chat(roost_req_t *req, void *ud)
{
    roost_str_t room = roost_req_param(req, "room"), user = roost_req_param(req, "user");
    const char *epoch = roost_req_query_str(req, "epoch"); /* the schema bounds its length */
    if (roost_ws_token_check(req, room.ptr, user.ptr) < 0)
        return; /* 401 or 403 answered, before any upgrade */
    json_t *errors = json_array();
    if (!valid_room(room))
        json_array_append_new(errors, name_error("path", "room", room));
    if (!valid_name(user))
        json_array_append_new(errors, name_error("path", "user", user));
    if (json_array_size(errors)) {
        roost_respond_422(req, errors);
        return;
    }
    json_decref(errors);
    char name[NAME_MAX_LEN + 1] = {0};
    memcpy(name, room.ptr, room.len);
    if (!roost_room_available(roost_req_server(req), name)) {
        roost_respond_error(req, 503, "Too many rooms");
        return;
    }
    chat_t *c = app_calloc(req, sizeof *c);
    if (!c)
        return;
    c->since = roost_req_query_int(req, "since");
    memcpy(c->room, room.ptr, room.len);
    memcpy(c->user, user.ptr, user.len);
    if (epoch)
        snprintf(c->epoch, sizeof c->epoch, "%s", epoch);
    if (roost_ws_upgrade(req, &chat_handler, c) < 0)
        free(c);
}

/* ---- echo, for conformance tests ---- */

static void echo_message(roost_ws_t *ws, int binary, const char *data, size_t len, void *ud)
{
    roost_ws_send(ws, binary, data, len);
}

static const roost_ws_handler_t echo_handler = {NULL, echo_message, NULL};

static void ws_echo(roost_req_t *req, void *ud)
{
    roost_ws_upgrade(req, &echo_handler, NULL);
}

/* ---- HTTP ---- */

static const roost_field_t broadcast_fields[] = {
    {.name = "room", .type = ROOST_T_STR, .required = 1, .min_len = 1, .max_len = NAME_MAX_LEN},
    {.name = "message", .type = ROOST_T_STR, .required = 1},
};
static const roost_schema_t broadcast_schema = {.fields = broadcast_fields, .nfields = 2};

static void broadcast(roost_req_t *req, void *ud)
{
    json_t *body = roost_req_json_body(req);
    json_t *room = json_object_get(body, "room"), *msg = json_object_get(body, "message");
    roost_str_t name = {json_string_value(room), json_string_length(room)};
    if (!valid_name(name)) {
        json_t *errors = json_array();
        json_array_append_new(errors, name_error("body", "room", name));
        roost_respond_422(req, errors);
        return;
    }
    long online = 0;
    long long id = roost_room_publish(roost_req_server(req), name.ptr, "broadcast",
                                      json_pack("{s:O}", "text", msg), &online);
    if (id >= 0)
        app_log_after_response(req, "messages.log", "%s %s", name.ptr, json_string_value(msg));
    if (id == -ENOSPC)
        roost_respond_error(req, 503, "Too many rooms");
    else if (id < 0)
        roost_respond_error(req, 503, "The message could not be published");
    else if (id == 0) /* bridged through Redis: the id is given there, later */
        roost_respond_json(
            req, 200, json_pack("{s:s,s:i}", "sent_to", name.ptr, "online", (json_int_t)online));
    else
        roost_respond_json(req, 200,
                           json_pack("{s:s,s:i,s:I}", "sent_to", name.ptr, "online",
                                     (json_int_t)online, "id", (json_int_t)id));
}

static int room_param(roost_req_t *req, roost_str_t *room)
{
    *room = roost_req_param(req, "room");
    if (valid_room(*room))
        return 0;
    json_t *errors = json_array();
    json_array_append_new(errors, name_error("path", "room", *room));
    roost_respond_422(req, errors);
    return -EINVAL;
}

static void room_count(roost_req_t *req, void *ud)
{
    roost_str_t room;
    if (room_param(req, &room) < 0)
        return;
    long n = roost_room_online(roost_req_server(req), room.ptr);
    roost_respond_json(req, 200, json_pack("{s:s,s:i}", "room", room.ptr, "online", (json_int_t)n));
}

static void room_users(roost_req_t *req, void *ud)
{
    roost_str_t room;
    if (room_param(req, &room) < 0)
        return;
    roost_server_t *srv = roost_req_server(req);
    json_t *users = roost_room_users(srv, room.ptr);
    roost_respond_json(req, 200,
                       json_pack("{s:s,s:i,s:o}", "room", room.ptr, "online",
                                 (json_int_t)roost_room_online(srv, room.ptr), "users", users));
}

static void rooms(roost_req_t *req, void *ud)
{
    roost_respond_json(req, 200,
                       json_pack("{s:o}", "rooms", roost_room_list(roost_req_server(req))));
}

static const roost_field_t chat_query_fields[] = {
    {.name = "since",
     .type = ROOST_T_INT,
     .has_default = 1,
     .def.i = -1,
     .has_ge = 1,
     .ge = 0,
     .description = "replay the room's history after this message id"},
    {.name = "epoch",
     .type = ROOST_T_STR,
     .max_len = sizeof(((chat_t *)0)->epoch) - 1,
     .description = "the epoch of the welcome frame the client saw last"},
    {.name = "token",
     .type = ROOST_T_STR,
     .max_len = 4000,
     .description = "with --ws-token-secret: an HS256 JWT whose sub is the user"},
};
static const roost_schema_t chat_query = {.fields = chat_query_fields, .nfields = 3};
static const roost_field_t room_fields[] = {
    {.name = "room", .type = ROOST_T_STR, .required = 1, .min_len = 1},
    {.name = "user", .type = ROOST_T_STR, .required = 1, .min_len = 1},
};
static const roost_schema_t room_path = {.fields = room_fields, .nfields = 1},
                            chat_path = {.fields = room_fields, .nfields = 2};
static const char *const tags_rooms[] = {"rooms", NULL};

/* The answers, for the OpenAPI document. */
static const roost_field_t sent_fields[] = {
    {.name = "sent_to", .type = ROOST_T_STR, .required = 1},
    {.name = "online", .type = ROOST_T_INT, .required = 1, .description = "members reached"},
    {.name = "id", .type = ROOST_T_INT, .required = 1, .description = "the message's id"},
};
static const roost_field_t user_item = {.type = ROOST_T_STR};
static const roost_field_t count_fields[] = {
    {.name = "room", .type = ROOST_T_STR, .required = 1},
    {.name = "online", .type = ROOST_T_INT, .required = 1},
    {.name = "users", .type = ROOST_T_ARR, .required = 1, .items = &user_item},
};
static const roost_schema_t count_item = {.fields = count_fields, .nfields = 2};
static const roost_field_t list_item = {.type = ROOST_T_OBJ, .object = &count_item};
static const roost_field_t list_fields[] = {
    {.name = "rooms", .type = ROOST_T_ARR, .required = 1, .items = &list_item},
};
static const roost_schema_t sent_out = {.fields = sent_fields, .nfields = 3},
                            count_out = {.fields = count_fields, .nfields = 2},
                            users_out = {.fields = count_fields, .nfields = 3},
                            list_out = {.fields = list_fields, .nfields = 1};

static const roost_route_opts_t routes[] = {
    {"GET", "/ws/{room}/{user}", ws_chat, .summary = "Join a chat room (WebSocket)",
     .tags = tags_rooms, .path_params = &chat_path, .query = &chat_query},
    {"GET", "/echo", ws_echo, .summary = "WebSocket echo", .tags = tags_rooms},
    {"POST", "/broadcast", broadcast, .summary = "Publish to a room", .tags = tags_rooms,
     .body = &broadcast_schema, .response = &sent_out},
    {"GET", "/rooms", rooms, .summary = "Rooms and their counts", .tags = tags_rooms,
     .response = &list_out},
    {"GET", "/rooms/{room}/count", room_count, .summary = "How many are in a room",
     .tags = tags_rooms, .path_params = &room_path, .response = &count_out},
    {"GET", "/rooms/{room}/users", room_users, .summary = "Who is in a room", .tags = tags_rooms,
     .path_params = &room_path, .response = &users_out},
};

int app_routes_rooms(roost_server_t *srv)
{
    return app_register(srv, routes, APP_COUNT_OF(routes), NULL);
}
