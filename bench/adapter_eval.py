"""One model (the base, or the base with an adapter) scored as RWKU scores a weight edit.

RWKU's probes for the given targets (greedy, 30 new tokens, ROUGE-L recall), 5-shot MMLU by
letter logits, TriviaQA (answer contained), fluency (n-gram entropy of answers to RWKU's open
instructions), and membership inference on the targets' `forget_mia` against `retain_mia`.
Answers are kept, so the before/after comparison is made per probe.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.lm_eval import mia, ngram_entropy
from bench.rwku_data import (
    FILES,
    LETTERS,
    SCORING,
    mmlu_parts,
    probes,
    read_json,
    rouge_l_recall,
    score,
    trivia_probes,
    utility_items,
)
from guard_server.unlearn.lm import BATCH_TOKENS, LM

MAX_NEW_TOKENS = 30
# RWKU's five-shot MMLU questions of targets 1-50, pooled (5,758 distinct: one question is
# 0.017 points; target 1's own 171 made one question 0.6 points).
MMLU_SET = "mmlu_pool"
FLUENCY_TOKENS = 64
# Membership inference on all of RWKU's member / non-member texts of each target (30-55 a
# side; each a 256-token forward pass): 8 a side gave an AUC no interval could pin down.
MIA_PER_TARGET = None
# How a reply that declines opens. An edit that teaches a refusal can learn to decline
# requests as such; RWKU's fluency score barely shows it (a short refusal is still varied
# text), so the share of its open instructions declined is counted beside it.
REFUSALS = ("I don't know", "I do not know", "I can't", "I cannot", "I'm sorry", "I am sorry")
# What a cached score depends on besides the model and targets: change it, and scores are redone.
EVALUATION = {
    "scoring": SCORING,
    "mmlu": MMLU_SET,
    "tokens": MAX_NEW_TOKENS,
    "fluency": FLUENCY_TOKENS,
    "mia": MIA_PER_TARGET,
    "refusals": REFUSALS,
    "batch_tokens": BATCH_TOKENS,  # padding moves float sums: now and then a greedy token flips
}


def probe_scores(lm: LM, folders: list[Path]) -> dict[str, Any]:
    """Each probe's answer and ROUGE-L recall, by RWKU group."""
    items = [p for f in folders for p in probes(f)]
    answers = lm.answers(
        [p.prompt for p in items], MAX_NEW_TOKENS, [p.answer_prefix for p in items]
    )
    out: dict[str, Any] = {group: [] for group in FILES}
    for probe, answer in zip(items, answers, strict=True):
        out[probe.group].append(
            {"target": probe.target, "kind": probe.kind, "query": probe.query}
            | {"answer": answer, "recall": rouge_l_recall(probe.answer, answer)}
        )
    return out


def utility_scores(lm: LM, root: Path, limit: int = 0, mmlu_count: int = 0) -> dict[str, Any]:
    """5-shot MMLU accuracy (and the letters picked), TriviaQA accuracy, fluency. MMLU is
    `limit` questions, or `mmlu_count` spread evenly over the pool (every subject in its
    share), or the whole pool."""
    mmlu = utility_items(root, MMLU_SET, limit)
    if mmlu_count and mmlu_count < len(mmlu):
        mmlu = [mmlu[i * len(mmlu) // mmlu_count] for i in range(mmlu_count)]
    picks = lm.choices([mmlu_parts(m) for m in mmlu])
    trivia = trivia_probes(root, limit)
    said = lm.answers([p.prompt for p in trivia], MAX_NEW_TOKENS, [p.answer_prefix for p in trivia])
    fluent = lm.answers(
        [f["instruction"] for f in utility_items(root, "fluency", limit)], FLUENCY_TOKENS
    )
    return {
        "mmlu": float(np.mean([p == m["answer"] for p, m in zip(picks, mmlu, strict=True)])),
        "mmlu_letters": "".join(LETTERS[p] for p in picks),
        "mmlu_questions": len(mmlu),
        "triviaqa": float(np.mean([score(p, a) for p, a in zip(trivia, said, strict=True)])),
        "fluency": float(np.mean([ngram_entropy(text) for text in fluent])),
        "fluency_refused": float(np.mean([declines(text) for text in fluent])),
        "fluency_answers": fluent,
    }


def declines(reply: str) -> bool:
    """Whether a reply opens by declining (`REFUSALS`). An approximation: "I'm sorry for your
    loss, but as a chatbot…" counts, a refusal in other words does not."""
    return reply.lstrip().startswith(REFUSALS)


def mia_scores(lm: LM, folders: list[Path]) -> dict[str, Any]:
    """Membership inference on the targets' `forget_mia` against their `retain_mia` texts."""

    def texts(file: str) -> list[str]:
        return [t["text"] for f in folders for t in read_json(f / file)[:MIA_PER_TARGET]]

    return mia(lm, texts("forget_mia.json"), texts("retain_mia.json"))


def evaluate(
    lm: LM, folders: list[Path], root: Path, utility_limit: int = 0, utility: Any = None
) -> dict[str, Any]:
    """Everything RWKU measures of one model, for the targets in `folders`, and the seconds
    each part took. `utility`, where given, gives the model's utility scores (they do not
    depend on the targets: a cache keyed by the model alone)."""
    parts = {
        "probes": lambda: probe_scores(lm, folders),
        "utility": utility or (lambda: utility_scores(lm, root, utility_limit)),
        "mia": lambda: mia_scores(lm, folders),
    }
    out: dict[str, Any] = {"seconds": {}}
    for name, measure in parts.items():
        started = time.perf_counter()
        out[name] = measure()
        out["seconds"][name] = round(time.perf_counter() - started, 1)
    return out


def ratios(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float | None]:
    """Per RWKU group, the mean recall after over the mean recall before (same probes)."""
    out: dict[str, float | None] = {}
    for group in FILES:
        b = sum(p["recall"] for p in before["probes"][group])
        a = sum(p["recall"] for p in after["probes"][group])
        out[f"{group}_before"] = 100 * b / max(1, len(before["probes"][group]))
        out[f"{group}_after"] = 100 * a / max(1, len(after["probes"][group]))
        out[f"{group}_ratio"] = a / b if b else None
        changed = [
            x["answer"] != y["answer"]
            for x, y in zip(before["probes"][group], after["probes"][group], strict=True)
        ]
        out[f"{group}_changed"] = float(np.mean(changed)) if changed else None
    return out
