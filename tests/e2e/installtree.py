"""The installed tree for the install, examples and packaging tests: `make install DESTDIR=<tmp>
PREFIX=/usr` once per test session, and how to compile against it with pkg-config.

Use: `from installtree import install_tree` in a test module, then the `install_tree` fixture
(an InstallTree). It builds what install needs (the release binary, build/pic/) with -j2 the first
time; later runs only install.
"""

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/usr"
MAKE_TIMEOUT_S = 900  # a cold build of the release and PIC variants on a busy 2-core machine


@dataclass
class InstallTree:
    destdir: Path  # what DESTDIR was

    @property
    def prefix(self):
        return self.destdir / PREFIX.lstrip("/")

    @property
    def libdir(self):
        return self.prefix / "lib"

    def env(self, extra=None):
        """An environment where pkg-config finds roost.pc in the tree (and rewrites its paths
        into it: PKG_CONFIG_SYSROOT_DIR) and programs find libroost.so there."""
        env = dict(os.environ)
        env["PKG_CONFIG_PATH"] = str(self.libdir / "pkgconfig")
        env["PKG_CONFIG_SYSROOT_DIR"] = str(self.destdir)
        env["LD_LIBRARY_PATH"] = str(self.libdir)
        env.update(extra or {})
        return env

    def pkg_config(self, *args):
        """pkg-config's answer for roost, split into arguments."""
        out = subprocess.run(["pkg-config", *args, "roost"], env=self.env(), check=True,
                             capture_output=True, text=True).stdout
        return shlex.split(out)

    def files(self):
        """Every file and symlink under DESTDIR, as paths relative to it ("usr/bin/roost")."""
        return sorted(str(p.relative_to(self.destdir)) for p in self.destdir.rglob("*")
                      if p.is_file() or p.is_symlink())

    def compile(self, source, out, static=False):
        """Compiles one C file against the tree with `cc ... $(pkg-config --cflags --libs roost)`;
        static=True links libroost.a instead of libroost.so (its dependencies stay shared)."""
        flags = self.pkg_config("--cflags", "--libs")
        if static:
            deps = subprocess.run(["pkg-config", "--print-requires-private", "roost"],
                                  env=self.env(), check=True, capture_output=True,
                                  text=True).stdout.split()
            flags = ["-l:libroost.a" if f == "-lroost" else f for f in flags]
            flags += shlex.split(subprocess.run(["pkg-config", "--libs", *deps], env=self.env(),
                                                check=True, capture_output=True,
                                                text=True).stdout) + ["-lpthread", "-lm"]
        cmd = ["cc", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
               "-Wno-unused-parameter", str(source), "-o", str(out), *flags]
        p = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, f"{shlex.join(cmd)} failed:\n{p.stderr}"
        return Path(out)


def make(*targets, destdir, timeout=MAKE_TIMEOUT_S):
    cmd = ["make", "-C", str(REPO_ROOT), "-j2", *targets, f"DESTDIR={destdir}", f"PREFIX={PREFIX}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{shlex.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="session")
def install_tree(tmp_path_factory):
    destdir = tmp_path_factory.mktemp("destdir")
    make("install", destdir=destdir)
    return InstallTree(destdir)
