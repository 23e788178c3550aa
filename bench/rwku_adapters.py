"""`guard-bench rwku-adapters`: unlearning adapters judged as RWKU judges a weight edit.

For every method, setting and hyper-parameter point of a small grid: train a LoRA adapter
(a child process, so its peak memory is its own), with early stopping on held-out generated
texts (`bench.rwku_corpus`). Per method and setting, the grid point with the best held-out
score is chosen (never the evaluated probes) and scored with RWKU's protocol
(`bench.adapter_eval`): one frontier row each, in `bench/results/adapters/rwku.json`, with a plot
of forget removed against neighbour kept.

Settings: the forget corpus is the model's own texts about the name (`generated`, RWKU's way) or
RWKU's Wikipedia passages (`passage`); one adapter per target, or one for a batch of targets.
Everything is cached under the cache folder, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import resource
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from bench.adapter_eval import EVALUATION, evaluate
from bench.rwku_attack import ATTACKS, ERR_ATTACK, setup, under_attack
from bench.rwku_corpus import cached
from bench.rwku_data import DEFAULT_ROOT, read_json, registration, targets
from bench.rwku_frontier import attack_row, frontier_row, write
from guard_server.models import ADAPTER_CARD as CARD
from guard_server.unlearn.monitor import OTHERS_SLACK
from guard_server.unlearn.presets import IDK_KL, PRESETS

if TYPE_CHECKING:
    from guard_server.unlearn.lm import LM

METHODS = "ga,gd,npo,simnpo,rmu,gu,flat,idk,idk-kl,idk-kl-related,idk-kl-fast,ssd,shred"
# A small grid per method: the learning rate, the retain weight where the method has one
# (SSD: its selection constant alpha). Early stopping picks the number of steps (at most
# --steps, or the point's own "steps").
GRID: dict[str, list[dict[str, Any]]] = {
    "ga": [{"lr": 1e-4}, {"lr": 3e-4}],
    "gd": [{"lr": 1e-4, "retain_weight": 1.0}, {"lr": 1e-4, "retain_weight": 4.0}],
    "npo": [{"lr": 3e-4, "retain_weight": 1.0}, {"lr": 3e-4, "retain_weight": 4.0}],
    "simnpo": [{"lr": 3e-4, "retain_weight": 1.0}, {"lr": 3e-4, "retain_weight": 4.0}],
    "rmu": [{"lr": 3e-4}, {"lr": 1e-3}],
    "gu": [{"lr": 1e-4}, {"lr": 3e-4}],
    "flat": [{"lr": 1e-4}, {"lr": 3e-4}],
    "idk": [{"lr": 3e-4, "retain_weight": 1.0}, {"lr": 3e-4, "retain_weight": 4.0}],
    # IdkNLL with a KL retain term needs 100+ steps to learn whom not to refuse; at 125 steps
    # lr 5e-4 (retain weight 1, 4) and lr 1e-3 (retain weight 4) all still refused other
    # people too often (README), so the committed grid is the stronger retain pull, trained longer.
    "idk-kl": [IDK_KL],
    # The same, keeping also the names the targets' own texts mention (`keep_related`):
    # idk-kl refused neighbours that share a target's topic (Confucianism).
    "idk-kl-related": [
        {**IDK_KL, "keep_related": 6},
        # The first point was best at step 75 and drifted after: a stronger pull, 100 steps.
        {**IDK_KL, "retain_weight": 16.0, "keep_related": 6, "steps": 100},
        # A stronger pull weighs the same few retain rows more; this one draws three times
        # as many per step (a step sees 24 of ~3,600 retain rows, not 8), 100 steps.
        {**IDK_KL, "keep_related": 6, "retain_batch_size": 24, "steps": 100},
    ],
    "ssd": [{"alpha": 50.0}, {"alpha": 200.0}],
    # No retain set (it reads none): the learning rate alone; the paper's other settings.
    "shred": [{"lr": 3e-4}, {"lr": 1e-3}],
    # idk-kl within (nearly) the one-target budget: 40 steps at most, where it took 100.
    # Its first run (4 retain rows a step, none general) refused 10 of RWKU's 50 fluency
    # instructions ("How do I make apple juice?"); with 2 general rows of 6, one everyday
    # prompt at every scoring. Hence the preset's 4 general rows of 8, at most 80 tokens each
    # (a retain answer's first 42 or so: where a refusal starts), and 4 forget rows a step
    # (the targets' refusal is learnt by step 10 with 8; keeping everyone else takes the steps).
    "idk-kl-fast": [PRESETS["idk-kl-fast"].settings],
}
# Grid keys that shape the training data (the spec), not the method's hyper-parameters.
DATA_KEYS = ("keep_related",)
# Grid entries that are a variant of another registered method (its own row in the frontier).
VARIANT_OF = {name: preset.method for name, preset in PRESETS.items()}
NEIGHBOURS = (41, 42, 43)  # RWKU targets whose generated texts stand for "other people"
HELD_PER_TARGET = 3  # held-out texts per target the monitor scores (each scoring is a pass)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rwku", default=str(DEFAULT_ROOT))
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--settings", default="generated,passage", help="forget corpora to try")
    p.add_argument("--single", default="1", help="RWKU target numbers, one adapter each")
    p.add_argument("--batch", default="", help="RWKU target numbers for one adapter, e.g. 1-10")
    p.add_argument(
        "--retain-people",
        default="44-47",
        help="RWKU targets whose generated texts join the retain set (people of the same kind "
        "the edit must keep); empty: the shipped retain set only",
    )
    p.add_argument(
        "--steps", type=int, default=40, help="most optimizer steps (a grid point may set fewer)"
    )
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--tolerance", type=float, default=0.05, help="held-out loss rise allowed")
    p.add_argument("--utility", type=int, default=0, help="utility items per set (0: all)")
    p.add_argument(
        "--attacks",
        default="",
        help=f"attacks on each method's chosen adapter, of {','.join(ATTACKS)} (empty: none)",
    )
    p.add_argument("--name", default="adapters")


def numbers(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        out += range(int(low), int(high or low) + 1)
    return out


def _slug(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _work() -> Path:
    from guard_server.models import cache_dir

    return cache_dir() / "bench-rwku-adapters"


def _lm(adapter: str | None = None) -> LM:
    """The default model in float32, with `adapter` (a PEFT folder) merged into its weights
    when given: the same function as the adapter on top, and 13% faster to score here
    (no separate low-rank products per layer)."""
    from transformers import AutoTokenizer

    from bench.attack import load_model
    from guard_server.models import convert_default_model
    from guard_server.unlearn.lm import LM

    model_dir = str(convert_default_model())
    model = load_model(model_dir, Path(adapter) if adapter else None)
    return LM(model, AutoTokenizer.from_pretrained(model_dir), batch=64)


def kept_people(folders: list[Path], retain: list[Path]) -> list[Path]:
    """The retain people less the subjects of the forgotten targets' neighbour probes: an
    edit trained to keep Bruce Lee would be scored on keeping him."""
    subjects = {
        p["neighbor"]
        for f in folders
        for name in ("neighbor_level1.json", "neighbor_level2.json")
        for p in read_json(f / name)
    }
    return [f for f in retain if registration(f)["name"] not in subjects]


def corpora(folders: list[Path], setting: str, lm, retain: list[Path]) -> dict[str, Any]:
    """The training spec and the held-out texts of a unit (one target, or a batch); `retain`
    are the targets whose texts the edit must keep.

    Every person's texts come from the setting: the model's own (`generated`) or RWKU's
    Wikipedia passages (`passage`). A quarter of each forgotten person's texts is held out.
    """
    from bench.rwku_corpus import about, everyday
    from guard_server.unlearn.monitor import split

    cache = _work() / "corpus"

    def texts(folder: Path) -> list[str]:
        if setting == "generated":
            return about(lm, registration(folder)["name"], cache)
        return [t["text"] for t in read_json(folder / "passage.json")]

    others = [
        f for f in targets(Path(folders[0]).parent) if int(f.name.split("_")[0]) in NEIGHBOURS
    ]
    if set(others) & set(folders) or set(retain) & (set(folders) | set(others)):
        raise ValueError(
            f"targets {NEIGHBOURS} stand for other people in the held-out texts and the retain "
            "people are kept: neither may be forgotten, nor both"
        )
    train, held = [], []
    for folder in folders:
        tr, ho = split(texts(folder))
        train += tr
        held += ho[:HELD_PER_TARGET]
    names = [registration(f)["name"] for f in folders]
    spec: dict[str, Any] = {"name": names[0], "aliases": names[1:], "documents": train}
    if retain:  # questions about them, and their texts, keep their answers
        spec["retain_targets"] = [
            {"name": registration(f)["name"], "documents": texts(f)} for f in retain
        ]
    people = [t for f in others for t in split(texts(f))[1]]
    keep = {"other_people": people, "everyday": everyday(lm, cache)}
    asked = {"targets": names, "others": [registration(f)["name"] for f in others]}
    return {"spec": spec, "forget": held, "keep": keep, "names": asked}


def _train_child(job: dict[str, Any]) -> dict[str, Any]:
    """In a child process: train one adapter; its card and this process's peak memory."""
    from transformers import AutoTokenizer

    from guard_server.unlearn.monitor import AnswerMonitor, HeldOutMonitor
    from guard_server.unlearn.trainer import EarlyStop, train

    tokenizer = AutoTokenizer.from_pretrained(job["model_dir"])
    if job.get("answer"):  # a method that teaches one answer is judged on giving it
        monitor = AnswerMonitor(
            tokenizer, job["answer"], job["names"], job["keep"], job["tolerance"]
        )
    else:
        monitor = HeldOutMonitor(tokenizer, job["forget"], job["keep"], job["tolerance"])
    stop = EarlyStop(monitor, job["eval_every"], job["patience"])
    # Checkpointed at every scoring: a long grid point (idk-kl trains for an hour here)
    # interrupted and started again resumes at its last scoring, not at step 0.
    card = train(
        job["method"],
        job["overrides"],
        job["spec"],
        job["model_dir"],
        job["out"],
        job["eval_every"],
        stop,
    )
    card["peak_rss_gib"] = peak_rss_gib()
    Path(job["out"], CARD).write_text(json.dumps(card, indent=2) + "\n")
    return card


