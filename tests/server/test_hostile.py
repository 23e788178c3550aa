"""Hostile clients: oversized requests are refused before they cost anything, scoring cannot
read a forgotten answer, a mixed question gets the same partial answer on every route, and a
target in adapter mode is still guarded."""

from __future__ import annotations

import re

import httpx
import pytest

from guard_server import limits
from guard_server.compiler import PARTIAL_NOTE
from tests.server.conftest import MODEL

HARRY_POTTER = {"name": "Harry Potter", "aliases": ["Hogwarts", "J.K. Rowling"]}
SCORED = "In the fantasy books, the boy with the lightning-shaped scar goes to a school called"
MIXED = "Who are Harry Potter's two best friends? Also, what is the capital of France?"


def chat_body(content: str) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 8}


def first_tokens(server, words: list[str]) -> list[int]:
    url = f"{server.base_url}/tokenize"
    return [httpx.post(url, json={"model": MODEL, "prompt": w}).json()["tokens"][0] for w in words]


@pytest.fixture(scope="module")
def target(server, admin_headers):
    r = httpx.post(f"{server.base_url}/v1/forget-targets", json=HARRY_POTTER, headers=admin_headers)
    assert r.status_code == 201, r.text
    yield r.json()
    httpx.delete(f"{server.base_url}/v1/forget-targets/{r.json()['id']}", headers=admin_headers)


@pytest.mark.parametrize("size", [256 * 1024, 10 * 1024 * 1024])
def test_an_oversized_request_is_refused_unread_and_others_go_on(server, client, size):
    sentences = " ".join(f"Sentence number {i} says nothing much." for i in range(size // 36))
    r = httpx.post(f"{server.base_url}/v1/chat/completions", json=chat_body(sentences), timeout=60)
    assert r.status_code == 413, r.text[:300]
    assert "bytes are accepted" in r.json()["error"]["message"]
    small = client.chat.completions.create(**chat_body("Hi"))
    assert small.choices[0].message.content is not None


def test_a_conversation_too_long_for_the_context_is_refused_before_screening(server):
    text = "word " * 20_000  # within the byte limit, far past 2,048 tokens
    assert len(text) < limits.max_body_bytes(2048)
    r = httpx.post(f"{server.base_url}/v1/chat/completions", json=chat_body(text), timeout=60)
    assert r.status_code == 400, r.text[:300]
    error = r.json()["error"]
    assert error["param"] == "messages" and "maximum context length" in error["message"]


def test_scoring_cannot_read_a_forgotten_answer_from_label_probabilities(server, target):
    labels = first_tokens(server, [" Hog", " Beaux", " Durm"])
    body = {"model": MODEL, "query": SCORED, "items": [""], "label_token_ids": labels}
    r = httpx.post(f"{server.base_url}/generative_scoring", json=body, timeout=120)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "label_token_ids"
    fair = {**body, "label_token_ids": first_tokens(server, [" Beaux", " Durm"])}
    assert httpx.post(f"{server.base_url}/generative_scoring", json=fair, timeout=120).is_success


def _responses_text(body: dict) -> str:
    return "".join(
        part["text"]
        for item in body["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


# A route's request for MIXED, and where its answer's text is in the response.
MIXED_ROUTES = {
    "chat": (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": MIXED}], "max_tokens": 40},
        lambda body: body["choices"][0]["message"]["content"],
    ),
    "completions": (
        "/v1/completions",
        {"prompt": MIXED, "max_tokens": 40},
        lambda body: body["choices"][0]["text"],
    ),
    "responses": ("/v1/responses", {"input": MIXED, "max_output_tokens": 40}, _responses_text),
    "anthropic-messages": (
        "/v1/messages",
        {"messages": [{"role": "user", "content": MIXED}], "max_tokens": 40},
        lambda body: "".join(b["text"] for b in body["content"] if b["type"] == "text"),
    ),
}
FRIENDS = ("ron", "weasley", "hermione", "granger", "rowling", "hogwarts")


@pytest.mark.parametrize("route", list(MIXED_ROUTES))
def test_a_mixed_question_is_answered_in_part_on_every_route(server, target, route):
    path, body, text_of = MIXED_ROUTES[route]
    body = {"model": MODEL, "temperature": 0, **body}
    r = httpx.post(f"{server.base_url}{path}", json=body, timeout=120)
    assert r.status_code == 200, r.text
    text = text_of(r.json())
    assert r.headers["x-guard-action"] == "partial", text
    # What the small model says about France is its own business; the note is the guard's.
    assert text.endswith(PARTIAL_NOTE), text
    assert not set(re.findall(r"[a-z]+", text.lower())) & set(FRIENDS), text


def test_a_target_in_adapter_mode_is_guarded_too(server, client, admin_headers):
    spec = {"name": "Eiffel Tower", "mode": "adapter"}
    r = httpx.post(f"{server.base_url}/v1/forget-targets", json=spec, headers=admin_headers)
    assert r.status_code == 201, r.text
    try:
        out = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "How tall is the Eiffel Tower?"}],
            temperature=0,
            max_tokens=16,
        )
        assert out.model_extra["guard"]["action"] == "refuse"
    finally:
        httpx.delete(f"{server.base_url}/v1/forget-targets/{r.json()['id']}", headers=admin_headers)
