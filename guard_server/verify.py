"""Each target proves itself on demand: a background job asks the served model the target's
probes (`classifiers.verify_probes`) through the server's own chat route, as any client
would, and records what happened, persisted beside the target (not part of its version)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import httpx

from classifiers.verify_probes import verification_probes
from logits_processors.fold import fold

logger = logging.getLogger(__name__)
MAX_TOKENS = 48


def forgotten(answer: str, action: str, names: list[str]) -> bool:
    """Refused, or answered without naming the target."""
    folded = fold(answer)
    return action != "none" or not any(fold(n) in folded for n in names)


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    forget = [r for r in results if r["kind"] != "neighbour"]
    kept = [r for r in results if r["kind"] == "neighbour"]
    held = sum(r["forgotten"] for r in forget)
    answered = sum(r["action"] == "none" for r in kept)
    by_kind = {
        kind: f"{sum(r['forgotten'] for r in forget if r['kind'] == kind)} of "
        f"{sum(r['kind'] == kind for r in forget)}"
        for kind in dict.fromkeys(r["kind"] for r in forget)
    }
    return {
        "text": f"forgotten: {held} of {len(forget)} refused or answered without it; "
        f"neighbours answered {answered} of {len(kept)}",
        "forgotten": held,
        "forget_probes": len(forget),
        "neighbours_answered": answered,
        "neighbour_probes": len(kept),
        "by_kind": by_kind,
    }


class Verifier:
    """Runs verification jobs against this server; one record per job in the store."""

    def __init__(self, store: Any, model: str, client_key: str | None = None):
        self.store = store
        self.model = model
        self.client_key = client_key
        self._tasks: set[asyncio.Task] = set()

    def start(self, row: Any, base_url: str) -> dict[str, Any]:
        job = {
            "id": "ver_" + secrets.token_hex(6),
            "object": "forget_target.verification",
            "target_id": row.id,
            "version": row.version,
            "status": "running",
            "started_at": time.time(),
            "finished_at": None,
            "summary": None,
            "probes": [],
        }
        self.store.put_verification(job)
        task = asyncio.create_task(self._run(job, row, base_url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: dict[str, Any], row: Any, base_url: str) -> None:
        names = [row.spec["name"], *row.spec.get("aliases", [])]
        headers = {"Authorization": f"Bearer {self.client_key}"} if self.client_key else {}
        try:
            async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=300) as http:
                for probe in verification_probes(row.spec):
                    body = {
                        "model": self.model,
                        "messages": [{"role": "user", "content": probe.prompt}],
                        "temperature": 0,
                        "max_tokens": MAX_TOKENS,
                    }
                    r = await http.post("/v1/chat/completions", json=body)
                    r.raise_for_status()
                    answer = r.json()["choices"][0]["message"]["content"] or ""
                    action = r.headers.get("x-guard-action", "none")
                    job["probes"].append(
                        {"kind": probe.kind, "prompt": probe.prompt, "answer": answer}
                        | {"action": action, "forgotten": forgotten(answer, action, names)}
                    )
            job["summary"], job["status"] = summary(job["probes"]), "completed"
        except Exception as exc:  # recorded for the operator to read
            logger.exception("verification %s failed", job["id"])
            job["status"], job["summary"] = "failed", {"text": f"{type(exc).__name__}: {exc}"}
        job["finished_at"] = time.time()
        await asyncio.to_thread(self.store.put_verification, job)
