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
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


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


def test_adapter_changes_the_forget_answer(client):
    base = complete(client, BASE, SCHOOL)
    edited = complete(client, f"{BASE}:hp-ga", SCHOOL)
    assert "Hogwarts" in base
    assert edited != base


def test_base_rows_batched_with_adapter_rows_stay_bit_identical(client):
    def batch(models: list[str]) -> list[str]:
        with cf.ThreadPoolExecutor(max_workers=len(models)) as pool:
            jobs = [
                pool.submit(complete, client, m, OTHER[i % len(OTHER)])
                for i, m in enumerate(models)
            ]
            return [j.result() for j in jobs]

    # Same batch shape both times; only the odd rows switch to the adapter.
    all_base = batch([BASE] * 8)
    mixed = batch([BASE if i % 2 == 0 else f"{BASE}:hp-ga" for i in range(8)])
    assert mixed[0::2] == all_base[0::2]
    assert mixed[1::2] != all_base[1::2]


def test_guard_and_adapter_combine_on_one_request(server, client):
    api = httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=120)
    target = api.post("/v1/forget-targets", json=SPEC).json()
    try:
        out = client.chat.completions.create(
            model=f"{BASE}:hp-ga",
            messages=[{"role": "user", "content": SCHOOL}],
            temperature=0,
            max_tokens=24,
        )
        assert out.choices[0].message.content == REFUSAL
    finally:
        api.delete(f"/v1/forget-targets/{target['id']}")


def test_unload_frees_the_slot(server, client, adapter_dir):
    api = httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=120)
    assert api.delete("/v1/adapters/hp-ga").status_code == 200
    assert f"{BASE}:hp-ga" not in [m.id for m in client.models.list().data]
    assert api.delete("/v1/adapters/hp-ga").status_code == 404
    again = api.post("/v1/adapters", json={"name": "hp-ga-2", "path": adapter_dir})
    assert again.status_code == 201
