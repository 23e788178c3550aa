"""`guard-bench rwku-heldout`: one adapter recipe, fixed on RWKU targets 1-10, run unchanged on
people it was not tuned on (each of 11-15 alone, 11-20 as one batch).

The recipe is a named preset of `guard-unlearn` (`guard_server/unlearn/presets.py`): the one
that met the goal on targets 1-10 (`bench/results/adapters/rwku.json`), chosen before these
people were scored. The people the edit must keep come from targets 21-50 only, less the
three that stand for "other people" in the early-stopping texts and any person the tested
targets' neighbour probes ask about. Rows land in `bench/results/<name>/heldout.json` after
each person, so an interrupted run resumes (everything is cached) and shows what it has.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench import report, rwku
from bench.adapter_eval import FILES, ratios
from bench.rwku_adapters import (
    NEIGHBOURS,
    _lm,
    corpora,
    kept_people,
    numbers,
    scored,
    trained,
    unchanged,
)
from bench.rwku_data import DEFAULT_ROOT, targets
from bench.rwku_frontier import pooled
from guard_server.unlearn.cli import ERR_SET
from guard_server.unlearn.presets import PRESETS

RECIPE = "idk-kl-early-stop"
GROUPS = ("forget_fb", "forget_qa", "forget_aa", "neighbor_fb", "neighbor_qa")
GOAL = {"forget": 0.5, "neighbor": 0.9, "mmlu_points": 2.0}
# One question is 0.1 point: the bound, at a sixth of the pool's scoring time (the
# whole pool takes ~9 min a model on this 2-core VM).
MMLU_QUESTIONS = 1000
EARLY_STOP = {"every": 10, "patience": 2}  # a recipe's own settings take precedence
# Beside MMLU, what RWKU reports of a weight edit: membership inference on its own member /
# non-member texts (AUC of the loss, 0.5: forget texts look like unseen ones), fluency (n-gram
# entropy of answers to its 50 instructions), and how many of those the model declines.
UTILITY_KEPT = (
    ("mia", "mia_auc_loss"),
    ("utility", "fluency"),
    ("utility", "fluency_refused"),
    ("utility", "triviaqa"),
)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rwku", default=str(DEFAULT_ROOT))
    p.add_argument("--recipe", default=RECIPE, choices=sorted(PRESETS))
    p.add_argument("--single", default="11-15", help="RWKU targets, one adapter each")
    p.add_argument("--batch", default="11-20", help="RWKU targets for one adapter")
    p.add_argument(
        "--retain-people",
        default="21-50",
        help="RWKU targets the edit must keep (less the early-stopping texts' other people)",
    )
    p.add_argument("--steps", type=int, help="most optimizer steps (default: the recipe's)")
    p.add_argument("--eval-every", type=int, help="judge every N steps (default: the recipe's)")
    p.add_argument("--patience", type=int, help="judgings without a better step before stopping")
    p.add_argument("--tolerance", type=float, default=0.05, help="held-out loss rise allowed")
    p.add_argument("--utility", type=int, default=0, help="utility items per set (0: all)")
    p.add_argument(
        "--mmlu",
        type=int,
        default=MMLU_QUESTIONS,
        help="MMLU questions, evenly spaced over the pool (0: all 5,758)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one of the recipe's settings (to try a recipe on targets 1-10)",
    )
    p.add_argument(
        "--combined",
        action="store_true",
        help="also serve each person's adapter beside the guard, that person registered, and "
        "score the guard, the adapter and both on the same probes (guard-bench rwku)",
    )
    p.add_argument(
        "--combined-utility", type=int, default=40, help="TriviaQA and MMLU items, combined"
    )
    p.add_argument("--name", default="adapters")


COMBINED_MODES = ("guard", "adapter", "adapter + guard")


def combined(target: int, adapter: str, args: argparse.Namespace) -> dict[str, Any]:
    """The guard, the adapter and both on one person's probes, through the server
    (`guard-bench rwku --start N --counts 1 --adapter ...`; kept in
    bench/results/<name>-combined/<N>, and read from there when it is)."""
    name = f"{args.name}-combined/{target}"
    out = report.RESULTS / name / "results.json"
    if not out.exists():
        p = argparse.ArgumentParser()
        rwku.add_args(p)
        rwku.run(
            p.parse_args(
                ["--rwku", args.rwku, "--start", str(target), "--counts", "1", "--no-learn"]
                + ["--utility", str(args.combined_utility), "--adapter", adapter]
                + ["--name", name]
            )
        )
    run = json.loads(out.read_text())["runs"]["1"]
    return {
        mode: {g["group"]: g for g in run["groups" if mode == "guard" else mode]}
        for mode in COMBINED_MODES
    }


def pooled_combined(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each mode's after/before over the people, as sums of recall (probes' worth)."""
    out: dict[str, dict[str, float | None]] = {}
    for mode in COMBINED_MODES:
        out[mode] = {}
        for group in GROUPS:
            cells = [r["combined"][mode][group] for r in rows if group in r["combined"][mode]]
            before = sum(c["before"] * c["probes"] for c in cells)
            after = sum((c["after"] or 0) * c["probes"] for c in cells)
            out[mode][group] = after / before if before else None
    return out


