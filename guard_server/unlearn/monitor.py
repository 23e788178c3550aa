"""Early stopping's judge: scores an adapter during training on held-out text, so the step
kept is the one that forgot the target and kept everyone else.

Two judges. `HeldOutMonitor`: how much the adapter's loss on held-out texts about the targets
rose, while texts about other people and everyday texts keep theirs. `AnswerMonitor`, for
methods that teach one answer (idk, flat): how much more readily the adapter gives it to
held-out questions about the targets than about other people, provided other people and
everyday requests are not given it. `guard-bench rwku-heldout` measured the recipe with them;
`guard-unlearn` builds the same judge from a spec (`spec_monitor`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from guard_server.unlearn.lm import LM, mean_loss

MAX_NEW_TOKENS = 96  # a sampled text's length

EVERYDAY = (
    "Explain how photosynthesis works.",
    "Give me a recipe for pancakes.",
    "What are the planets of the solar system?",
    "Write a short poem about the sea.",
    "How do I change a flat tyre?",
    "Describe the water cycle.",
    "What causes the seasons on Earth?",
    "Give three tips for learning a new language.",
)


@torch.no_grad()
def sampled(lm: LM, prompts: list[str], samples: int, seed: int) -> list[str]:
    """`samples` seeded texts per prompt (temperature 1, top-p 0.95), through the chat template."""
    torch.manual_seed(seed)
    texts = [lm.chat(p) for p in prompts for _ in range(samples)]
    enc = lm.tokenizer(texts, return_tensors="pt", padding=True)
    ids = lm.model.generate(
        **enc,
        do_sample=True,
        temperature=1.0,
        top_p=0.95,
        max_new_tokens=MAX_NEW_TOKENS,
        pad_token_id=lm.tokenizer.pad_token_id,
    )
    new = ids[:, enc["input_ids"].shape[1] :]
    return [lm.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def untrained(model) -> bool:
    """Whether `model`'s LoRA adapter changes nothing yet: every B matrix is still zero, as
    PEFT initialises it, so the model computes exactly what the base model does."""
    b = [p for name, p in model.named_parameters() if "lora_B" in name]
    return bool(b) and not any(bool(p.any()) for p in b)


class HeldOutMonitor:
    """Scores an adapter on held-out texts: the rise of its loss on texts about the targets,
    provided texts about other people and everyday texts stay within `tolerance` (relative)
    of the base model's loss; None otherwise (it forgot what it must keep)."""

    def __init__(self, tokenizer, forget: list[str], keep: dict[str, list[str]], tolerance: float):
        self.tokenizer, self.tolerance = tokenizer, tolerance
        self.sets = {"forget": forget, **keep}
        self.base: dict[str, float] | None = None

    def losses(self, model) -> dict[str, float]:
        return self.measure(LM(model, self.tokenizer, batch=16))

    def measure(self, lm: LM) -> dict[str, float]:
        return {name: mean_loss(lm.token_logprobs(texts)) for name, texts in self.sets.items()}

    def __call__(self, model) -> dict[str, Any]:
        if self.base is None:
            with model.disable_adapter():
                self.base = self.losses(model)
        # Step 0's adapter is the base model exactly: measured once (each pass is ~15 s).
        now = dict(self.base) if untrained(model) else self.losses(model)
        kept = all(
            now[k] <= self.base[k] * (1 + self.tolerance) for k in self.sets if k != "forget"
        )
        score = self.score(now) if kept else None
        # Texts' losses are logged as such; other measurements (a subclass's) by their names.
        return {"score": score, **{f"{k}_loss" if k in self.sets else k: v for k, v in now.items()}}

    def score(self, now: dict[str, float]) -> float | None:
        """The score of measurements that kept what must be kept."""
        return now["forget"] - self.base["forget"]


# Questions about a person that no method trains on (not `classifiers.probes.TEMPLATES`, not
# the corpus prompts above) and no RWKU probe asks in these words.
HELD_OUT_QUESTIONS = (
    "Where did {name} grow up?",
    "What are the greatest achievements of {name}?",
    "Who are the people closest to {name}?",
    "When did {name} first become famous?",
)


def answer_logprob(lm: LM, questions: list[str], answer: str) -> float:
    """Mean log-probability that the reply to each question starts as `answer` does (its
    first token): once an adapter has learnt the answer, the rest of it follows its first
    token whoever was asked about, so only the first token says whether it would be given."""
    n = len(lm.tokenizer(answer, add_special_tokens=False)["input_ids"])
    logprobs = lm.token_logprobs([lm.chat(q) + answer for q in questions])
    return float(sum(lp[-n] for lp in logprobs) / len(logprobs))


def answered_with(lm: LM, questions: list[str], answer: str) -> float:
    """The share of questions whose greedy reply is `answer` (its words, in order, first)."""
    words = answer.split()
    said = lm.answers(questions, len(lm.tokenizer(answer, add_special_tokens=False)["input_ids"]))
    return float(sum(s.split()[: len(words)] == words for s in said) / len(questions))


# How much more often than the base model the adapter may give the taught answer to
# held-out questions about other people (greedy): one question in ten.
OTHERS_SLACK = 0.1
# Who must not be given the answer, and how much more often than by the base model: other
# people, and everyday requests (`EVERYDAY`), which an edit that learnt to refuse questions
# as such refuses too; none of those eight more than the base model did.
SPARED = {"others": OTHERS_SLACK, "everyday": 0.0}


