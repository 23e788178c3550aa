"""The attacks of `guard-bench attack`: quantization, relearning, scoring, in-context slices."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from bench.attack import in_context, leak_rate, relearn, rtn_quantize
from bench.suite import Probe
from guard_server.models import default_model_dir
from guard_server.unlearn.data import UnlearnData, collate
from guard_server.unlearn.losses import nll
from tests.tiny import tiny_llama_config

pytestmark = pytest.mark.usefixtures("one_thread")
TARGET = {
    "name": "Harry Potter",
    "aliases": ["Hogwarts"],
    "documents": ["Harry Potter is a wizard. He studies at Hogwarts with Hermione Granger."],
}


def tiny_llama(vocab: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config(vocab, hidden=16, layers=1, heads=2)).float()


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_rtn_quantize_puts_each_row_on_its_own_grid(bits):
    model = tiny_llama(64)
    before = {n: m.weight.detach().clone() for n, m in model.named_modules() if _linear(m)}
    rtn_quantize(model, bits)
    levels = 2 ** (bits - 1) - 1
    for name, module in model.named_modules():
        if not _linear(module):
            continue
        w, original = module.weight.detach(), before[name]
        scale = original.abs().amax(dim=1, keepdim=True) / levels
        steps = w / scale
        assert torch.allclose(steps, steps.round(), atol=1e-4), name
        assert steps.abs().max() <= levels + 1e-4
        assert ((w - original).abs() <= scale / 2 + 1e-6).all(), name
        assert not torch.equal(w, original)


def test_fewer_bits_lose_more():
    errors = {}
    for bits in (8, 4):
        model, reference = tiny_llama(64), tiny_llama(64)
        rtn_quantize(model, bits)
        errors[bits] = sum(
            (a.weight - b.weight).abs().sum().item()
            for a, b in zip(model.modules(), reference.modules(), strict=True)
            if _linear(a)
        )
    assert 0 < errors[8] < errors[4]


def _linear(module) -> bool:
    return isinstance(module, torch.nn.Linear)


PROBE = Probe("T", "direct", ({"role": "user", "content": "q"},), ("hogwarts",))


@pytest.mark.parametrize(
    ("base", "answers", "expected"),
    [
        (["Hogwarts!", "Hogwarts."], ["no", "no"], 0.0),
        (["Hogwarts!", "Hogwarts."], ["HOGWARTS", "no"], 0.5),
        (["Hogwarts!", "no idea"], ["Hogwarts", "Hogwarts"], 1.0),  # 2nd never leaked: ignored
        (["no", "no"], ["Hogwarts", "Hogwarts"], None),  # nothing to forget
    ],
)
def test_leak_rate_counts_only_probes_the_base_model_leaks(base, answers, expected):
    assert leak_rate([PROBE, PROBE], base, answers) == expected


def test_in_context_puts_the_forget_slice_before_the_probe():
    multi = Probe("T", "multi_turn", ({"role": "user", "content": "a"},) * 3, ("x",))
    out = in_context([PROBE, multi], TARGET, rows=1)
    assert [len(p.messages) for p in out] == [3, 5]
    assert "Harry Potter is a wizard." in out[0].messages[0]["content"]
    assert "Hermione" not in out[0].messages[0]["content"]  # one sentence only
    assert out[1].messages[2:] == multi.messages
    assert (out[0].kind, out[0].leak_keywords) == (PROBE.kind, PROBE.leak_keywords)


def test_relearning_lowers_the_forget_loss():
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    model = tiny_llama(len(tokenizer))
    data = UnlearnData.build(TARGET, tokenizer, 128, None, 0)
    batch = collate(data.forget[:4], data.pad_id)
    with torch.no_grad():
        before = nll(model, batch).item()
    relearned = relearn(model, tokenizer, TARGET, rows=4, steps=20)
    with torch.no_grad():
        after = nll(relearned, batch).item()
    assert type(relearned) is LlamaForCausalLM  # merged back, no adapter left
    assert after < before - 0.02, (before, after)
