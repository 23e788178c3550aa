"""Admin API over real HTTP: auth, validation, CRUD, and a registration live on the next chat."""

from __future__ import annotations

import concurrent.futures as cf
import json

import httpx
import pytest

from guard_server import admin
from guard_server.compiler import PARTIAL_NOTE, REFUSAL
from tests.server.conftest import MODEL

SCHOOL = [{"role": "user", "content": "What is the name of the school Harry Potter attends?"}]
HARRY_POTTER = {
    "name": "Harry Potter",
    "aliases": ["Hogwarts", "J.K. Rowling"],
    "documents": [
        "Harry Potter is a series of fantasy novels written by J. K. Rowling. Harry Potter and"
        " his friends Hermione Granger and Ron Weasley are students at Hogwarts School of"
        " Witchcraft and Wizardry."
    ],
}


@pytest.fixture
def api(server, admin_headers):
    with httpx.Client(base_url=server.base_url, headers=admin_headers, timeout=120) as c:
        yield c
        for target in c.get("/v1/forget-targets", params={"limit": 100}).json()["data"]:
            c.delete(f"/v1/forget-targets/{target['id']}")


def ids(api) -> list[str]:
    return [t["id"] for t in api.get("/v1/forget-targets", params={"limit": 100}).json()["data"]]


@pytest.mark.parametrize(
    "headers, status, message",
    [
        ({}, 401, admin.ERR_NO_AUTH),
        ({"Authorization": "Basic abc"}, 401, admin.ERR_NO_AUTH),
        ({"Authorization": "Bearer wrong"}, 403, admin.ERR_BAD_KEY),
    ],
)
def test_admin_auth(server, headers, status, message):
    r = httpx.post(f"{server.base_url}/v1/forget-targets", json={"name": "x"}, headers=headers)
    assert r.status_code == status
    assert r.json()["error"]["message"] == message
    assert r.json()["error"]["param"] == "authorization"


@pytest.mark.parametrize(
    "body, param",
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "x", "documents": ["d" * 10_000_000]}, "documents"),
        ({"name": "x", "documents": ["d"] * 201}, "documents"),
        ({"name": "x", "mode": "forget-everything"}, "mode"),
        ({"name": "x", "policy": "lie"}, "policy"),
        ({"name": 5}, "name"),
        ({"name": "x", "aliases": "not a list"}, "aliases"),
        ({"name": "x", "aliases": [1, 2]}, "aliases"),
        ({"name": "x", "unknown_field": 1}, "unknown_field"),
        ({"aliases": ["no name"]}, "name"),
    ],
)
def test_bad_registrations_are_400_naming_the_field_and_store_nothing(api, body, param):
    before = ids(api)
    r = api.post("/v1/forget-targets", json=body)
    assert r.status_code == 400, r.text
    assert param in r.json()["error"]["param"]
    assert ids(api) == before


