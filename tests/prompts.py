"""Prompts shared by the integration and server tiers: the everyday questions of
`bench/suites/everyday.json` (the over-refusal bench asks them too)."""

import json
from pathlib import Path

SUITE = Path(__file__).resolve().parent.parent / "bench" / "suites" / "everyday.json"
RETAIN_PROMPTS: list[str] = json.loads(SUITE.read_text())["prompts"]
