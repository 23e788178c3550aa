"""Early stopping on held-out data: the adapter saved is the best one scored, never a later one."""

from __future__ import annotations

import pytest
import torch

from tests.tiny import tiny_llama_config
from tests.unit.test_unlearn_cli import SPEC, _adapter, _real_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
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


def test_a_broken_constraint_counts_as_no_improvement_and_keeps_the_last_good_adapter(
    model_dir, tmp_path
):
    card, monitor, saved = _train(model_dir, tmp_path, [0.0, 0.2, None, None, 5.0])
    assert [h["step"] for h in card["early_stop"]["history"]] == [0, 2, 4, 6]
    assert card["early_stop"]["best_step"] == 2
    assert _same(saved, monitor.seen[1])


def test_training_goes_on_past_a_broken_constraint_to_a_better_adapter(model_dir, tmp_path):
    # A method that first gives everyone the taught answer, then learns whom it is for.
    card, monitor, saved = _train(model_dir, tmp_path, [0.0, None, 0.4, 0.3, 0.2])
    assert [h["step"] for h in card["early_stop"]["history"]] == [0, 2, 4, 6, 8]
    assert card["early_stop"]["best_step"] == 4
    assert _same(saved, monitor.seen[2])


def test_the_last_step_is_scored_even_off_the_schedule(model_dir, tmp_path):
    card, monitor, saved = _train(model_dir, tmp_path, [0.0, 1.0, 2.0, 3.0], every=3, patience=5)
    assert [h["step"] for h in card["early_stop"]["history"]] == [0, 3, 6, 8]
    assert card["early_stop"]["best_step"] == 8
    assert _same(saved, monitor.seen[-1])


def test_a_training_free_method_is_scored_before_and_after_its_edit(model_dir, tmp_path):
    from guard_server.unlearn.trainer import EarlyStop, train

    monitor = Scripted([0.0, 0.7])
    card = train(
        "ssd",
        {"steps": 1, "batch_size": 1, "max_length": 32},
        SPEC,
        model_dir,
        str(tmp_path / "ssd"),
        0,
        EarlyStop(monitor, 10, 2),
    )
    history = card["early_stop"]["history"]
    assert [h["step"] for h in history] == [0, 1] and card["early_stop"]["best_step"] == 1
    assert _same(_adapter(tmp_path / "ssd"), monitor.seen[1])
    assert not _same(monitor.seen[0], monitor.seen[1])  # step 0 is the zero adapter
    assert card["logs"][0]["selected_share"] > 0


def test_a_training_free_edit_that_breaks_a_constraint_is_not_served(model_dir, tmp_path):
    from guard_server.unlearn.trainer import EarlyStop, train

    monitor = Scripted([0.0, None])
    config = {"steps": 1, "batch_size": 1, "max_length": 32}
    card = train("ssd", config, SPEC, model_dir, str(tmp_path / "ssd"), 0, EarlyStop(monitor, 1, 1))
    assert card["early_stop"]["best_step"] == 0
    assert _same(_adapter(tmp_path / "ssd"), monitor.seen[0])  # the unchanged model


@pytest.mark.parametrize("every, patience", [(0, 2), (2, 0)])
def test_early_stopping_settings_are_checked(every, patience):
    from guard_server.unlearn.trainer import EarlyStop

    name = "every" if every < 1 else "patience"
    with pytest.raises(ValueError, match=name):
        EarlyStop(Scripted([]), every, patience)


def test_an_interrupted_run_resumes_with_its_early_stopping_state(model_dir, tmp_path, monkeypatch):
    from guard_server.unlearn import get_method
    from guard_server.unlearn.trainer import CHECKPOINT, EarlyStop, train

    scores = [0.0, 0.5, 0.4, 0.3, 0.2]
    config = {**CONFIG, "steps": 8}
    whole = train(
        "ga", config, SPEC, model_dir, str(tmp_path / "w"), 2, EarlyStop(Scripted(scores), 2, 9)
    )

    method, calls = get_method("ga"), []
    real_step = method.step

    def interrupted(self, *args):
        calls.append(1)
        if len(calls) == 5:  # killed during step 5: steps 1-4 and their scores are saved
            raise KeyboardInterrupt
        return real_step(self, *args)

    out = tmp_path / "r"
    monkeypatch.setattr(method, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train("ga", config, SPEC, model_dir, str(out), 2, EarlyStop(Scripted(scores), 2, 9))
    assert (out / CHECKPOINT / "state.pt").exists()
    monkeypatch.undo()
    # The resumed run's monitor is asked only about the steps not yet scored.
    resumed = train(
        "ga", config, SPEC, model_dir, str(out), 2, EarlyStop(Scripted(scores[3:]), 2, 9)
    )

    def scored(card):
        return [(h["step"], h["score"]) for h in card["early_stop"]["history"]]

    assert scored(resumed) == scored(whole) == [(0, 0.0), (2, 0.5), (4, 0.4), (6, 0.3), (8, 0.2)]
    assert resumed["early_stop"]["best_step"] == whole["early_stop"]["best_step"] == 2
    assert _same(_adapter(out), _adapter(tmp_path / "w"))
