"""The Debian packages (debian/): `dpkg-buildpackage -us -uc -b` in a copy of the tree (the
repository is left as it was), lintian without an error, each package holding what it promises,
and the packaged server answering: from `dpkg-deb -x` always, and as root (where no systemd runs,
so that installing starts no service) installed with `dpkg -i`, then purged.

The build compiles roost twice at -O2 (build/ and build/pic/ for the shared library): about a
minute and a half on two idle cores, three minutes on a busy machine. tests/run.sh runs this file
as its own step; `python3 -m pytest tests/debian -q` runs it alone."""

import gzip
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = (REPO / "VERSION").read_text().strip()
BUILD_TIMEOUT_S = 900
PACKAGES = ("roost", "libroost0", "libroost-dev")


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def git_status():
    return run(["git", "-C", str(REPO), "status", "--porcelain", "--ignored"]).stdout


EMBEDDED = ("uplot", "swagger-ui-dist")


def copy_tree(dest):
    """The tree as git sees it (tracked and new files, not ignored ones) and the npm packages the
    binary embeds at build time (uPlot for the dashboard, Swagger UI for /docs: Debian has no
    package of either)."""
    files = run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"]).stdout
    for name in filter(None, files.split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for package in EMBEDDED:
        shutil.copytree(REPO / "node_modules" / package, dest / "node_modules" / package)


@pytest.fixture(scope="module")
def built():
    for tool in ("dpkg-buildpackage", "dh", "fakeroot"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (scripts/deps.sh installs the packaging tools)")
    for package in EMBEDDED:
        if not (REPO / "node_modules" / package).is_dir():
            pytest.skip(f"node_modules/{package} is missing: run scripts/deps.sh")
    before = git_status()
    top = Path(tempfile.mkdtemp(prefix="roost-deb-"))
    try:
        tree = top / f"roost-{VERSION}"
        copy_tree(tree)
        env = dict(os.environ, DEB_BUILD_OPTIONS="parallel=2 nocheck noautodbgsym")
        # not make's jobserver of a `make test` around this, nor a developer's ROOST_* settings
        drop = ("ROOST_", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
        env = {k: v for k, v in env.items() if not k.startswith(drop)}
        start = time.monotonic()
        p = run(["dpkg-buildpackage", "-us", "-uc", "-b"], timeout=BUILD_TIMEOUT_S, cwd=tree,
                env=env)
        took = time.monotonic() - start
        print(f"\ndpkg-buildpackage took {took:.0f} s")
        assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
        debs = {pkg: top / f"{pkg}_{VERSION}_{arch()}.deb" for pkg in PACKAGES}
        for pkg, deb in debs.items():
            assert deb.is_file(), f"no {deb.name}; {sorted(os.listdir(top))}"
        assert git_status() == before, "the package build changed the repository"
        yield {"top": top, "debs": debs, "changes": top / f"roost_{VERSION}_{arch()}.changes"}
    finally:
        shutil.rmtree(top, ignore_errors=True)


def arch():
    return run(["dpkg", "--print-architecture"]).stdout.strip()


def contents(deb):
    """The paths a .deb holds, "/usr/bin/roost" style."""
    listing = run(["dpkg-deb", "-c", str(deb)]).stdout.splitlines()
    return [line.split()[5].lstrip(".") for line in listing]


def test_build_depends_are_what_deps_sh_installs():
    """debian/control's Build-Depends, each installed by scripts/deps.sh (debhelper provides
    the debhelper-compat and dh-sequence-* names)."""
    control = (REPO / "debian" / "control").read_text()
    field = re.search(r"^Build-Depends:(.*?)^\S", control, re.M | re.S).group(1)
    names = [re.split(r"[ (]", d.strip())[0] for d in field.split(",") if d.strip()]
    deps = (REPO / "scripts" / "deps.sh").read_text()
    listed = set(re.search(r"^PKGS=\((.*?)^\)", deps, re.M | re.S).group(1).split())
    missing = [n for n in names
               if n not in listed and not n.startswith(("debhelper-compat", "dh-sequence-"))]
    assert "libuv1-dev" in names and not missing, f"not in scripts/deps.sh: {missing}"


def test_changelog_version_is_the_version_file():
    """debian/changelog's newest entry carries VERSION (a native package: no Debian revision)."""
    first = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    assert first.startswith(f"roost ({VERSION}) "), f"{first!r}: bump it with VERSION"


def test_lintian_reports_no_error(built):
    if not shutil.which("lintian"):
        pytest.skip("lintian is not installed")
    p = run(["lintian", "--no-tag-display-limit", str(built["changes"])], timeout=300)
    errors = [ln for ln in p.stdout.splitlines() if ln.startswith("E:")]
    assert not errors, p.stdout


def test_each_package_holds_what_it_promises(built):
    multiarch = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
    lib = f"/usr/lib/{multiarch}"
    want = {
        "roost": ["/usr/bin/roost", "/usr/share/man/man1/roost.1.gz",
                  "/lib/systemd/system/roost.service", "/usr/lib/sysusers.d/roost.conf",
                  "/usr/lib/tmpfiles.d/roost.conf", "/usr/share/doc/roost/copyright"],
        "libroost0": [f"{lib}/libroost.so.{VERSION.rsplit('.', 1)[0]}"],
        "libroost-dev": ["/usr/include/roost/roost.h", f"{lib}/libroost.a",
                         f"{lib}/pkgconfig/roost.pc",
                         "/usr/share/doc/libroost-dev/examples/chat.c"],
    }
    for pkg, paths in want.items():
        listing = contents(built["debs"][pkg])
        missing = [p for p in paths if p not in listing]
        assert not missing, f"{pkg} lacks {missing}: {listing}"
    dev = run(["dpkg-deb", "-c", str(built["debs"]["libroost-dev"])]).stdout
    assert f"{lib}/libroost.so -> libroost.so.{VERSION.split('.')[0]}" in dev.replace("./", "/")


def test_unit_runs_the_server_as_its_own_user_with_hardening(built, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(built["debs"]["roost"]), str(tmp_path)], check=True)
    unit = (tmp_path / "lib/systemd/system/roost.service").read_text()
    for line in ("User=roost", "ExecStart=/usr/bin/roost --data-dir /var/lib/roost",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=roost"):
        assert line in unit.splitlines(), line
    assert (tmp_path / "usr/lib/sysusers.d/roost.conf").read_text().count("u roost ") == 1
    # dpkg-buildflags' hardening reached the binary: full RELRO
    dyn = run(["readelf", "-d", str(tmp_path / "usr/bin/roost")]).stdout
    assert "BIND_NOW" in dyn, dyn


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_server(binary, tmp_path):
    """--version, then /healthz on a free port with a temporary --data-dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    v = run([binary, "--version"], env=env)
    assert v.returncode == 0 and v.stdout.strip() == f"roost {VERSION}", v
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    srv = subprocess.Popen([binary, "--port", str(port), "--threads", "1", "--data-dir",
                            str(data)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200 and b'"ok"' in r.read()
                    break
            except OSError:
                assert srv.poll() is None, srv.stdout.read().decode()
                assert time.monotonic() < deadline, "no answer on /healthz within 20 s"
                time.sleep(0.1)
    finally:
        srv.terminate()
        assert srv.wait(timeout=30) == 0, "a drain ends with exit 0"


def test_extracted_server_answers(built, tmp_path):
    root = tmp_path / "root"
    for deb in built["debs"].values():
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    page = gzip.decompress((root / "usr/share/man/man1/roost.1.gz").read_bytes()).decode()
    assert page.startswith(".TH ROOST 1 ") and f"roost {VERSION}" in page.splitlines()[0]
    check_server(str(root / "usr/bin/roost"), tmp_path)


def dpkg(*args):
    """dpkg, waiting out another process's apt or dpkg lock for up to a minute."""
    for _ in range(60):
        p = run(["dpkg", *args], timeout=300)
        if p.returncode == 0 or "lock" not in p.stderr:
            return p
        time.sleep(1)
    return p


@pytest.mark.skipif(os.geteuid() != 0, reason="dpkg -i needs root (the dpkg-deb -x test ran)")
@pytest.mark.skipif(os.path.isdir("/run/systemd/system"),
                    reason="systemd runs here: installing would start roost.service")
def test_installed_server_answers_and_purge_removes_it(built, tmp_path):
    if run(["dpkg-query", "-W", "roost"]).returncode == 0:
        pytest.skip("a roost package is already installed here; not touching it")
    try:
        p = dpkg("-i", *[str(d) for d in built["debs"].values()])
        assert p.returncode == 0, p.stdout + p.stderr
        assert pwd.getpwnam("roost").pw_dir == "/var/lib/roost"
        st = os.stat("/var/lib/roost")
        assert st.st_uid == pwd.getpwnam("roost").pw_uid and (st.st_mode & 0o777) == 0o750
        assert run(["pkg-config", "--modversion", "roost"]).stdout.strip() == VERSION
        assert run(["man", "-w", "roost"]).stdout.strip().endswith("/man1/roost.1.gz")
        if shutil.which("systemd-analyze"):  # every directive known, the binary and man page there
            v = run(["systemd-analyze", "verify", "/lib/systemd/system/roost.service"])
            assert v.returncode == 0 and "roost.service" not in v.stderr, v.stderr
        check_server("/usr/bin/roost", tmp_path)
    finally:
        p = dpkg("--purge", *PACKAGES)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not os.path.exists("/usr/bin/roost")
    assert not os.path.exists("/var/lib/roost"), "purge removes the data folder"
