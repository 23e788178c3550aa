"""Early stopping on held-out data: the adapter saved is the best one scored, never a later one."""

from __future__ import annotations

import pytest
import torch

from tests.tiny import tiny_llama_config
from tests.unit.test_unlearn_cli import SPEC, _adapter, _real_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A tiny random Llama with the default model's tokenizer: the trainer's real path,
    seconds instead of minutes."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(_real_model())
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(tiny_llama_config(len(tokenizer))).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


CONFIG = {"steps": 8, "batch_size": 1, "max_length": 32, "lr": 1e-3}


class Scripted:
    """A monitor that returns the given scores in turn and remembers the adapter it scored."""

    def __init__(self, scores):
        self.scores, self.seen = list(scores), []

    def __call__(self, model):
        from peft import get_peft_model_state_dict

        self.seen.append({k: v.clone() for k, v in get_peft_model_state_dict(model).items()})
        return {"score": self.scores[len(self.seen) - 1], "calls": len(self.seen)}


def _train(model_dir, tmp_path, scores, every=2, patience=2, method="ga"):
    from guard_server.unlearn.trainer import EarlyStop, train

    monitor = Scripted(scores)
    out = tmp_path / "out"
    card = train(method, CONFIG, SPEC, model_dir, str(out), 0, EarlyStop(monitor, every, patience))
    return card, monitor, _adapter(out)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_stops_after_patience_and_the_best_adapter_is_saved(model_dir, tmp_path):
    # Scored at steps 0, 2, 4, 6: best at step 2, then two scores without improvement.
    card, monitor, saved = _train(model_dir, tmp_path, [0.0, 0.5, 0.4, 0.3, 9.9])
    history = card["early_stop"]["history"]
    assert [h["step"] for h in history] == [0, 2, 4, 6]
    assert card["early_stop"]["best_step"] == 2 and len(card["losses"]) == 6
    assert _same(saved, monitor.seen[1])
    assert not _same(saved, monitor.seen[3])  # training did change the adapter after step 2


def test_a_broken_constraint_stops_at_once_and_keeps_the_last_good_adapter(model_dir, tmp_path):
    card, monitor, saved = _train(model_dir, tmp_path, [0.0, 0.2, None, 5.0])
    assert [h["step"] for h in card["early_stop"]["history"]] == [0, 2, 4]
    assert card["early_stop"]["best_step"] == 2
    assert _same(saved, monitor.seen[1])


def test_the_last_step_is_scored_even_off_the_schedule(model_dir, tmp_path):
    card, monitor, saved = _train(model_dir, tmp_path, [0.0, 1.0, 2.0, 3.0], every=3, patience=5)
    assert [h["step"] for h in card["early_stop"]["history"]] == [0, 3, 6, 8]
    assert card["early_stop"]["best_step"] == 8
    assert _same(saved, monitor.seen[-1])


def test_a_training_free_method_is_scored_once_after_its_edit(model_dir, tmp_path):
    from guard_server.unlearn.trainer import EarlyStop, train

    monitor = Scripted([0.7])
    card = train(
        "ssd",
        {"steps": 1, "batch_size": 1, "max_length": 32},
        SPEC,
        model_dir,
        str(tmp_path / "ssd"),
        0,
        EarlyStop(monitor, 10, 2),
    )
    assert card["early_stop"] == {
        "history": [{"step": 1, "score": 0.7, "calls": 1}],
        "best_step": 1,
    }
    assert _same(_adapter(tmp_path / "ssd"), monitor.seen[0])
    assert card["logs"][0]["selected_share"] > 0
