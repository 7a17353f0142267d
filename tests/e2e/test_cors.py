"""CORS from --cors-* flags: preflights answered 204 (or 403) on any path that has routes, the
Access-Control-Allow-* fields only for listed origins, Vary: Origin, credentials, '*', and the
combination browsers refuse ('*' with credentials) stopping the start."""

import pytest

from conftest import assert_json_detail

APP = "http://app.example"
OTHER = "https://evil.example"
FLAGS = ("--threads", "2", "--cors-origins", f"{APP}, https://b.example",
         "--cors-expose-headers", "X-RateLimit-Remaining, Retry-After")


def preflight(srv, path, origin, method="POST", headers=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return srv.request("OPTIONS", path, headers=h)


def cors_fields(resp):
    return {k.lower() for k, _ in resp.headers if k.lower().startswith("access-control-")}


@pytest.fixture
def cors(shared_servers):
    with shared_servers.use(*FLAGS) as srv:
        yield srv


def test_preflight_from_a_listed_origin_is_204_with_every_field(cors):
    resp = preflight(cors, "/items", APP, "POST", "content-type, x-trace")
    assert resp.status == 204, resp
    assert resp.body == b""
    assert resp.header("Access-Control-Allow-Origin") == APP
    assert resp.has_token("Access-Control-Allow-Methods", "POST")
    assert resp.has_token("Access-Control-Allow-Headers", "content-type")
    assert resp.has_token("Access-Control-Allow-Headers", "x-trace")
    assert resp.header("Access-Control-Max-Age") == "3600"
    assert resp.has_token("Vary", "Origin")
    assert resp.header("Access-Control-Allow-Credentials") is None


def test_preflight_works_on_routes_with_parameters_and_other_methods(cors):
    # /users/{id} has GET, PUT and DELETE but no OPTIONS route: the router alone would say 405.
    resp = preflight(cors, "/users/42", "https://b.example", "DELETE")
    assert resp.status == 204, resp
    assert resp.header("Access-Control-Allow-Origin") == "https://b.example"


def test_preflight_from_an_unlisted_origin_is_403_without_cors_fields(cors):
    resp = preflight(cors, "/items", OTHER)
    assert_json_detail(resp, 403)
    assert cors_fields(resp) == set(), resp


def test_preflight_on_a_path_without_routes_is_404(cors):
    resp = preflight(cors, "/no/such/path", APP)
    assert resp.status == 404, resp


def test_options_without_a_requested_method_is_not_a_preflight(cors):
    resp = cors.request("OPTIONS", "/items", headers={"Origin": APP})
    assert resp.status == 405, resp


def test_a_listed_origin_gets_allow_origin_and_vary(cors):
    resp = cors.get("/json", headers={"Origin": APP})
    assert resp.status == 200, resp
    assert resp.json() == {"message": "Hello, World!"}
    assert resp.header("Access-Control-Allow-Origin") == APP
    assert resp.has_token("Access-Control-Expose-Headers", "Retry-After")
    assert resp.has_token("Vary", "Origin")


def test_an_unlisted_origin_gets_no_cors_fields_but_its_answer(cors):
    resp = cors.get("/json", headers={"Origin": OTHER})
    assert resp.status == 200, resp
    assert cors_fields(resp) == set(), resp
    assert resp.has_token("Vary", "Origin")  # a cache must not give it a listed origin's answer


def test_errors_and_429s_carry_the_fields_so_scripts_can_read_them(cors):
    resp = cors.get("/no/such/path", headers={"Origin": APP})
    assert resp.status == 404
    assert resp.header("Access-Control-Allow-Origin") == APP
    for _ in range(11):
        resp = cors.get("/api/limited", headers={"Origin": APP, "X-Client-ID": "cors-429"})
    assert resp.status == 429, resp
    assert resp.header("Access-Control-Allow-Origin") == APP


def test_credentials_and_methods_and_max_age_flags(start_server):
    srv = start_server("--cors-origins", APP, "--cors-credentials", "--cors-methods", "GET, POST",
                       "--cors-headers", "Content-Type", "--cors-max-age", "600")
    resp = preflight(srv, "/items", APP, "POST", "Content-Type")
    assert resp.status == 204, resp
    assert resp.header("Access-Control-Allow-Credentials") == "true"
    assert resp.header("Access-Control-Allow-Methods") == "GET, POST"
    assert resp.header("Access-Control-Max-Age") == "600"
    assert_json_detail(preflight(srv, "/users/1", APP, "DELETE"), 403)  # method not listed
    assert_json_detail(preflight(srv, "/items", APP, "POST", "X-Secret"), 403)  # header not listed
    resp = srv.get("/json", headers={"Origin": APP})
    assert resp.header("Access-Control-Allow-Origin") == APP
    assert resp.header("Access-Control-Allow-Credentials") == "true"


def test_star_allows_any_origin_without_vary(start_server):
    srv = start_server("--cors-origins", "*")
    resp = srv.get("/json", headers={"Origin": OTHER})
    assert resp.header("Access-Control-Allow-Origin") == "*"
    assert not resp.has_token("Vary", "Origin")
    assert preflight(srv, "/items", OTHER).status == 204


def test_star_with_credentials_stops_the_start(run_roost):
    result = run_roost("--port", "0", "--cors-origins", "*", "--cors-credentials")
    assert result.returncode == 2, result
    assert "--cors-credentials" in result.stderr


def test_without_cors_origins_there_are_no_cors_fields(server):
    resp = server.get("/json", headers={"Origin": APP})
    assert cors_fields(resp) == set()
    assert server.request("OPTIONS", "/items", headers={
        "Origin": APP, "Access-Control-Request-Method": "POST"}).status == 405
