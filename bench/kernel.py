"""`guard-bench kernel`: the fused forget kernel against its torch twin, per batch size.

One call restricts a whole batch of logits: half the rows flagged, a third of those forced
(refusal tokens), the rest with a semantic penalty over `--penalty` tokens and `--bans`
banned tokens. On CUDA both the Triton kernel and the twin are timed (CUDA events through
`triton.testing.do_bench`) and their outputs compared bit for bit; on CPU only the twin runs.
`step_ms` times the processor's whole step around the kernel (`logits_processors.rows`:
advance each flagged row's automaton, gather its forced token and bans, move them to the
device, launch), the cost a flagged batch adds to a decoding step.
Runs without vLLM (`python -m bench.kernel`), so it also runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import report
from kernels.forget_mask import forget_mask_torch, forget_mask_triton, triton
from logits_processors.automaton import TokenAutomaton
from logits_processors.rows import RowState, penalty_csr, restrict_rows
from logits_processors.snapshot import Plan

VOCABS = {"SmolLM2-135M": 49152, "Llama-3-8B": 128256}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batches", default="1,8,32,128,256")
    p.add_argument("--penalty", type=int, default=256, help="penalised tokens per flagged row")
    p.add_argument("--bans", type=int, default=64, help="banned tokens per flagged row")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--name", default="kernel")
    p.add_argument("--out", default=None, help="results folder (default: bench/results)")


def case(batch: int, vocab: int, penalty: int, bans: int, dtype, device) -> tuple:
    g = torch.Generator().manual_seed(batch * 7 + vocab)
    logits = torch.randn(batch, vocab, generator=g).to(dtype)
    rows = torch.arange(0, batch, 2)
    n = rows.numel()
    forced = torch.full((n,), -1, dtype=torch.int64)
    forced[::3] = torch.randint(0, vocab, (len(range(0, n, 3)),), generator=g)
    pen_ids = torch.cat([torch.randperm(vocab, generator=g)[:penalty] for _ in range(n)])
    ban_ids = torch.randint(0, vocab, (n * bans,), generator=g)
    offsets = [torch.arange(0, n + 1, dtype=torch.int64) * k for k in (penalty, bans)]
    args = (
        rows,
        forced,
        torch.rand(n, generator=g) * 4,
        pen_ids,
        torch.rand(n * penalty, generator=g),
        offsets[0],
        ban_ids,
        offsets[1],
    )
    return logits.to(device), tuple(a.to(device) for a in args)


def step_case(batch: int, vocab: int, penalty: int, bans: int, device) -> tuple:
    """The processor's inputs for the same batch shape: row states with real plans."""
    rng = np.random.default_rng(batch * 7 + vocab)
    plan = Plan(
        TokenAutomaton([(int(t),) for t in rng.choice(vocab, bans, replace=False)]),
        rng.choice(vocab, penalty, replace=False).astype(np.int64),
        rng.random(penalty, dtype=np.float32),
        tuple(int(t) for t in rng.integers(0, vocab, 8)),
    )
    rows = list(range(0, batch, 2))
    actions = ["refuse" if i % 3 == 0 else "restrict" for i in range(len(rows))]
    states = [RowState(plan, action, [1, 2, 3]) for action in actions]
    return rows, states, penalty_csr(states, device)


def timed(fn, logits: torch.Tensor, args: tuple, device: torch.device) -> float:
    """Median milliseconds of one call on a fresh copy of the logits (copy not counted)."""
    work = logits.clone()
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(do_bench(lambda: fn(work, *args), warmup=25, rep=100))
    for _ in range(3):  # warm-up: the first calls allocate
        fn(work, *args)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        fn(work, *args)
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    gpu = device.type == "cuda" and triton is not None
    rows = []
    for model, vocab in VOCABS.items():
        for batch in (int(b) for b in args.batches.split(",")):
            logits, extra = case(batch, vocab, args.penalty, args.bans, dtype, device)
            row: dict[str, Any] = {"vocab": f"{model} ({vocab})", "batch": batch}
            row["twin_ms"] = timed(forget_mask_torch, logits, extra, device)
            step = step_case(batch, vocab, args.penalty, args.bans, device)
            row["step_ms"] = timed(restrict_rows, logits, step, device)
            if gpu:
                row["triton_ms"] = timed(forget_mask_triton, logits, extra, device)
                row["speedup"] = row["twin_ms"] / row["triton_ms"]
                a = forget_mask_torch(logits.clone(), *extra)
                b = forget_mask_triton(logits.clone(), *extra)
                row["bit_identical"] = bool(torch.equal(a, b))
            rows.append(row)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    results = {"device": name, "dtype": args.dtype, "rows": rows}
    gpu_columns = ["triton_ms", "speedup", "bit_identical"] * gpu
    columns = ["vocab", "batch", "twin_ms", "step_ms", *gpu_columns]
    root = Path(args.out) if args.out else None
    out = report.out_dir(f"{args.name}-{device.type}", root)
    report.write(out, results, {f"forget_mask on {name}, {args.dtype}": (rows, columns)})
    return {"summary": rows}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.kernel", description=__doc__)
    add_args(parser)
    print(run(parser.parse_args())["summary"])


if __name__ == "__main__":
    main()
