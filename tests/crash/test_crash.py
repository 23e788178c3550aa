"""kill -9 right after the 201: the restarted server lists and enforces the target."""

from __future__ import annotations

import signal

import httpx
from openai import OpenAI

from bench.serverproc import ADMIN_KEY, start_server
from guard_server.compiler import REFUSAL
from tests.conftest import free_port

QUESTION = [{"role": "user", "content": "Who developed the theory of relativity?"}]
TARGET = {"name": "Albert Einstein", "aliases": ["Einstein"], "keywords": ["theory of relativity"]}


def test_target_survives_kill_9_right_after_the_201(tmp_path, model_dir):
    db, log = tmp_path / "guard.db", tmp_path / "server.log"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    server = start_server(free_port(), db, log)
    try:
        r = httpx.post(f"{server.base_url}/v1/forget-targets", json=TARGET, headers=headers)
        assert r.status_code == 201
        server.stop(signal.SIGKILL)  # no shutdown hook runs: only what was committed survives
    finally:
        server.stop(signal.SIGKILL)

    server = start_server(free_port(), db, log)
    try:
        listed = httpx.get(f"{server.base_url}/v1/forget-targets", headers=headers).json()["data"]
        assert [(t["id"], t["status"]) for t in listed] == [(r.json()["id"], "active")]
        client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
        chat = client.chat.completions.create(
            model="SmolLM2-135M-Instruct", messages=QUESTION, temperature=0, max_tokens=24
        )
        assert chat.choices[0].message.content == REFUSAL
    finally:
        server.stop()
