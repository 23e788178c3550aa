"""A server run with vLLM's --api-key: clients and admins hold different keys. SIGTERM to a
server process alone (as `kill -TERM <pid>` does) takes the engine with it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from openai import AuthenticationError, OpenAI

from bench.serverproc import ADMIN_KEY, start_server
from tests.conftest import free_port

CLIENT_KEY = "client-key"
MODEL = "SmolLM2-135M-Instruct"


def gone_within(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    return alive


NAMED = {"alice": "alice-secret-key", "ci": "ci-secret-key"}


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("keyed")
    (root / "keys.json").write_text(json.dumps(NAMED))
    server = start_server(
        free_port(),
        root / "guard.db",
        root / "server.log",
        "--api-key",
        CLIENT_KEY,
        "--admin-keys-file",
        str(root / "keys.json"),
    )
    yield server
    server.stop()


def admin_post(server, key: str):
    return httpx.post(
        f"{server.base_url}/v1/forget-targets",
        json={"name": "Eiffel Tower"},
        headers={"Authorization": f"Bearer {key}"},
    )


def test_an_api_client_is_not_an_admin(keyed_server):
    r = admin_post(keyed_server, CLIENT_KEY)
    assert r.status_code == 403 and r.json()["error"]["param"] == "authorization"


def test_an_admin_needs_only_the_admin_key(keyed_server):
    r = admin_post(keyed_server, ADMIN_KEY)
    assert r.status_code == 201, r.text
    target = r.json()["id"]
    client = OpenAI(base_url=f"{keyed_server.base_url}/v1", api_key=CLIENT_KEY, max_retries=0)
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "How tall is the Eiffel Tower?"}],
        max_tokens=16,
        temperature=0,
    )
    assert out.model_extra["guard"]["action"] == "refuse"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert httpx.delete(f"{keyed_server.base_url}/v1/forget-targets/{target}", headers=headers)


def test_each_named_admin_is_told_apart_in_the_audit_and_no_key_is_logged(keyed_server):
    made = admin_post(keyed_server, NAMED["alice"])
    assert made.status_code == 201, made.text
    url = f"{keyed_server.base_url}/v1/forget-targets"
    gone = httpx.delete(
        f"{url}/{made.json()['id']}", headers={"Authorization": f"Bearer {NAMED['ci']}"}
    )
    assert gone.status_code == 200
    log = httpx.get(
        f"{url}/audit",
        params={"target_id": made.json()["id"]},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    ).json()["data"]
    assert [(e["op"], e["actor"]) for e in log] == [("delete", "ci"), ("create", "alice")]
    logged = keyed_server.log.read_text(errors="replace")
    assert not any(key in logged for key in (*NAMED.values(), ADMIN_KEY, CLIENT_KEY))


def test_the_client_api_still_needs_the_client_key(keyed_server):
    client = OpenAI(base_url=f"{keyed_server.base_url}/v1", api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(AuthenticationError):
        client.models.list()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/invocations", {"model": MODEL, "prompt": "Hi", "max_tokens": 2}),
        (
            "/generative_scoring",
            {"model": MODEL, "query": "Hi", "items": ["a"], "label_token_ids": [1]},
        ),
        ("/tokenize", {"model": MODEL, "prompt": "Hi"}),
        ("/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 2}),
    ],
)
def test_every_route_that_generates_or_scores_needs_the_client_key(keyed_server, path, body):
    url = f"{keyed_server.base_url}{path}"
    refused = httpx.post(url, json=body, timeout=120)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["type"] == "AuthenticationError"
    allowed = httpx.post(
        url, json=body, headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=120
    )
    assert allowed.status_code == 200, allowed.text
    assert httpx.get(f"{keyed_server.base_url}/health").status_code == 200


def test_sigterm_to_the_server_takes_the_engine_with_it(tmp_path, model_dir):
    # A server of its own: the one the other tests share must outlive this test in any order.
    server = start_server(free_port(), tmp_path / "guard.db", tmp_path / "server.log")
    try:
        proc = psutil.Process(server.proc.pid)
        children = proc.children(recursive=True)
        assert children, "the engine core runs in a child process"
        os.kill(proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=90)
        assert gone_within(children, 30) == []
    finally:
        with contextlib.suppress(ProcessLookupError):  # its process group, were anything left
            os.killpg(server.proc.pid, signal.SIGKILL)


def test_sigterm_during_start_up_leaves_no_engine_behind(tmp_path, model_dir):
    cmd = [sys.executable, "-m", "guard_server.cli", "serve", "--port", str(free_port())]
    cmd += ["--db", str(tmp_path / "guard.db")]
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not psutil.Process(proc.pid).children(recursive=True):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        assert gone_within(children, 30) == []
    finally:
        if proc.poll() is None:
            proc.kill()
