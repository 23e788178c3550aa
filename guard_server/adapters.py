"""Unlearning adapters served through vLLM's LoRA support as `<base>:<adapter>`.

vLLM 0.32's CPU LoRA ops give base-model rows the adapter of the *last* slot in a batch that
mixes base and LoRA requests (upstream PRs #48421, #49656). A base row is only safe while that
slot can never be filled, so the manager keeps at most `max_loras - 1` adapters loaded in the
engine (unloading removes an adapter from the engine too, freeing its slot) and the CLI never
starts an engine with `max_loras < 2`.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard_server import errors
from guard_server.models import ADAPTER_CARD as CARD

if TYPE_CHECKING:
    from vllm.entrypoints.openai.models.serving import OpenAIServingModels

    from guard_server.store import TargetStore

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ERR_NAME = "adapter name must be 1-64 letters, digits, '.', '_' or '-', got {name!r}"
ERR_PATH = "no PEFT adapter at {path!r} (adapter_config.json missing)"
ERR_FULL = (
    "{loaded} adapter(s) are loaded, the most this engine serves safely (max_loras - 1 = "
    "{limit}); unload one first or restart with a larger --max-loras"
)
ERR_DISABLED = "LoRA serving is off: start the server with --enable-lora"
ERR_UNKNOWN = "no adapter named {name!r} is loaded"
ERR_DUPLICATE = "an adapter named {name!r} is already loaded"


_CARD_OMITS = ("logs", "losses")  # per-step training logs: in the file, not the listing


def card(path: str) -> dict[str, Any] | None:
    """What an adapter folder says about itself: method, hyper-parameters, data, scores."""
    try:
        report = json.loads((Path(path) / CARD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict):
        return None
    return {k: v for k, v in report.items() if k not in _CARD_OMITS}


def add_scores(path: str | Path, scores: dict[str, Any]) -> None:
    """Record evaluation scores in an adapter's card."""
    file = Path(path) / CARD
    report = json.loads(file.read_text())
    report["scores"] = {**report.get("scores", {}), **scores}
    file.write_text(json.dumps(report, indent=2) + "\n")


class AdapterManager:
    """Loads and unloads adapters in the engine; the list of loaded adapters is durable."""

    def __init__(
        self, serving: OpenAIServingModels, store: TargetStore, base: str, max_loras: int | None
    ):
        self.serving = serving
        self.store = store
        self.base = base
        self.limit = max(max_loras - 1, 0) if max_loras else 0
        # The slot check and the engine load are one step: two loads must not both pass the
        # check for the last free slot while the first is still loading.
        self._lock = asyncio.Lock()

    def served_name(self, name: str) -> str:
        return f"{self.base}:{name}"

    def loaded(self) -> dict[str, str]:
        return self.store.adapters()

    async def load(self, name: str, path: str, persist: bool = True) -> str:
        async with self._lock:
            return await self._load(name, path, persist)

    async def _load(self, name: str, path: str, persist: bool) -> str:
        if not self.limit:
            raise errors.InvalidRequest(ERR_DISABLED, "name")
        if not _NAME.match(name):
            raise errors.InvalidRequest(ERR_NAME.format(name=name), "name")
        if not (Path(path) / "adapter_config.json").is_file():
            raise errors.InvalidRequest(ERR_PATH.format(path=path), "path")
        loaded = self.loaded()
        if persist and name in loaded:
            raise errors.Conflict(ERR_DUPLICATE.format(name=name), "name")
        if persist and len(loaded) >= self.limit:
            raise errors.Conflict(ERR_FULL.format(loaded=len(loaded), limit=self.limit), "name")
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse
        from vllm.entrypoints.serve.lora.protocol import LoadLoRAAdapterRequest

        request = LoadLoRAAdapterRequest(lora_name=self.served_name(name), lora_path=path)
        result = await self.serving.load_lora_adapter(request, base_model_name=self.base)
        if isinstance(result, ErrorResponse):
            raise errors.InvalidRequest(result.error.message, "path")
        if persist:
            self.store.put_adapter(name, str(Path(path).resolve()))
        return self.served_name(name)

    async def unload(self, name: str) -> None:
        async with self._lock:
            await self._unload(name)

    async def _unload(self, name: str) -> None:
        served = self.served_name(name)
        lora = self.serving.lora_requests.get(served)
        if lora is None or name not in self.loaded():
            raise errors.NotFound(ERR_UNKNOWN.format(name=name), "name")
        self.store.delete_adapter(name)
        del self.serving.lora_requests[served]
        # Free the engine slot too, or a later adapter could land in the last slot.
        await self.serving.engine_client.remove_lora(lora.lora_int_id)

    async def restore(self) -> list[str]:
        """Load every adapter the store lists (after a restart)."""
        restored = []
        for name, path in self.loaded().items():
            restored.append(await self.load(name, path, persist=False))
        return restored
