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

from typing import Any

from bench.attack import relearn, rtn_quantize

ATTACKS = ("q8", "q4", "relearn")
# What the relearning attacker has (forget rows), and how it trains (a rank-8 LoRA, NLL).
RELEARN = {"rows": 8, "steps": 10, "lr": 1e-3}
ERR_ATTACK = "unknown attack {name!r}: one of " + ", ".join(ATTACKS)


def under_attack(model, tokenizer, attack: str, spec: dict[str, Any]):
    """`model` (merged weights, changed in place) after `attack`. The relearning attacker has
    the first rows of the edit's forget set (`relearned_from(spec)`): questions about the
    target answered from its texts."""
    if attack not in ATTACKS:
        raise ValueError(ERR_ATTACK.format(name=attack))
    if attack.startswith("q"):
        return rtn_quantize(model, int(attack[1:]))
    return relearn(model, tokenizer, relearned_from(spec), **RELEARN)


def relearned_from(spec: dict[str, Any]) -> dict[str, Any]:
    """What of an edit's training spec the relearning attacker has: the target and its
    texts, not the people the edit keeps."""
    return {k: spec[k] for k in ("name", "aliases", "documents") if k in spec}


def setup(attack: str, spec: dict[str, Any]) -> list[Any]:
    """What an attack's result depends on besides the model and the probes (a cache key)."""
    return [attack, RELEARN, relearned_from(spec)] if attack == "relearn" else [attack]
