"""Adapter slots: two loads racing for the last safe slot cannot both take it."""

from __future__ import annotations

import asyncio

import pytest

from guard_server import errors
from guard_server.adapters import AdapterManager
from guard_server.store import SQLiteStore


class SlowServing:
    """vLLM's serving-models object at the boundary: a load that takes a while."""

    def __init__(self):
        self.loaded: list[str] = []

    async def load_lora_adapter(self, request, base_model_name):
        await asyncio.sleep(0.05)
        self.loaded.append(request.lora_name)
        return None


def test_concurrent_loads_never_fill_the_spare_slot(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
    serving = SlowServing()
    manager = AdapterManager(serving, SQLiteStore(tmp_path / "g.db"), "base", max_loras=2)

    async def both():
        return await asyncio.gather(
            manager.load("a", str(tmp_path / "a")),
            manager.load("b", str(tmp_path / "b")),
            return_exceptions=True,
        )

    results = asyncio.run(both())
    assert sum(isinstance(r, errors.Conflict) for r in results) == 1
    assert len(serving.loaded) == 1 == len(manager.loaded())
    with pytest.raises(errors.Conflict):
        asyncio.run(manager.load("b", str(tmp_path / "b")))


def test_an_adapter_card_is_its_report_without_step_logs_plus_scores(tmp_path):
    import json

    from guard_server.adapters import add_scores, card

    report = {"method": "npo", "config": {"lr": 1e-4}, "logs": [{"loss": 1.0}], "losses": [1.0]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    add_scores(tmp_path, {"leak_rate": 0.1})
    add_scores(tmp_path, {"honesty": 0.9})
    assert card(str(tmp_path)) == {
        "method": "npo",
        "config": {"lr": 1e-4},
        "scores": {"leak_rate": 0.1, "honesty": 0.9},
    }
    assert card(str(tmp_path / "elsewhere")) is None  # a folder with no card
