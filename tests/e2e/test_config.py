"""Configuration: flags (`--name value` and `--name=value`), their ROOST_* environment twins,
--help, bad flags, and --access-log."""

import json
from pathlib import Path

import pytest

from conftest import free_port

FLAGS = ["--host", "--port", "--threads", "--workers", "--worker-queue", "--data-dir",
         "--stall-ms", "--max-url", "--max-header-size", "--max-headers", "--max-body",
         "--max-pipeline", "--header-timeout-s", "--body-timeout-s", "--keepalive-timeout-s",
         "--write-timeout-s", "--drain-s", "--access-log", "--debug-routes", "--help"]


def item_of_length(n):
    base = json.dumps({"name": "x", "description": "", "price": 1}).encode()
    return json.dumps({"name": "x", "description": "d" * (n - len(base)), "price": 1}).encode()


def post_item(srv, n):
    return srv.request("POST", "/items", {"Content-Type": "application/json"}, item_of_length(n))


def test_help_lists_every_flag_and_exits_zero(run_roost):
    result = run_roost("--help")
    assert result.returncode == 0, result
    missing = [f for f in FLAGS if f not in result.stdout]
    assert not missing, f"--help does not mention {missing}; stdout:\n{result.stdout}"


def test_version_prints_the_version_file_and_exits_zero(run_roost):
    version = (Path(__file__).resolve().parents[2] / "VERSION").read_text().strip()
    result = run_roost("--version")
    assert (result.returncode, result.stdout) == (0, f"roost {version}\n"), result
    assert "--version" in run_roost("--help").stdout


def test_unknown_flag_exits_nonzero_with_message(run_roost):
    result = run_roost("--no-such-flag", "--port", free_port())
    assert result.returncode != 0
    assert "no-such-flag" in result.stderr, f"stderr: {result.stderr!r}"


@pytest.mark.parametrize("args", [("--port", "abc"), ("--port", "70000"), ("--threads", "many"),
                                  ("--max-body", "-5"), ("--port",)],
                         ids=["port-abc", "port-70000", "threads-many", "max-body-negative",
                              "port-without-value"])
def test_invalid_flag_value_exits_nonzero_with_message(run_roost, args):
    result = run_roost(*args)
    assert result.returncode != 0
    assert result.stderr.strip(), "no message on stderr"


def test_flags_accept_name_equals_value(start_server):
    port = free_port()
    srv = start_server(f"--port={port}", "--threads=1", "--max-body=200", port=port,
                       add_port=False)
    assert srv.get("/plaintext").body == b"Hello, World!"
    assert post_item(srv, 200).status == 200
    assert post_item(srv, 201).status == 413


def test_port_from_environment(start_server):
    port = free_port()
    srv = start_server("--threads", "1", env={"ROOST_PORT": str(port)}, port=port, add_port=False)
    assert srv.get("/plaintext").body == b"Hello, World!"


def test_multi_word_flag_from_environment(start_server):
    srv = start_server("--threads", "1", env={"ROOST_MAX_BODY": "200"})
    assert post_item(srv, 200).status == 200
    assert post_item(srv, 201).status == 413


def test_flag_overrides_environment(start_server):
    srv = start_server("--threads", "1", "--max-body", "5000", env={"ROOST_MAX_BODY": "200"})
    assert post_item(srv, 1000).status == 200


def test_host_flag_binds_the_given_address(start_server):
    srv = start_server("--host", "127.0.0.1", "--threads", "1")
    assert srv.get("/healthz").status == 200


def test_data_dir_is_used(start_server, tmp_path):
    data = tmp_path / "custom-data"
    srv = start_server("--threads", "1", "--data-dir", data, add_data_dir=False)
    assert srv.get("/healthz").status == 200


def test_access_log_writes_one_line_per_request(start_server):
    srv = start_server("--threads", "2", "--access-log")
    offset = len(srv.stderr())
    for _ in range(3):
        assert srv.get("/plaintext").status == 200
    assert srv.get("/no-such-route-xyz").status == 404
    assert srv.request("POST", "/items", {"Content-Type": "application/json"},
                       b'{"name":"a","price":1}').status == 200

    def find(method, path, status):
        return srv.wait_for_stderr(
            lambda l: method in l and path in l and str(status) in l, timeout=2.0, start=offset)

    assert find("GET", "/plaintext", 200), srv.stderr()[offset:]
    assert find("GET", "/no-such-route-xyz", 404), srv.stderr()[offset:]
    assert find("POST", "/items", 200), srv.stderr()[offset:]
    plaintext_lines = [l for l in srv.stderr_lines(offset) if "/plaintext" in l]
    assert len(plaintext_lines) == 3, plaintext_lines


def test_no_access_log_without_the_flag(start_server):
    srv = start_server("--threads", "2")
    offset = len(srv.stderr())
    assert srv.get("/plaintext-unlogged").status == 404
    assert srv.get("/plaintext").status == 200
    assert srv.wait_for_stderr(lambda l: "/plaintext" in l, timeout=0.5, start=offset) is None


def test_debug_routes_flag_enables_block_route(start_server):
    srv = start_server("--threads", "2", "--debug-routes")
    assert srv.get("/debug/block?ms=1").status == 200
