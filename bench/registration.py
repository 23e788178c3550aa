"""`guard-bench register`: registration-to-effective latency, snapshot size, kill -9 survival."""

from __future__ import annotations

import argparse
import signal
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from bench import report
from bench.serverproc import ADMIN_KEY, start_server

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registrations", type=int, default=30)
    p.add_argument("--crash-loops", type=int, default=3)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--name", default="register")


def _chat(base: str, text: str) -> httpx.Response:
    body = {
        "model": "SmolLM2-135M-Instruct",
        "max_tokens": 4,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
    }
    # As an admin: a client's response says that a request was restricted, not by which target.
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=HEADERS, timeout=120)


def latencies(
    base: str, n: int, read_base: str | None = None
) -> tuple[list[float], int, list[float]]:
    """Seconds from sending the POST to holding a chat response that the new target guarded
    (the chat goes to `read_base`, another replica, when given), how many were guarded, and
    seconds to the POST's answer: a replica answers once its own guard enforces the target."""
    samples, effective, acknowledged = [], 0, []
    for i in tqdm(range(n), desc="registrations"):
        word = f"quuxtopic{i}z"
        start = time.perf_counter()
        r = httpx.post(
            f"{base}/v1/forget-targets",
            headers=HEADERS,
            timeout=120,
            json={
                "name": f"Bench topic {i}",
                "keywords": [word],
                "documents": [f"Bench topic {i} is also called {word}."],
            },
        )
        r.raise_for_status()
        acknowledged.append(time.perf_counter() - start)
        fired = _chat(read_base or base, f"Tell me about {word}.").headers.get(
            "x-guard-targets", ""
        )
        samples.append(time.perf_counter() - start)
        effective += r.json()["id"] in fired.split(",")
    return samples, effective, acknowledged


def _snapshot_bytes(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [n for (n,) in conn.execute("SELECT length(blob) FROM compiled")]


def _crash_loop(root: Path, port: int, loops: int) -> int:
    survived = 0
    for i in tqdm(range(loops), desc="kill -9 loops"):
        db, log = root / f"crash{i}.db", root / f"crash{i}.log"
        server = start_server(port, db, log)
        try:
            r = httpx.post(
                f"{server.base_url}/v1/forget-targets",
                headers=HEADERS,
                json={"name": "Albert Einstein", "aliases": ["Einstein"]},
            )
            target_id = r.json()["id"]
        finally:
            server.stop(signal.SIGKILL)
        server = start_server(port, db, log)
        try:
            listed = httpx.get(f"{server.base_url}/v1/forget-targets", headers=HEADERS).json()
            fired = _chat(server.base_url, "Who is Albert Einstein?").headers["x-guard-targets"]
            survived += any(t["id"] == target_id for t in listed["data"]) and target_id == fired
        finally:
            server.stop()
    return survived


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="guard-bench-"))
    server = start_server(args.port, root / "guard.db", root / "server.log")
    try:
        samples, effective, acknowledged = latencies(server.base_url, args.registrations)
    finally:
        server.stop()
    sizes = _snapshot_bytes(root / "guard.db")
    survived = _crash_loop(root, args.port, args.crash_loops) if args.crash_loops else 0
    ms, ack_ms = np.array(samples) * 1000, np.array(acknowledged) * 1000
    summary = {
        "registrations": args.registrations,
        "effective_on_next_request": effective,
        # Registered, durable and enforced by this replica: what the next request meets.
        "effect_p50_ms": float(np.percentile(ack_ms, 50)),
        "effect_p99_ms": float(np.percentile(ack_ms, 99)),
        # The same plus the engine's answer to that next request (a 4-token refusal).
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "snapshot_bytes_mean": float(np.mean(sizes)) if sizes else None,
        "snapshot_bytes_max": max(sizes) if sizes else None,
        "kill9_survived": survived,
        "kill9_loops": args.crash_loops,
    }
    directory = report.out_dir(args.name)
    report.write(
        directory,
        {"summary": summary, "samples_s": samples, "acknowledged_s": acknowledged},
        {"registration to effective": ([summary], list(summary))},
    )
    return {"summary": summary}
