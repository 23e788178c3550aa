"""Engine defaults of `guard-server serve` that depend on the host."""

from __future__ import annotations

import pytest
import torch

from guard_server.cli import finalize_args, make_parser


def _dtype(argv: list[str]) -> str:
    return finalize_args(make_parser().parse_args(argv)).dtype


@pytest.fixture
def cpu_host(monkeypatch):
    """A CPU host on which nobody set the dtype (the suite may run under GUARD_CPU_DTYPE)."""
    monkeypatch.delenv("GUARD_CPU_DTYPE", raising=False)
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


@pytest.mark.parametrize("native", [True, False])
def test_the_cpu_dtype_is_set_by_the_environment_on_either_kind_of_cpu(cpu_host, native):
    cpu_host.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    cpu_host.setenv("GUARD_CPU_DTYPE", "float32" if native else "bfloat16")
    assert _dtype([]) == ("float32" if native else "bfloat16")
    assert _dtype(["--dtype", "float16"]) == "float16"


def test_an_explicit_dtype_wins(cpu_host):
    cpu_host.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert _dtype(["--dtype", "bfloat16"]) == "bfloat16"


def test_cpu_settings_are_the_defaults_only_on_a_cpu(cpu_host):
    cpu_host.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    cpu = finalize_args(make_parser().parse_args([]))
    assert (cpu.enforce_eager, cpu.max_model_len) == (True, 2048)
    cpu_host.setattr(torch.cuda, "is_available", lambda: True)
    gpu = finalize_args(make_parser().parse_args([]))
    # vLLM's own: CUDA graphs, the model's context, its memory fraction.
    assert not gpu.enforce_eager and gpu.max_model_len is None
    assert gpu.kv_cache_memory_bytes is None and gpu.dtype == "auto"
    overridden = finalize_args(make_parser().parse_args(["--max-model-len", "4096"]))
    assert overridden.max_model_len == 4096


def test_the_admin_key_is_never_printed_and_is_read_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("GUARD_ADMIN_KEY", "s3cret-admin-key")
    parser = make_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help=all"])
    printed = capsys.readouterr().out
    assert "--admin-key" in printed and "s3cret-admin-key" not in printed
    assert "(default: None)" not in printed.split("\nguard:")[-1].split("\n\n")[0]
    args = finalize_args(parser.parse_args([]))
    assert args.admin_keys.match("s3cret-admin-key").name == "admin"
    assert "s3cret-admin-key" not in repr(vars(args))


def test_the_embedded_default_needs_no_network_and_a_hub_model_may_fetch(monkeypatch):
    assert finalize_args(make_parser().parse_args([])).embedded_model
    named = finalize_args(make_parser().parse_args(["HuggingFaceTB/SmolLM2-135M-Instruct"]))
    assert not named.embedded_model and named.model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_speculative_decoding_is_refused_at_start():
    """A draft's tokens are verified several at a step; the answer watch reads one."""
    with pytest.raises(SystemExit, match="speculative"):
        finalize_args(make_parser().parse_args(["--speculative-config", '{"method": "ngram"}']))
