"""`guard-bench replicas`: two guard servers on one PostgreSQL registry. Seconds from a
registration acknowledged by replica A to a chat on replica B that the new target guards,
with 1 and with 1,000 targets already registered."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from bench import report
from bench.pgserver import postgres_server, reset
from bench.registration import latencies
from bench.serverproc import start_server


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registrations", type=int, default=30)
    p.add_argument("--already", default="1,1000", help="targets registered before measuring")
    p.add_argument("--port", type=int, default=8770, help="A; B is port+1, PostgreSQL port+2")
    p.add_argument("--name", default="replicas")


def preregister(url: str, count: int) -> None:
    """`count` targets written straight into the registry, as an admin API would."""
    from guard_server.compiler import Compiler
    from guard_server.models import convert_default_model
    from guard_server.protocol import TargetCreate
    from guard_server.registry import Registry
    from guard_server.store import open_store

    registry = Registry(open_store(url), Compiler.from_model_dir(str(convert_default_model())))
    for i in range(count):
        registry.create(TargetCreate(name=f"Registered topic {i}", keywords=[f"zorbex{i}q"]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="guard-replicas-"))
    rows = []
    with postgres_server() as url:
        for already in (int(n) for n in args.already.split(",")):
            reset(url)
            preregister(url, already)
            a = start_server(args.port, url, root / f"a{already}.log")
            try:
                b = start_server(args.port + 1, url, root / f"b{already}.log")
                try:
                    samples, effective, _ = latencies(a.base_url, args.registrations, b.base_url)
                finally:
                    b.stop()
            finally:
                a.stop()
            ms = np.array(samples) * 1000
            rows.append(
                {
                    "already_registered": already,
                    "registrations": args.registrations,
                    "effective_on_b_next_request": effective,
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)),
                }
            )
    report.write(
        report.out_dir(args.name),
        {"rows": rows},
        {"registration on A to effective on B": (rows, list(rows[0]))},
    )
    return {"summary": rows}
