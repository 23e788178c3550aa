"""Engine defaults of `guard-server serve` that depend on the host."""

from __future__ import annotations

import pytest
import torch

from guard_server.cli import finalize_args, make_parser


def _dtype(argv: list[str]) -> str:
    return finalize_args(make_parser().parse_args(argv)).dtype


@pytest.fixture
def cpu_host(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return monkeypatch


def test_a_cpu_without_native_bfloat16_computes_in_float32(cpu_host):
    # Emulated bfloat16 makes every prompt token cost ~8x more on an AVX2-only CPU.
    cpu_host.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert _dtype([]) == "float32"


def test_a_cpu_with_native_bfloat16_keeps_the_models_dtype(cpu_host):
    cpu_host.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert _dtype([]) == "auto"


def test_an_explicit_dtype_wins(cpu_host):
    cpu_host.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert _dtype(["--dtype", "bfloat16"]) == "bfloat16"
