"""kill -9 right after the 201: nothing of the server lives on, and the restarted server lists
and enforces the target."""

from __future__ import annotations

import os
import signal

import httpx
import psutil
from openai import OpenAI

from bench.serverproc import ADMIN_KEY, start_server
from guard_server.compiler import REFUSAL
from tests.conftest import free_port

QUESTION = [{"role": "user", "content": "Who developed the theory of relativity?"}]
TARGET = {"name": "Albert Einstein", "aliases": ["Einstein"], "keywords": ["theory of relativity"]}


ORPHAN_GRACE_S = 15


def test_target_survives_kill_9_right_after_the_201(tmp_path, model_dir):
    db, log = tmp_path / "guard.db", tmp_path / "server.log"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    server = start_server(free_port(), db, log)
    try:
        r = httpx.post(f"{server.base_url}/v1/forget-targets", json=TARGET, headers=headers)
        assert r.status_code == 201
        spawned = psutil.Process(server.proc.pid).children(recursive=True)
        assert len(spawned) >= 2  # the engine core (and its worker) and detection
        # Only the server process, as a crash would: no shutdown hook of it runs, and only
        # what was committed survives. Its engine and detection must not outlive it.
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=30)
        _, alive = psutil.wait_procs(spawned, timeout=ORPHAN_GRACE_S)
        assert not alive, [(p.pid, p.name()) for p in alive]
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
