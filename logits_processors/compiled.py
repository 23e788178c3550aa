"""A forget target compiled for the sampler: token sequences, penalty, refusal. Wire format too."""

from __future__ import annotations

import json
from dataclasses import dataclass

FORMAT = 1


@dataclass(frozen=True)
class CompiledTarget:
    """Everything the worker needs for one target version; built once, at registration.

    `sequences` are forbidden token-id sequences (every tokenizer variant of every phrase);
    `penalty_ids`/`penalty_vals` are the sparse semantic penalty over the vocabulary;
    `refusal` is the token ids of the honest refusal, ending with the end-of-turn token;
    `note` ends a partial answer the same way ("... about the rest of your question.").
    """

    target_id: str
    version: int
    policy: str
    sequences: tuple[tuple[int, ...], ...]
    penalty_ids: tuple[int, ...]
    penalty_vals: tuple[float, ...]
    refusal: tuple[int, ...]
    strength: float = 4.0
    note: tuple[int, ...] = ()

    def to_bytes(self) -> bytes:
        body = {
            "format": FORMAT,
            "target_id": self.target_id,
            "version": self.version,
            "policy": self.policy,
            "sequences": [list(s) for s in self.sequences],
            "penalty_ids": list(self.penalty_ids),
            "penalty_vals": [round(v, 4) for v in self.penalty_vals],
            "refusal": list(self.refusal),
            "strength": self.strength,
            "note": list(self.note),
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> CompiledTarget:
        body = json.loads(blob)
        if body.pop("format", None) != FORMAT:
            raise ValueError("compiled target has an unknown format; recompile it")
        return cls(
            target_id=body["target_id"],
            version=body["version"],
            policy=body["policy"],
            sequences=tuple(tuple(s) for s in body["sequences"]),
            penalty_ids=tuple(body["penalty_ids"]),
            penalty_vals=tuple(body["penalty_vals"]),
            refusal=tuple(body["refusal"]),
            strength=body["strength"],
            note=tuple(body.get("note", ())),  # absent in blobs compiled before partial answers
        )
