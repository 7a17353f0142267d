"""Harness for roost's end-to-end tests: finds the binary, starts it on a free port in a temporary
directory, speaks raw HTTP/1.1 to it, and fails a test whose server reported a sanitizer error.

Binary: $ROOST_BIN, else build/asan/roost under the repository root (ASan + UBSan, ~3x slower than
release, so every timing bound here leaves room for that). Tests import the helpers directly
(`from conftest import RawConnection, ...`); fixtures: `server` (a shared default server per test
module), `start_server` (a factory for servers with their own flags), `run_roost` (run the binary to
completion, for flag parsing tests).
"""

import contextlib
import email.utils
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / "build" / "asan" / "roost"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "WARNING: ThreadSanitizer")
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
DEFAULT_TEST_DEADLINE_S = 90.0


# --------------------------------------------------------------------------------------------
# Process limits and ports


def raise_nofile_limit():
    """Soft RLIMIT_NOFILE = hard, so 10,000 sockets fit (in this process and in the child)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


raise_nofile_limit()


def free_port():
    """A port that was free a moment ago on 127.0.0.1 (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def roost_binary():
    env = os.environ.get("ROOST_BIN")
    path = Path(env).resolve() if env else DEFAULT_BINARY
    if not path.is_file() or not os.access(path, os.X_OK):
        how = "$ROOST_BIN" if env else "the default (build the sanitizer variant: `make asan`)"
        pytest.fail(f"roost binary not found or not executable: {path} ({how})", pytrace=False)
    return path


def child_environment(extra=None):
    """The test process's environment without any ROOST_* variable (so a developer's shell cannot
    change what a test sees), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if extra:
        env.update(extra)
    return env


def tail(text, lines=60):
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Raw HTTP/1.1 client


class ConnectionClosed(Exception):
    """The server closed the connection before a complete response arrived."""


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list
    body: bytes = b""
    raw: bytes = b""
    received_at: float = 0.0

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_token(self, name, token):
        """True when the comma-separated header `name` holds `token` (case-insensitive)."""
        tokens = []
        for v in self.header_all(name):
            tokens += [t.strip().lower() for t in v.split(",")]
        return token.lower() in tokens

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Response {self.status} headers={self.headers!r} body={self.body[:300]!r}>"


def build_request(method, target, headers=None, body=None, version="HTTP/1.1", host="test"):
    """Bytes of one request. Adds Host (unless host is None) and Content-Length when a body is
    given and no Content-Length/Transfer-Encoding header was passed."""
    headers = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        headers.insert(0, ("Host", host))
    if isinstance(body, str):
        body = body.encode()
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + (body or b"")


class RawConnection:
    """One TCP connection with a read buffer, so pipelined responses can be read one by one."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.reset = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def request(self, method, target, headers=None, body=None, timeout=None, **kw):
        self.send(build_request(method, target, headers, body, **kw))
        return self.read_response(timeout=timeout, head=(method == "HEAD"))

    # -- reading

    def _fill(self, deadline):
        """Read more bytes into the buffer; False at EOF. TimeoutError past the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete response in time; received so far: {self.buf[:500]!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError(
                f"no complete response in time; received so far: {self.buf[:500]!r}"
            ) from None
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, delim, deadline):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out, self.buf = self.buf[: i + len(delim)], self.buf[i + len(delim) :]
                return out
            if not self._fill(deadline):
                raise ConnectionClosed(f"connection closed; unparsed bytes: {self.buf[:500]!r}")

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionClosed(
                    f"connection closed after {len(self.buf)} of {n} body bytes: {self.buf[:300]!r}"
                )
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, timeout=None, head=False):
        """Read one response (an interim 1xx counts as one). `head`: the request was HEAD, so
        the response has no body whatever its headers say."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        raw_head = self._read_until(b"\r\n\r\n", deadline)
        lines = raw_head[:-4].decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError(f"malformed status line: {lines[0]!r} (head: {raw_head[:500]!r})")
        headers = []
        for line in lines[1:]:
            if ":" not in line:
                raise AssertionError(f"malformed response header line: {line!r}")
            k, v = line.split(":", 1)
            headers.append((k, v.strip(" \t")))
        resp = Response(m.group(1), int(m.group(2)), m.group(3) or "", headers)
        raw = raw_head
        if head or resp.status < 200 or resp.status in (204, 304):
            body = b""
        elif resp.has_token("Transfer-Encoding", "chunked"):
            body = b""
            while True:
                size_line = self._read_until(b"\r\n", deadline)
                raw += size_line
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers, then the empty line
                        trailer = self._read_until(b"\r\n", deadline)
                        raw += trailer
                        if trailer == b"\r\n":
                            break
                    break
                chunk = self._read_exact(size + 2, deadline)
                raw += chunk
                body += chunk[:-2]
        elif resp.header("Content-Length") is not None:
            body = self._read_exact(int(resp.header("Content-Length")), deadline)
            raw += body
        else:
            while self._fill(deadline):
                pass
            body, self.buf = self.buf, b""
            raw += body
        resp.body, resp.raw, resp.received_at = body, raw, time.monotonic()
        return resp

    def read_final_response(self, timeout=None, head=False):
        """Read responses until a final (non-1xx) one."""
        while True:
            resp = self.read_response(timeout=timeout, head=head)
            if resp.status >= 200:
                return resp

    def read_until_close(self, timeout=5.0):
        """All bytes until the server closes (EOF or reset). TimeoutError if it stays open."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def closed_within(self, timeout):
        """(closed?, bytes received meanwhile): whether the server closed within `timeout`."""
        try:
            return True, self.read_until_close(timeout)
        except TimeoutError:
            out, self.buf = self.buf, b""
            return False, out


def http_request(port, method, target, headers=None, body=None, timeout=10.0, **kw):
    """One request on a fresh connection; the connection is closed afterwards."""
    with RawConnection(port, timeout=timeout) as conn:
        return conn.request(method, target, headers=headers, body=body, timeout=timeout, **kw)


def http_get(port, target, timeout=10.0, **kw):
    return http_request(port, "GET", target, timeout=timeout, **kw)


def post_json(port, target, obj, timeout=10.0):
    body = json.dumps(obj).encode()
    return http_request(
        port, "POST", target, {"Content-Type": "application/json"}, body, timeout=timeout
    )


# --------------------------------------------------------------------------------------------
# Prometheus text


_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{metric name: [(labels dict, value), ...]} from Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.setdefault(m.group(1), []).append((labels, value))
    return out


def metric_sum(text, name, **labels):
    """Sum of every series of `name` whose labels include `labels`; 0 when there is none."""
    total = 0.0
    for series_labels, value in parse_metrics(text).get(name, []):
        if all(series_labels.get(k) == v for k, v in labels.items()):
            total += value
    return total


# --------------------------------------------------------------------------------------------
# Checks shared by several files


PROCESS_TIME_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
IMF_FIXDATE_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$"
)


def assert_common_headers(resp):
    """What every roost response carries: X-Process-Time, Date, and (non-streamed) a
    Content-Length that matches the body."""
    xpt = resp.header("X-Process-Time")
    assert xpt is not None, f"no X-Process-Time header: {resp!r}"
    assert PROCESS_TIME_RE.match(xpt), f"X-Process-Time is not a decimal number: {xpt!r}"
    date = resp.header("Date")
    assert date is not None, f"no Date header: {resp!r}"
    assert IMF_FIXDATE_RE.match(date), f"Date is not an IMF-fixdate: {date!r}"
    when = email.utils.parsedate_to_datetime(date).timestamp()
    assert abs(when - time.time()) < 120, f"Date is far from now: {date!r}"
    assert resp.header("Content-Length") is not None, f"no Content-Length: {resp!r}"
    assert int(resp.header("Content-Length")) == len(resp.body)
    assert resp.header("Transfer-Encoding") is None


def assert_json_detail(resp, status):
    """An error response of roost's one error shape: {"detail": "..."} as JSON."""
    assert resp.status == status, resp
    ctype = resp.header("Content-Type", "")
    assert ctype.startswith("application/json"), f"Content-Type {ctype!r}: {resp!r}"
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("detail"), str), body


