"""Compiler pure functions: phrase extraction, surface variants, token sequences and penalty."""

import json
import re

import pytest

from guard_server.compiler import (
    PARTIAL_NOTE,
    REFUSAL,
    Compiler,
    document_phrases,
    target_phrases,
    variants,
)
from logits_processors.compiled import CompiledTarget

PIECE = 7  # the fake tokenizer cuts words into pieces of at most this many characters


class FakeTokenizer:
    """Word-level tokenizer: ' word' is one token, long words continue in space-less pieces."""

    eos_token_id = 0

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.inverse: dict[int, str] = {0: "</s>"}

    def _id(self, piece: str) -> int:
        if piece not in self.vocab:
            self.vocab[piece] = len(self.vocab) + 1
            self.inverse[self.vocab[piece]] = piece
        return self.vocab[piece]

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        assert add_special_tokens is False
        ids = []
        for word in re.findall(r" ?[^\s]+", text):
            ids += [self._id(word[i : i + PIECE]) for i in range(0, len(word), PIECE)]
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self.inverse[i] for i in ids)


@pytest.fixture
def compiler() -> Compiler:
    return Compiler(FakeTokenizer(), embeddings=None)


@pytest.mark.parametrize(
    ("documents", "expected"),
    [
        ([], []),
        (["no capitals here at all."], []),
        (["He met Harry Potter there."], ["Harry Potter"]),
        (
            ["She studied at Hogwarts School of Witchcraft and Wizardry today."],
            ["Hogwarts School of Witchcraft and Wizardry"],
        ),
        (["It was near Diagon Alley."], ["Diagon Alley"]),
        # a run led by a stop word is dropped
        (["The Ministry of Magic is big."], []),
        (["They said This Thing happened."], []),
        # runs of three characters or fewer are too short
        (["so A B said it"], []),
        (["so Al Bo said it"], ["Al Bo"]),
    ],
)
def test_document_phrases_finds_proper_noun_runs(documents, expected):
    assert document_phrases(documents) == expected


@pytest.mark.parametrize(
    ("documents", "expected"),
    [
        # a mid-sentence capitalised word counts only when it recurs
        (["He saw Hermione there.", "Later he saw Hermione again."], ["Hermione"]),
        (["He saw Hermione there, and Hermione saw him."], ["Hermione"]),
        (["He saw Hermione there."], []),
        # sentence-initial words are not names
        (["Dragons fly. Dragons breathe fire! Dragons sleep."], []),
        # four-letter words are too short to stand alone
        (["he met Hugo, then Hugo left"], []),
        # capitalised stop words never stand alone
        (["we saw There and There again"], []),
    ],
)
def test_document_phrases_keeps_recurring_mid_sentence_names(documents, expected):
    assert document_phrases(documents) == expected


def test_document_phrases_orders_by_frequency_and_honours_limit():
    docs = [
        "we met Diagon Alley people near Diagon Alley and also Diagon Alley.",
        "then Harry Potter came, Harry Potter left, and Hermione left, and Hermione came back.",
    ]
    phrases = document_phrases(docs)
    assert phrases[0] == "Diagon Alley"
    assert set(phrases) >= {"Diagon Alley", "Harry Potter", "Hermione"}
    assert phrases.index("Harry Potter") < phrases.index("Hermione")
    assert document_phrases(docs, limit=1) == ["Diagon Alley"]
    assert document_phrases(docs, limit=0) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"name": "Harry Potter"}, ["Harry Potter"]),
        (
            {"name": "Harry Potter", "aliases": ["harry potter", "  The Boy  Who Lived "]},
            ["Harry Potter", "The Boy Who Lived"],
        ),
        (
            {"name": "Harry Potter", "keywords": ["", "   ", "Hogwarts", "HOGWARTS"]},
            ["Harry Potter", "Hogwarts"],
        ),
        (
            {
                "name": "Harry Potter",
                "aliases": ["HP"],
                "keywords": ["Hogwarts"],
                "documents": ["we met Diagon Alley people and Harry Potter too."],
            },
            ["Harry Potter", "HP", "Hogwarts", "Diagon Alley"],
        ),
    ],
)
def test_target_phrases_dedupes_case_insensitively_and_keeps_order(spec, expected):
    assert target_phrases(spec) == expected


