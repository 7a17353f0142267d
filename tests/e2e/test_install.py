"""`make install` and `make uninstall` (PREFIX, DESTDIR): the files put, the shared library's
exports and soname, roost.pc through pkg-config, the installed binary's --version. The examples
built against the same tree have their own tests (test_examples.py)."""

import re
import subprocess

from installtree import REPO_ROOT, InstallTree, install_tree, make  # noqa: F401 (fixture)

VERSION = (REPO_ROOT / "VERSION").read_text().strip()
MAJOR, MINOR = VERSION.split(".")[:2]

PROGRAM = r"""
#include <stdio.h>
#include <roost/roost.h>
int main(void)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    json_t *v = json_pack("{s:s}", "version", roost_version());
    char *s = json_dumps(v, JSON_COMPACT);
    printf("%s %d\n", s, cfg.net.port);
    free(s);
    json_decref(v);
    return 0;
}
"""


def expected_files():
    docs = sorted(f"usr/share/doc/roost/docs/{p.name}" for p in (REPO_ROOT / "docs").glob("*.md"))
    examples = sorted(f"usr/share/doc/roost/examples/{p.name}"
                      for p in (REPO_ROOT / "examples").glob("*") if p.suffix in (".c", ".md"))
    man = ["usr/share/man/man1/roost.1"] if (REPO_ROOT / "build" / "roost.1").exists() else []
    return sorted([
        "usr/bin/roost",
        "usr/include/roost/roost.h",
        "usr/lib/libroost.a",
        "usr/lib/libroost.so",
        f"usr/lib/libroost.so.{MAJOR}",
        f"usr/lib/libroost.so.{MAJOR}.{MINOR}",
        "usr/lib/pkgconfig/roost.pc",
        "usr/share/doc/roost/README.md",
        *docs, *examples, *man,
    ])


def test_install_puts_exactly_the_listed_files(install_tree):
    assert install_tree.files() == expected_files()
    assert examples_present(install_tree)


def examples_present(tree):
    names = {p.name for p in (tree.prefix / "share/doc/roost/examples").iterdir()}
    return {"chat.c", "jobs.c", "proxy.c", "README.md"} <= names


def test_shared_library_links_resolve_to_the_versioned_file(install_tree):
    lib = install_tree.libdir
    assert (lib / "libroost.so").readlink().name == f"libroost.so.{MAJOR}"
    assert (lib / f"libroost.so.{MAJOR}").readlink().name == f"libroost.so.{MAJOR}.{MINOR}"
    assert not (lib / f"libroost.so.{MAJOR}.{MINOR}").is_symlink()


def test_shared_library_names_its_soname(install_tree):
    out = subprocess.run(["readelf", "-d", install_tree.libdir / "libroost.so"], check=True,
                         capture_output=True, text=True).stdout
    assert re.search(rf"\(SONAME\)\s+Library soname: \[libroost\.so\.{MAJOR}\]", out), out


def exported(path):
    out = subprocess.run(["nm", "-D", "--defined-only", path], check=True, capture_output=True,
                         text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def declared_in_header():
    """The functions and objects roost.h declares, from the preprocessed header."""
    text = subprocess.run(["cc", "-E", "-P", "-I", REPO_ROOT / "include", "-"], check=True,
                          input="#include <roost/roost.h>\n", capture_output=True,
                          text=True).stdout
    names = set(re.findall(r"\b(roost_[a-z0-9_]+)\s*\(", text))
    names |= set(re.findall(r"extern const \w+ (roost_[a-z0-9_]+)", text))
    return names


def test_shared_library_exports_only_the_public_api(install_tree):
    names = exported(install_tree.libdir / f"libroost.so.{MAJOR}.{MINOR}")
    assert names, "nm -D lists no symbol"
    assert [n for n in names if not n.startswith("roost_")] == []
    # exactly roost.h: nothing internal (http_, ws_, llhttp_) and nothing the header promises
    # missing
    assert names == declared_in_header()
    assert {"roost_server_new", "roost_run", "roost_version", "roost_mw_timing"} <= names


def test_pkg_config_gives_the_tree_folders_and_the_version(install_tree):
    cflags = install_tree.pkg_config("--cflags")
    libs = install_tree.pkg_config("--libs")
    assert f"-I{install_tree.prefix}/include" in cflags
    assert f"-L{install_tree.libdir}" in libs and "-lroost" in libs
    assert "-ljansson" in libs  # roost.h includes jansson.h: a public dependency
    assert install_tree.pkg_config("--modversion") == [VERSION]
    private = subprocess.run(["pkg-config", "--print-requires-private", "roost"],
                             env=install_tree.env(), check=True, capture_output=True,
                             text=True).stdout.split()
    assert {"libuv", "libcurl", "libssl", "libcrypto", "sqlite3", "libpq", "zlib"} <= set(private)


def test_program_built_with_pkg_config_runs_on_the_installed_library(install_tree, tmp_path):
    src = tmp_path / "v.c"
    src.write_text(PROGRAM)
    exe = install_tree.compile(src, tmp_path / "v")
    p = subprocess.run([exe], env=install_tree.env(), capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f'{{"version":"{VERSION}"}} 8000\n'
    ldd = subprocess.run(["ldd", exe], env=install_tree.env(), capture_output=True,
                         text=True).stdout
    assert f"{install_tree.libdir}/libroost.so.{MAJOR}" in ldd, ldd


def test_program_links_the_static_library(install_tree, tmp_path):
    src = tmp_path / "v.c"
    src.write_text(PROGRAM)
    exe = install_tree.compile(src, tmp_path / "v-static", static=True)
    needed = subprocess.run(["readelf", "-d", exe], check=True, capture_output=True,
                            text=True).stdout
    assert "libroost" not in needed
    p = subprocess.run([exe], capture_output=True, text=True, timeout=10, env={})
    assert p.returncode == 0 and p.stdout.startswith(f'{{"version":"{VERSION}"}}'), p


def test_installed_binary_prints_its_version(install_tree):
    p = subprocess.run([install_tree.prefix / "bin/roost", "--version"], capture_output=True,
                       text=True, timeout=10)
    assert (p.returncode, p.stdout) == (0, f"roost {VERSION}\n")


def test_uninstall_removes_every_file_install_put(tmp_path):
    make("install", destdir=tmp_path)
    tree = InstallTree(tmp_path)
    assert "usr/lib/libroost.so" in tree.files()
    make("uninstall", destdir=tmp_path)
    assert tree.files() == []
    # the folders only roost uses are gone too
    assert not (tree.prefix / "include/roost").exists()
    assert not (tree.prefix / "share/doc/roost").exists()
