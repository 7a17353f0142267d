"""The manual page (`roost --help-man`, the Makefile's build/roost.1): it lists exactly the flags
of --help with the same defaults and environment twins, the registered routes, renders without a
warning from man or groff, and writing it leaves no file behind."""

import os
import re
import shutil
import subprocess

import pytest

HELP_LINE = re.compile(r"^  --([a-z0-9-]+)\s+(.*?)(?: \(default (.*)\))?$", re.M)


def roff_to_text(s):
    """The roff escapes roost_man_write uses, undone: what a reader sees, without layout."""
    s = re.sub(r"\\\[u([0-9A-F]{4,5})\]", lambda m: chr(int(m.group(1), 16)), s)
    for esc, plain in (("\\fB", ""), ("\\fR", ""), ("\\fI", ""), ("\\&", ""), ("\\-", "-"),
                       ("\\e", "\\")):
        s = s.replace(esc, plain)
    return s


def sections(page):
    """{".SH title": body} of the roff source."""
    parts = re.split(r"^\.SH (.*)$", page, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def entries(body):
    """[(tag line, text)] of the .TP entries of a section, unescaped."""
    out = []
    for block in body.split(".TP\n")[1:]:
        lines = [ln for ln in block.split("\n") if not ln.startswith(".")]
        out.append((roff_to_text(lines[0]), roff_to_text(" ".join(lines[1:]).strip())))
    return out


@pytest.fixture
def man_page(run_roost):
    result = run_roost("--help-man")
    assert result.returncode == 0, result
    assert result.stdout.startswith(".TH ROOST 1 "), result.stdout[:200]
    return result.stdout


def test_man_page_lists_exactly_the_flags_of_help_with_their_defaults(run_roost, man_page):
    help_text = run_roost("--help").stdout
    in_help = {m.group(1): m.group(3) for m in HELP_LINE.finditer(help_text)}
    assert "port" in in_help and "help" in in_help, help_text
    in_man = {}
    for tag, text in entries(sections(man_page)["OPTIONS"]):
        m = re.match(r"--([a-z0-9-]+)", tag)
        assert m, f"an OPTIONS entry that is not a flag: {tag!r}"
        default = re.search(r"Default: (.*?); environment: (ROOST_[A-Z0-9_]+)\.$", text)
        in_man[m.group(1)] = default.group(1) if default else None
        if default:
            assert default.group(2) == "ROOST_" + m.group(1).upper().replace("-", "_"), text
    assert sorted(in_man) == sorted(in_help), (
        f"only in --help: {sorted(set(in_help) - set(in_man))}; "
        f"only in the man page: {sorted(set(in_man) - set(in_help))}")
    for name, default in in_help.items():
        if default is not None:
            assert in_man[name] in (default, "empty" if default == "" else default), name


def test_environment_section_names_every_twin(man_page):
    options = [tag for tag, _ in entries(sections(man_page)["OPTIONS"])]
    twins = {tag for tag, _ in entries(sections(man_page)["ENVIRONMENT"])}
    for tag in options:
        name = tag.split()[0][2:]
        if name != "help" and name != "version":
            assert "ROOST_" + name.upper().replace("-", "_") in twins, name


def test_endpoints_are_the_registered_routes_with_their_summaries(man_page):
    routes = dict(entries(sections(man_page)["ENDPOINTS"]))
    assert routes.get("GET /healthz") == "Health check", routes
    assert routes.get("POST /items") == "Create an item (FastAPI's first example)"
    assert "GET /ws/{room}/{user}" in routes and "POST /tasks" in routes
    # the defaults' routes: /debug/block exists only with --debug-routes
    assert "GET /debug/block" not in routes
    for title in ("NAME", "SYNOPSIS", "DESCRIPTION", "SIGNALS", "FILES", "SEE ALSO"):
        assert title in sections(man_page), title


def test_environment_does_not_change_the_page(run_roost, man_page):
    other = run_roost("--help-man", env={"ROOST_DEBUG_ROUTES": "1", "ROOST_PORT": "1234"})
    assert other.returncode == 0, other
    assert other.stdout == man_page


def test_man_page_renders_without_warnings(man_page, tmp_path):
    if not shutil.which("man") or not shutil.which("groff"):
        pytest.skip("man-db or groff is not installed")
    path = tmp_path / "roost.1"
    path.write_text(man_page)
    env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
    man = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", str(path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert man.returncode == 0 and man.stderr == "", man.stderr
    assert "ROOST(1)" in man.stdout and "--max-body" in man.stdout
    groff = subprocess.run(["groff", "-ww", "-z", "-man", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert groff.returncode == 0 and groff.stderr == "", groff.stderr


def test_writing_the_page_leaves_no_file(run_roost, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before = sorted(os.listdir(tmp_path))
    result = run_roost("--help-man", env={"TMPDIR": str(scratch)})
    assert result.returncode == 0, result
    assert sorted(os.listdir(tmp_path)) == before, "a file in the working directory"
    assert os.listdir(scratch) == [], "the folder of the store it opened is still there"
