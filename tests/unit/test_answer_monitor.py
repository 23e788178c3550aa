"""Early stopping for methods that teach one answer: judged on giving it to the targets'
held-out questions more readily than to other people's, texts kept."""

from __future__ import annotations

import pytest
import torch

from bench.rwku_corpus import HELD_OUT_QUESTIONS, AnswerMonitor, answer_logprob
from classifiers.probes import TEMPLATES
from tests.unit.test_early_stop import model_dir  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = {"targets": ["Stephen King"], "others": ["Sam Elliott"]}


class Scripted(AnswerMonitor):
    """The monitor's decision on given measurements: base first, then one adapter's."""

    def __init__(self, measured):
        super().__init__(None, "I don't know.", NAMES, {"other_people": ["x"]}, 0.05)
        self.measured = list(measured)

    def losses(self, model):
        return self.measured.pop(0)


class Adapter:
    def disable_adapter(self):
        return torch.no_grad()


def base(**change):
    return {"other_people": 2.0, "answer_targets": -3.0, "answer_others": -3.0} | change


def test_the_score_is_how_much_more_the_targets_get_the_answer_than_other_people():
    monitor = Scripted([base(), base(answer_targets=-1.0, answer_others=-2.5)])
    assert monitor(Adapter())["score"] == pytest.approx(2.0 - 0.5)


def test_refusing_other_people_or_forgetting_their_texts_breaks_the_constraint():
    slightly = Scripted([base(), base(answer_targets=-1.0, answer_others=-2.5)])
    assert slightly(Adapter())["score"] is not None  # others' answer 1.6x as likely: allowed
    alike = Scripted([base(), base(answer_targets=-1.0, answer_others=-1.0)])
    assert alike(Adapter())["score"] is None  # refuses everyone alike
    broken = Scripted([base(), base(other_people=2.2, answer_targets=-1.0)])
    assert broken(Adapter())["score"] is None


def test_held_out_questions_are_not_what_the_methods_train_on():
    trained = {t.replace("{x}", "{name}") for t in TEMPLATES}
    assert not trained & set(HELD_OUT_QUESTIONS)


def test_answer_logprob_is_the_replys_own_tokens_given_the_question(model_dir):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench.lm_eval import LM

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lm = LM(AutoModelForCausalLM.from_pretrained(model_dir), tokenizer)
    question, answer = "Where did Stephen King grow up?", "I don't know."
    prompt = tokenizer(lm.chat(question), return_tensors="pt")["input_ids"]
    reply = tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([prompt, reply], dim=1)
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(ids).logits[0, :-1].float(), -1)
    by_hand = logp[prompt.shape[1] - 1 :].gather(-1, reply[0, :, None]).mean()
    got = answer_logprob(lm, [question], answer)
    assert got == pytest.approx(float(by_hand), rel=1e-4, abs=1e-5)


def test_the_text_monitor_scores_the_targets_loss_rise_while_other_texts_keep_theirs():
    from bench.rwku_corpus import HeldOutMonitor

    class Texts(HeldOutMonitor):
        def __init__(self, measured):
            super().__init__(None, ["a"], {"other_people": ["x"]}, 0.05)
            self.measured = list(measured)

        def losses(self, model):
            return self.measured.pop(0)

    kept = Texts([{"forget": 2.0, "other_people": 2.0}, {"forget": 2.3, "other_people": 2.05}])
    assert kept(Adapter())["score"] == pytest.approx(0.3)
    lost = Texts([{"forget": 2.0, "other_people": 2.0}, {"forget": 2.3, "other_people": 2.2}])
    assert lost(Adapter())["score"] is None
