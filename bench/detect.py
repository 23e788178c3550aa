"""`guard-bench detect`: detection latency p50/p99 against the number of registered targets."""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from bench import report
from bench.detect_quality import detection_quality
from bench.suite import forget_probes, load_suite
from classifiers.encoder import BACKENDS as ENCODER_BACKENDS

WORDS = [
    w
    for group in (
        ("amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "harbor"),
        ("indigo", "jasper", "kelp", "lagoon", "meadow", "nectar", "obsidian", "prairie"),
        ("quartz", "reef", "saffron", "tundra", "umber", "valley", "willow", "xenon"),
        ("yarrow", "zephyr", "falcon", "badger", "otter", "heron", "lynx", "marten"),
        ("osprey", "puffin", "raven", "stoat", "viper", "walrus"),
    )
    for w in group
]


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--targets", default="1,100,1000,10000")
    # p99 of 200 samples rests on its 2 or 3 largest; 1,000 give it ten.
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--replace", type=int, default=1000, help="new versions registered at the end")
    p.add_argument("--suite", default="default")
    p.add_argument("--embedding-model", default=None)
    p.add_argument("--encoder-backend", choices=ENCODER_BACKENDS, default="auto")
    p.add_argument("--name", default="detect")


def synthetic_target(i: int, rng: random.Random) -> dict[str, Any]:
    name = f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {i}"
    return {
        "name": name,
        "aliases": [f"{rng.choice(WORDS)}{i}"],
        "documents": [f"{name} is a fictional entity number {i} made for benchmarking."],
    }


def _percentiles(samples: list[float]) -> tuple[float, float]:
    arr = np.array(samples) * 1000
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def encoder_latency(encoder, conversations: list[list[str]]) -> list[dict[str, Any]]:
    """The encoder's share of a request: each turn and clause encoded as a text of its own
    (torch, and ONNX when loaded), or pooled from the joined text's pass (what `screen` does)."""
    from classifiers.detector import screen_units

    def alone(encode):
        return lambda text, spans: encode([text, *(text[a:b] for a, b in spans)])

    def pooled(text, spans):
        return encoder.encode_spans([text], [spans])

    ways = {"torch, turns and clauses alone": alone(encoder.encode_torch)}
    if encoder.backend != "torch":
        ways[f"{encoder.backend}, turns and clauses alone"] = alone(encoder.encode)
    ways[f"{encoder.backend}, turns and clauses pooled"] = pooled
    rows = []
    for way, encode in ways.items():
        encode("warm-up", [])
        samples = []
        for conversation in conversations:
            units = screen_units(conversation)
            t0 = time.perf_counter()
            encode(units.text, units.spans)
            samples.append(time.perf_counter() - t0)
        p50, p99 = _percentiles(samples)
        rows.append({"encoding": way, "p50_ms": p50, "p99_ms": p99})
    return rows


def _register(detector, todo: list[tuple[str, int, dict[str, Any]]], label: str) -> float:
    """Register in batches of 256; ms per target."""
    start = time.perf_counter()
    for k in tqdm(range(0, len(todo), 256), desc=label, leave=False):
        detector.add_targets(todo[k : k + 256])
    return (time.perf_counter() - start) / max(len(todo), 1) * 1000


def _row(detector, encoder, queries: list[list[str]], add_ms: float, replaced: int) -> dict:
    """Latency per conversation now, and a flat vs HNSW search over the same vectors."""
    from classifiers.semantic import SemanticIndex

    detector.screen(["warm-up"])
    samples = []
    for q in queries:
        t0 = time.perf_counter()
        detector.screen(q)
        samples.append(time.perf_counter() - t0)
    p50, p99 = _percentiles(samples)
    vecs = encoder.encode([q[-1] for q in queries[:50]])
    index_rows = {}
    for kind, floor in (("flat", 10**12), ("hnsw", 0)):
        index = SemanticIndex(encoder.dim, hnsw_min_vectors=floor)
        index.add("all", np.vstack(detector.semantic._vectors))
        t0 = time.perf_counter()
        for v in vecs:
            index.search(v[None, :])
        index_rows[f"{kind}_search_ms"] = (time.perf_counter() - t0) / len(vecs) * 1000
    return {
        "targets": len(detector.targets),
        "replaced": replaced,
        "vectors": detector.semantic.size,
        "p50_ms": p50,
        "p99_ms": p99,
        "add_ms_per_target": add_ms,
        "index": detector.semantic.kind,
        **index_rows,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from classifiers.detector import Detector
    from guard_server.models import load_encoder

    encoder = load_encoder(args.embedding_model, args.encoder_backend)
    suite = load_suite(args.suite)
    # Whole conversations, as a server screens them (multi-turn probes with every turn).
    queries = [[m["content"] for m in p.messages] for p in forget_probes(suite)]
    queries += [[r["prompt"]] for r in suite["retain"]]
    rng = random.Random(0)
    queries = [rng.choice(queries) for _ in range(args.queries)]
    detector = Detector(encoder)
    for target in suite["targets"]:
        detector.add_target(target["name"], 1, target)
    quality = detection_quality(detector, suite, {t["name"]: t["name"] for t in suite["targets"]})
    rows, added = [], len(suite["targets"])
    for n in map(int, args.targets.split(",")):
        todo = [(f"syn{i}", 1, synthetic_target(i, rng)) for i in range(added, max(n, added))]
        add_ms = _register(detector, todo, f"targets to {n}")
        added = max(n, added)
        rows.append(_row(detector, encoder, queries, add_ms, replaced=0))
    if args.replace:  # new versions leave tombstones behind; searches must not slow down
        first = len(suite["targets"])
        ids = range(first, min(added, first + args.replace))
        add_ms = _register(detector, [(f"syn{i}", 2, synthetic_target(i, rng)) for i in ids], "new")
        rows.append(_row(detector, encoder, queries, add_ms, replaced=len(ids)))
    grown = [r for r in rows if not r["replaced"]]
    encoders = encoder_latency(encoder, queries)
    directory = report.out_dir(args.name)
    result = {
        "rows": rows,
        "quality": quality,
        "encoders": encoders,
        "summary": {
            **grown[-1],
            "encoder": encoder.backend,
            "recall": quality["recall"],
            "fpr": quality["fpr"],
        },
    }
    kinds = [{"kind": k, "recall": v} for k, v in quality["recall_by_kind"].items()]
    kinds += [
        {"kind": f"retain:{k}", "false_positive_rate": v} for k, v in quality["fpr_by_kind"].items()
    ]
    report.write(
        directory,
        result,
        {
            "detection latency": (rows, list(rows[0])),
            "encoder alone, per request (the conversation's turns and clauses)": (
                encoders,
                ["encoding", "p50_ms", "p99_ms"],
            ),
            f"detection quality (recall {quality['recall']:.3f}, FPR {quality['fpr']:.3f})": (
                kinds,
                ["kind", "recall", "false_positive_rate"],
            ),
        },
    )
    xs = [r["targets"] for r in grown]
    report.line_plot(
        directory / "latency_vs_targets.png",
        {"p50": (xs, [r["p50_ms"] for r in grown]), "p99": (xs, [r["p99_ms"] for r in grown])},
        "detection latency per request",
        "registered targets",
        "ms",
        logx=True,
    )
    return result
