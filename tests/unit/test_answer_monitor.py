"""Early stopping for methods that teach one answer: judged on giving it to the targets'
held-out questions more readily than to other people's, texts kept."""

from __future__ import annotations

import pytest
import torch

from guard_server.unlearn.monitor import AnswerMonitor, answer_logprob
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
    """A trained adapter (LoRA B not zero), or an untrained one."""

    def __init__(self, b: float = 1.0):
        self.b = torch.full((2, 2), b)

    def disable_adapter(self):
        return torch.no_grad()

    def named_parameters(self):
        return [("base.q_proj.lora_A.default.weight", torch.ones(2, 2))] + [
            ("base.q_proj.lora_B.default.weight", self.b)
        ]


def base(**change):
    measured = {"other_people": 2.0, "answer_targets": -3.0, "answer_others": -3.0}
    given = {"given_targets": 0.0, "given_others": 0.0, "given_everyday": 0.0}
    return measured | {"answer_everyday": -3.0} | given | change


def test_the_score_is_how_much_more_the_targets_get_the_answer_than_other_people():
    monitor = Scripted([base(), base(answer_targets=-0.1, answer_others=-2.5, given_targets=1.0)])
    logged = monitor(Adapter())
    assert logged["score"] == pytest.approx(2.9 - 0.5)
    # Only the texts' measurements are losses; the answers' keep their own names.
    assert logged["other_people_loss"] == 2.0 and logged["given_targets"] == 1.0
    assert "given_targets_loss" not in logged and "answer_others_loss" not in logged


def test_an_untrained_adapter_is_the_base_model_and_is_not_measured_again():
    monitor = Scripted([base()])  # one measurement: a second would find none
    logged = monitor(Adapter(b=0.0))
    assert logged["score"] == 0.0 and logged["other_people_loss"] == 2.0
    assert monitor(Adapter(b=0.0))["score"] == 0.0


def test_giving_other_people_the_answer_or_forgetting_their_texts_breaks_the_constraint():
    # Other people's answer far likelier, yet still not what greedy decoding says: allowed.
    likelier = Scripted([base(), base(answer_targets=-0.1, answer_others=-0.9)])
    assert likelier(Adapter())["score"] == pytest.approx(2.9 - 2.1)
    one_in_ten = Scripted([base(given_others=0.25), base(given_others=0.35)])
    assert one_in_ten(Adapter())["score"] is not None
    alike = Scripted([base(), base(answer_targets=-0.1, answer_others=-0.1, given_others=0.5)])
    assert alike(Adapter())["score"] is None  # refuses everyone alike
    broken = Scripted([base(), base(other_people=2.2, answer_targets=-1.0)])
    assert broken(Adapter())["score"] is None


def test_refusing_everyday_requests_breaks_the_constraint():
    # "How do I change a flat tyre?" answered "I don't know.": the edit refuses questions as
    # such, however well it separates the targets from other people.
    monitor = Scripted([base(), base(answer_targets=-0.1, given_targets=1.0, given_everyday=0.25)])
    assert monitor(Adapter())["score"] is None
    assert "How do I change a flat tyre?" in monitor.questions["everyday"]
    # Other people keep their slack of one question in ten.
    assert Scripted([base(), base(given_others=0.05)])(Adapter())["score"] is not None


def test_answer_logprob_is_the_replys_own_tokens_given_the_question(model_dir):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from guard_server.unlearn.lm import LM

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lm = LM(AutoModelForCausalLM.from_pretrained(model_dir), tokenizer)
    question, answer = "Where did Stephen King grow up?", "I don't know."
    prompt = tokenizer(lm.chat(question), return_tensors="pt")["input_ids"]
    reply = tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([prompt, reply], dim=1)
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(ids).logits[0, :-1].float(), -1)
    first = logp[prompt.shape[1] - 1, reply[0, 0]]  # only the reply's first token counts
    got = answer_logprob(lm, [question], answer)
    assert got == pytest.approx(float(first), rel=1e-4, abs=1e-5)


def test_answered_with_is_the_share_of_greedy_replies_that_are_the_answer(model_dir):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from guard_server.unlearn.lm import LM
    from guard_server.unlearn.monitor import answered_with

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lm = LM(AutoModelForCausalLM.from_pretrained(model_dir), tokenizer)
    questions = ["Where did Stephen King grow up?", "Who is Sam Elliott?"]
    said = lm.answers(questions, 8)
    assert answered_with(lm, questions, said[0]) == pytest.approx(0.5 * (1 + (said[1] == said[0])))


def test_the_text_monitor_scores_the_targets_loss_rise_while_other_texts_keep_theirs():
    from guard_server.unlearn.monitor import HeldOutMonitor

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