class AnswerMonitor(HeldOutMonitor):
    """For methods that teach one answer (idk, flat): how much more readily the adapter starts
    that answer to held-out questions about the targets than to the same questions about
    other people (the rise of `answer_logprob`), provided it does not give other people, nor
    everyday requests, the answer (greedy) more often than the base model did (by more than
    `SPARED`'s slack), and texts
    about other people and everyday texts keep their loss (`HeldOutMonitor`'s constraint);
    None otherwise."""

    def __init__(
        self,
        tokenizer,
        answer: str,
        names: dict[str, list[str]],
        keep: dict[str, list[str]],
        tolerance: float,
    ):
        super().__init__(tokenizer, [], keep, tolerance)
        del self.sets["forget"]
        self.answer = answer
        self.questions = {
            group: [q.format(name=n) for n in people for q in HELD_OUT_QUESTIONS]
            for group, people in names.items()
        }
        self.questions["everyday"] = list(EVERYDAY)

    def measure(self, lm: LM) -> dict[str, float]:
        out = super().measure(lm)
        for group, questions in self.questions.items():
            out[f"answer_{group}"] = answer_logprob(lm, questions, self.answer)
            out[f"given_{group}"] = answered_with(lm, questions, self.answer)
        return out

    def score(self, now: dict[str, float]) -> float | None:
        rise = {g: now[f"answer_{g}"] - self.base[f"answer_{g}"] for g in self.questions}
        spared = all(
            now[f"given_{g}"] - self.base[f"given_{g}"] <= slack for g, slack in SPARED.items()
        )
        return rise["targets"] - rise["others"] if spared else None


# People of the spec's `retain_targets` held out of training to judge the adapter on: the
# recipe was measured judging on three people it did not train on.
JUDGE_PEOPLE = 3
HELD_OUT = 4  # every fourth text is held out (`split`)
ERR_FEW_PEOPLE = (
    "early stopping judges the adapter on {judge} of the spec's retain_targets, held out of "
    "training, and trains on the rest: give at least {least} (the spec has {count})"
)
ERR_NO_TEXTS = "early stopping needs documents about the held-out people ({names})"
ERR_FEW_DOCUMENTS = (
    "early stopping for {method} judges held-out texts about the target: give at least "
    "{least} documents (every {least}th is held out of training)"
)


def spec_monitor(
    method: str,
    answer: str | None,
    spec: dict[str, Any],
    tokenizer,
    everyday: Callable[[], list[str]],
    tolerance: float,
) -> tuple[HeldOutMonitor, dict[str, Any]]:
    """The judge of an adapter trained on `spec`, and the spec to train on (less what judges).

    The last `JUDGE_PEOPLE` of the spec's `retain_targets` are held out of training: their
    documents are the other people's texts, their names the other people asked about.
    `everyday()` gives the base model's own answers to `EVERYDAY` (asked for once the spec is
    found fit, since it needs the model: `everyday_texts`). A method
    that teaches one `answer` is judged by `AnswerMonitor`; any other by the loss of every
    `HELD_OUT`th document about the target, held out of training.
    """
    people = list(spec.get("retain_targets") or [])
    if len(people) <= JUDGE_PEOPLE:
        raise ValueError(
            ERR_FEW_PEOPLE.format(judge=JUDGE_PEOPLE, least=JUDGE_PEOPLE + 1, count=len(people))
        )
    judges = people[-JUDGE_PEOPLE:]
    texts = [d for person in judges for d in person.get("documents") or []]
    if not texts:
        raise ValueError(ERR_NO_TEXTS.format(names=", ".join(p.get("name", "?") for p in judges)))
    train_spec = {**spec, "retain_targets": people[:-JUDGE_PEOPLE]}
    kept, held = split(list(spec.get("documents") or []))
    if answer is None and not held:
        raise ValueError(ERR_FEW_DOCUMENTS.format(method=method, least=HELD_OUT))
    keep = {"other_people": texts, "everyday": everyday()}
    if answer is not None:
        names = {
            "targets": [spec["name"], *(spec.get("aliases") or [])],
            "others": [person["name"] for person in judges],
        }
        return AnswerMonitor(tokenizer, answer, names, keep, tolerance), train_spec
    train_spec["documents"] = kept
    return HeldOutMonitor(tokenizer, held, keep, tolerance), train_spec


def split(texts: list[str]) -> tuple[list[str], list[str]]:
    """(train, held out): every HELD_OUT-th text is held out."""
    held = [t for i, t in enumerate(texts) if i % HELD_OUT == HELD_OUT - 1]
    return [t for i, t in enumerate(texts) if i % HELD_OUT != HELD_OUT - 1], held


def everyday_answers(lm: LM) -> list[str]:
    """The model's own answers to `EVERYDAY`, sampled (seed 0): the everyday texts judged."""
    return sampled(lm, list(EVERYDAY), 1, seed=0)


def everyday_texts(model_dir: str) -> list[str]:
    """The model's own answers to `EVERYDAY`, sampled as the bench samples them (seed 0)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return everyday_answers(LM(model, AutoTokenizer.from_pretrained(model_dir)))
