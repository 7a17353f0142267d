"""A throwaway PostgreSQL for the data tests: Debian's binaries (scripts/deps.sh installs the
`postgresql` package), initdb into a temporary folder, pg_ctl on a free port on 127.0.0.1 with
the socket in that folder, one database per roost server, stopped and removed at the end. As
root, initdb and pg_ctl refuse to run, so they run as the `postgres` user (runuser).

Fixtures for the data tests (import them into a test module): `pg` (one cluster per session),
`engine` (each module runs once per engine: "sqlite" and "postgresql"), `db_server` (the
module's roost on that engine, checked for crashes and sanitizer reports after each test)."""

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port

ENGINES = ("sqlite", "postgresql")


def pg_bin_dir():
    """The newest /usr/lib/postgresql/N/bin that has initdb."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        pytest.fail("PostgreSQL is not installed (scripts/deps.sh installs Debian's postgresql)",
                    pytrace=False)
    return versions[-1]


class PgServer:
    """One PostgreSQL cluster. start() and stop() may be called again (a restart keeps the
    data and the port)."""

    _names = itertools.count(1)

    def __init__(self):
        self.bin = pg_bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="roost-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync", "--no-instructions")

    def _run(self, tool, *args, check=True, timeout=60):
        cmd = [str(self.bin / tool)] + [str(a) for a in args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"{tool} failed ({p.returncode}): {p.stderr or p.stdout}\n{log[-2000:]}",
                        pytrace=False)
        return p

    def start(self, durable=False):
        # fsync off: a test cluster, thrown away; durability is not what these tests measure.
        # durable=True: COMMIT waits until its WAL is written (to the kernel: fsync stays off),
        # so that a committed row survives the server being killed, as with the defaults.
        sync = "on" if durable else "off"
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c synchronous_commit={sync} -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", opts, "-w", "-t", "60",
                  "start")
        return self

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def running(self):
        return self._run("pg_ctl", "-D", self.data, "status", check=False).returncode == 0

    def psql(self, sql, db="postgres"):
        """Runs sql with psql as the postgres role; returns its unaligned, tuples-only output."""
        p = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
             str(self.port), "-U", "postgres", "-d", db, "-c", sql],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        if p.returncode != 0:
            pytest.fail(f"psql {sql!r}: {p.stderr}", pytrace=False)
        return p.stdout.strip()

    def create_database(self, prefix="roost"):
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def url(self, db):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def cleanup(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    server = PgServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module", params=ENGINES)
def engine(request):
    return request.param


@pytest.fixture(scope="module")
def engine_flags(engine, request):
    """--database for the engine: SQLite in the server's data dir, or a fresh PostgreSQL
    database of the session's cluster."""
    if engine == "sqlite":
        return ()
    pg_server = request.getfixturevalue("pg")
    return ("--database", pg_server.url(pg_server.create_database()))


@pytest.fixture
def db_server(shared_servers, engine_flags):
    """The module's roost on the current engine (started once per module and engine)."""
    with shared_servers.use("--threads", "2", *engine_flags) as srv:
        yield srv


def wait_until(predicate, timeout=10.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
