"""`guard-bench load`: unflagged chats under concurrent load, plain vLLM vs the guard server.

Both servers run the same engine flags, one after the other, in alternating rounds. The guard
server has N targets registered first (RWKU people: name and intro only). Each server takes two
phases of distinct prompts: a burst (every client starts at once and sends its next chat when
its last is answered) and Poisson arrivals at a share of plain vLLM's burst rate, at most one
chat per client in flight. Reported per phase: requests/s and latency percentiles of each
server, their ratios, CPU time per request of each process, and the guard's screening time
per request under the same load (its Prometheus histogram: from entering the detection queue
to holding a verdict); for the burst also after its first wave.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import report
from bench.overrefusal import everyday, xstest
from bench.rwku_data import DEFAULT_ROOT, read_json
from bench.serverproc import ADMIN_KEY, ServerProcess, start_server, wait_healthy, wait_learned

MODEL = "SmolLM2-135M-Instruct"
REPO = Path(__file__).resolve().parents[1]


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, default=512)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=1)
    p.add_argument(
        "--engine-nice",
        type=int,
        default=None,
        help="the guard server's --engine-nice (default: the server's own default)",
    )
    p.add_argument(
        "--stream", action="store_true", help="stream each answer (what the held-back names cost)"
    )
    p.add_argument("--targets", type=int, default=50, help="RWKU targets registered first")
    p.add_argument("--rwku", default=str(DEFAULT_ROOT))
    p.add_argument("--port", type=int, default=8130)
    p.add_argument("--name", default="load")
    p.add_argument("--rounds", type=int, default=3, help="plain/guard pairs, alternated")
    p.add_argument(
        "--load",
        type=float,
        default=0.6,
        help="the Poisson phase's arrival rate, as a share of plain vLLM's burst rate that round",
    )


def rwku_targets(root: Path, n: int) -> list[dict[str, Any]]:
    folders = sorted(
        (d for d in root.iterdir() if d.is_dir() and d.name[0].isdigit()),
        key=lambda d: int(d.name.split("_")[0]),
    )
    out = []
    for folder in folders[:n]:
        (intro,) = read_json(folder / "intro.json")
        out.append({"name": intro["target"], "documents": [intro["intro"]]})
    return out


# Each measured request sends a prompt no other request of the run sends (the guard keeps the
# vectors of texts it has screened: repeats would measure that cache, not screening). The
# pool's prompts, then again behind each of these openings in turn.
OPENINGS = ("", "Quick question: ", "Please answer briefly. ", "I was wondering: ")


def distinct_prompts(start: int, n: int) -> list[str]:
    """Prompts `start` .. `start + n` of the run: XSTest's and the everyday sets', each
    opening in turn; none repeats while `start + n` is at most 4 pools (~2,200)."""
    pool = list(dict.fromkeys(item["prompt"] for item in xstest() + everyday()))
    return [
        OPENINGS[(k // len(pool)) % len(OPENINGS)] + pool[k % len(pool)]
        for k in range(start, start + n)
    ]


async def _load(
    base: str,
    prompts: list[str],
    clients: int,
    max_tokens: int,
    rate: float | None = None,
    scrape: bool = False,
    stream: bool = False,
):
    """One chat per prompt, from at most `clients` clients at once. Without `rate`, a burst:
    every client starts at once and sends its next chat when its last is answered. With a
    `rate` (requests/s), chats arrive as a Poisson process (vLLM's `benchmark_serving`
    arrivals) and wait for a free client. Latency runs from a chat's send to its answer.
    With `scrape`, the server's /metrics text is read when the first wave (as many requests
    as clients) has been answered: what follows it is the steady state. With `stream`, each
    answer is streamed: latency runs to its last chunk, and the first chunk's time and the
    answers' tokens a second are reported too."""
    latencies: list[float] = []
    firsts: list[float] = []
    tokens = 0
    flagged = 0
    wave: list[str] = []
    slots = asyncio.Semaphore(clients)

    async def ask(http: httpx.AsyncClient, prompt: str) -> None:
        nonlocal flagged
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        async with slots:
            start = time.perf_counter()
            if stream:
                r, first = await streamed(http, body, start)
                firsts.append(first)
            else:
                r = await http.post("/v1/chat/completions", json=body)
            latencies.append(time.perf_counter() - start)
        if scrape and len(latencies) == clients:
            wave.append((await http.get("/metrics")).text)
        r.raise_for_status()
        flagged += r.headers.get("x-guard-action", "none") != "none"

    async def streamed(
        http: httpx.AsyncClient, body: dict, start: float
    ) -> tuple[httpx.Response, float]:
        """The response, and when its first chunk with a choice came."""
        nonlocal tokens
        body = body | {"stream": True, "stream_options": {"include_usage": True}}
        first = 0.0
        async with http.stream("POST", "/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                if chunk.get("usage"):
                    tokens += chunk["usage"]["completion_tokens"]
                if not first and chunk.get("choices"):
                    first = time.perf_counter() - start
        return r, first

    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as http:
        start = time.perf_counter()
        if rate is None:
            queue = list(reversed(prompts))

            async def client() -> None:
                while queue:
                    await ask(http, queue.pop())

            await asyncio.gather(*(client() for _ in range(clients)))
        else:
            gaps = np.random.default_rng(0).exponential(1 / rate, len(prompts))
            tasks = []
            for prompt, gap in zip(prompts, gaps, strict=True):
                await asyncio.sleep(gap)
                tasks.append(asyncio.create_task(ask(http, prompt)))
            await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(prompts),
        "clients": clients,
        "req_per_s": len(prompts) / wall,
        "latency_p50_ms": float(np.percentile(ms, 50)),
        "latency_p99_ms": float(np.percentile(ms, 99)),
        "flagged": flagged,
        **(streamed_row(firsts, tokens, wall) if stream else {}),
    }, (wave[0] if wave else None)