def assert_validation_error(resp):
    """A FastAPI-shaped 422; returns its detail list."""
    assert resp.status == 422, resp
    assert resp.header("Content-Type", "").startswith("application/json"), resp
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("detail"), list), body
    for item in body["detail"]:
        assert isinstance(item.get("loc"), list), item
        assert isinstance(item.get("msg"), str), item
        assert isinstance(item.get("type"), str), item
    return body["detail"]


# --------------------------------------------------------------------------------------------
# The server process


class RoostServer:
    """One roost process on 127.0.0.1:port, cwd and --data-dir in `workdir`, stdout and stderr
    captured to files there."""

    def __init__(self, workdir, args=(), env=None, port=None, add_port=True, add_data_dir=True):
        self.binary = roost_binary()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.data_dir = self.workdir / "data"
        self.stdout_path = self.workdir / "stdout.log"
        self.stderr_path = self.workdir / "stderr.log"
        self.args = [str(self.binary)]
        if add_port:
            self.args += ["--port", str(self.port)]
        if add_data_dir:
            self.args += ["--data-dir", str(self.data_dir)]
        self.args += [str(a) for a in args]
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.workdir,
            env=child_environment(env),
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            preexec_fn=raise_nofile_limit,
        )
        self.stderr_checked = 0  # offset up to which stderr was checked for sanitizer reports

    def __repr__(self):
        return f"<roost pid={self.proc.pid} port={self.port} args={self.args[1:]}>"

    # -- output

    def stderr(self):
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def stdout(self):
        return self.stdout_path.read_bytes().decode("utf-8", "replace")

    def stderr_lines(self, start=0):
        return self.stderr()[start:].splitlines()

    def wait_for_stderr(self, predicate, timeout=2.0, start=0):
        """The first stderr line (after offset `start`) for which predicate(line) holds, or None
        after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stderr_lines(start):
                if predicate(line):
                    return line
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def sanitizer_report(self, since=0):
        text = self.stderr()
        if any(m in text[since:] for m in SANITIZER_MARKERS):
            return f"sanitizer error in {self!r}; stderr tail:\n{tail(text)}"
        return None

    # -- lifecycle

    def alive(self):
        return self.proc.poll() is None

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """Poll GET /healthz until it answers 200."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                pytest.fail(
                    f"roost exited with code {self.proc.returncode} before it was ready: {self!r}\n"
                    f"stderr tail:\n{tail(self.stderr())}",
                    pytrace=False,
                )
            try:
                resp = http_get(self.port, "/healthz", timeout=2.0)
                if resp.status == 200:
                    return self
                last = resp
            except (OSError, ConnectionClosed) as e:
                last = e
            time.sleep(0.05)
        self.kill()
        pytest.fail(
            f"roost did not answer GET /healthz with 200 within {timeout}s (last: {last!r}): "
            f"{self!r}\nstderr tail:\n{tail(self.stderr())}",
            pytrace=False,
        )

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """The exit code, or None if still running after `timeout`."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self._close_files()

    def stop(self):
        """SIGTERM, up to 10 s of grace, then SIGKILL. Returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(STOP_TIMEOUT_S) is None:
                self.proc.kill()
                self.proc.wait()
        self._close_files()
        return self.proc.returncode

    def _close_files(self):
        for f in (self._stdout, self._stderr):
            if not f.closed:
                f.close()

    # -- conveniences

    def get(self, target, **kw):
        return http_get(self.port, target, **kw)

    def request(self, method, target, headers=None, body=None, **kw):
        return http_request(self.port, method, target, headers, body, **kw)

    def post_json(self, target, obj, **kw):
        return post_json(self.port, target, obj, **kw)

    def connect(self, timeout=5.0):
        return RawConnection(self.port, timeout=timeout)

    def metrics(self):
        resp = self.get("/metrics")
        assert resp.status == 200, resp
        return resp.text

    def assert_healthy(self):
        """The server still answers on a new connection."""
        resp = self.get("/healthz", timeout=5.0)
        assert resp.status == 200, resp
        assert resp.json() == {"status": "ok"}


