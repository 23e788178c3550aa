"""Two guard servers on one PostgreSQL registry, as replicas behind a load balancer would run."""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import httpx
import psycopg
import pytest
from openai import OpenAI

from bench.serverproc import ADMIN_KEY
from guard_server.compiler import REFUSAL
from tests.replicas.conftest import start

MODEL = "SmolLM2-135M-Instruct"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SCHOOL = "What is the name of the school Harry Potter attends?"
RELATIVITY = "Who developed the theory of relativity?"
HARRY_POTTER = {"name": "Harry Potter", "aliases": ["Hogwarts", "J.K. Rowling"]}
EINSTEIN = {"name": "Albert Einstein", "aliases": ["Einstein"], "keywords": ["relativity"]}


@pytest.fixture
def replicas(servers):
    """The replicas, with no target registered before or after the test."""
    forget_all(servers)
    yield servers
    forget_all(servers)


def forget_all(servers) -> None:
    """Delete every target, through the replica no test kills."""
    url = f"{servers['b'].base_url}/v1/forget-targets"
    for target in httpx.get(url, headers=ADMIN).json()["data"]:
        assert httpx.delete(f"{url}/{target['id']}", headers=ADMIN).status_code == 200


def ask(server, question: str) -> str:
    client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        max_tokens=24,
    )
    return out.choices[0].message.content


def register(server, body) -> dict:
    r = httpx.post(f"{server.base_url}/v1/forget-targets", json=body, headers=ADMIN, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


def test_a_target_written_on_one_replica_is_enforced_by_the_other(replicas):
    a, b = replicas["a"], replicas["b"]
    before = ask(b, SCHOOL)
    assert before != REFUSAL
    target = register(a, HARRY_POTTER)
    assert ask(b, SCHOOL) == REFUSAL  # the very next request on the other replica
    url = f"/v1/forget-targets/{target['id']}"
    patched = httpx.patch(f"{b.base_url}{url}", json={"keywords": ["Quidditch"]}, headers=ADMIN)
    assert patched.status_code == 200 and patched.json()["version"] == 2
    assert httpx.get(f"{a.base_url}{url}", headers=ADMIN).json()["version"] == 2
    assert ask(a, SCHOOL) == REFUSAL
    assert httpx.delete(f"{a.base_url}{url}", headers=ADMIN).status_code == 200
    assert ask(b, SCHOOL) == before  # one request at a time: the same answer as before


def consistent(url: str) -> list[tuple[str, str]]:
    """Every active row has its compiled version: the registry never says more than it has."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT t.id, t.status, c.blob IS NOT NULL FROM targets t"
            " LEFT JOIN compiled c ON c.target_id = t.id AND c.version = t.version"
        ).fetchall()
    assert all(has_blob for _, status, has_blob in rows if status == "active"), rows
    return [(i, s) for i, s, _ in rows]


def test_kill_9_mid_registration_leaves_the_other_replica_serving_and_is_recovered(replicas):
    a, b, url = replicas["a"], replicas["b"], replicas["url"]
    einstein = register(a, EINSTEIN)  # acknowledged before the crash

    def doomed() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the replica dies under it
            httpx.post(
                f"{a.base_url}/v1/forget-targets", json=HARRY_POTTER, headers=ADMIN, timeout=60
            )

    thread = threading.Thread(target=doomed)
    thread.start()
    time.sleep(0.15)  # the registration is being written or compiled
    a.stop(signal.SIGKILL)
    thread.join(60)

    assert ask(b, RELATIVITY) == REFUSAL
    everyday = ask(b, "What is the capital of France?")
    assert everyday.strip() and everyday != REFUSAL
    rows = dict(consistent(url))
    assert rows[einstein["id"]] == "active"

    replicas["a"] = a = start(a.port, url, replicas["root"] / "a2.log")
    rows = dict(consistent(url))
    assert set(rows.values()) == {"active"}, rows  # a half-done registration was finished
    listed = httpx.get(f"{a.base_url}/v1/forget-targets", headers=ADMIN).json()["data"]
    assert {t["id"] for t in listed} == set(rows)
    assert ask(a, RELATIVITY) == REFUSAL
    if len(rows) == 2:  # the doomed registration had reached the registry: now enforced
        assert ask(b, SCHOOL) == REFUSAL