def streamed_row(firsts: list[float], tokens: int, wall: float) -> dict[str, float]:
    ms = np.asarray(firsts) * 1000
    return {
        "first_chunk_p50_ms": float(np.percentile(ms, 50)),
        "first_chunk_p99_ms": float(np.percentile(ms, 99)),
        "tokens_per_s": tokens / wall,
    }


def _buckets(metrics_text: str) -> list[tuple[float, float]]:
    pattern = r'^guard_detection_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$'
    return [(float(le), float(n)) for le, n in re.findall(pattern, metrics_text, re.M)]


def _total(metrics_text: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)$", metrics_text, re.M)
    return float(found.group(1)) if found else 0.0


def batch_means(before: str, after: str) -> dict[str, float]:
    """Detection batches between two scrapes: how many, their mean size and screening time."""
    names = {key: f"guard_screen_batch_{key}" for key in ("size_count", "size_sum", "seconds_sum")}
    delta = {key: _total(after, name) - _total(before, name) for key, name in names.items()}
    batches = delta["size_count"]
    return {
        "screen_batches": batches,
        "screen_batch_mean_size": delta["size_sum"] / batches if batches else 0.0,
        "screen_batch_mean_ms": 1000 * delta["seconds_sum"] / batches if batches else 0.0,
    }


