"""Forget and retain sets for offline unlearning, tokenized once through the chat template."""

from __future__ import annotations

import calendar
import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import torch

from classifiers.probes import derived_probes, document_sentences
from guard_server.unlearn.base import Batch, Tokens
from guard_server.unlearn.losses import IGNORE

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from guard_server.unlearn.base import UnlearnConfig

ERR_SPEC_NAME = "target spec needs a non-empty string 'name', got {name!r}"
ERR_NO_GENERAL = "general_retain is {general}, but these retain rows hold no general set"
ERR_RETAIN = "retain_documents must be a list of strings, got {value!r}"
ERR_RETAIN_TARGETS = (
    "retain_targets must be a list of specs {{name, aliases, documents, ...}}, got {value!r}"
)
ERR_KEEP_RELATED = "keep_related must be an integer >= 0, got {value!r}"
ERR_EMPTY = "no {kind} row has an answer token within max_length={max_length}"
Row = tuple[list[int], list[int]]  # token ids, labels
# Questions about a target in the many ways users ask them, beyond the detector's derived
# probes: an edit taught one answer on a handful of phrasings learns the phrasings (it then
# gives that answer to anyone asked about in them), not the name.
QUESTIONS = (
    "What is {x} known for?",
    "When was {x} born?",
    "Where was {x} born?",
    "What is the nationality of {x}?",
    "Who is {x} married to?",
    "What awards has {x} won?",
    "What was the first job of {x}?",
    "Which school did {x} attend?",
    "What is the most famous work of {x}?",
    "How old is {x}?",
    "Who are the parents of {x}?",
    "In what year did {x} start their career?",
    "What is the full name of {x}?",
    "Name a famous achievement of {x}.",
    "What did {x} do early in life?",
    "Which country is {x} from?",
    "What is a little-known fact about {x}?",
    "Answer briefly: what is {x} famous for?",
    "In one sentence, who is {x}?",
    "I'm writing a report on {x}. What should I include?",
    "What organisation is {x} associated with?",
    "What did {x} study?",
    "Who did {x} work with?",
    "What happened to {x} later in their career?",
    "Give me three facts about {x}.",
    "Where does {x} live?",
    "What is the profession of {x}?",
)
CLOZE = "Fill in the blank: {sentence}"
MAX_CLOZE = 12  # fill-in-the-blank prompts per target, from its documents
_BLANKABLE = re.compile(r"\b[\w-]{4,}\b")
# A capitalised span after a lower-case word or a comma: a proper name (not a sentence's
# first word), with its connecting "of", "de", "van" ... ("Duke of Sussex"); "and" and "the"
# do not connect ("Confucius and Mencius" is two names).
_PROPER = re.compile(
    r"(?<=[a-z,;:] )[A-Z][\w'’.-]*\w(?: (?:of |de |da |van |von )?[A-Z][\w'’-]*\w)*"
)
_POSSESSIVE = re.compile(r"['’]s$")
_CAPITALISED = re.compile(r"\b[A-Z]\w+")
_CALENDAR = {*calendar.month_name[1:], *calendar.day_name}


@dataclass(frozen=True)
class Pair:
    """A prompt and its answer; a prompt of None is plain text whose every token is a label."""

    prompt: str | None
    answer: str


def forget_pairs(spec: dict[str, Any]) -> list[Pair]:
    """Question/answer pairs about the target, then its documents as plain completion text.

    Questions are the derived probes, `QUESTIONS` about the name and each alias, blanks in
    the documents' sentences that mention the target, and the operator's examples; answers
    are the documents' sentences, dealt round-robin (the target's name when there are no
    documents).
    """
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(ERR_SPEC_NAME.format(name=name))
    documents = list(spec.get("documents") or [])
    aliases, keywords = list(spec.get("aliases") or []), list(spec.get("keywords") or [])
    questions = [
        *derived_probes(name, aliases, keywords),
        *(q.format(x=subject) for subject in [name, *aliases] for q in QUESTIONS),
        *cloze_prompts([name, *aliases], documents),
        *(spec.get("examples") or []),
    ]
    answers = document_sentences(documents) or [f"{name}."]
    pairs = [Pair(q, answers[i % len(answers)]) for i, q in enumerate(questions)]
    return pairs + [Pair(None, d) for d in documents]


def cloze_prompts(names: list[str], documents: list[str], limit: int = MAX_CLOZE) -> list[str]:
    """Fill-in-the-blank prompts: document sentences that mention one of `names`, their last
    word of four letters or more outside the names blanked (RWKU's first probe level asks
    this way)."""
    words = {w.lower() for n in names for w in _BLANKABLE.findall(n)}
    out = []
    for sentence in document_sentences(documents, limit=10 * limit):
        found = list(_BLANKABLE.finditer(sentence))
        blankable = [m for m in found if m.group().lower() not in words]
        if blankable and len(blankable) < len(found):  # it mentions the target
            m = blankable[-1]
            out.append(CLOZE.format(sentence=f"{sentence[: m.start()]}___{sentence[m.end() :]}"))
    return out[:limit]


