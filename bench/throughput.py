"""`guard-bench throughput`: tokens/s of one engine, unguarded vs guarded vs baselines, one run."""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import report

SYSTEM_REFUSAL = "Never discuss {topic}. If asked about it, reply: I can't share that."
PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe the history of bread.",
    "Give advice for a first job interview.",
    "What makes a good cup of tea?",
    "Explain the rules of chess briefly.",
    "Describe a walk through a forest in autumn.",
    "How do rivers form?",
]

# Guarded over unguarded tokens/s the guard must keep (the project's throughput goal).
GOAL_RATIO = 0.97


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="HF model folder (default: the converted default)")
    p.add_argument("--batch-sizes", default="1,4,16,32,64")
    p.add_argument("--phrases", default="500", help="forbidden phrase counts for the main table")
    p.add_argument("--sweep-phrases", default="10,500,5000", help="phrase counts for the sweep")
    p.add_argument("--sweep-batch", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2, help="best of N per cell")
    p.add_argument(
        "--watch-targets",
        default="1000,10000",
        help="targets whose names the answer watch follows in every request, per run",
    )
    p.add_argument("--watch-batches", default="8,32")
    p.add_argument("--name", default="throughput")


def synthetic_phrases(tokenizer, n: int, seed: int = 0) -> list[str]:
    """n two-word phrases of real vocabulary words (whole-word tokens)."""
    rng = random.Random(seed)
    words = sorted(
        {
            t.strip()
            for t in (tokenizer.decode([i]) for i in range(tokenizer.vocab_size))
            if t.startswith(" ") and t.strip().isalpha() and len(t.strip()) >= 4
        }
    )
    return [f"{rng.choice(words)} {rng.choice(words)}" for _ in range(n)]


def _register(store, compiler, target_id: str, phrases: list[str]) -> None:
    from guard_server.store import TargetRow

    spec = {"name": phrases[0], "aliases": phrases[1:], "policy": "restrict"}
    store.insert(TargetRow(target_id, target_id, 1, "active", spec))
    store.put_compiled(target_id, 1, compiler.compile(target_id, 1, spec).to_bytes())


def _measure(llm, batch: int, params_for, chats, repeats: int) -> float:
    """Best tokens/s over `repeats` runs of one batch of `batch` requests."""
    return max(_samples(llm, batch, params_for, chats, repeats))


