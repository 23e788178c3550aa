"""The real engine on the default model, started once for this tier.

Only one engine runs at a time on this machine: the guarded engine depends on the reference
fixture, which shuts its plain engine down before returning.
"""

from __future__ import annotations

import pytest

from guard_server.cli import ENGINE_DEFAULTS, PROCESSOR_FQCN
from tests.prompts import RETAIN_PROMPTS

MAX_TOKENS = 32


def make_llm(model_dir: str, processors: list[str]):
    from vllm import LLM

    return LLM(model=model_dir, logits_processors=processors, seed=0, **ENGINE_DEFAULTS)


def shutdown(llm) -> None:
    llm.llm_engine.engine_core.shutdown()


def greedy(**extra):
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, **extra)


def chats(prompts):
    return [[{"role": "user", "content": p}] for p in prompts]


def token_ids(outputs) -> list[list[int]]:
    return [list(o.outputs[0].token_ids) for o in outputs]


@pytest.fixture(scope="package")
def reference_outputs(model_dir) -> list[list[int]]:
    """Greedy token ids of an engine with no guard processor at all."""
    llm = make_llm(model_dir, processors=[])
    try:
        return token_ids(llm.chat(chats(RETAIN_PROMPTS), greedy(), use_tqdm=False))
    finally:
        shutdown(llm)


@pytest.fixture(scope="package")
def llm(model_dir, reference_outputs):
    engine = make_llm(model_dir, processors=[PROCESSOR_FQCN])
    yield engine
    shutdown(engine)
