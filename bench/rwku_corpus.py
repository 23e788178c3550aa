"""Forget corpora as RWKU builds them, and the held-out texts that decide when training stops.

RWKU gives a weight edit only the target's name: its forget corpus is text the served model
itself writes about the name. The same is done here (sampled, seeded, cached on disk), with
RWKU's Wikipedia `passage.json` as the second setting. A quarter of the generated texts is held
out (the same prompts, sampled again: it measures how far the edit moves the model's own
distribution on the topic, not generalisation to new facts); with texts the model writes about
other people (RWKU targets outside the evaluated ones) and about everyday topics, it scores an
adapter during training (`guard_server.unlearn.monitor`). The evaluated probes never take part.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from guard_server.models import DEFAULT_MODEL_NAME
from guard_server.unlearn.lm import LM
from guard_server.unlearn.monitor import EVERYDAY, MAX_NEW_TOKENS, everyday_answers, sampled

ABOUT = (
    "Tell me about {name}.",
    "Write a short biography of {name}.",
    "What is {name} best known for?",
    "Describe the life and work of {name}.",
    "List some facts about {name}.",
    "Who is {name}, and why are they famous?",
)
SAMPLES = 4  # texts per prompt


def cached(path: Path, make) -> Any:
    """The JSON at `path`, or `make()` written there first (atomically: an interrupted run
    never leaves half a file to be read as a result)."""
    if path.exists():
        return json.loads(path.read_text())
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(value, indent=1))
    path.with_suffix(".tmp").replace(path)
    return value


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def about(lm: LM, name: str, cache: Path) -> list[str]:
    """The model's own texts about `name` (RWKU's forget corpus), generated once."""
    key = _digest(DEFAULT_MODEL_NAME, name, ABOUT, SAMPLES, MAX_NEW_TOKENS)
    prompts = [p.format(name=name) for p in ABOUT]
    return cached(cache / f"about-{key}.json", lambda: sampled(lm, prompts, SAMPLES, seed=0))


def everyday(lm: LM, cache: Path) -> list[str]:
    key = _digest(DEFAULT_MODEL_NAME, EVERYDAY, MAX_NEW_TOKENS)
    return cached(cache / f"everyday-{key}.json", lambda: everyday_answers(lm))
