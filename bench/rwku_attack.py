"""Do an RWKU adapter's forgotten answers come back under attack?

The attacks of `guard-bench attack`, on the adapter `guard-bench rwku-adapters` chose for a
method: round-to-nearest quantization of the merged weights to 8 and 4 bits ("Catastrophic
Failure of LLM Unlearning via Quantization", 2025), and relearning, a fresh LoRA fine-tuned
for a few steps on a few rows of the forget corpus ("Unlearning or Obfuscating?", 2024); that
corpus is text anyone can make the base model write. Each attacked model answers RWKU's
probes as the unattacked one did. The base model under the same attack is scored too: a
4-bit 135M model loses much by itself, and relearning teaches the base model as well.
"""

from __future__ import annotations

import copy
from typing import Any

from bench.attack import relearn, rtn_quantize

ATTACKS = ("q8", "q4", "relearn")
RELEARN = {"rows": 8, "steps": 10}  # what the attacker has, and how long it trains
ERR_ATTACK = "unknown attack {name!r}: one of " + ", ".join(ATTACKS)


def under_attack(model, tokenizer, attack: str, spec: dict[str, Any]):
    """A copy of `model` (merged weights) after `attack`; `spec` is the edit's training spec,
    whose forget rows (questions about the target, answered from its texts) the relearning
    attacker has the first of."""
    if attack not in ATTACKS:
        raise ValueError(ERR_ATTACK.format(name=attack))
    model = copy.deepcopy(model)
    if attack.startswith("q"):
        return rtn_quantize(model, int(attack[1:]))
    forget = {k: spec[k] for k in ("name", "aliases", "documents") if k in spec}
    return relearn(model, tokenizer, forget, RELEARN["rows"], RELEARN["steps"])
