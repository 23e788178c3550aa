"""Compile a forget target once, at registration: phrases -> token sequences, penalty, refusal."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from classifiers.names import name_forms
from logits_processors.compiled import CompiledTarget
from logits_processors.watch import REFUSAL

# Ends a partial answer (a mixed request answered without its forgotten part).
PARTIAL_NOTE = "I can't share information about the rest of your question."
MAX_DOC_PHRASES = 24
PENALTY_NEIGHBOURS = 8
PENALTY_MIN_SIM = 0.7
MIN_CONTENT_CHARS = 3
MIN_WORD_CHARS = 4
_FUNCTION_WORDS = {
    "that",
    "with",
    "from",
    "this",
    "they",
    "them",
    "have",
    "were",
    "which",
    "their",
    "about",
    "into",
    "school",
    "series",
    "book",
    "books",
}
_CAPS_RUN = re.compile(r"\b(?:[A-Z][\w'-]*(?:\s+(?:of|and|the|de|van|von)\s+|\s+))+[A-Z][\w'-]*\b")
_CAP_WORD = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{4,}\b")
# A single capitalised word from the documents is only forbidden when it recurs: one-off
# words ("British", "School") are too common to ban without hurting unrelated answers.
MIN_WORD_COUNT = 2
_STOP = {
    *("The", "This", "That", "These", "Those", "When", "Where", "What", "Which", "Who"),
    *("His", "Her", "Their", "They", "There", "Some", "Many", "However", "After", "Before"),
}


def document_phrases(documents: list[str], limit: int = MAX_DOC_PHRASES) -> list[str]:
    """Salient n-grams of the forget documents: proper-noun runs and mid-sentence names."""
    counts: Counter[str] = Counter()
    words: Counter[str] = Counter()
    for doc in documents:
        for match in _CAPS_RUN.finditer(doc):
            phrase = match.group(0).strip(" .")
            if phrase.split()[0] not in _STOP and len(phrase) > MIN_CONTENT_CHARS:
                counts[phrase] += 2
        for match in _CAP_WORD.finditer(doc):
            if match.group(0) not in _STOP:
                words[match.group(0)] += 1
    counts.update({w: n for w, n in words.items() if n >= MIN_WORD_COUNT})
    return [p for p, _ in counts.most_common(limit)]


def target_phrases(spec: dict[str, Any]) -> list[str]:
    """Name, aliases, keywords, then document n-grams; de-duplicated, order kept."""
    phrases = [*name_forms([spec["name"], *spec.get("aliases", [])]), *spec.get("keywords", [])]
    phrases += document_phrases(spec.get("documents", []))
    seen: dict[str, None] = {}
    for p in phrases:
        p = " ".join(p.split())
        if p and p.casefold() not in {s.casefold() for s in seen}:
            seen[p] = None
    return list(seen)


def variants(phrase: str) -> set[str]:
    """Surface forms a model may write: case variants, with and without a leading space."""
    forms = {
        phrase,
        phrase.lower(),
        phrase.upper(),
        phrase.title(),
        phrase[:1].upper() + phrase[1:],
    }
    return {prefix + form for form in forms for prefix in ("", " ")}


@dataclass
class Compiler:
    """Holds the base model's tokenizer and its normalised input embeddings."""

    tokenizer: Any
    embeddings: torch.Tensor | None = None

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> Compiler:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        return cls(tokenizer, load_input_embeddings(Path(model_dir)))

    def sequences(self, phrases: list[str]) -> list[tuple[int, ...]]:
        out: set[tuple[int, ...]] = set()
        for phrase in phrases:
            for form in variants(phrase):
                ids = tuple(self.tokenizer.encode(form, add_special_tokens=False))
                if ids:
                    out.add(ids)
        return sorted(out)

    def penalty(self, phrases: list[str]) -> tuple[list[int], list[float]]:
        """Whole-word tokens of the phrases and their nearest whole-word neighbours.

        Only word-initial tokens count: sub-word pieces ("ter", "ling") and function words
        carry no meaning of their own, and demoting them would hurt every answer's fluency.
        """
        content = {
            t
            for phrase in phrases
            for t in self.tokenizer.encode(" " + phrase, add_special_tokens=False)
            if self._is_word(t)
        }
        best = dict.fromkeys(content, 1.0)
        if self.embeddings is not None and content:
            ids = sorted(content)
            sims = self.embeddings @ self.embeddings[ids].T  # (vocab, n_content)
            top_vals, top_ids = sims.topk(min(PENALTY_NEIGHBOURS, sims.shape[0]), dim=0)
            pairs = zip(top_vals.flatten().tolist(), top_ids.flatten().tolist(), strict=True)
            for val, tok in pairs:
                if val >= PENALTY_MIN_SIM and val > best.get(tok, 0.0) and self._is_word(tok):
                    best[tok] = min(val, 1.0)
        ids = sorted(best)
        return ids, [round(best[i], 4) for i in ids]

    def _is_word(self, token: int) -> bool:
        text = self.tokenizer.decode([token])
        word = text.strip()
        return (
            text.startswith(" ")
            and len(word) >= MIN_WORD_CHARS
            and word.isalpha()
            and word.casefold() not in _FUNCTION_WORDS
        )

    def refusal(self, text: str = REFUSAL) -> tuple[int, ...]:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return (*ids, self.tokenizer.eos_token_id)

    def compile(self, target_id: str, version: int, spec: dict[str, Any]) -> CompiledTarget:
        phrases = target_phrases(spec)
        sequences = self.sequences(phrases)
        if not sequences:
            raise ValueError("no forbidden phrase tokenizes to anything")
        pen_ids, pen_vals = self.penalty(phrases)
        return CompiledTarget(
            target_id=target_id,
            version=version,
            policy=spec.get("policy", "refuse"),
            sequences=tuple(sequences),
            penalty_ids=tuple(pen_ids),
            penalty_vals=tuple(pen_vals),
            refusal=self.refusal(),
            note=self.refusal("\n\n" + PARTIAL_NOTE),
        )


def load_input_embeddings(model_dir: Path) -> torch.Tensor | None:
    """The input embedding matrix from safetensors, L2-normalised (or None)."""
    from safetensors import safe_open

    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                if key.endswith(("embed_tokens.weight", "wte.weight", "word_embeddings.weight")):
                    return torch.nn.functional.normalize(f.get_tensor(key).float(), dim=1)
    return None
