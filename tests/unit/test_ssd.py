"""SSD (selective synaptic dampening): the served adapter carries exactly the paper's edit."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from guard_server.unlearn import Batch, get_method, make_config
from guard_server.unlearn.base import UnlearnConfig
from guard_server.unlearn.losses import nll
from guard_server.unlearn.ssd import lora_layers
from guard_server.unlearn.trainer import lora_model
from tests.tiny import tiny_llama_config
from tests.unit.test_unlearn_methods import VOCAB, make_tokens

pytestmark = pytest.mark.usefixtures("one_thread")
HIDDEN = 32


class Batches:
    """The `UnlearnData.step_batch` interface over fixed forget and retain batches."""

    def __init__(self):
        self.drawn = 0

    def step_batch(self, config) -> Batch:
        self.drawn += 1
        return Batch(make_tokens(100 + self.drawn), make_tokens(200 + self.drawn))


def fisher(model: LlamaForCausalLM, batches: list) -> dict[str, torch.Tensor]:
    """The definition: mean over batches of each weight's squared NLL gradient."""
    total: dict[str, torch.Tensor] = {}
    for tokens in batches:
        model.zero_grad()
        nll(model, tokens).backward()
        for name, p in model.named_parameters():
            total[name] = total.get(name, 0) + p.grad.square()
    return {k: v / len(batches) for k, v in total.items()}


@pytest.mark.parametrize("alpha", [1.0, 10.0])
def test_the_adapter_is_the_dampening_of_forget_specific_weights(alpha):
    torch.manual_seed(0)
    base = LlamaForCausalLM(tiny_llama_config(VOCAB, hidden=HIDDEN))
    reference = LlamaForCausalLM(tiny_llama_config(VOCAB, hidden=HIDDEN))
    reference.load_state_dict(base.state_dict())
    # Full rank (the hidden size): the SVD factors reproduce the edit exactly.
    model = lora_model(base, make_config(UnlearnConfig, {"lora_rank": HIDDEN, "lora_alpha": 8}))
    ssd = get_method("ssd").from_overrides({"steps": 3, "alpha": alpha, "dampening": 1.0})
    logs = ssd.edit(model, Batches())

    same = Batches()  # draws the batches the edit drew
    drawn = [same.step_batch(None) for _ in range(3)]
    forget = fisher(reference, [b.forget for b in drawn])
    retain = fisher(reference, [b.retain for b in drawn])
    selected = 0
    for name, layer in lora_layers(model).items():
        key = name.removeprefix("base_model.model.") + ".weight"
        w, f, r = reference.state_dict()[key], forget[key], retain[key]
        chosen = f > alpha * r
        want = torch.where(chosen, w * (r / f).clamp(max=1.0), w)
        scaling = layer.scaling["default"]
        got = w + scaling * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        assert torch.allclose(got, want, atol=1e-5 * w.abs().max())
        assert torch.equal(layer.base_layer.weight, w)  # the base weights stay as they were
        selected += int(chosen.sum())
    assert selected > 0  # something was dampened, so the comparison above means something
    assert logs["kept_energy"] == pytest.approx(1.0, rel=1e-4)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


def test_a_low_rank_adapter_keeps_the_largest_part_of_the_edit():
    torch.manual_seed(0)
    base = LlamaForCausalLM(tiny_llama_config(VOCAB, hidden=HIDDEN))
    model = lora_model(base, make_config(UnlearnConfig, {"lora_rank": 2, "lora_alpha": 4}))
    logs = get_method("ssd").from_overrides({"steps": 2, "alpha": 1.0}).edit(model, Batches())
    assert 0 < logs["kept_energy"] < 1  # rank 2 of 32: only part of the change survives
    assert 0 < logs["selected_share"] < 1


def test_ssd_is_not_trained_and_its_constants_are_checked():
    ssd = get_method("ssd")
    assert ssd.training_free
    with pytest.raises(ValueError, match="alpha"):
        ssd.from_overrides({"alpha": 0})
    with pytest.raises(ValueError, match="dampening"):
        ssd.from_overrides({"dampening": "nan"})