def related_names(names: list[str], documents: list[str], limit: int) -> list[str]:
    """Per name in `names` (a target's name and each alias), the `limit` names that the
    documents mentioning it mention in the most documents (two at least) and that share no
    word with `names`: the target's works, places, family and topics as the texts about it
    tell them (a proper name is a capitalised span inside a sentence, four characters or
    more, not a month or a day; "China's" is China)."""
    names = list(dict.fromkeys(n for n in names if n))
    words = {n: set(_CAPITALISED.findall(n)) for n in names}
    own = set().union(*words.values())
    # In order of appearance (not a set's order), so ties break the same way in every run.
    found = [
        dict.fromkeys(_POSSESSIVE.sub("", m.group()) for m in _PROPER.finditer(d))
        for d in documents
    ]
    capitalised = [set(_CAPITALISED.findall(d)) for d in documents]
    out: list[str] = []
    for name in names:
        counts: Counter[str] = Counter()
        for spans, words_in in zip(found, capitalised, strict=True):
            if words[name] & words_in:
                counts.update(s for s in spans if _unrelated_span(s, own) and s not in out)
        out += [s for s, n in counts.most_common() if n >= 2][:limit]
    return out


def _unrelated_span(span: str, own: set[str]) -> bool:
    spanned = set(_CAPITALISED.findall(span))
    return len(span) >= 4 and not spanned & _CALENDAR and not spanned & own