class _SharedServers:
    """A test module's long-lived servers, one per distinct flag list, so that many small tests
    do not each pay for a start. A server a test killed is restarted for the next test."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.servers = {}

    def get(self, args):
        args = tuple(str(a) for a in args)
        srv = self.servers.get(args)
        if srv is None or not srv.alive():
            if srv is not None:
                srv.stop()
            workdir = self.tmp_path_factory.mktemp("roost")
            srv = RoostServer(workdir, args)
            self.servers[args] = srv
            srv.wait_ready()
        return srv

    @staticmethod
    def check(srv):
        """After a test: did the server die or report a sanitizer error during it?"""
        problems = []
        if not srv.alive():
            problems.append(f"roost exited with code {srv.proc.returncode} during the test")
        report = srv.sanitizer_report(since=srv.stderr_checked)
        if report:
            problems.append(report)
        srv.stderr_checked = len(srv.stderr())
        if problems:
            if not srv.alive() and not report:
                problems.append("stderr tail:\n" + tail(srv.stderr()))
            pytest.fail("\n".join(problems), pytrace=False)

    @contextlib.contextmanager
    def use(self, *args):
        srv = self.get(args)
        yield srv
        self.check(srv)

    def shutdown(self):
        reports = []
        for srv in self.servers.values():
            srv.stop()
            report = srv.sanitizer_report(since=srv.stderr_checked)
            if report:
                reports.append(report)
        if reports:
            pytest.fail("\n\n".join(reports), pytrace=False)


# --------------------------------------------------------------------------------------------
# Fixtures


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "deadline(seconds): fail the test if it runs longer (default 90 s)"
    )


@pytest.fixture(autouse=True)
def _test_deadline(request):
    """A hung socket must fail one test, not the run (pytest-timeout is not installed)."""
    marker = request.node.get_closest_marker("deadline")
    seconds = marker.args[0] if marker else DEFAULT_TEST_DEADLINE_S

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded its deadline of {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def shared_servers(tmp_path_factory):
    """shared_servers.use(*flags): a context manager giving this module's server with those
    flags (started once per module), checked for a crash or sanitizer report after the test."""
    shared = _SharedServers(tmp_path_factory)
    yield shared
    shared.shutdown()


DEFAULT_FLAGS = ("--threads", "2")


@pytest.fixture
def server(shared_servers):
    """The module's default roost (default flags + --threads 2), shared by its tests."""
    with shared_servers.use(*DEFAULT_FLAGS) as srv:
        yield srv


