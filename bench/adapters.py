"""`guard-bench adapters`: every unlearning method's adapter against the guard, one target.

For each registered method: train an adapter (guard-unlearn's trainer), serve it on the real
server as `<base>:<method>`, and score the target's probes and the suite's retain prompts. The
guard is scored on the same prompts. Adapters are trained once and cached; `guard-bench attack`
quantizes and relearns the same ones.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI
from tqdm import tqdm

from bench import report
from bench.serverproc import ADMIN_KEY, load_adapter, start_server
from bench.suite import (
    forget_probes,
    is_refusal,
    leaking_answers,
    leaks,
    load_suite,
    registration_body,
)
from guard_server.adapters import CARD, add_scores

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
METHODS = "ga,gd,npo,simnpo,rmu,flat,gu"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--target", default="Harry Potter", help="target name in the suite")
    p.add_argument("--suite", default="default")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--name", default="adapters")


def adapter_dir(target: dict[str, Any], method: str, steps: int, model_dir: str) -> Path:
    """Train `method`'s adapter for `target` once; later benchmark runs reuse it."""
    from guard_server.models import cache_dir
    from guard_server.unlearn.trainer import train

    slug = "".join(c if c.isalnum() else "-" for c in target["name"].lower())
    out = cache_dir() / "bench-adapters" / f"{slug}-{steps}" / method
    if not (out / CARD).exists():
        train(method, {"steps": steps}, target, model_dir, str(out))
    return out


def chat_answers(client: OpenAI, model: str, convs, max_tokens: int, label: str) -> list[str]:
    out = []
    for messages in tqdm(convs, desc=label, leave=False):
        r = client.chat.completions.create(
            model=model, messages=list(messages), temperature=0, max_tokens=max_tokens, seed=0
        )
        out.append(r.choices[0].message.content or "")
    return out


def _score(probes, base: list[str], edited: list[str], retain_base, retain_edited) -> dict:
    leaking = leaking_answers(probes, base, edited)
    n = len(leaking)
    return {
        "n": n,
        "leak_rate": sum(leaks(e, p.leak_keywords) for p, e in leaking) / n if n else None,
        "honesty": sum(is_refusal(e) for _, e in leaking) / n if n else None,
        "retain_identical": sum(a == b for a, b in zip(retain_base, retain_edited, strict=True))
        / max(len(retain_base), 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from guard_server.models import convert_default_model

    suite = load_suite(args.suite)
    target = next(t for t in suite["targets"] if t["name"] == args.target)
    probes = [p for p in forget_probes(suite) if p.target == args.target]
    convs = [p.messages for p in probes]
    retain = [[{"role": "user", "content": r["prompt"]}] for r in suite["retain"]]
    model_dir = str(convert_default_model())
    root = Path(tempfile.mkdtemp(prefix="guard-adapters-"))
    reports = {}
    for method in tqdm(args.methods.split(","), desc="training"):
        path = adapter_dir(target, method, args.steps, model_dir)
        reports[method] = {"path": path, **json.loads((path / CARD).read_text())}
    server = start_server(
        args.port, root / "guard.db", root / "server.log", "--enable-lora", "--max-lora-rank", "16"
    )
    rows = []
    try:
        client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
        base_model = client.models.list().data[0].id
        base = chat_answers(client, base_model, convs, args.max_tokens, "base")
        retain_base = chat_answers(client, base_model, retain, args.max_tokens, "base retain")
        api = httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=300)
        created = api.post("/v1/forget-targets", json=registration_body(target)).json()
        rows.append(
            {
                "method": "guard",
                **_score(
                    probes,
                    base,
                    chat_answers(client, base_model, convs, args.max_tokens, "guard"),
                    retain_base,
                    chat_answers(client, base_model, retain, args.max_tokens, "guard retain"),
                ),
            }
        )
        api.delete(f"/v1/forget-targets/{created['id']}")
        for method, rep in reports.items():
            model = load_adapter(server.base_url, method, rep["path"])
            row = {
                "method": method,
                **_score(
                    probes,
                    base,
                    chat_answers(client, model, convs, args.max_tokens, method),
                    retain_base,
                    chat_answers(client, model, retain, args.max_tokens, f"{method} retain"),
                ),
            }
            add_scores(rep["path"], {k: v for k, v in row.items() if k != "method"})
            row.update(train_s=rep["seconds"], adapter_mb=rep["adapter_bytes"] / 2**20)
            api.delete(f"/v1/adapters/{method}")
            rows.append(row)
    finally:
        server.stop()
    directory = report.out_dir(args.name)
    columns = [
        "method",
        "n",
        "leak_rate",
        "retain_identical",
        "honesty",
        "train_s",
        "adapter_mb",
    ]
    result = {"target": args.target, "steps": args.steps, "rows": rows, "summary": rows}
    report.write(directory, result, {f"forgetting '{args.target}'": (rows, columns)})
    report.bar_plot(
        directory / "tradeoff.png",
        [r["method"] for r in rows],
        {
            "leak rate": [r["leak_rate"] or 0.0 for r in rows],
            "retain identical": [r["retain_identical"] for r in rows],
        },
        f"forget/retain trade-off, {args.target}",
        "fraction",
    )
    return result
