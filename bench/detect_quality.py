"""Detection quality on a suite: recall per probe kind, false positives per retain kind."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bench.suite import forget_probes


def detection_quality(detector, suite: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """`ids` maps target names to the ids they were registered under in `detector`."""
    recall: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for probe in forget_probes(suite):
        texts = [m["content"] for m in probe.messages]
        matches, _ = detector.screen(texts)
        hit = ids[probe.target] in {m.target_id for m in matches}
        recall[probe.kind][0] += hit
        recall[probe.kind][1] += 1
    fpr: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item in suite["retain"]:
        matches, _ = detector.screen([item["prompt"]])
        fpr[item["kind"]][0] += bool(matches)
        fpr[item["kind"]][1] += 1
    hits, total = (sum(v[i] for v in recall.values()) for i in (0, 1))
    false, negatives = (sum(v[i] for v in fpr.values()) for i in (0, 1))
    return {
        "recall": hits / total,
        "fpr": false / negatives,
        "recall_by_kind": {k: v[0] / v[1] for k, v in sorted(recall.items())},
        "fpr_by_kind": {k: v[0] / v[1] for k, v in sorted(fpr.items())},
    }
