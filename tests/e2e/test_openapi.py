"""The API's documentation: GET /openapi.json (OpenAPI 3.1 written from the route table, compared
with the table the server lists on /debug/routes, and linted by @redocly/cli from npm) and GET
/docs (Swagger UI compiled in; tests/e2e/browser/docs.test.js drives it in Chromium)."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import http_get, http_request

REPO = Path(__file__).resolve().parents[2]
REDOCLY = REPO / "node_modules/.bin/redocly"
KEY = "docs-key-0123456789"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture
def plain(shared_servers):
    with shared_servers.use("--threads", "2", "--debug-routes") as srv:
        yield srv


@pytest.fixture
def keyed(shared_servers):
    with shared_servers.use("--threads", "2", "--debug-routes", "--api-key", KEY) as srv:
        yield srv


def document(srv):
    resp = http_get(srv.port, "/openapi.json")
    assert resp.status == 200, resp
    assert resp.header("Content-Type").startswith("application/json")
    return resp.json()


def operations(doc):
    """(path, method, operation) for every operation of the document."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def routes_listed(srv):
    resp = http_get(srv.port, "/debug/routes")
    assert resp.status == 200, resp
    return [line for line in resp.text.splitlines() if line]


def test_document_is_openapi_31_and_lists_every_registered_route(plain):
    doc = document(plain)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] == "roost"
    listed = routes_listed(plain)
    assert len(listed) > 50 and "POST /items" in listed and "GET /debug/routes" in listed
    documented = [op["x-roost-route"] for _, _, op in operations(doc)]
    assert sorted(documented) == sorted(listed)
    for path, method, op in operations(doc):
        verb, template = op["x-roost-route"].split(" ", 1)
        assert verb.lower() == method
        # The path is the template with the parameters' types taken out: {id:int} -> {id}.
        assert path == re.sub(r"\{(\w+):\w+\}", r"{\1}", template)
        assert op.get("summary"), f"{verb} {template} has no summary"
        assert op.get("tags"), f"{verb} {template} has no tags"
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))
    assert {t["name"] for t in doc["tags"]} >= {"basic", "rooms", "tasks", "docs"}


def test_library_routes_are_documented_too(start_server, tmp_path):
    """A --static mount is a route the library registers: it is listed like the app's."""
    (tmp_path / "www").mkdir()
    srv = start_server("--threads", "2", "--debug-routes", "--static", f"/files={tmp_path / 'www'}")
    doc = document(srv)
    op = doc["paths"]["/files/{path}"]["get"]
    assert op["x-roost-route"] == "GET /files/{path:path}"
    assert op["tags"] == ["static files"] and op["summary"]
    assert op["parameters"][0]["schema"] == {"type": "string"}
    documented = sorted(op["x-roost-route"] for _, _, op in operations(doc))
    assert documented == sorted(routes_listed(srv))


def test_path_parameters_are_typed_from_the_template(plain):
    doc = document(plain)
    typed = 0
    for path, _, op in operations(doc):
        template = op["x-roost-route"].split(" ", 1)[1]
        params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}
        assert set(params) == set(re.findall(r"\{(\w+)", path))
        for name, kind in re.findall(r"\{(\w+)(?::(\w+))?\}", template):
            assert params[name]["required"] is True
            if kind == "int":
                assert params[name]["schema"]["type"] == "integer"
                typed += 1
            elif kind == "path":
                assert params[name]["schema"]["type"] == "string"
                typed += 1
    assert typed >= 3
    task = doc["paths"]["/tasks/{id}"]["get"]
    assert task["parameters"][0]["schema"] == {"type": "integer"}
    assert "422" in task["responses"]  # "abc" is int_parsing before the handler


