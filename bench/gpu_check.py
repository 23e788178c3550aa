"""The guard's step against a decode step, on one device (`bash bench/gpu_check.sh`).

What the forget processor adds to every decoding step, at serving shapes: the answer watch
on every row (each row reads its new token; rows one token from a name get bans), the
flagged rows' plans (automaton bans, penalty, forced refusals), and the fused kernel over
the batch's logits. It is timed against one decode step of an 8B-shaped Llama (random
weights: time does not depend on their values) at the same batch size, as a ratio.

Runs without vLLM, tokenizers or network: the vocabulary and the targets' names are
synthetic, of realistic shapes (word pieces with and without a leading space; two-word
names). `--dry-run` runs tiny shapes on the CPU in seconds (the test suite does).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from logits_processors.automaton import TokenAutomaton
from logits_processors.rows import RowState, penalty_csr, restrict_rows
from logits_processors.snapshot import Plan
from logits_processors.vocab import VocabIndex
from logits_processors.watch import Watch, WatchRow, watch_patterns
from logits_processors.watch_automaton import FoldedAutomaton

LLAMA_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batches", default="64,256")
    p.add_argument("--targets", default="1000,10000")
    p.add_argument("--flagged", default="0.5,1.0", help="shares of rows flagged")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    p.add_argument("--out", default="bench/results/gpu-check")


def syllables(rng: random.Random, count: int) -> str:
    parts = ["ka", "lo", "mi", "ren", "ta", "vor", "el", "an", "sha", "dor", "bri", "qu"]
    return "".join(rng.choice(parts) for _ in range(count))


def vocabulary(size: int, rng: random.Random) -> list[bytes]:
    """Word pieces as a BPE vocabulary holds them: with a leading space, inside a word,
    punctuation; the first ids are special (no text)."""
    pieces = [b""] * 3
    while len(pieces) < size:
        word = syllables(rng, rng.randint(1, 3))
        kind = rng.random()
        text = " " + word.title() if kind < 0.3 else " " + word if kind < 0.6 else word
        pieces.append((text if rng.random() > 0.05 else rng.choice([".", ",", "\n"])).encode())
    return pieces


def names(count: int, rng: random.Random) -> list[str]:
    return [f"{syllables(rng, 2).title()} {syllables(rng, 3).title()}" for _ in range(count)]


def guard_step_ms(
    batch: int, targets: int, flagged: float, vocab_size: int, device: torch.device, steps: int
) -> dict[str, float]:
    """Median ms of one step of the forget processor over a batch, every row watched."""
    rng = random.Random(batch * 31 + targets)
    pieces = vocabulary(vocab_size, rng)
    built = time.perf_counter()
    patterns = [p for n in names(targets, rng) for p in watch_patterns([n], True)]
    watch = Watch(FoldedAutomaton(patterns), VocabIndex(pieces), (5, 6, 7, 2))
    build_s = time.perf_counter() - built
    outputs = [[] for _ in range(batch)]
    rows = {
        i: WatchRow(outputs[i], [rng.randrange(3, vocab_size) for _ in range(16)])
        for i in range(batch)
    }
    for row in rows.values():
        watch.reread(row)
    n_flagged = int(batch * flagged)
    plan = Plan(
        TokenAutomaton([[rng.randrange(3, vocab_size) for _ in range(3)] for _ in range(200)]),
        np.sort(np.asarray(rng.sample(range(3, vocab_size), 256), dtype=np.int64)),
        np.full(256, 2.0, dtype=np.float32),
        (5, 6, 7, 2),
    )
    states = [RowState(plan, "restrict", outputs[i]) for i in range(n_flagged)]
    penalty = penalty_csr(states, device)
    logits = torch.randn(batch, vocab_size, device=device, dtype=_dtype(device))
    times = []
    for _ in range(steps):
        for out in outputs:
            out.append(rng.randrange(3, vocab_size))
        _sync(device)
        start = time.perf_counter()
        acts = watch.act(logits, rows, set())
        restrict_rows(logits, list(range(n_flagged)), states, penalty, acts)
        _sync(device)
        times.append(1000 * (time.perf_counter() - start))
    return {"guard_step_ms": statistics.median(times), "watch_build_s": build_s}


def decode_step_ms(batch: int, context: int, shape: dict, device: torch.device, steps: int):
    """Median ms of one decode step of a Llama of `shape` (random weights) with `context`
    tokens already in its cache."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.cache_utils import DynamicCache

    config = LlamaConfig(**shape, max_position_embeddings=context + 64)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(_dtype(device)).eval()
    heads, dim = shape["num_key_value_heads"], shape["hidden_size"] // shape["num_attention_heads"]
    cache = DynamicCache()
    for layer in range(shape["num_hidden_layers"]):
        k = torch.randn(batch, heads, context, dim, device=device, dtype=_dtype(device))
        cache.update(k, torch.randn_like(k), layer)
    tokens = torch.randint(0, shape["vocab_size"], (batch, 1), device=device)
    position = torch.full((batch, 1), context, device=device)
    times = []
    with torch.inference_mode():
        for _ in range(steps):
            _sync(device)
            start = time.perf_counter()
            model(input_ids=tokens, position_ids=position, past_key_values=cache, use_cache=True)
            _sync(device)
            times.append(1000 * (time.perf_counter() - start))
            cache.crop(context)
    del model, cache
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return statistics.median(times)


def fitting_context(batch: int, wanted: int, shape: dict, device: torch.device) -> int:
    """The longest context up to `wanted` whose KV cache fits beside the weights."""
    if device.type != "cuda":
        return wanted
    free = torch.cuda.mem_get_info()[0]
    weights = 16e9 if shape is LLAMA_8B else 0
    per_token = 2 * shape["num_hidden_layers"] * shape["num_key_value_heads"] * 128 * 2 * batch
    room = int((free * 0.85 - weights) / per_token)
    return max(128, min(wanted, room // 128 * 128))


def _dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    shape = TINY if args.dry_run else LLAMA_8B
    batches = [2, 4] if args.dry_run else [int(b) for b in args.batches.split(",")]
    counts = [10, 50] if args.dry_run else [int(t) for t in args.targets.split(",")]
    shares = [float(f) for f in args.flagged.split(",")]
    steps = 3 if args.dry_run else args.steps
    rows = []
    for batch in batches:
        context = 64 if args.dry_run else fitting_context(batch, args.context, shape, device)
        decode = decode_step_ms(batch, context, shape, device, steps)
        for targets in counts:
            for share in shares:
                guard = guard_step_ms(batch, targets, share, shape["vocab_size"], device, steps)
                rows.append(
                    {"batch": batch, "context": context, "targets": targets, "flagged": share}
                    | guard
                    | {"decode_step_ms": decode, "ratio": guard["guard_step_ms"] / decode}
                )
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor()
    result = {
        "device": name or platform.machine(),
        "torch": torch.__version__,
        "dtype": str(_dtype(device)),
        "model": "Llama-3-8B shape, random weights" if not args.dry_run else "tiny",
        "rows": rows,
    }
    if not args.dry_run:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__)
    add_args(parser)
    result = run(parser.parse_args(argv))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