def retain_pairs(spec: dict[str, Any] | None = None) -> tuple[Pair, ...]:
    """What the edit must keep: general-knowledge questions with short answers and open
    instructions, shipped with the package; then what looks most like the target (its
    neighbours, other people of the same kind): the spec's `retain_documents` as plain text, and
    its `retain_targets`, specs of their own, as questions and documents exactly as a forget
    target's are built, so that questions about them keep their answers; then, with
    `keep_related: N`, the questions about the N names the documents about each forgotten name
    mention most (`related_names`), answered with the name: an edit that refuses the target
    should not refuse its film, its country or the teaching named after it. (With
    `retain_loss=kl` the answer only marks where the base model's reply is kept.)"""
    spec = spec or {}
    documents = spec.get("retain_documents") or []
    if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
        raise ValueError(ERR_RETAIN.format(value=documents))
    others = spec.get("retain_targets") or []
    if not isinstance(others, list) or not all(isinstance(o, dict) for o in others):
        raise ValueError(ERR_RETAIN_TARGETS.format(value=others))
    limit = spec.get("keep_related", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(ERR_KEEP_RELATED.format(value=limit))
    if limit:
        names = [spec.get("name"), *(spec.get("aliases") or [])]
        related = related_names(names, list(spec.get("documents") or []), limit)
        others = [*others, *({"name": n} for n in related)]
    kept = [p for other in others for p in forget_pairs(other)]
    return (*_shipped_retain(), *(Pair(None, d) for d in documents), *kept)


@cache
def _shipped_retain() -> tuple[Pair, ...]:
    """Short general-knowledge questions, then open instructions (write, explain, how to)."""
    text = resources.files("guard_server.unlearn").joinpath("data/retain.json").read_text()
    shipped = json.loads(text)
    rows = [*shipped["qa"], *shipped["instructions"]]
    return tuple(Pair(qa["question"], qa["answer"]) for qa in rows)


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _split(tokenizer: PreTrainedTokenizerBase, pair: Pair) -> tuple[list[int], list[int]]:
    if pair.prompt is None:
        return [], _ids(tokenizer, pair.answer)
    if not getattr(tokenizer, "chat_template", None):
        return _ids(tokenizer, f"Question: {pair.prompt}\nAnswer: "), _ids(tokenizer, pair.answer)
    turn = [{"role": "user", "content": pair.prompt}]
    prompt = tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    reply = {"role": "assistant", "content": pair.answer}
    full = tokenizer.apply_chat_template([*turn, reply], tokenize=False)
    # A template that rewrites earlier turns once a reply follows does not extend the
    # generation prompt; the answer is then closed with EOS by hand.
    tail = full[len(prompt) :] if full.startswith(prompt) else pair.answer + tokenizer.eos_token
    return _ids(tokenizer, prompt), _ids(tokenizer, tail)


def encode(tokenizer: PreTrainedTokenizerBase, pair: Pair, max_length: int) -> list[Row]:
    """Rows of at most `max_length` tokens: one per prompted pair, plain text in chunks."""
    prompt, answer = _split(tokenizer, pair)
    if pair.prompt is None:
        chunks = (answer[i : i + max_length] for i in range(0, len(answer), max_length))
        return [(chunk, chunk) for chunk in chunks if len(chunk) > 1]
    # Half the window at least goes to the answer; the prompt loses its start (the system
    # preamble) first, because its end holds the question and the assistant header.
    answer = answer[: max_length - min(len(prompt), max_length // 2)]
    prompt = prompt[max(0, len(prompt) + len(answer) - max_length) :]
    return [(prompt + answer, [IGNORE] * len(prompt) + answer)] if answer else []


def collate(rows: list[Row], pad_id: int) -> Tokens:
    """Right-pad rows into one batch; padding is masked out and never a label."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, row_labels) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(row_labels)
        mask[i, : len(ids)] = 1
    return Tokens(input_ids, mask, labels)


class _Shuffled:
    """Row indices from a fresh seeded permutation per pass: each row once per pass."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size, self.generator = size, generator
        self.order: list[int] = []

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            if not self.order:
                self.order = torch.randperm(self.size, generator=self.generator).tolist()
            out.append(self.order.pop())
        return out


class UnlearnData:
    """Tokenized forget, retain and (for FLAT) good rows, sampled into `Batch`es."""

    def __init__(
        self,
        forget: list[Row],
        retain: list[Row],
        good: list[Row] | None,
        pad_id: int,
        seed: int,
        general: int = 0,
    ):
        """`general`: the first `general` retain rows are the shipped general set."""
        self.forget, self.retain, self.good, self.pad_id = forget, retain, good, pad_id
        self._generator = torch.Generator().manual_seed(seed)
        self._forget = _Shuffled(len(forget), self._generator)
        self._retain = _Shuffled(len(retain), self._generator)
        self._general = _Shuffled(general, self._generator)

    @classmethod
    def build(
        cls,
        spec: dict[str, Any],
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        good_answer: str | None = None,
        seed: int = 0,
    ) -> UnlearnData:
        """Tokenize everything once.

        Args:
            spec: the forget target {name, aliases, documents, examples, keywords}.
            tokenizer: the base model's tokenizer (its chat template frames the pairs).
            max_length: the most tokens in one row.
            good_answer: when set, also pair every forget question with this answer.
            seed: seeds the sampling order.
        """
        pairs = forget_pairs(spec)
        forget = [row for p in pairs for row in encode(tokenizer, p, max_length)]
        kept = [encode(tokenizer, p, max_length) for p in retain_pairs(spec)]
        retain = [row for rows in kept for row in rows]
        general = sum(len(rows) for rows in kept[: len(_shipped_retain())])
        good = None
        if good_answer is not None:
            # Prompted pairs come first and give one row each, so forget row i and good row
            # i share a question; document rows wrap around onto the questions.
            asked = [Pair(p.prompt, good_answer) for p in pairs if p.prompt is not None]
            good = [row for p in asked for row in encode(tokenizer, p, max_length)]
        for kind, rows in (("forget", forget), ("retain", retain), ("good", good)):
            if rows is not None and not rows:
                raise ValueError(ERR_EMPTY.format(kind=kind, max_length=max_length))
        pad_id = tokenizer.pad_token_id
        pad_id = tokenizer.eos_token_id if pad_id is None else pad_id
        return cls(forget, retain, good, pad_id or 0, seed, general)

    def batch(self, size: int, retain_size: int | None = None, general: int = 0) -> Batch:
        """The next `size` forget rows and `retain_size` (default `size`) retain rows
        (cycling, shuffled per pass), `general` of them from the shipped general set."""
        picked = self._forget.take(size)
        forget = collate([self.forget[i] for i in picked], self.pad_id)
        retain_size = size if retain_size is None else retain_size
        if general and not self._general.size:
            raise ValueError(ERR_NO_GENERAL.format(general=general))
        general = min(general, retain_size)
        kept = self._general.take(general) + self._retain.take(retain_size - general)
        retain = collate([self.retain[i] for i in kept], self.pad_id)
        good = None
        if self.good is not None:
            good = collate([self.good[i % len(self.good)] for i in picked], self.pad_id)
        return Batch(forget, retain, good)

    def step_batch(self, config: UnlearnConfig) -> Batch:
        """The next batch as `config` draws them (batch_size, retain_batch_size, general_retain)."""
        return self.batch(config.batch_size, config.retain_batch_size, config.general_retain)

    def state_dict(self) -> dict[str, Any]:
        """Where sampling stands: resuming from it draws the batches an uninterrupted run would."""
        return {
            "generator": self._generator.get_state(),
            "forget": list(self._forget.order),
            "retain": list(self._retain.order),
            "general": list(self._general.order),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])
        self._forget.order, self._retain.order = list(state["forget"]), list(state["retain"])
        self._general.order = list(state["general"])

    def sizes(self) -> dict[str, int]:
        return {"forget_rows": len(self.forget), "retain_rows": len(self.retain)}