@pytest.fixture
def start_server(tmp_path):
    """start_server(*flags, env=None, port=None, add_port=True, wait=True) -> RoostServer.
    Every server started is stopped (SIGTERM, then SIGKILL) after the test, which then fails if
    the server reported a sanitizer error."""
    servers = []

    def start(*args, env=None, port=None, add_port=True, add_data_dir=True, wait=True):
        workdir = tmp_path / f"server{len(servers)}"
        srv = RoostServer(workdir, args, env=env, port=port, add_port=add_port,
                          add_data_dir=add_data_dir)
        servers.append(srv)
        if wait:
            srv.wait_ready()
        return srv

    yield start
    reports = []
    for srv in servers:
        srv.stop()
        report = srv.sanitizer_report()
        if report:
            reports.append(report)
    if reports:
        pytest.fail("\n\n".join(reports), pytrace=False)


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str
    args: list = field(default_factory=list)


@pytest.fixture
def run_roost(tmp_path):
    """run_roost(*args, env=None, timeout=10) -> Completed: runs the binary to completion in
    tmp_path (for --help and bad flags). Fails the test if it is still running at the timeout."""

    def run(*args, env=None, timeout=10.0):
        cmd = [str(roost_binary())] + [str(a) for a in args]
        try:
            p = subprocess.run(
                cmd, cwd=tmp_path, env=child_environment(env), stdin=subprocess.DEVNULL,
                capture_output=True, timeout=timeout, preexec_fn=raise_nofile_limit,
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"{cmd[1:]} did not exit within {timeout} s (stderr: {e.stderr!r})",
                        pytrace=False)
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        for marker in SANITIZER_MARKERS:
            assert marker not in err, f"sanitizer error running {cmd[1:]}:\n{tail(err)}"
        return Completed(p.returncode, out, err, cmd)

    return run


# --------------------------------------------------------------------------------------------
# A real upstream for the upstream-call tests (tests/e2e/upstream.py), one per test module.

UPSTREAM = Path(__file__).with_name("upstream.py")


@pytest.fixture(scope="module")
def upstream():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(UPSTREAM), str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout.readline().strip() == b"ready"
    yield port
    proc.kill()
    proc.wait()
