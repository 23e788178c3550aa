"""Start and stop the real guard server as a subprocess on a loopback port (tests, bench)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ADMIN_KEY = "test-admin-key"
START_TIMEOUT_S = 240


def load_adapter(base_url: str, name: str, path: str | Path) -> str:
    """Load a PEFT adapter into a running server (admin API); the model name that selects it."""
    r = httpx.post(
        f"{base_url}/v1/adapters",
        json={"name": name, "path": str(Path(path).resolve())},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=600,
    )
    r.raise_for_status()
    return r.json()["model"]


def wait_learned(
    base_url: str, timeout: float = 7200.0, admin_key: str = ADMIN_KEY
) -> dict[str, Any]:
    """Wait until the server has learned every registered target's associations (each
    target's `learning` in the admin API); what that took."""
    started = time.monotonic()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {admin_key}"}) as http:
        ids, after = [], None
        while True:
            query = {"limit": 100} | ({"after": after} if after else {})
            page = http.get("/v1/forget-targets", params=query).raise_for_status().json()
            ids += [t["id"] for t in page["data"]]
            if not page["has_more"]:
                break
            after = page["last_id"]
        # One target asked about at a time (the learner goes through them in order): polling
        # them all would take the cores the learning needs.
        pending = list(ids)
        states: dict[str, dict[str, Any]] = {}
        while pending:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"learning did not finish in {timeout:.0f} s")
            got = http.get(f"/v1/forget-targets/{pending[0]}").raise_for_status().json()
            states[pending[0]] = got["learning"] | {"name": got["name"]}
            if states[pending[0]]["status"] in ("done", "failed"):
                pending.pop(0)
            else:
                time.sleep(1)
    done = [s for s in states.values() if s["status"] == "done"]
    return {
        "targets": len(states),
        "failed": len(states) - len(done),
        "wall_seconds": round(time.monotonic() - started, 1),
        "tokens_per_target": max((s["tokens"] for s in done), default=0),
        "associations_per_target": round(
            sum(len(s["associations"]) for s in done) / max(len(done), 1), 2
        ),
        "associations": {s["name"]: s.get("associations", []) for s in states.values()},
    }


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    port: int
    log: Path
    db: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def start_server(port: int, db: Path, log: Path, *extra: str) -> ServerProcess:
    """Start `guard-server serve` in its own process group and wait for /health."""
    env = dict(os.environ, GUARD_ADMIN_KEY=ADMIN_KEY, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "guard_server.cli", "serve", "--port", str(port), "--db", str(db)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cmd, *extra], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return wait_healthy(ServerProcess(proc, port, log, db))


def wait_healthy(server: ServerProcess) -> ServerProcess:
    """Wait for /health; a server that exits or never answers is stopped and reported."""
    proc = server.proc
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not become healthy in {START_TIMEOUT_S}s:\n{server.log_tail()}")
