"""A server that learns, in the background, what the served model associates with each
target, through the official `openai` client and the admin API on a real server."""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from bench.serverproc import ADMIN_KEY, start_server, wait_learned
from classifiers.associations import QUESTIONS
from guard_server.learner import MAX_TOKENS
from tests.conftest import free_port

MODEL = "SmolLM2-135M-Instruct"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HAMILL = {
    "name": "Mark Hamill",
    "documents": ["Mark Hamill is an American actor, best known for Luke Skywalker in Star Wars."],
}
REVERSE = "Who starred as the spacefarer Luke Skywalker in the Star Wars trilogies?"
NEIGHBOUR = "Who directed the original Star Wars film?"


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("learning")
    proc = start_server(free_port(), root / "guard.db", root / "server.log")  # the defaults
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def hamill(server):
    r = httpx.post(f"{server.base_url}/v1/forget-targets", json=HAMILL, headers=ADMIN)
    assert r.status_code == 201, r.text
    yield r.json()["id"]
    httpx.delete(f"{server.base_url}/v1/forget-targets/{r.json()['id']}", headers=ADMIN)


def learning(server, target_id: str) -> dict:
    r = httpx.get(f"{server.base_url}/v1/forget-targets/{target_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["learning"]


def test_a_question_that_points_at_the_target_through_its_documents_is_refused_at_once(
    client, hamill
):
    out = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": REVERSE}], temperature=0, max_tokens=16
    )
    assert out.model_extra["guard"]["action"] == "refuse", out.choices[0].message.content
    # One association alone is a neighbour's question (the film's director): answered.
    out = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": NEIGHBOUR}], temperature=0, max_tokens=16
    )
    assert out.model_extra["guard"]["action"] == "none"


def test_what_the_model_associates_is_learned_in_the_background_at_a_bounded_cost(server, hamill):
    cost = wait_learned(server.base_url, timeout=600)
    assert cost["failed"] == 0
    state = learning(server, hamill)
    assert state["status"] == "done"
    assert 0 < state["tokens"] <= len(QUESTIONS) * MAX_TOKENS
    assert isinstance(state["associations"], list)


def test_a_new_version_is_learned_again_and_a_deleted_target_leaves_nothing(server):
    spec = {"name": "Bruce Lee", "documents": ["A martial artist."]}
    r = httpx.post(f"{server.base_url}/v1/forget-targets", json=spec, headers=ADMIN)
    target_id = r.json()["id"]
    wait_learned(server.base_url, timeout=600)
    first = learning(server, target_id)
    patched = httpx.patch(
        f"{server.base_url}/v1/forget-targets/{target_id}",
        json={"aliases": ["Lee Jun-fan"]},
        headers=ADMIN,
    )
    assert patched.status_code == 200, patched.text
    assert learning(server, target_id)["status"] in ("pending", "learning")
    wait_learned(server.base_url, timeout=600)
    assert learning(server, target_id)["status"] == "done" and first["status"] == "done"
    httpx.delete(f"{server.base_url}/v1/forget-targets/{target_id}", headers=ADMIN)
    assert (
        httpx.get(f"{server.base_url}/v1/forget-targets/{target_id}", headers=ADMIN).status_code
        == 404
    )


def test_requests_are_answered_while_targets_are_being_learned(client, server):
    for i in range(4):
        spec = {"name": f"Quentin Zorblax {i}", "documents": ["A made-up writer."]}
        httpx.post(f"{server.base_url}/v1/forget-targets", json=spec, headers=ADMIN)
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the currency of Japan?"}],
        temperature=0,
        max_tokens=8,
    )
    assert out.choices[0].message.content and out.model_extra["guard"]["action"] == "none"
    wait_learned(server.base_url, timeout=600)