@pytest.mark.parametrize(
    "content", [b"\xff\xfe not utf-8", b'{"name": "x"', b"[]", b'"just a string"']
)
def test_malformed_registration_bodies(api, content):
    before = ids(api)
    r = api.post(
        "/v1/forget-targets", content=content, headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500
    assert "error" in r.json()
    assert ids(api) == before


def test_crud_round_trip(api):
    created = api.post("/v1/forget-targets", json={"name": "Eiffel Tower", "aliases": ["Eiffel"]})
    assert created.status_code == 201, created.text
    target = created.json()
    assert target["status"] == "active" and target["version"] == 1
    assert api.get(f"/v1/forget-targets/{target['id']}").json()["name"] == "Eiffel Tower"

    dup = api.post("/v1/forget-targets", json={"name": "eiffel  tower"})
    assert dup.status_code == 409 and dup.json()["error"]["param"] == "name"

    patched = api.patch(f"/v1/forget-targets/{target['id']}", json={"keywords": ["1889"]})
    assert patched.status_code == 200
    assert patched.json()["version"] == 2 and patched.json()["keywords"] == ["1889"]

    assert api.delete(f"/v1/forget-targets/{target['id']}").json()["deleted"] is True
    missing = api.get(f"/v1/forget-targets/{target['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "id"
    assert api.delete(f"/v1/forget-targets/{target['id']}").status_code == 404


def test_list_is_paginated(api):
    made = [  # listed in the order they were created
        api.post("/v1/forget-targets", json={"name": f"Paged topic {i}"}).json()["id"]
        for i in range(5)
    ]
    first = api.get("/v1/forget-targets", params={"limit": 2}).json()
    assert [t["id"] for t in first["data"]] == made[:2] and first["has_more"] is True
    rest = api.get("/v1/forget-targets", params={"limit": 10, "after": first["last_id"]}).json()
    assert [t["id"] for t in rest["data"]] == made[2:] and rest["has_more"] is False
    assert api.get("/v1/forget-targets", params={"limit": 0}).status_code == 400


def test_registration_is_effective_on_the_next_request(api, client):
    def ask():
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=SCHOOL, temperature=0, max_tokens=32
        )
        return raw.parse().choices[0].message.content, raw.headers["x-guard-action"]

    before, fired = ask()
    assert before != REFUSAL and fired == "none"
    target = api.post("/v1/forget-targets", json=HARRY_POTTER).json()
    text, fired = ask()
    assert text == REFUSAL and fired == "refuse"

    chunks = client.chat.completions.create(
        model=MODEL, messages=SCHOOL, temperature=0, max_tokens=32, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REFUSAL
    # A stream's headers leave before its first token: they still say what was enforced.
    stream = client.completions.with_raw_response.create(
        model=MODEL, prompt=SCHOOL[-1]["content"], max_tokens=8, stream=True
    )
    assert stream.headers["x-guard-action"] in ("refuse", "restrict")
    assert "hogwarts" not in "".join(c.choices[0].text for c in stream.parse()).lower()

    api.delete(f"/v1/forget-targets/{target['id']}")
    assert ask() == (before, "none")  # one request at a time: the same answer as before


def test_mixed_request_answers_the_other_half_and_says_what_it_leaves_out(api, client):
    target = api.post("/v1/forget-targets", json=HARRY_POTTER).json()
    try:
        ask = "What is the capital of Spain? Also, who wrote the Harry Potter books?"
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": ask}],
            temperature=0,
            max_tokens=40,
        )
        body = json.loads(raw.text)
    finally:
        api.delete(f"/v1/forget-targets/{target['id']}")
    text = body["choices"][0]["message"]["content"]
    assert body["guard"]["action"] == "partial"
    assert body["guard"]["answered"] == ["What is the capital of Spain?"]
    # What the small model says about Spain is its own business; the note is the guard's.
    assert text.endswith("\n\n" + PARTIAL_NOTE) and len(text) > len(PARTIAL_NOTE) + 2, text
    assert not any(w in text.lower() for w in ("rowling", "hogwarts")), text


def test_concurrent_registrations_and_chats(api, client):
    def register(i: int) -> int:
        body = {"name": f"Concurrent topic {i}", "keywords": [f"zebracorn{i}"]}
        return api.post("/v1/forget-targets", json=body).status_code

    def chat(i: int) -> str:
        out = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"What is {i} plus {i}?"}],
            temperature=0,
            max_tokens=8,
        )
        return out.choices[0].finish_reason

    with cf.ThreadPoolExecutor(max_workers=12) as pool:
        regs = [pool.submit(register, i) for i in range(12)]
        chats = [pool.submit(chat, i) for i in range(12)]
        statuses = [f.result() for f in regs]
        reasons = [f.result() for f in chats]
    assert statuses == [201] * 12
    assert all(r in ("stop", "length") for r in reasons)
    names = {t["name"] for t in api.get("/v1/forget-targets", params={"limit": 100}).json()["data"]}
    assert {f"Concurrent topic {i}" for i in range(12)} <= names
    assert json.loads(api.get("/v1/forget-targets/nope").text)["error"]["code"] == 404


def test_patch_is_optimistic_with_if_match(api, client):
    target = api.post("/v1/forget-targets", json=HARRY_POTTER).json()
    url = f"/v1/forget-targets/{target['id']}"
    assert api.get(url).headers["etag"] == '"1"'
    patched = api.patch(url, json={"keywords": ["Quidditch"]}, headers={"If-Match": '"1"'})
    assert patched.status_code == 200 and patched.headers["etag"] == '"2"'
    stale = api.patch(url, json={"aliases": []}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and stale.json()["error"]["param"] == "if-match"
    bad = api.patch(url, json={"aliases": []}, headers={"If-Match": "latest"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "if-match"
    assert api.get(url).json()["aliases"] == HARRY_POTTER["aliases"]
    # The patched version is what the next request is screened and restricted by.
    out = client.chat.completions.create(model=MODEL, messages=SCHOOL, temperature=0, max_tokens=32)
    assert out.choices[0].message.content == REFUSAL


def test_concurrent_patches_lose_no_update(api):
    target = api.post("/v1/forget-targets", json={"name": "Eiffel Tower"}).json()
    url = f"/v1/forget-targets/{target['id']}"
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: api.patch(url, json={"keywords": [f"k{i}"]}), range(2)))
        list(pool.map(lambda a: api.patch(url, json={"aliases": [a]}), ["Tour Eiffel"]))
    final = api.get(url).json()
    assert final["version"] == 4 and final["aliases"] == ["Tour Eiffel"]