def test_post_items_body_response_and_422_come_from_its_schemas(plain):
    doc = document(plain)
    op = doc["paths"]["/items"]["post"]
    assert op["tags"] == ["basic"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert op["requestBody"]["required"] is True
    assert body["type"] == "object"
    assert sorted(body["required"]) == ["name", "price"]
    assert body["properties"]["name"] == {"type": "string", "minLength": 1, "maxLength": 100}
    assert body["properties"]["price"]["type"] == "number"
    assert body["properties"]["price"]["exclusiveMinimum"] == 0
    assert body["properties"]["tax"]["type"] == ["number", "null"]
    out = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert "price_with_tax" in out["required"]
    ref = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/HTTPValidationError"
    schemas = doc["components"]["schemas"]
    detail = schemas["HTTPValidationError"]["properties"]["detail"]
    assert detail["items"]["$ref"] == "#/components/schemas/ValidationError"
    assert sorted(schemas["ValidationError"]["required"]) == ["loc", "msg", "type"]
    # What the document promises is what the server answers.
    bad = http_request(plain.port, "POST", "/items", headers={"Content-Type": "application/json"},
                       body=b'{"name": "", "price": 0}')
    assert bad.status == 422
    for item in bad.json()["detail"]:
        assert set(schemas["ValidationError"]["required"]) <= set(item)
    # A query schema: ?seconds= of /slow-async, with its bounds and default.
    seconds = doc["paths"]["/slow-async"]["get"]["parameters"][0]
    assert seconds["in"] == "query" and seconds["required"] is False
    assert seconds["schema"]["type"] == "number" and seconds["schema"]["maximum"] == 30
    assert seconds["schema"]["default"] == 3


def validator(doc, schema):
    """A JSON Schema 2020-12 validator for schema, resolving $ref against the document."""
    jsonschema = pytest.importorskip("jsonschema")  # python3-jsonschema, scripts/deps.sh
    return jsonschema.Draft202012Validator(dict(schema, components=doc["components"]))


def test_answers_match_the_documented_response_schemas(plain):
    doc = document(plain)
    json_body = {"Content-Type": "application/json"}
    # Routes with parameters or a body get a sample request; the others a plain one.
    samples = {
        "POST /items": ("/items", {"name": "lamp", "price": 10, "tax": 1}),
        "POST /broadcast": ("/broadcast", {"room": "docs", "message": "hi"}),
        "GET /rooms/{room}/count": ("/rooms/docs/count", None),
        "GET /rooms/{room}/users": ("/rooms/docs/users", None),
        "POST /tasks": ("/tasks", {"type": "noop"}),
    }
    checked = []
    task_id = None
    for path, method, op in operations(doc):
        route = op["x-roost-route"]
        code, answer = next((c, r) for c, r in op["responses"].items() if c.startswith("2"))
        if "content" not in answer:
            continue
        if route in samples:
            target, body = samples[route]
        elif method == "get" and "{" not in path:
            target, body = path, None
        else:
            continue
        resp = http_request(plain.port, method.upper(), target,
                            headers=json_body if body is not None else None,
                            body=json.dumps(body).encode() if body is not None else None)
        assert resp.status == int(code), (route, resp)
        schema = answer["content"]["application/json"]["schema"]
        errors = [e.message for e in validator(doc, schema).iter_errors(resp.json())]
        assert not errors, (route, errors, resp.json())
        checked.append(route)
        if route == "POST /tasks":
            task_id = resp.json()["task_id"]
    assert len(checked) >= 7, checked
    task = doc["paths"]["/tasks/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
    resp = http_get(plain.port, f"/tasks/{task_id}")
    assert not list(validator(doc, task["schema"]).iter_errors(resp.json()))
    # And a 422 is an HTTPValidationError.
    bad = http_request(plain.port, "POST", "/items", headers=json_body, body=b'{"price": "x"}')
    assert bad.status == 422
    ref = {"$ref": "#/components/schemas/HTTPValidationError"}
    assert not [e.message for e in validator(doc, ref).iter_errors(bad.json())]


def test_no_security_schemes_without_api_keys(plain):
    doc = document(plain)
    assert "securitySchemes" not in doc["components"]
    assert not any("security" in op for _, _, op in operations(doc))


def test_api_keys_add_security_schemes_on_the_guarded_routes(keyed):
    doc = document(keyed)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    guarded = [(path, method, op) for path, method, op in operations(doc) if op["security"]]
    assert "POST /tasks" in [op["x-roost-route"] for _, _, op in guarded]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    # Every route the document says is guarded answers 401 without a key.
    for path, method, op in guarded:
        assert "401" in op["responses"]
        target = re.sub(r"\{\w+\}", "1", path)
        resp = http_request(keyed.port, method.upper(), target,
                            headers={"Content-Type": "application/json"},
                            body=b"{}" if method in ("post", "put", "patch") else None)
        assert resp.status == 401, (op["x-roost-route"], resp)
        assert resp.header("WWW-Authenticate") == "Bearer"


def redocly_lint(path):
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
               NO_COLOR="1")
    return subprocess.run([str(REDOCLY), "lint", str(path), "--format=stylish"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.deadline(240)
def test_document_passes_redocly_lint_and_a_broken_one_does_not(keyed, tmp_path):
    assert REDOCLY.exists(), "run scripts/deps.sh (npm install) first"
    doc = document(keyed)
    good = tmp_path / "openapi.json"
    good.write_text(json.dumps(doc))
    proc = redocly_lint(good)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The linter can fail: a path parameter left undeclared is an error.
    del doc["paths"]["/tasks/{id}"]["get"]["parameters"]
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(doc))
    proc = redocly_lint(bad)
    assert proc.returncode != 0
    assert "path-parameters-defined" in proc.stdout + proc.stderr


def test_docs_page_and_its_assets_are_served_from_the_binary(plain):
    page = http_get(plain.port, "/docs")
    assert page.status == 200
    assert page.header("Content-Type").startswith("text/html")
    text = page.text
    assert "/openapi.json" in text and "SwaggerUIBundle" in text
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', text), "external resource"
    js = http_get(plain.port, "/docs/swagger-ui-bundle.js")
    assert js.status == 200 and js.header("Content-Type").startswith("text/javascript")
    assert len(js.body) > 500_000 and b"SwaggerUIBundle" in js.body
    css = http_get(plain.port, "/docs/swagger-ui.css")
    assert css.status == 200 and css.header("Content-Type").startswith("text/css")
    assert b".swagger-ui" in css.body


@pytest.mark.deadline(120)
def test_swagger_ui_runs_post_items_in_a_browser(plain):
    proc = subprocess.run(
        ["node", str(REPO / "tests/e2e/browser/docs.test.js"), f"http://127.0.0.1:{plain.port}"],
        cwd=REPO, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
