"""Named recipes: a method with the settings `guard-bench rwku-adapters` measured it with.

`guard-unlearn --preset NAME` trains one; `--set` still overrides any of its settings. The
RWKU rows behind each are in `bench/results/adapters/` (docs/unlearning.md reads them):
measured with other RWKU people kept beside the target (`retain_targets` in the spec), which
is what keeps their neighbours answered; a spec without people to keep gets a weaker pull.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERR_PRESET = "unknown preset {name!r}; presets: {known}"


@dataclass(frozen=True)
class Preset:
    method: str
    settings: dict[str, Any]  # the method's config fields
    spec: dict[str, Any] = field(default_factory=dict)  # fields added to the target's spec
    about: str = ""
    # Early stopping as the recipe was measured with ({"every": N, "patience": N}): every N
    # steps the adapter is judged (`guard_server.unlearn.monitor`) and the best step is kept.
    early_stop: dict[str, int] = field(default_factory=dict)


# IdkNLL with a KL retain term: the target's questions are taught "I don't know.", while the
# base model's own distributions are kept on the retain rows; it needs 100+ steps to learn
# whom not to refuse.
IDK_KL = {"lr": 1e-3, "retain_loss": "kl", "retain_weight": 8.0, "batch_size": 8}

PRESETS: dict[str, Preset] = {
    "idk-kl": Preset("idk", {**IDK_KL, "steps": 100}, about="IdkNLL, KL retain term, 100 steps"),
    # The same, keeping also the names the target's own texts mention: idk-kl refused
    # neighbours that share a target's topic (Confucianism for Confucius).
    "idk-kl-related": Preset(
        "idk",
        {**IDK_KL, "steps": 100},
        {"keep_related": 6},
        about="idk-kl, keeping the 6 names the target's documents mention most",
    ),
    # Within the one-target budget: 40 steps, 4 forget and 8 retain rows a step (4 of them
    # from the general set, which keeps everyday requests answered), rows of at most 80
    # tokens (where a refusal starts).
    "idk-kl-fast": Preset(
        "idk",
        {
            **IDK_KL,
            "batch_size": 4,
            "retain_batch_size": 8,
            "general_retain": 4,
            "steps": 40,
            "max_length": 80,
        },
        about="idk-kl in 40 short steps",
    ),
    # idk-kl-fast given the steps to learn whom not to refuse, judged every 10 steps to the
    # end: fixed on RWKU targets 2 and 3 (bench/results/recipe-trials), where by step 10 the
    # adapter declined other people's questions too and by steps 20-50 only the target's
    # (idk-kl-fast's early stopping gave up at step 20 with patience 2, keeping step 0 for
    # people it was not tuned on).
    "idk-kl-early-stop": Preset(
        "idk",
        {
            **IDK_KL,
            "batch_size": 4,
            "retain_batch_size": 8,
            "general_retain": 4,
            "steps": 80,
            "max_length": 80,
        },
        about="idk-kl-fast in up to 80 steps, the best judged step kept",
        early_stop={"every": 10, "patience": 8},
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(ERR_PRESET.format(name=name, known=", ".join(PRESETS)))
    return PRESETS[name]