def detection_quantiles(before: str, after: str, qs=(0.5, 0.99)) -> dict[str, float]:
    """Quantiles (ms) of the guard's detection histogram between two scrapes, interpolated
    linearly inside a bucket (the open last bucket counts as twice the one before)."""
    old = dict(_buckets(before))
    buckets = [(le, n - old.get(le, 0.0)) for le, n in _buckets(after)]
    total = buckets[-1][1]
    out: dict[str, float] = {"samples": total}
    for q in qs:
        rank, lower, below = q * total, 0.0, 0.0
        for le, count in buckets:
            if count >= rank:
                upper = le if le != float("inf") else 2 * lower
                out[f"p{round(q * 100)}_ms"] = 1000 * (
                    lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
                )
                break
            lower, below = le, count
    return out


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time (user + system) so far of the server's own process, of its detection process
    and of its other descendants (the engine core and its workers)."""
    import psutil

    from guard_server.detection import is_detection_process

    root = psutil.Process(pid)
    out: dict[str, float] = {"api": sum(root.cpu_times()[:2]), "detection": 0.0, "engine": 0.0}
    for child in root.children(recursive=True):
        try:
            name = "detection" if is_detection_process(child) else "engine"
            out[name] += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return out


def _plain_vllm(model_dir: str, port: int, log: Path) -> ServerProcess:
    from guard_server.cli import engine_defaults

    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir]
    cmd += ["--served-model-name", MODEL, "--port", str(port)]
    # The guard server's own engine defaults, so both engines compute alike.
    for key, value in engine_defaults().items():
        flag = "--" + key.replace("_", "-")
        cmd += [flag] if value is True else [flag, str(value)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return wait_healthy(ServerProcess(proc, port, log, Path()))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from guard_server.models import convert_default_model

    model_dir = str(convert_default_model())
    n = args.requests
    phases = {"burst": distinct_prompts(0, n), "poisson": distinct_prompts(n, n)}
    warm_up = distinct_prompts(2 * n, 64)  # prompts no phase sends: none is encoded before
    root = Path(tempfile.mkdtemp(prefix="guard-load-"))

    def measure(server: ServerProcess, name: str, round_: int, rate: float | None) -> list:
        """Each phase after a warm-up: its row, and the server's /metrics text at its start,
        after its first wave and at its end. `rate` None: the burst's rate sets the Poisson
        phase's (plain vLLM's run, which comes first in a round)."""
        asyncio.run(_load(server.base_url, warm_up, 16, 1))
        out = []
        for phase, prompts in phases.items():
            start = httpx.get(f"{server.base_url}/metrics").text
            before = cpu_seconds(server.proc.pid)
            poisson = rate if phase == "poisson" else None
            row, wave = asyncio.run(
                _load(
                    server.base_url,
                    prompts,
                    args.clients,
                    args.max_tokens,
                    poisson,
                    True,
                    args.stream,
                )
            )
            rate = rate or args.load * row["req_per_s"]
            after = cpu_seconds(server.proc.pid)
            end = httpx.get(f"{server.base_url}/metrics").text
            for part in after:  # where the cores went: CPU ms per request, per process
                row[f"{part}_cpu_ms"] = 1000 * (after[part] - before[part]) / len(prompts)
            row = {"round": round_, "phase": phase, "server": name, "rate": poisson, **row}
            out.append((row, [start, wave if phase == "burst" else None, end]))
        return out

    rows, rounds, oversized = [], [], []
    # Plain and guarded runs alternate, each on a fresh server, so that a slow spell of the
    # machine lands on both sides; the summary is the median over rounds.
    for round_ in range(1, args.rounds + 1):
        server = _plain_vllm(model_dir, args.port, root / "vllm.log")
        try:
            plain = measure(server, "vllm", round_, None)
        finally:
            server.stop()
        rate = plain[-1][0]["rate"]
        nice = () if args.engine_nice is None else ("--engine-nice", str(args.engine_nice))
        server = start_server(args.port, root / f"guard{round_}.db", root / "guard.log", *nice)
        try:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            for spec in rwku_targets(Path(args.rwku), args.targets):
                r = httpx.post(
                    f"{server.base_url}/v1/forget-targets", json=spec, headers=headers, timeout=300
                )
                r.raise_for_status()
            # The server asks the model about each new target in the background: measured
            # once that is done, it is the steady state a user's requests meet.
            wait_learned(server.base_url)
            guarded = measure(server, f"guard, {args.targets} targets", round_, rate)
            oversized += [r | {"round": round_} for r in _oversized(server.base_url)]
        finally:
            server.stop()
        for (p_row, _), (g_row, scrapes) in zip(plain, guarded, strict=True):
            rows += [p_row, g_row]
            ratios = compare(p_row, g_row, *scrapes)
            rounds.append({"round": round_, "phase": g_row["phase"]} | ratios)
    summary = [
        {"phase": phase}
        | {
            key: float(np.median([r[key] for r in rounds if r["phase"] == phase]))
            for key in rounds[0]
            if key not in ("round", "phase")
        }
        | {"rounds": args.rounds}
        for phase in phases
    ]
    unflagged_flagged = sum(r["flagged"] for r in rows if r["server"] != "vllm")
    report.write(
        report.out_dir(args.name),
        {
            "rows": rows,
            "rounds": rounds,
            "summary": summary,
            "unflagged_flagged": unflagged_flagged,
            "oversized": oversized,
        },
        {
            "Unflagged chats under load": (rows, ["round", "phase", "server", *ROW_COLUMNS]),
            "An oversized request, and a small one sent beside it": (
                oversized,
                [
                    "round",
                    "body_bytes",
                    "status",
                    "refused_ms",
                    "small_alone_ms",
                    "small_beside_ms",
                ],
            ),
            "Guard vs plain vLLM, per round": (rounds, list(rounds[0])),
            "Guard vs plain vLLM, median over rounds": (summary, list(summary[0])),
        },
    )
    return {"summary": summary, "unflagged_flagged": unflagged_flagged}


def _oversized(base: str) -> list[dict[str, Any]]:
    """How fast a 256 KB and a 10 MB chat are refused, and whether a small chat sent at the
    same moment waits for them (its latency beside one, against alone; best of 3 each). Each
    body is encoded before the clock starts: the client's own JSON encoding of 10 MB took
    ~50 ms, which is no time the server spends."""

    def chat(content: str) -> bytes:
        body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 1}
        return json.dumps(body).encode()

    async def timed(http: httpx.AsyncClient, body: bytes) -> tuple[int, float]:
        start = time.perf_counter()
        r = await http.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        return r.status_code, 1000 * (time.perf_counter() - start)

    async def main() -> list[dict[str, Any]]:
        out = []
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            small = chat("Hi")
            alone = min([(await timed(http, small))[1] for _ in range(3)])
            for size in (256 * 1024, 10 * 1024 * 1024):
                big = chat(" ".join(f"Sentence {i} says little." for i in range(size // 24)))
                runs = [
                    await asyncio.gather(timed(http, big), timed(http, small)) for _ in range(3)
                ]
                out.append(
                    {
                        "body_bytes": len(big),
                        "status": runs[0][0][0],
                        "refused_ms": min(r[0][1] for r in runs),
                        "small_alone_ms": alone,
                        "small_beside_ms": min(r[1][1] for r in runs),
                    }
                )
        return out

    return asyncio.run(main())


SMALL_COLUMNS = ["small_alone_ms", "small_beside_ms"]
ROW_COLUMNS = [
    "rate",
    "requests",
    "clients",
    "req_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "api_cpu_ms",
    "detection_cpu_ms",
    "engine_cpu_ms",
]


def compare(
    plain: dict[str, Any], guarded: dict[str, Any], start: str, wave: str | None, end: str
) -> dict[str, float]:
    """One round's ratios (plain over guard for latency: above 1 is the guard faster) and the
    guard's screening time over the whole run and after its first wave."""
    detection = detection_quantiles(start, end)
    steady = detection_quantiles(wave or start, end)
    return {
        "req_per_s_ratio": guarded["req_per_s"] / plain["req_per_s"],
        "latency_p50_ratio": plain["latency_p50_ms"] / guarded["latency_p50_ms"],
        "latency_p99_ratio": plain["latency_p99_ms"] / guarded["latency_p99_ms"],
        **(
            {
                "tokens_per_s_ratio": guarded["tokens_per_s"] / plain["tokens_per_s"],
                "first_chunk_p50_ratio": plain["first_chunk_p50_ms"]
                / guarded["first_chunk_p50_ms"],
            }
            if "tokens_per_s" in plain
            else {}
        ),
        "detection_p50_ms": detection["p50_ms"],
        "detection_p99_ms": detection["p99_ms"],
        "detection_steady_p50_ms": steady["p50_ms"],
        "detection_steady_p99_ms": steady["p99_ms"],
        **batch_means(start, end),
    }