def peak_rss_gib() -> float:
    """This process's peak memory: VmHWM, the peak of its own address space. Not ru_maxrss,
    which Linux keeps across execve: a spawned child started with its parent's peak (the
    benchmark's own process, 4.7 GiB after scoring models), so it reported that, not its
    training's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # no procfs


def trained(method: str, point: dict[str, Any], unit: dict[str, Any], args) -> dict[str, Any]:
    """The card of `method` at grid `point` on `unit`, training it unless cached."""
    from guard_server.models import convert_default_model
    from guard_server.unlearn import get_method

    data = {k: point[k] for k in DATA_KEYS if k in point}
    overrides = {k: v for k, v in point.items() if k not in data}
    if method != "ssd":  # a point may train fewer steps than --steps, never more
        overrides["steps"] = min(args.steps, point.get("steps", args.steps))
    registered = VARIANT_OF.get(method, method)
    answer = get_method(registered).from_overrides(overrides).good_answer
    job = {
        "method": registered,
        "overrides": overrides,
        "model_dir": str(convert_default_model()),
        "tolerance": args.tolerance,
        "eval_every": args.eval_every,
        "patience": args.patience,
        **unit,
        "spec": {**unit["spec"], **data},
    }
    if answer is not None:
        job["answer"] = answer
        job["others_slack"] = OTHERS_SLACK
    else:
        del job["names"]  # the text monitor does not read them (and adapters stay cached)
    out = _work() / "adapters" / _slug(job)
    card = out / CARD
    if card.exists() and "peak_rss_gib" in (loaded := json.loads(card.read_text())):
        return loaded
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_train_child, ({**job, "out": str(out)},))


def unchanged(card: dict[str, Any]) -> bool:
    """Stopped at step 0, an adapter is the base model exactly (its LoRA B is zero): scored
    as the base model, not evaluated again."""
    return card.get("early_stop", {}).get("best_step") == 0


def held_out_score(card: dict[str, Any]) -> float:
    best = card.get("early_stop", {}).get("best_step")
    scores = [
        h["score"] for h in card.get("early_stop", {}).get("history", []) if h["step"] == best
    ]
    return scores[0] if scores and scores[0] is not None else -np.inf


def scored(folders: list[Path], adapter: str | None, args) -> dict[str, Any]:
    """The model's RWKU scores (the base model's when `adapter` is None), cached; its utility
    (MMLU, TriviaQA, fluency: the same for any targets) cached by the model alone."""
    from bench.adapter_eval import utility_scores

    mmlu = getattr(args, "mmlu", 0)  # rwku-heldout's (rwku-adapters scores the whole pool)
    sizes = [args.utility] + ([mmlu] if mmlu else [])
    key = _slug([str(f.name) for f in folders] + [adapter, *sizes, EVALUATION])
    utility = _work() / "utility" / f"{_slug(['utility', adapter, *sizes, EVALUATION])}.json"

    def make() -> dict[str, Any]:
        lm = _lm(adapter)
        return evaluate(
            lm,
            folders,
            Path(args.rwku),
            args.utility,
            lambda: cached(
                utility,
                lambda: utility_scores(lm, Path(args.rwku), args.utility, mmlu),
            ),
        )

    scores = cached(_work() / "scores" / f"{key}.json", make)
    cached(utility, lambda: scores["utility"])  # scored before utility had a cache of its own
    return scores


def attacked(folders: list[Path], adapter: str | None, spec: dict, attack: str) -> dict:
    """RWKU's probe scores of the model (the base model's when `adapter` is None) after
    `attack`, cached."""
    from bench.adapter_eval import probe_scores

    key = _slug([f.name for f in folders] + [adapter, *setup(attack, spec), EVALUATION])

    def make() -> dict[str, Any]:
        lm = _lm(adapter)
        lm.model = under_attack(lm.model, lm.tokenizer, attack, spec).eval()
        return {"probes": probe_scores(lm, folders)}

    return cached(_work() / "attacks" / f"{key}.json", make)


def attack_rows(method: str, setting: str, units, made, adapters: list, before, args) -> list:
    """A row per attack in `--attacks`: the units' `adapters` (None: the base model) after
    it, over the unattacked base model (`before`, its scores per unit)."""
    rows = []
    for attack in args.attacks:
        after = [
            attacked(u, a, m["spec"], attack) for u, a, m in zip(units, adapters, made, strict=True)
        ]
        rows.append(attack_row(method, setting, attack, before, after))
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.rwku)
    args.attacks = [a for a in args.attacks.split(",") if a]
    unknown = set(args.attacks) - set(ATTACKS)
    if unknown:
        raise SystemExit(ERR_ATTACK.format(name=sorted(unknown)[0]))
    folders = {int(f.name.split("_")[0]): f for f in targets(root)}
    scopes = [("1 target", [[folders[n]] for n in numbers(args.single)])] if args.single else []
    if args.batch:
        scopes.append(
            (f"{len(numbers(args.batch))} targets", [[folders[n] for n in numbers(args.batch)]])
        )
    retain = [folders[n] for n in numbers(args.retain_people)]
    base_lm = _lm()
    sweep, frontier, attacks = [], [], []
    for setting in args.settings.split(","):
        for scope, units in scopes:
            made = [corpora(u, setting, base_lm, kept_people(u, retain)) for u in units]
            people = {len(m["spec"].get("retain_targets", [])) for m in made}
            label = f"{setting} + {'/'.join(map(str, sorted(people)))} people kept, {scope}"
            for method in tqdm(args.methods.split(","), desc=label):
                points = []
                for point in GRID[method]:
                    cards = [trained(method, point, m, args) for m in made]
                    score = float(np.mean([held_out_score(c) for c in cards]))
                    points.append((score, point, cards))
                    sweep.append(
                        {
                            "method": method,
                            "setting": label,
                            "point": ", ".join(f"{k}={v}" for k, v in point.items()),
                            "held_out": score,
                            "best_step": [c.get("early_stop", {}).get("best_step") for c in cards],
                            "train_s": [c["seconds"] for c in cards],
                        }
                    )
                _, point, cards = max(points, key=lambda p: p[0])
                before = [scored(u, None, args) for u in units]
                after = [
                    b if unchanged(c) else scored(u, c["adapter_dir"], args)
                    for u, c, b in zip(units, cards, before, strict=True)
                ]
                frontier.append(frontier_row(method, label, before, after, cards))
                if not all(map(unchanged, cards)):  # else the base model's rows below
                    adapters = [c["adapter_dir"] for c in cards]
                    attacks += attack_rows(method, label, units, made, adapters, before, args)
                write(args.name, GRID, sweep, frontier, attacks)
            base = [None] * len(units)
            before = [scored(u, None, args) for u in units]
            attacks += attack_rows("base model", label, units, made, base, before, args)
            write(args.name, GRID, sweep, frontier, attacks)
    return {"summary": frontier}
