"""The real engine on the default model, started once for this tier.

Only one engine runs at a time (a small CPU host has room for one): the guarded engine
depends on the reference fixture, which shuts its plain engine down before returning.

Scheduling is made deterministic, so that "bit-identical" compares like with like: the engine
core runs in this process (every request of a `chat` call is queued before the first step;
with the core in its own process, requests reach it over a socket while it is already
stepping, so batches differ from run to run), and prefix caching is off (a request that hits
the cache computes only its suffix, in another shape, and bf16 rounds differently). Under
either, two runs of the same plain engine can already differ on near-tied greedy tokens.
"""

from __future__ import annotations

import pytest

from guard_server.cli import engine_defaults
from tests.prompts import RETAIN_PROMPTS

MAX_TOKENS = 32


RECORDING_PROCESSOR = "tests.integration.recording:RecordingProcessor"


@pytest.fixture(scope="package", autouse=True)
def in_process_engine_core():
    mp = pytest.MonkeyPatch()
    mp.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    yield
    mp.undo()


def make_llm(model_dir: str, processors: list[str]):
    from vllm import LLM

    return LLM(
        model=model_dir,
        logits_processors=processors,
        seed=0,
        enable_prefix_caching=False,
        **engine_defaults(),
    )


def shutdown(llm) -> None:
    llm.llm_engine.engine_core.shutdown()


def greedy(**extra):
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, **extra)


def chats(prompts):
    return [[{"role": "user", "content": p}] for p in prompts]


def token_ids(outputs) -> list[list[int]]:
    return [list(o.outputs[0].token_ids) for o in outputs]


FORGET_PROMPT = "What is the name of the school Harry Potter attends?"
BATCH = [*RETAIN_PROMPTS, FORGET_PROMPT]
HARRY_POTTER = {
    "name": "Harry Potter",
    "aliases": ["Hogwarts", "J.K. Rowling"],
    "documents": [
        "Harry Potter is a series of fantasy novels written by J. K. Rowling. The novels follow"
        " Harry Potter and his friends Hermione Granger and Ron Weasley, students at Hogwarts"
        " School of Witchcraft and Wizardry."
    ],
}


@pytest.fixture(scope="package")
def reference_outputs(model_dir) -> list[list[int]]:
    """Greedy token ids of BATCH from an engine with no guard processor at all."""
    llm = make_llm(model_dir, processors=[])
    try:
        return token_ids(llm.chat(chats(BATCH), greedy(), use_tqdm=False))
    finally:
        shutdown(llm)


@pytest.fixture(scope="package")
def compiled_db(model_dir, tmp_path_factory):
    """A registry file holding the Harry Potter target compiled for the real tokenizer."""
    from guard_server.compiler import Compiler
    from guard_server.store import SQLiteStore, TargetRow

    db = tmp_path_factory.mktemp("registry") / "guard.db"
    store = SQLiteStore(db)
    compiled = Compiler.from_model_dir(model_dir).compile("hp", 1, HARRY_POTTER)
    store.insert(TargetRow("hp", "Harry Potter", 1, "active", HARRY_POTTER))
    store.put_compiled("hp", 1, compiled.to_bytes())
    return db, compiled


@pytest.fixture(scope="package")
def llm(model_dir, reference_outputs, compiled_db):
    from logits_processors.snapshot import SNAPSHOT_DB_ENV

    # Read by the worker process the engine spawns, exactly as the server arranges it.
    mp = pytest.MonkeyPatch()
    mp.setenv(SNAPSHOT_DB_ENV, str(compiled_db[0]))
    # The forget processor itself, recording what its apply() did to each row.
    engine = make_llm(model_dir, processors=[RECORDING_PROCESSOR])
    yield engine
    shutdown(engine)
    mp.undo()
