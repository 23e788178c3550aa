"""Every command the README and docs give is one its program accepts: each `guard-*` command
line parses with its program's own parser, each `make` target exists, and each `curl` names a
served route with a JSON body that parses. (The server tier runs the README's Python.)"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```bash\n(.*?)```", re.S)


def commands() -> list[tuple[str, list[str]]]:
    """(document, argv) of every shell command in a bash block, continuation lines joined,
    environment assignments and comments dropped."""
    found = []
    for doc in DOCS:
        for block in FENCE.findall(doc.read_text()):
            pending = ""
            for line in block.replace("\\\n", " ").splitlines():
                pending += line + "\n"
                try:  # a quoted argument may run over several lines
                    argv = shlex.split(pending, comments=True)
                except ValueError:
                    continue
                pending = ""
                while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
                    argv = argv[1:]
                if argv[:2] == ["taskset", "-c"]:  # pinned to cores: the command it runs
                    argv = argv[3:]
                if argv:
                    found.append((doc.name, argv))
    return found


ALL = commands()


def _program(argv: list[str]) -> str:
    return Path(argv[0]).name


def test_pytest_command_lines_collect_with_their_flags():
    """Run for real, collecting only (seconds): each flag exists and its plugin is installed."""
    lines = [a for _, a in ALL if _program(a).startswith("python") and a[1:3] == ["-m", "pytest"]]
    assert lines, "the docs give no pytest command line"
    for argv in lines:
        cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", *argv[3:], __file__]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])


def test_the_documents_give_commands_to_check():
    programs = {_program(a) for _, a in ALL}
    assert {"make", "guard-server", "guard-unlearn", "curl"} <= programs


@pytest.mark.parametrize(
    "argv", [a for _, a in ALL if _program(a) == "make"], ids=lambda a: " ".join(a)
)
def test_make_targets_exist(argv):
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert set(argv[1:]) <= targets


@pytest.mark.parametrize(
    "argv",
    [a for _, a in ALL if _program(a) in ("guard-server", "guard-bench", "guard-unlearn")],
    ids=lambda a: " ".join(a)[:60],
)
def test_guard_commands_parse(argv):
    program, rest = _program(argv), argv[1:]
    if program == "guard-server":
        from guard_server.cli import finalize_args, make_parser

        assert rest[0] == "serve"
        finalize_args(make_parser().parse_args(rest[1:]))
    elif program == "guard-unlearn":
        from guard_server.unlearn.cli import build_parser

        build_parser().parse_args(rest)
    else:
        import argparse

        from bench.cli import COMMANDS

        parser = argparse.ArgumentParser()
        COMMANDS[rest[0]][0].add_args(parser)
        parser.parse_args(rest[1:])


@pytest.mark.parametrize(
    "argv", [a for _, a in ALL if _program(a) == "curl"], ids=lambda a: a[2][-40:]
)
def test_curl_examples_name_served_routes_with_json_bodies(argv):
    from guard_server import surface

    url = next(a for a in argv if a.startswith("http"))
    path = "/" + url.split("/", 3)[3]
    served = surface.ENGINE_ROUTES | surface.NO_ENGINE_ROUTES
    assert path in served or surface.is_admin_path(path), path
    if "-d" in argv:
        json.loads(argv[argv.index("-d") + 1])
