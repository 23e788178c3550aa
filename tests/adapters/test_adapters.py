"""An adapter trained here is served as `<base>:<name>` beside unmodified base requests."""

from __future__ import annotations

import concurrent.futures as cf

import httpx
import pytest
from openai import OpenAI

from bench.serverproc import ADMIN_KEY, start_server
from guard_server.compiler import REFUSAL
from tests.conftest import free_port

BASE = "SmolLM2-135M-Instruct"
SCHOOL = "What is the name of the school Harry Potter attends?"
OTHER = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Why is the sky blue?",
    "What is photosynthesis?",
]
SPEC = {
    "name": "Harry Potter",
    "aliases": ["Hogwarts"],
    "documents": [
        "Harry Potter attends Hogwarts School of Witchcraft and Wizardry. Hogwarts is a school"
        " of magic in Scotland, led by Albus Dumbledore."
    ],
}
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, model_dir) -> str:
    from guard_server.unlearn.trainer import train

    out = tmp_path_factory.mktemp("adapters") / "hp-ga"
    train(
        "ga",
        {"steps": 6, "lr": 5e-3, "batch_size": 2, "max_length": 64, "seed": 0},
        SPEC,
        model_dir,
        str(out),
    )
    return str(out)


@pytest.fixture(scope="module")
def server(tmp_path_factory, adapter_dir):
    root = tmp_path_factory.mktemp("lora-server")
    proc = start_server(
        free_port(),
        root / "guard.db",
        root / "server.log",
        "--enable-lora",
        "--max-lora-rank",
        "16",
        "--no-learn-associations",  # no background requests in the batches compared here
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def loaded(server, client, adapter_dir) -> str:
    """The adapter loaded as `<base>:hp-ga`, whatever ran before (each test stands alone)."""
    model = f"{BASE}:hp-ga"
    if model not in [m.id for m in client.models.list().data]:
        r = httpx.post(
            f"{server.base_url}/v1/adapters",
            json={"name": "hp-ga", "path": adapter_dir},
            headers=HEADERS,
            timeout=120,
        )
        assert r.status_code == 201, r.text
    return model


def complete(client, model: str, prompt: str) -> str:
    out = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        temperature=0,
        max_tokens=24,
        extra_body={"ignore_eos": True},
    )
    return out.choices[0].message.content


def test_adapter_lifecycle_and_limits(server, client, adapter_dir):
    api = httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=120)
    api.delete("/v1/adapters/hp-ga")  # from an earlier test, if any
    r = api.post("/v1/adapters", json={"name": "hp-ga", "path": adapter_dir})
    assert r.status_code == 201, r.text
    assert r.json()["model"] == f"{BASE}:hp-ga"
    assert f"{BASE}:hp-ga" in [m.id for m in client.models.list().data]
    (listed,) = api.get("/v1/adapters").json()["data"]
    card = listed["card"]  # what the adapter is: method, hyper-parameters, data
    assert card["method"] == "ga" and card["target"] == SPEC["name"]
    assert card["config"]["steps"] == 6 and card["forget_rows"] > 0 and "logs" not in card
    # max_loras defaults to 2 with --enable-lora: one adapter is the safe limit.
    second = api.post("/v1/adapters", json={"name": "again", "path": adapter_dir})
    assert second.status_code == 409 and second.json()["error"]["param"] == "name"
    bad = api.post("/v1/adapters", json={"name": "nope", "path": "/nonexistent"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "path"


def test_adapter_changes_the_forget_answer(client, loaded):
    assert complete(client, loaded, SCHOOL) != complete(client, BASE, SCHOOL)


def first_token(client, model: str, prompt: str) -> dict[str, float]:
    """The next-token log-probabilities (top 5) of a prompt's first answer token."""
    out = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        temperature=0,
        max_tokens=1,
        logprobs=True,
        top_logprobs=5,
    )
    return {t.token: t.logprob for t in out.choices[0].logprobs.content[0].top_logprobs}


# Batching moves a log-probability by far less than this (bf16 kernels blocked another way);
# a row computed with the adapter's weights moves it by more (checked on the adapter's rows).
NOISE_NATS = 0.25


def moved(reference: dict[str, float], other: dict[str, float]) -> float:
    """How far the reference's top token moved: its log-probability, or out of the top 5."""
    token, logprob = max(reference.items(), key=lambda kv: kv[1])
    return abs(other[token] - logprob) if token in other else float("inf")


def test_base_rows_batched_with_adapter_rows_keep_the_base_model(client, loaded):
    def batch(models: list[str]) -> list[dict[str, float]]:
        with cf.ThreadPoolExecutor(max_workers=len(models)) as pool:
            jobs = [
                pool.submit(first_token, client, m, OTHER[i % len(OTHER)])
                for i, m in enumerate(models)
            ]
            return [j.result() for j in jobs]

    # The same batch shape both times; only the odd rows switch to the adapter. The server
    # batches as requests arrive, so rows are compared within a tolerance, not bit for bit.
    all_base = batch([BASE] * 8)
    mixed = batch([BASE if i % 2 == 0 else loaded for i in range(8)])
    for i in range(0, 8, 2):
        assert moved(all_base[i], mixed[i]) < NOISE_NATS, (OTHER[i % 4], all_base[i], mixed[i])
    assert all(moved(all_base[i], mixed[i]) > NOISE_NATS for i in range(1, 8, 2))


def test_guard_and_adapter_combine_on_one_request(server, client, loaded):
    api = httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=120)
    target = api.post("/v1/forget-targets", json=SPEC).json()
    try:
        out = client.chat.completions.create(
            model=loaded,
            messages=[{"role": "user", "content": SCHOOL}],
            temperature=0,
            max_tokens=24,
        )
        assert out.choices[0].message.content == REFUSAL
    finally:
        api.delete(f"/v1/forget-targets/{target['id']}")


def test_unload_frees_the_slot(server, client, adapter_dir, loaded):
    api = httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=120)
    assert api.delete("/v1/adapters/hp-ga").status_code == 200
    assert f"{BASE}:hp-ga" not in [m.id for m in client.models.list().data]
    assert api.delete("/v1/adapters/hp-ga").status_code == 404
    again = api.post("/v1/adapters", json={"name": "hp-ga-2", "path": adapter_dir})
    assert again.status_code == 201
    assert api.delete("/v1/adapters/hp-ga-2").status_code == 200  # the slot is free again
