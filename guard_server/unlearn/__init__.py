"""Offline unlearning: LoRA adapters trained with GA, GD, NPO, SimNPO, RMU, FLAT, GU, IdkNLL,
SHRED (no retain set), or SSD (training-free)."""

# Importing the package fills the method registry (PEFT-style: register where defined).
from guard_server.unlearn import flat, ga, gd, gu, idk, npo, rmu, shred, simnpo, ssd  # noqa: F401
from guard_server.unlearn.base import (
    Batch,
    Tokens,
    UnlearnConfig,
    UnlearningMethod,
    get_method,
    make_config,
    method_names,
    register_method,
)

__all__ = [
    "Batch",
    "Tokens",
    "UnlearnConfig",
    "UnlearningMethod",
    "get_method",
    "make_config",
    "method_names",
    "register_method",
]