@pytest.mark.parametrize(
    ("phrase", "forms"),
    [
        ("harry potter", {"harry potter", "HARRY POTTER", "Harry Potter", "Harry potter"}),
        ("Harry Potter", {"harry potter", "HARRY POTTER", "Harry Potter"}),
        ("HP", {"HP", "hp", "Hp"}),
        ("iPhone", {"iPhone", "iphone", "IPHONE", "Iphone", "IPhone"}),
        ("42", {"42"}),
    ],
)
def test_variants_cover_case_and_leading_space(phrase, forms):
    assert variants(phrase) == forms | {" " + f for f in forms}


def test_sequences_are_sorted_unique_tokenizations_of_every_variant(compiler):
    tok = compiler.tokenizer
    seqs = compiler.sequences(["Harry Potter", "harry potter", "HP"])
    expected = {
        tuple(tok.encode(form, add_special_tokens=False))
        for phrase in ["Harry Potter", "harry potter", "HP"]
        for form in variants(phrase)
    }
    assert seqs == sorted(expected)
    # four case forms of the name ("Harry potter" from the lower-case one) and three of "HP",
    # each with and without a leading space
    assert len(seqs) == 8 + 6
    assert tuple(tok.encode(" Harry Potter")) in seqs
    assert tuple(tok.encode("HARRY POTTER")) in seqs


@pytest.mark.parametrize("phrases", [[], [""], ["   "]])
def test_sequences_drop_empty_tokenizations(compiler, phrases):
    assert compiler.sequences(phrases) == []


def test_penalty_keeps_whole_content_words_only(compiler):
    tok = compiler.tokenizer
    phrases = ["Harry Potter", "Order of the Phoenix", "Hogwarts School", "Ron's wand", "Al"]
    ids, vals = compiler.penalty(phrases)
    # " Phoenix" and " Hogwarts" are cut into " Phoeni"+"x" and " Hogwar"+"ts": the
    # word-initial piece counts, the continuation does not.
    words = [" Harry", " Potter", " Order", " Phoeni", " Hogwar", " wand"]
    assert ids == sorted(tok.vocab[w] for w in words)
    assert vals == [1.0] * len(ids)
    for dropped in [" of", " the", " School", " Ron's", " Al", "x", "ts"]:
        assert tok.vocab[dropped] not in ids


@pytest.mark.parametrize("phrases", [[], ["of the"], ["a school book"]])
def test_penalty_without_content_words_is_empty(compiler, phrases):
    assert compiler.penalty(phrases) == ([], [])


def test_refusal_ends_with_eos(compiler):
    refusal = compiler.refusal()
    assert refusal[-1] == compiler.tokenizer.eos_token_id
    assert compiler.tokenizer.decode(list(refusal[:-1])) == REFUSAL


def test_compile_bundles_sequences_penalty_and_refusal(compiler):
    spec = {"name": "Harry Potter", "aliases": ["Hogwarts"], "policy": "refuse"}
    target = compiler.compile("hp", 3, spec)
    assert (target.target_id, target.version, target.policy) == ("hp", 3, "refuse")
    assert list(target.sequences) == compiler.sequences(["Harry Potter", "Hogwarts"])
    assert (list(target.penalty_ids), list(target.penalty_vals)) == compiler.penalty(
        ["Harry Potter", "Hogwarts"]
    )
    assert target.refusal == compiler.refusal()
    assert target.note == compiler.refusal("\n\n" + PARTIAL_NOTE)
    assert target.note[-1] == compiler.tokenizer.eos_token_id
    assert CompiledTarget.from_bytes(target.to_bytes()) == target
    old = json.loads(target.to_bytes())
    del old["note"]  # compiled before partial answers existed: still loads, without a note
    assert CompiledTarget.from_bytes(json.dumps(old).encode()).note == ()


def test_compile_rejects_a_spec_with_nothing_to_forbid(compiler):
    with pytest.raises(ValueError, match="no forbidden phrase"):
        compiler.compile("t", 1, {"name": "   "})
