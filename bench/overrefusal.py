"""`guard-bench overrefusal`: what registered targets cost questions about nothing forgotten.

XSTest's prompts (a public over-refusal set, CC BY 4.0: `suites/XSTEST_NOTICE.md`) and the
everyday questions of the test and probe suites are asked of the server with N targets
registered: RWKU's people first, then people named after the commonest US-census first and
last names ("James Brown", "Mary White": everyday words as surnames, the hard case for
precision), each with a one-line description. A prompt that writes a registered name is left
out of the count; every other one should be answered as if nothing were registered.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from bench import report
from bench.rwku_data import DEFAULT_ROOT, registration, targets
from bench.serverproc import ADMIN_KEY, start_server, wait_learned
from logits_processors.fold import fold

MODEL = "SmolLM2-135M-Instruct"
SUITES = Path(__file__).parent / "suites"
KINDS = json.loads((SUITES / "made_up_people.json").read_text())["kinds"]


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rwku", default=str(DEFAULT_ROOT))
    p.add_argument("--counts", default="50,1000", help="targets registered, per run")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--port", type=int, default=8150)
    p.add_argument("--name", default="overrefusal")
    p.add_argument(
        "--learn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask once the server has learned what the model associates with every target",
    )


def xstest() -> list[dict[str, str]]:
    with (SUITES / "xstest_prompts.csv").open(newline="") as f:
        return [
            {"suite": "xstest", "kind": r["type"], "prompt": r["prompt"]} for r in csv.DictReader(f)
        ]


def everyday() -> list[dict[str, str]]:
    plain = json.loads((SUITES / "everyday.json").read_text())["prompts"]
    general = [
        p["prompt"]
        for p in json.loads((SUITES / "default.json").read_text())["retain"]
        if p["kind"] == "general"
    ]
    return [{"suite": "everyday", "kind": "general", "prompt": p} for p in plain + general]


def census_people(count: int) -> list[dict[str, Any]]:
    """`count` people named by the commonest census first names (women's and men's in turn)
    and last names, a one-line description each."""
    from importlib import resources

    folder = resources.files("names")

    def column(file: str) -> list[str]:
        lines = folder.joinpath(file).read_text().splitlines()
        return [line.split()[0].title() for line in lines if line.strip()]

    female, male, last = (
        column("dist.female.first"),
        column("dist.male.first"),
        column("dist.all.last"),
    )
    first = [name for pair in zip(female, male, strict=False) for name in pair]
    people = []
    for i in range(count):
        name = f"{first[i % 40]} {last[i // 40]}"
        people.append({"name": name, "documents": [f"{name} is a {KINDS[i % len(KINDS)]}."]})
    return people


def registrations(root: Path, count: int) -> list[dict[str, Any]]:
    real = [registration(f) for f in targets(root)[:count]]
    return real + census_people(count - len(real))


def ask(http: httpx.Client, prompt: str, max_tokens: int) -> dict[str, Any]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    r = http.post("/v1/chat/completions", json=body, headers={"x-guard-admin-key": ADMIN_KEY})
    r.raise_for_status()
    guard = r.json()["guard"]
    return {
        "action": guard["action"],
        "answer_watch": bool(guard.get("answer_watch")),
        "targets": [t["id"] for t in guard.get("targets", [])],
        "answer": r.json()["choices"][0]["message"]["content"],
    }


def names_registered(prompt: str, names: list[str]) -> bool:
    folded = fold(prompt) + " "
    return any(fold(n) + " " in folded for n in names)


def run(args: argparse.Namespace) -> dict[str, Any]:
    items = xstest() + everyday()
    counts = sorted(int(c) for c in args.counts.split(","))
    specs = registrations(Path(args.rwku), counts[-1])
    tmp = Path(tempfile.mkdtemp(prefix="guard-overrefusal-"))
    learn = "--learn-associations" if args.learn else "--no-learn-associations"
    server = start_server(args.port, tmp / "guard.db", tmp / "server.log", learn)
    results: dict[str, Any] = {"runs": {}}
    rows = []
    try:
        http = httpx.Client(base_url=server.base_url, timeout=600)
        registered = 0
        for count in counts:
            for spec in tqdm(specs[registered:count], desc=f"register {count}"):
                r = http.post(
                    "/v1/forget-targets",
                    json=spec,
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                )
                r.raise_for_status()
            registered = count
            if args.learn:
                results.setdefault("learning", {})[count] = wait_learned(server.base_url)
            names = [s["name"] for s in specs[:count]]
            with ThreadPoolExecutor(args.concurrency) as pool:
                jobs = pool.map(lambda it: ask(http, it["prompt"], args.max_tokens), items)
                answers = list(tqdm(jobs, total=len(items), desc=f"ask {count}"))
            probes = [
                it | a | {"names_registered": names_registered(it["prompt"], names)}
                for it, a in zip(items, answers, strict=True)
            ]
            results["runs"][count] = probes
            for suite in ("xstest", "everyday"):
                fair = [p for p in probes if p["suite"] == suite and not p["names_registered"]]
                # Refused by the answer watch: the answer was about to name a registered
                # person ("Who painted the Mona Lisa?" with Leonardo da Vinci registered).
                named = [p for p in fair if p["answer_watch"]]
                flagged = [p for p in fair if p["action"] != "none" and not p["answer_watch"]]
                rows.append(
                    {
                        "targets": count,
                        "suite": suite,
                        "prompts naming nobody registered": len(fair),
                        "flagged": len(flagged),
                        "flagged prompts": "; ".join(p["prompt"][:60] for p in flagged[:5]),
                        "answers naming a registered person": len(named),
                        "those prompts": "; ".join(p["prompt"][:60] for p in named[:5]),
                    }
                )
    finally:
        server.stop()
    results["summary"] = rows
    columns = list(rows[0])
    report.write(report.out_dir(args.name), results, {"over-refusal": (rows, columns)})
    return {"summary": rows}