def overrides(items: list[str]) -> dict[str, Any]:
    """`--set` items as settings, each value read as JSON where it is ("3e-4", "true"):
    unlike guard-unlearn's, whose config types them, a recipe's point is compared as is."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(ERR_SET.format(item=item))
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def row(units: list[list[Path]], before: list[dict], after: list[dict]) -> dict[str, Any]:
    """RWKU's ratios over the units' probes together (sum after over sum before: one
    person's recall before can be half a probe), each group's recall before, MMLU's change."""
    was, now = pooled(before), pooled(after)
    out: dict[str, Any] = dict(ratios(was, now))
    for group in FILES:  # recall summed over the probes, before and after
        recall = [[p["recall"] for p in scores["probes"][group]] for scores in (was, now)]
        out[f"{group}_before"], out[f"{group}_after"] = (round(sum(r), 3) for r in recall)
        out[f"{group}_probes"] = len(recall[0])
        out[f"{group}_ratio_ci"] = ratio_interval(*recall)
    out["mmlu_delta"] = _mean_change(before, after, "utility", "mmlu", 100)
    out["mmlu_questions"] = after[0]["utility"]["mmlu_questions"]
    for part, key in UTILITY_KEPT:  # each unit's value before and after, averaged over units
        for when, scores in (("before", before), ("after", after)):
            out[f"{key}_{when}"] = sum(s[part][key] for s in scores) / len(scores)
    if len(after) == 1:  # the interval is one unit's (RWKU's member and non-member texts)
        out["mia_auc_loss_ci_after"] = after[0]["mia"]["mia_auc_loss_ci"]
        out["mia_texts"] = after[0]["mia"]["mia_texts"]
    return out


def ratio_interval(
    before: list[float], after: list[float], resamples: int = 2000
) -> list[float] | None:
    """A 95% percentile bootstrap interval of sum(after) / sum(before), the probes resampled
    in pairs (a fixed seed: a rerun gives the same interval); None without recall before.
    With a few probes' worth of recall before, it is wide: that is the point of showing it."""
    b, a = np.asarray(before, float), np.asarray(after, float)
    if not b.sum():
        return None
    picks = np.random.default_rng(0).integers(0, len(b), (resamples, len(b)))
    sums = b[picks].sum(axis=1)
    ratios = a[picks].sum(axis=1)[sums > 0] / sums[sums > 0]
    return [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]


def _mean_change(before: list[dict], after: list[dict], part: str, key: str, scale: float) -> float:
    pairs = zip(after, before, strict=True)
    return scale * sum(a[part][key] - b[part][key] for a, b in pairs) / len(after)


def meets(r: dict[str, Any]) -> bool:
    forget = all((r[f"{g}_ratio"] or 0) <= GOAL["forget"] for g in GROUPS if g.startswith("f"))
    keep = all((r[f"{g}_ratio"] or 1) >= GOAL["neighbor"] for g in GROUPS if g.startswith("n"))
    return forget and keep and abs(r["mmlu_delta"]) <= GOAL["mmlu_points"]


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean and the worst of every person's ratios (worst: highest forget, lowest kept)."""
    out: dict[str, Any] = {}
    for g in GROUPS:
        values = [r[f"{g}_ratio"] for r in rows if r[f"{g}_ratio"] is not None]
        if values:
            out[f"{g}_ratio_mean"] = sum(values) / len(values)
            out[f"{g}_ratio_worst"] = max(values) if g.startswith("forget") else min(values)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    folders = {int(f.name.split("_")[0]): f for f in targets(Path(args.rwku))}
    retain = [folders[n] for n in numbers(args.retain_people) if n not in NEIGHBOURS]
    preset = PRESETS[args.recipe]
    point = {**preset.settings, **preset.spec, **overrides(args.set)}
    stop = {**EARLY_STOP, **preset.early_stop}
    args.steps = args.steps or point.get("steps", 40)
    args.eval_every = args.eval_every or stop["every"]
    args.patience = args.patience or stop["patience"]
    units = [[folders[n]] for n in numbers(args.single)]
    if args.batch:
        units.append([folders[n] for n in numbers(args.batch)])
    base_lm = _lm()
    results: dict[str, Any] = {
        "scoring": "rwku",
        "recipe": {"preset": args.recipe, "method": preset.method, **point},
        "early_stop": {
            "every": args.eval_every,
            "patience": args.patience,
            "most_steps": args.steps,
        }
        | {"tolerance": args.tolerance},
        "retain_people": sorted(int(f.name.split("_")[0]) for f in retain),
        "goal": GOAL,
        "rows": [],
        "environment": report.environment(),
        "command": report.command_line(),
    }
    singles: tuple[list[dict], list[dict], list[list[Path]]] = ([], [], [])
    for unit in tqdm(units, desc=f"{args.recipe} on people it was not tuned on"):
        made = corpora(unit, "generated", base_lm, kept_people(unit, retain))
        card = trained(args.recipe, point, made, args)
        before = scored(unit, None, args)
        after = before if unchanged(card) else scored(unit, card["adapter_dir"], args)
        got = row([unit], [before], [after])
        got |= {
            "train_s": card["seconds"],
            "peak_rss_gib": card["peak_rss_gib"],
            "best_step": card.get("early_stop", {}).get("best_step"),
            "retain_people": len(made["spec"].get("retain_targets", [])),
        }
        numbers_in = [int(f.name.split("_")[0]) for f in unit]
        if len(unit) == 1:
            if args.combined:
                got["combined"] = combined(numbers_in[0], card["adapter_dir"], args)
            results["rows"].append({"target": numbers_in[0], **got, "meets_goal": meets(got)})
            if args.combined:
                results["combined"] = pooled_combined(results["rows"])
            for part, value in zip(singles, (before, after, unit), strict=True):
                part.append(value)
            results["pooled"] = {**row(singles[2], singles[0], singles[1])}
            results["pooled"]["meets_goal"] = meets(results["pooled"])
            results["pooled"]["targets"] = [r["target"] for r in results["rows"]]
            results["summary"] = summary(results["rows"])
        else:
            results["batch"] = {"targets": numbers_in, **got, "meets_goal": meets(got)}
        _write(args.name, results)
    return results


def _write(name: str, results: dict[str, Any]) -> None:
    out = report.out_dir(name)
    (out / "heldout.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "heldout.md").write_text(markdown(results))


COLUMNS = (
    ("forget FB", "forget_fb"),
    ("forget QA", "forget_qa"),
    ("forget AA", "forget_aa"),
    ("neighbour FB", "neighbor_fb"),
    ("neighbour QA", "neighbor_qa"),
)


def markdown(results: dict[str, Any]) -> str:
    """Every person's row, the pooled row and the batch: each group's ratio after/before with
    its recall before (probes' worth), MMLU's change, the step kept and the training time."""
    head = [
        "unit",
        *(c for c, _ in COLUMNS),
        "MMLU (points)",
        "declined (of 50)",
        "step",
        "train s",
        "goal",
    ]
    lines = [
        f"Command: `{results.get('command', '')}`",
        "",
        f"Recipe: `{results['recipe']['preset']}`; early stopping {results.get('early_stop')}.",
        "A cell is recall after over before, pooled as sums, with its 95% bootstrap interval over "
        "the probes; in brackets the recall before, in probes' worth. Goal: forget <= 0.5, "
        "neighbours >= 0.9, MMLU within 2 points.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    units = [(str(r["target"]), r) for r in results["rows"]]
    if "pooled" in results:
        units.append(
            ("pooled: " + ", ".join(map(str, results["pooled"]["targets"])), results["pooled"])
        )
    if "batch" in results:
        units.append(("one adapter: " + _span(results["batch"]["targets"]), results["batch"]))
    for label, r in units:
        cells = [label]
        for _, group in COLUMNS:
            ratio = r.get(f"{group}_ratio")
            shown = "-" if ratio is None else f"{ratio:.2f}"
            ci = r.get(f"{group}_ratio_ci")
            shown += f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
            cells.append(f"{shown} ({r.get(f'{group}_before', 0):.1f})")
        declined = [r.get(f"fluency_refused_{w}") for w in ("before", "after")]
        cells.append(f"{r['mmlu_delta']:+.1f}")
        cells.append(
            "-" if None in declined else f"{50 * declined[0]:.0f} -> {50 * declined[1]:.0f}"
        )
        cells += [str(r.get("best_step", "")), f"{r['train_s']:.0f}" if "train_s" in r else ""]
        cells.append("met" if r.get("meets_goal") else "missed")
        lines.append("| " + " | ".join(cells) + " |")
    if "combined" in results:
        lines += ["", *combined_markdown(results)]
    return "\n".join(lines) + "\n"


def combined_markdown(results: dict[str, Any]) -> list[str]:
    """Each person's and the pooled after/before of the guard, the adapter and both, scored
    through the server on the same probes (its before-answers are the server's own)."""
    head = ["unit", "mode", *(c for c, _ in COLUMNS)]
    rows = []
    for r in results["rows"]:
        for mode in COMBINED_MODES:
            row = {"unit": str(r["target"]), "mode": mode}
            for column, group in COLUMNS:
                c = r["combined"][mode].get(group)
                ratio = c and c["after_over_before"]
                row[column] = (
                    "-" if ratio is None else f"{ratio:.2f} ({c['before'] * c['probes'] / 100:.1f})"
                )
            rows.append(row)
    for mode, pool in results["combined"].items():
        row = {"unit": "pooled", "mode": mode}
        rows.append(row | {c: "-" if pool[g] is None else f"{pool[g]:.2f}" for c, g in COLUMNS})
    return [
        "Combined mode (`--combined`): the person registered on the guard server, the "
        "adapter served beside it, RWKU's scoring; recall after over before (before, in "
        "probes' worth, from the server's plain answers).",
        "",
        report.markdown_table(rows, head),
    ]


def _span(numbers: list[int]) -> str:
    return f"{min(numbers)}-{max(numbers)}" if numbers else ""
