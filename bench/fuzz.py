"""`guard-bench fuzz`: schemathesis over every route the server serves, looking for 5xx.

The server runs with one target registered, so screening, refusals and the answer watch are
on every generated request's path. Schemathesis (its own virtual environment: it pins
libraries vLLM pins otherwise) is pointed at the server's OpenAPI schema with the admin key,
and checks that no response is a server error. Bodies ask for a few tokens at most
(`bench/fuzz_hooks.py`). Reported: operations tested, requests sent, and every failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.serverproc import ADMIN_KEY, start_server

HOOKS = "bench.fuzz_hooks"
TARGET = {"name": "Harry Potter", "aliases": ["Hogwarts", "J.K. Rowling"]}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--st", default=shutil.which("st") or "st", help="schemathesis's `st`")
    p.add_argument("--max-examples", type=int, default=10, help="per operation and phase")
    p.add_argument("--phases", default="examples,coverage,fuzzing")
    p.add_argument("--port", type=int, default=8150)
    p.add_argument("--name", default="fuzz")


def failures(junit: Path) -> tuple[int, list[dict[str, str]]]:
    """(operations tested, failures) from schemathesis's JUnit report."""
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    found = []
    for case in cases:
        for problem in [*case.iter("failure"), *case.iter("error")]:
            message = (problem.get("message") or problem.text or "").strip()
            found.append({"operation": case.get("name", ""), "failure": message[:600]})
    return len(cases), found


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = report.out_dir(args.name)
    root = Path(tempfile.mkdtemp())
    server = start_server(args.port, root / "guard.db", root / "server.log")
    try:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        r = httpx.post(f"{server.base_url}/v1/forget-targets", json=TARGET, headers=headers)
        r.raise_for_status()
        junit = out / "junit.xml"
        cmd = [
            args.st,
            "run",
            f"{server.base_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--phases",
            args.phases,
            "--max-examples",
            str(args.max_examples),
            "--header",
            f"Authorization: Bearer {ADMIN_KEY}",
            "--request-timeout",
            "120",
            "--workers",
            "1",
            "--report",
            "junit",
            "--report-junit-path",
            str(junit),
        ]
        repo = Path(__file__).resolve().parents[1]
        env = dict(os.environ, SCHEMATHESIS_HOOKS=HOOKS, PYTHONPATH=str(repo))
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        (out / "st.log").write_text(done.stdout + done.stderr)
        operations, found = failures(junit)
        log = server.log.read_text(errors="replace")
    finally:
        server.stop()
    result = {
        "summary": {
            "operations": operations,
            "failures": len(found),
            "server_tracebacks": log.count("Traceback (most recent call last)"),
            "st_exit": done.returncode,
        },
        "failures": found,
    }
    report.write(
        out,
        result,
        {
            "schemathesis, not_a_server_error": ([result["summary"]], list(result["summary"])),
            "failures": (found, ["operation", "failure"]),
        },
    )
    return result