def _samples(llm, batch: int, params_for, chats, repeats: int) -> list[float]:
    """Tokens/s of each of `repeats` runs of one batch of `batch` requests."""
    out = []
    for _ in range(repeats):
        convs = [chats[i % len(chats)] for i in range(batch)]
        params = [params_for(i) for i in range(batch)]
        start = time.perf_counter()
        outs = llm.chat(convs, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        out.append(tokens / elapsed)
    return out


def _ratio(top: list[float], bottom: list[float]) -> tuple[float, float, float]:
    """best/best, and the lowest and highest ratio any two runs give: the noise band."""
    return max(top) / max(bottom), min(top) / max(bottom), max(top) / min(bottom)


def _watch_rows(llm, db: Path, args, base, chats) -> list[dict[str, Any]]:
    """Unflagged requests with no name watched, then with every request's answer followed
    against N targets' names (census-named people: none of them is in these answers), on
    the same engine, alternated per batch size."""
    from vllm import SamplingParams

    from bench.overrefusal import census_people
    from guard_server.store import SQLiteStore, TargetRow

    store = SQLiteStore(db)
    plain = SamplingParams(**base)
    rows = []
    registered = 0
    for count in map(int, args.watch_targets.split(",")):
        for i, person in enumerate(census_people(count)[registered:], start=registered):
            store.put_watch(TargetRow(f"w{i}", person["name"], 1, "active", {}), [person["name"]])
        registered = count
        for batch in map(int, args.watch_batches.split(",")):

            def measure(batch: int = batch) -> float:
                return _measure(llm, batch, lambda i: plain, chats, args.repeats)

            measure()  # the first request after a change rebuilds the watch: warm-up
            # Alternated, each side twice: a slow spell of the machine lands on both.
            on, off = [], []
            for _ in range(2):
                on.append(measure())
                with _watch_aside(db):
                    off.append(measure())
            answers = [
                o.outputs[0].token_ids
                for o in llm.chat(
                    [chats[i % len(chats)] for i in range(batch)], plain, use_tqdm=False
                )
            ]
            step_us = _watch_step_us(llm, census_people(count), answers)
            rows.append(
                {
                    "targets": count,
                    "batch": batch,
                    "unwatched_tok_s": max(off),
                    "watched_tok_s": max(on),
                    "watched_ratio": max(on) / max(off),
                    "watch_us_per_step": step_us,
                    "watch_percent_of_step": 100 * step_us * 1e-6 / (batch / max(off)),
                }
            )
    return rows


def _watch_step_us(llm, people: list[dict[str, Any]], answers: list[list[int]]) -> float:
    """The answer watch's own time per decoding step of a batch, µs: the batch's answers
    replayed token by token through a watch over `people`'s names, as the engine's
    processor runs it (its first pass warms the caches, as serving does)."""
    import torch

    from logits_processors.reader import WatchedTarget
    from logits_processors.watch import Watch, WatchRow
    from logits_processors.watch_automaton import FoldedAutomaton
    from logits_processors.watcher import build_vocabulary, names_of

    vocab, note = build_vocabulary(llm.llm_engine.model_config.tokenizer)
    watched = [WatchedTarget(p["name"], "refuse", (p["name"],)) for p in people]
    patterns, parts = names_of(watched)  # as the engine's worker builds its watch
    watch = Watch(FoldedAutomaton(patterns, contextual=parts), vocab, note, parts=parts)
    logits = torch.zeros(len(answers), len(vocab))
    steps = max(map(len, answers))
    best = float("inf")
    for _ in range(2):
        outputs = [[] for _ in answers]
        rows = {i: WatchRow(outputs[i]) for i in range(len(answers))}
        for row in rows.values():
            watch.reread(row)
        start = time.perf_counter()
        for step in range(steps):
            for out, answer in zip(outputs, answers, strict=True):
                if step < len(answer):
                    out.append(answer[step])
            watch.act(logits, rows, set())
        best = min(best, (time.perf_counter() - start) / steps)
    return 1e6 * best


@contextmanager
def _watch_aside(db: Path):
    """The bench's registry with its watched names moved aside for a while (one transaction
    each way; the engine sees the generation move and stops, then resumes, watching)."""
    conn = sqlite3.connect(db, isolation_level=None)
    bump = "UPDATE meta SET value = value + 1 WHERE key = 'generation'"
    conn.executescript(
        "BEGIN; CREATE TABLE IF NOT EXISTS aside AS SELECT * FROM watch WHERE 0;"
        f" INSERT INTO aside SELECT * FROM watch; DELETE FROM watch; {bump}; COMMIT;"
    )
    try:
        yield
    finally:
        conn.executescript(
            f"BEGIN; INSERT INTO watch SELECT * FROM aside; DELETE FROM aside; {bump}; COMMIT;"
        )
        conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from vllm import LLM, SamplingParams

    from guard_server.cli import PROCESSOR_FQCN, engine_defaults
    from guard_server.compiler import Compiler
    from guard_server.models import convert_default_model
    from guard_server.store import SQLiteStore
    from logits_processors.params import ACTION_KEY, TARGETS_KEY
    from logits_processors.snapshot import SNAPSHOT_DB_ENV

    model = args.model or str(convert_default_model())
    compiler = Compiler.from_model_dir(model)
    counts = sorted({*map(int, args.phrases.split(",")), *map(int, args.sweep_phrases.split(","))})
    phrases = {n: synthetic_phrases(compiler.tokenizer, n, seed=n) for n in counts}
    db = Path(tempfile.mkdtemp()) / "bench.db"
    store = SQLiteStore(db)
    for n in counts:
        _register(store, compiler, f"syn{n}", phrases[n])
    os.environ[SNAPSHOT_DB_ENV] = str(db)
    # vLLM caps bad_words at 128 entries / 1024 tokens by default; lift it for the comparison.
    os.environ["VLLM_MAX_NUM_BAD_WORDS"] = str(4 * max(counts) + 16)
    os.environ["VLLM_MAX_BAD_WORDS_TOTAL_TOKENS"] = str(64 * max(counts) + 1024)
    llm = LLM(model=model, logits_processors=[PROCESSOR_FQCN], seed=0, **engine_defaults())
    base = dict(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True)
    chats = [[{"role": "user", "content": p}] for p in PROMPTS]

    def modes(n: int) -> dict[str, tuple[Any, list]]:
        flagged = SamplingParams(
            **base, extra_args={TARGETS_KEY: [f"syn{n}@1"], ACTION_KEY: "restrict"}
        )
        plain = SamplingParams(**base)
        bad = SamplingParams(**base, bad_words=phrases[n])
        system = [
            [{"role": "system", "content": SYSTEM_REFUSAL.format(topic=phrases[n][0])}, *c]
            for c in chats
        ]
        return {
            "unguarded": (lambda i: plain, chats),
            "guarded_all": (lambda i: flagged, chats),
            "guarded_half": (lambda i: flagged if i % 2 else plain, chats),
            "bad_words": (lambda i: bad, chats),
            "system_prompt": (lambda i: plain, system),
        }

    _measure(llm, 4, lambda i: SamplingParams(**base), chats, 1)  # warm-up
    rows = []
    main_n = int(args.phrases.split(",")[0])
    cells = [(b, main_n) for b in map(int, args.batch_sizes.split(","))]
    cells += [(args.sweep_batch, n) for n in counts if n != main_n]
    for batch, n in tqdm(cells, desc="throughput"):
        wanted = (
            modes(n)
            if n == main_n
            else {
                k: v for k, v in modes(n).items() if k in ("unguarded", "guarded_all", "bad_words")
            }
        )
        runs = {m: _samples(llm, batch, pf, c, args.repeats) for m, (pf, c) in wanted.items()}
        tps = {m: max(v) for m, v in runs.items()}
        row = {"batch": batch, "phrases": n, **{f"{m}_tok_s": v for m, v in tps.items()}}
        for name, mode in (("guarded", "guarded_all"), ("bad_words", "bad_words")):
            best, low, high = _ratio(runs[mode], runs["unguarded"])
            row |= {f"{name}_ratio": best, f"{name}_ratio_low": low, f"{name}_ratio_high": high}
        row["ours_over_bad_words"] = tps["guarded_all"] / tps["bad_words"]
        rows.append(row)
    watch_rows = _watch_rows(llm, db, args, base, chats)
    llm.llm_engine.engine_core.shutdown()
    directory = report.out_dir(args.name)
    result = {"model": model, "rows": rows, "summary": rows[: len(args.batch_sizes.split(","))]}
    result["watch"] = watch_rows
    columns = [
        "batch",
        "phrases",
        "unguarded_tok_s",
        "guarded_all_tok_s",
        "guarded_half_tok_s",
        "bad_words_tok_s",
        "system_prompt_tok_s",
        "guarded_ratio",
        "bad_words_ratio",
        "ours_over_bad_words",
    ]
    watch_columns = ["targets", "batch", "unwatched_tok_s", "watched_tok_s", "watched_ratio"]
    watch_columns += ["watch_us_per_step", "watch_percent_of_step"]
    report.write(
        directory,
        result,
        {
            "tokens/s (same engine, one run)": (rows, columns),
            "the answer watch on every request (unflagged, same engine)": (
                watch_rows,
                watch_columns,
            ),
        },
    )
    plots(directory, result)
    return result


def plots(directory: Path, result: dict[str, Any]) -> None:
    """The ratio plots of a result (also redrawn from a results.json by `guard-bench replot`):
    1.0 = no cost, the goal line, and the band between the lowest and highest ratio of runs."""
    rows = result["rows"]
    main_n = result["summary"][0]["phrases"]
    sweep_batch = next((r["batch"] for r in rows if r["phrases"] != main_n), None)
    refs = {"1.0 (no cost)": 1.0, f"goal {GOAL_RATIO}": GOAL_RATIO}

    def draw(name, selected, x, title, xlabel, logx=False):
        series, spread = {}, {}
        for key, shown in (("guarded", "guarded / unguarded"), ("bad_words", "bad_words")):
            xs = [r[x] for r in selected]
            series[shown] = (xs, [r[f"{key}_ratio"] for r in selected])
            if all(f"{key}_ratio_low" in r for r in selected):
                low = [r[f"{key}_ratio_low"] for r in selected]
                spread[shown] = (low, [r[f"{key}_ratio_high"] for r in selected])
        report.line_plot(
            directory / name,
            series,
            title,
            xlabel,
            "tokens/s over unguarded",
            logx=logx,
            spread=spread,
            references=refs,
        )

    main = sorted((r for r in rows if r["phrases"] == main_n), key=lambda r: r["batch"])
    draw("ratio_vs_batch.png", main, "batch", f"throughput ratio, {main_n} phrases", "batch size")
    sweep = sorted((r for r in rows if r["batch"] == sweep_batch), key=lambda r: r["phrases"])
    if len(sweep) > 1:
        title = f"throughput ratio at batch {sweep_batch}"
        draw("ratio_vs_phrases.png", sweep, "phrases", title, "forbidden phrases", logx=True)
