"""The answer watch on the real tokenizer's vocabulary: a name cannot be completed, however it
is split into tokens or disguised, and text that names no target is never touched."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from logits_processors.fold import BREAK, Folder, fold, phrase_patterns, spelled_patterns
from logits_processors.vocab import VocabIndex, special_ids, token_bytes
from logits_processors.watch import REFUSAL, TRIP_NOTE, TripNote, Watch, WatchRow, watch_patterns
from logits_processors.watch_automaton import FoldedAutomaton

NAMES = {"Harry Potter": True, "J.K. Rowling": True, "Hogwarts": True, "Cher": False}


@pytest.fixture(scope="session")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def watch(tokenizer):
    patterns = [p for name, refuse in NAMES.items() for p in watch_patterns([name], refuse)]
    note = TripNote.of(tokenizer).ids
    vocab = VocabIndex(token_bytes(tokenizer), special_ids(tokenizer))
    return Watch(FoldedAutomaton(patterns), vocab, note)


def random_split(tokenizer, text: str, rng: random.Random) -> list[int]:
    """Token ids that decode to `text`, cut at random places: not the tokenizer's own split."""
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 4))))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return [t for piece in pieces for t in tokenizer.encode(piece, add_special_tokens=False)]


def splits_of(tokenizer, text: str, count: int = 10) -> list[list[int]]:
    """The tokenizer's own split of `text`, and `count` random ones."""
    rng = random.Random(text)
    own = tokenizer.encode(text, add_special_tokens=False)
    return [own, *(random_split(tokenizer, text, rng) for _ in range(count))]


def first_banned(watch: Watch, prompt: list[int], answer: list[int]) -> int | None:
    """Write `answer` token by token as a model would; the index of the first token the
    watch bans, or None if the whole answer gets written."""
    output: list[int] = []
    row = WatchRow(output, prompt)
    watch.reread(row)
    for i, token in enumerate(answer):
        bans = watch.banned(row).tokens
        if token in set(bans.tolist()):
            return i
        output.append(token)
        assert not watch.advance(row), "a name was completed without a ban"
    return None


DISGUISES = [
    "The books were written by J.K. Rowling.",
    "The books were written by J. K. Rowling.",
    "the books were written by jk rowling",
    "THE BOOKS WERE WRITTEN BY J.K. ROWLING",
    "He goes to Hogwarts School",
    "He goes to Hоgwаrts School",  # Cyrillic о and а
    "He goes to H0gw4rts School",
    "He goes to Hog-warts School",
    "He goes to Hog\u200bwarts School",  # zero-width space
    "He goes to Ｈｏｇｗａｒｔｓ School",
    "Meet Har-ry Pot-ter today",
    "Meet HarryPotter today",
    "Meet 𝐇𝐚𝐫𝐫𝐲 𝐏𝐨𝐭𝐭𝐞𝐫 today",
    "written by J.K. Row1ing",
    # spelled out, letter by letter
    "written by J. K. R o w l i n g.",
    "written by J K R O W L I N G",
    "written by J.K. R o w l i n g.",
    "Meet H a r r y  P o t t e r today",
    "Meet Harry P-o-t-t-e-r today",
    'The school: ["H", "o", "g", "w", "a", "r", "t", "s"]',
    "The school is H, o, g, w, a, r, t, s.",
]


@pytest.mark.parametrize("text", DISGUISES)
def test_no_split_of_a_disguised_name_gets_written(tokenizer, watch, text):
    rng = random.Random(text)
    for _ in range(20):
        ids = random_split(tokenizer, text, rng)
        assert tokenizer.decode(ids) == text
        assert first_banned(watch, [], ids) is not None, [tokenizer.decode([t]) for t in ids]


def test_a_name_begun_in_the_prompt_cannot_be_ended_in_the_answer(tokenizer, watch):
    prompt = tokenizer.encode("Book trivia: the books were written by J. K.")
    assert first_banned(watch, prompt, tokenizer.encode(" Rowling.")) is not None
    assert first_banned(watch, [], tokenizer.encode(" Rowling.")) is None  # the surname alone


@pytest.mark.parametrize(
    "text",
    [
        "Harry went to the potter's wheel.",
        "The Cherokee Nation and cherry trees.",
        "Rowing is a sport; hog warts are a disease.",
        "The capital of France is Paris.",
        "Harry Styles and Emma Watson",
        "Grades go A, B, C, D; the letters h o g are three.",
    ],
)
def test_text_that_names_no_target_is_never_banned(tokenizer, watch, text):
    rng = random.Random(text)
    for ids in [tokenizer.encode(text), *(random_split(tokenizer, text, rng) for _ in range(10))]:
        assert first_banned(watch, [], ids) is None, text


def test_a_short_name_is_matched_as_a_whole_word_only(tokenizer, watch):
    assert first_banned(watch, [], tokenizer.encode("Cherokee and cherries")) is None
    stopped = first_banned(watch, [], tokenizer.encode("I like Cher and Sonny"))
    assert stopped is not None and "Cher" in tokenizer.decode(tokenizer.encode("I like Cher"))


@pytest.mark.parametrize("end", ["eos", "im_end"])
def test_a_short_name_cannot_end_an_answer_by_the_end_token(tokenizer, watch, end):
    """ "Cher" then the end token names Cher as "Cher." does: the end token is banned there
    (an answer that ended on a short name was sent whole: the name wanted a break after it)."""
    token = (
        tokenizer.eos_token_id if end == "eos" else tokenizer.convert_tokens_to_ids("<|im_end|>")
    )
    assert token in special_ids(tokenizer)
    for text in ("She is Cher", "She is CHER"):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert first_banned(watch, [], [*ids, token]) == len(ids), text
    ids = tokenizer.encode("She loves cherries", add_special_tokens=False)
    assert first_banned(watch, [], [*ids, token]) is None


@pytest.mark.parametrize("text", ["Cher's songs", "Cher’s songs", "Chers sang"])
def test_a_short_name_with_an_s_after_it_is_the_name(tokenizer, watch, text):
    assert first_banned(watch, [], tokenizer.encode(text, add_special_tokens=False)) is not None


def test_act_trips_a_row_whose_model_chooses_a_refused_name_and_forces_the_note(tokenizer, watch):
    vocab = len(watch.vocab)
    prompt = tokenizer.encode("The school is called")
    outputs = [[], []]
    rows = {0: WatchRow(outputs[0], prompt), 1: WatchRow(outputs[1], prompt)}
    for row in rows.values():
        watch.reread(row)
    begun = tokenizer.encode(" Hogwarts", add_special_tokens=False)[:-1]  # all but the last
    outputs[0].extend(begun)
    outputs[1].extend(begun)
    completing = tokenizer.encode(" Hogwarts", add_special_tokens=False)[-1]
    other = tokenizer.encode(" house", add_special_tokens=False)[0]
    logits = torch.zeros(2, vocab)
    logits[0, completing] = 5.0  # row 0's model wants the name
    logits[1, other] = 5.0  # row 1's model wants something else
    acts = watch.act(logits, rows, skip=set())
    assert acts[0][0] == watch.note[0] and rows[0].tripped
    forced, bans = acts[1]
    assert forced == -1 and completing in set(bans.tolist()) and not rows[1].tripped
    note = []
    for _ in range(len(watch.note) + 2):  # the note, then its end token for good
        token = watch.forced(rows[0])
        note.append(token)
        outputs[0].append(token)
    assert note[: len(watch.note)] == list(watch.note) and note[-1] == watch.note[-1]
    assert TripNote.of(tokenizer).start(outputs[0]) == len(begun)
    assert tokenizer.decode(outputs[0], skip_special_tokens=True).endswith(TRIP_NOTE)


def test_rows_with_nothing_to_ban_are_not_acted_on(tokenizer, watch):
    out: list[int] = []
    rows = {0: WatchRow(out, tokenizer.encode("What is the capital of France?"))}
    watch.reread(rows[0])
    for token in tokenizer.encode(" The capital of France is", add_special_tokens=False):
        out.append(token)
        assert watch.act(torch.zeros(1, len(watch.vocab)), rows, set()) == {}


def test_a_restricted_name_is_banned_but_never_trips(tokenizer, watch):
    out = tokenizer.encode(" Cher", add_special_tokens=False)
    rows = {0: WatchRow(list(out), tokenizer.encode("Who sang Believe?"))}
    watch.reread(rows[0])
    logits = torch.zeros(1, len(watch.vocab))
    logits[0, tokenizer.encode(" is", add_special_tokens=False)[0]] = 9.0
    forced, bans = watch.act(logits, rows, set())[0]
    assert forced == -1 and not rows[0].tripped and len(bans)


@pytest.mark.parametrize(
    ("disguised", "plain"),
    [
        ("Hаrry Pоtter", "harry potter"),
        ("H4RRY P0TT3R", "harry potter"),
        ("Har-ry Pot-ter", "harry potter"),
        ("Ｈａｒｒｙ", "harry"),
        ("Hog\u00adwarts", "hogwarts"),
        ("Beyoncé", "beyonce"),
        ("Ham!ll", "hamill"),
        ("Thanks, Al! Good, Dan!! Yes!", "thanks al good dan yes"),
        ("!ndeed!", "ndeed"),
    ],
)
def test_disguises_fold_to_what_they_show(disguised, plain):
    assert fold(disguised) == fold(plain)
    # read as a stream, a character at a time, the text folds the same
    folder = Folder()
    assert BREAK + "".join(folder.feed(c) for c in disguised) == fold(plain)


def test_a_phrase_is_looked_for_with_and_without_each_gap():
    assert set(phrase_patterns("J.K. Rowling")) == {
        fold("jk rowling"),
        fold("j k rowling"),
        fold("jkrowling"),
        fold("j krowling"),
    }
    assert set(spelled_patterns("J.K. Rowling")) == {
        fold("j k r o w l i n g"),
        fold("jk r o w l i n g"),
    }
    assert fold("J. K. R-o-w-l-i-n-g") in phrase_patterns("J.K. Rowling")  # joined
    assert set(spelled_patterns("Harry Potter")) == {
        fold("h a r r y potter"),
        fold("harry p o t t e r"),
        fold("h a r r y p o t t e r"),
    }


@pytest.mark.parametrize("marked", [True, False])
def test_the_trip_note_is_found_in_the_token_ids_even_cut_short(tokenizer, marked):
    """With a mark, one note token is a trip; without one (a tokenizer with no spare special
    token), the note's first words are."""
    note = TripNote.of(tokenizer)
    if not marked:
        note = TripNote(note.ids[1:], len(tokenizer.encode("\n\nI'm sorry")))
    answer = tokenizer.encode("Einstein was")
    for kept in range(note.least, len(note.ids) + 1):
        assert note.start(answer + list(note.ids[:kept])) == len(answer), kept
    eos = tokenizer.eos_token_id
    assert note.start(answer + list(note.ids) + [eos, eos]) == len(answer)  # `ignore_eos`
    assert note.start(answer + list(note.ids[: note.least - 1])) == -1
    assert note.start(tokenizer.encode(REFUSAL)) == -1
    assert note.start(answer + list(note.ids[:3]) + tokenizer.encode(" later")) == -1


def test_every_token_has_bytes_that_decode_as_the_tokenizer_does(tokenizer):
    pieces = token_bytes(tokenizer)
    rng = np.random.default_rng(0)
    for token in rng.integers(0, len(tokenizer), 300).tolist():
        if token in tokenizer.all_special_ids:
            continue
        text = tokenizer.decode([token])
        if "\ufffd" not in text:
            assert pieces[token].decode() == text, token


def test_a_saved_vocabulary_loads_as_it_was_built_and_folds_without_icu(
    tokenizer, watch, tmp_path, monkeypatch
):
    from logits_processors import fold as folding

    path = tmp_path / "vocab.pickle"
    watch.vocab.save(path, watch.note)
    # Loading switches this process's folding to the saved table (as in an engine worker);
    # the test puts it back afterwards.
    monkeypatch.setattr(folding, "_TABLE", {})
    monkeypatch.setattr(folding, "_ICU", True)
    try:
        loaded, note = VocabIndex.load(path)
        assert note == watch.note and loaded.pieces == watch.vocab.pieces
        assert loaded.marked == watch.vocab.marked and loaded.keys == watch.vocab.keys
        assert not folding._ICU and folding._TABLE  # look-alikes come from the table
        assert fold("Hоgwarts") == fold("Hogwarts")  # Cyrillic о, a vocabulary character
    finally:
        folding.fold_char.cache_clear()


def test_a_note_without_a_mark_is_perhaps_under_way_from_its_first_token():
    from logits_processors.watch import TripNote

    unmarked = TripNote((5, 6, 7, 2), least=3)  # its first words, then the end token
    assert unmarked.begun([1, 5]) and unmarked.begun([1, 5, 6])
    assert not unmarked.begun([1, 6]) and not unmarked.begun([])
    assert not TripNote((9, 5, 6, 2), least=1).begun([1, 9])  # a mark: `start` sees it at once


def _row_after(tokenizer, watch, prompt: str, written: str) -> WatchRow:
    row = WatchRow(tokenizer.encode(written, add_special_tokens=False), tokenizer.encode(prompt))
    watch.reread(row)
    return row


@pytest.mark.parametrize("steer", ["bad_words", "negative_bias", "positive_bias"])
def test_a_client_that_steers_the_model_off_a_half_written_name_trips(tokenizer, watch, steer):
    """ "J. K. Row" then "ley": `bad_words`, `allowed_token_ids`, a grammar (all -inf) or a
    `logit_bias` keep the model from finishing the name, and the answer would show its
    start. The model was writing the name: the answer trips as if it had chosen it."""
    row = _row_after(tokenizer, watch, "Who wrote the books?", " J. K. Row")
    ling = tokenizer.encode("ling", add_special_tokens=False)[0]
    other = tokenizer.encode("ley", add_special_tokens=False)[0]
    assert ling in set(watch.banned(row).steered.tolist())
    logits = torch.zeros(1, len(watch.vocab))
    logits[0, ling], logits[0, other] = 5.0, 3.0  # the model's own choice: "ling"
    if steer == "bad_words":
        logits[0, ling] = float("-inf")
    elif steer == "negative_bias":
        row.bias = {ling: -100.0}
        logits[0, ling] -= 100.0
    else:
        row.bias = {other: 100.0}
        logits[0, other] += 100.0
    forced, _ = watch.act(logits, {0: row}, set())[0]
    assert row.tripped and forced == watch.note[0]


def test_a_model_that_turns_off_a_name_by_itself_does_not_trip(tokenizer, watch):
    """ "Rowan" is not "Rowling": unsteered, the model's own choice decides."""
    row = _row_after(tokenizer, watch, "Who wrote the books?", " J. K. Row")
    ling = tokenizer.encode("ling", add_special_tokens=False)[0]
    other = tokenizer.encode("ley", add_special_tokens=False)[0]
    logits = torch.zeros(1, len(watch.vocab))
    logits[0, ling], logits[0, other] = 3.0, 5.0
    row.bias = {ling: 1.0}  # a bias that does not change the model's choice
    logits[0, ling] += 1.0
    forced, bans = watch.act(logits, {0: row}, set())[0]
    assert forced == -1 and not row.tripped and ling in set(bans.tolist())


def test_a_grammar_that_rules_out_a_name_barely_begun_does_not_trip(tokenizer, watch):
    """ "Harry" then a grammar that allows only " Styles": a first name is not half of
    "Harry Potter", and the answer is not refused for it."""
    row = _row_after(tokenizer, watch, "Name a singer.", " Harry")
    potter = tokenizer.encode(" Potter", add_special_tokens=False)[0]
    styles = tokenizer.encode(" Styles", add_special_tokens=False)[0]
    bans = watch.banned(row)
    assert potter in set(bans.refused.tolist()) and not len(bans.steered)
    logits = torch.full((1, len(watch.vocab)), float("-inf"))
    logits[0, styles] = 1.0
    forced, _ = watch.act(logits, {0: row}, set())[0]
    assert forced == -1 and not row.tripped


def watch_of(tokenizer, *names: str) -> Watch:
    """A watch over refused targets, each one name, built as the engine builds it."""
    from logits_processors.reader import WatchedTarget
    from logits_processors.watcher import names_of

    patterns, parts = names_of([WatchedTarget(n, "refuse", (n,)) for n in names])
    vocab = VocabIndex(token_bytes(tokenizer), special_ids(tokenizer))
    automaton = FoldedAutomaton(patterns, contextual=parts)
    return Watch(automaton, vocab, TripNote.of(tokenizer).ids, parts=parts)


@pytest.fixture(scope="session")
def part_watch(tokenizer):
    """Bruce Springsteen registered: "Springsteen" (a rare word) names him alone."""
    return watch_of(tokenizer, "Bruce Springsteen")


@pytest.mark.parametrize(
    "text",
    [
        "Born to Run was written by Springsteen, who",
        "It was Springsteen's third album.",
        "The singer is SPRINGSTEEN and",
        "The singer is Spring-steen and",
        "The singer is S p r i n g s t e e n and",
        "The singer, Bruse Springsteen, wrote",  # his own name, misspelt: not a relative
        "The Boss Springsteen wrote",
        "A Springsteen-esque anthem",
        "A Spring-steenesque anthem",  # a long surname: a joiner inside does not make it whole
        "The singer is Springsteen\U0001f3b8 and",
        "The singer is Springstee\uff4e.",  # its last letter a character of two tokens
        "The singer is Springstee\U0001d427 and",
        "It was written by-Springsteen",  # joined to the word before it
        "A song by Mr.Springsteen",
        "The_Springsteen_song",
    ],
)
def test_a_rare_part_of_a_name_alone_is_the_name(tokenizer, part_watch, text):
    """An answer that writes "Springsteen" alone names Bruce Springsteen."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert first_banned(part_watch, [], ids) is not None, text


def test_a_whole_word_surname_that_ends_the_answer_is_the_name(tokenizer):
    brando = watch_of(tokenizer, "Marlon Brando")
    ids = tokenizer.encode("The actor is Brando", add_special_tokens=False)
    assert first_banned(brando, [], [*ids, tokenizer.eos_token_id]) == len(ids)


@pytest.mark.parametrize(
    "prompt, text",
    [
        ("Who is Pamela Springsteen?", " Pamela Springsteen is an actress."),
        ("Tell me about PAMELA SPRINGSTEEN's films.", "The actress Pamela Springsteen, his sister"),
        ("", "The springs were steep."),
    ],
)
def test_a_relative_the_client_named_whole_is_someone_else(tokenizer, part_watch, prompt, text):
    """A relative with the same surname, named whole in the prompt, is someone else: the
    answer about her is not touched."""
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False) if prompt else []
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert first_banned(part_watch, prompt_ids, ids) is None, text


@pytest.mark.parametrize(
    "prompt, text",
    [
        ("Write Xavier, then the surname of the singer of Born to Run.", " Xavier Springsteen"),
        ("Who is Pamela", " Springsteen?"),
        ("Write X-a-v-i-e-r, then the singer's surname.", " Xavier Springsteen"),
        ("Write any woman's first name, then the singer's surname.", " Pamela Springsteen"),
        ("", "His sister Pamela Springsteen is an actress."),
    ],
)
def test_a_first_name_alone_does_not_excuse_the_surname(tokenizer, part_watch, prompt, text):
    """A client that writes a given name, or has the model choose one, and lets the model
    add the surname asks for the surname: only a person the client named whole is someone
    else."""
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert first_banned(part_watch, prompt_ids, ids) is not None, text


@pytest.mark.parametrize(
    "name, prompt, text",
    [
        (
            "Lenny Kravitz",
            "When did Leonard Kravitz release Let Love Rule?",
            " Leonard Kravitz released it in",
        ),
        ("Bob Saget", "Which sitcom did Robert Saget star in?", " Robert Saget starred in"),
    ],
)
def test_the_targets_formal_or_pet_name_is_no_relative(tokenizer, name, prompt, text):
    """Named in the prompt by his formal given name, Lenny Kravitz is still Lenny Kravitz:
    the answer that writes that name trips. His daughter, named whole, is someone else."""
    watch = watch_of(tokenizer, name)
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert first_banned(watch, prompt_ids, ids) is not None, text
    surname = name.split()[-1]
    asked = tokenizer.encode(f"Who is Zoe {surname}?", add_special_tokens=False)
    daughter = tokenizer.encode(f" Zoe {surname} is an actress.", add_special_tokens=False)
    assert first_banned(watch, asked, daughter) is None


def test_a_surname_broken_off_by_the_client_trips(tokenizer, part_watch):
    """ "Springste", then `bad_words` on every way to finish it: the answer would show most
    of the surname. The model was writing it: the answer trips."""
    row = _row_after(tokenizer, part_watch, "Who sang Born to Run?", " It was Springste")
    en = tokenizer.encode("en", add_special_tokens=False)[0]
    assert en in set(part_watch.banned(row).steered.tolist())
    logits = torch.zeros(1, len(part_watch.vocab))
    logits[0, en] = float("-inf")
    forced, _ = part_watch.act(logits, {0: row}, set())[0]
    assert row.tripped and forced == part_watch.note[0]


@pytest.mark.parametrize(
    "name, text, named",
    [
        ("Marlon Brando", "Brandon Lee starred in", False),  # "Brando" begins "Brandon"
        ("Marlon Brando", "It was Brando's film.", True),
        ("Marlon Brando", "It was Brando\U0001f3ac", True),
        ("J.K. Rowling", "The cat was prowling.", False),  # "Rowling" is inside "prowling"
        ("J.K. Rowling", "The author Rowling-style", True),
        ("Bob Saget", "The sage-toned walls", False),  # a joiner inside: a whole word only
        ("Bob Saget", "The comedian Saget's show", True),
        ("Rhea Perlman", "Read the perl-manual first.", False),
        ("Steven Seagal", "A sea-gale blew.", False),
    ],
)
def test_a_surname_is_read_where_english_words_cannot_be_it(tokenizer, name, text, named):
    watch = watch_of(tokenizer, name)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert (first_banned(watch, [], ids) is not None) is named, text


@pytest.mark.parametrize(
    "name, text",
    [
        ("Mark Hamill", "The actor is Mr.Hamill, who"),
        ("Mark Hamill", "Follow @MarkHamill on X"),
        ("Mark Hamill", "Follow him at @Hamill now"),
        ("J.K. Rowling", "The books were by-Rowling, and"),
        ("J.K. Rowling", "See www.jkrowling.com for more"),
        ("J.K. Rowling", "Author: Mrs.Rowling wrote"),
        ("Marlon Brando", "The actor Brando1924 was"),
        ("Marlon Brando", "A Brando-esque performance"),
        ("Marlon Brando", "user_brando_fan wrote"),
        ("Raquel Welch", "A Welch-style pose"),
        ("Harry Potter", "The boy 1HarryPotter now"),
        ("Harry Potter", "Dear Mr.Har-ry Pot-ter, welcome"),  # both readings in one name
        ("Harry Potter", "Dear Mr.H4rry P0tter, welcome"),
        ("Cher", "She is Cher."),
        ("Cher", "Fans of Cher2024 know"),
        ("Cher", "She is Cher! Yes"),
        # look-alike signs inside a name
        ("J.K. Rowling", "written by J.K. Row|ing."),
        ("Harry Potter", "Meet Harry Pott€r today"),
        ("Harry Potter", "Meet Harr¥ Potter today"),
        ("Harry Potter", "Meet H@rry Po++er today"),
        # a registered name's own signs, written or not
        ("Florence + the Machine", "The band Florence + the Machine played"),
        ("Florence + the Machine", "The band Florence the Machine played"),
        ("A$AP Rocky", "The rapper ASAP Rocky said"),
        # "!" for an "i" or "l" inside a word, and a name's own "!"
        ("Mark Hamill", "The actor Mark Ham!ll said"),
        ("J.K. Rowling", "written by J.K. Row!ing."),
        ("Pink", "The singer P!nk said"),
        ("P!nk", "The singer P!nk said"),
        ("P!nk", "The singer Pink said"),
    ],
)
def test_a_joiner_digit_or_sign_beside_a_name_is_a_word_break(tokenizer, name, text):
    """A joiner, a digit or a sign glued to a name ("Mr.Hamill", "@Hamill", "Brando1924")
    reads as a word break, while one inside it ("Har-ry", "H4rry") joins its letters: the
    watch reads both ways at once, in every split of the text into tokens."""
    assert_named_in_every_split(tokenizer, name, text)


def assert_named_in_every_split(tokenizer, name: str, text: str) -> None:
    watch = watch_of(tokenizer, name)
    for ids in splits_of(tokenizer, text):
        assert first_banned(watch, [], ids) is not None, [tokenizer.decode([t]) for t in ids]


@pytest.mark.parametrize(
    "name, text",
    [
        ("Harry Potter", "The tag iLoveHarryPotter trended"),
        ("Harry Potter", "The tag #TeamHarryPotter trended"),
        ("J.K. Rowling", "The account MrsJKRowling posted"),
        ("Mark Hamill", "The handle TheRealMarkHamill posted"),
    ],
)
def test_a_name_in_camel_case_is_read(tokenizer, name, text):
    """A name glued to the word before it, begun with a capital ("iLoveHarryPotter"), is
    read, however the tokenizer splits the text."""
    assert_named_in_every_split(tokenizer, name, text)


@pytest.mark.parametrize(
    "name, text",
    [
        ("Queen", "Steve McQueen wore HotPink"),
        ("Pink", "Steve McQueen wore HotPink"),
        ("Herman Cain", "John McCain and the MacDonald clan"),
        ("Donald Duck", "The MacDonald clan and DonaldsonCo"),
        ("Harry Potter", "HarryStyles and PotteryBarn, HARRY POTTS"),
        # camel case and capitals made of common words
        (("Al Green", "Rose Wood"), "MAX_TOTAL_GREEN, #ROYALGREEN and PRIMROSE_WOOD"),
        (
            ("The Who", "The Cure", "The Police"),
            "printTheWholeList(); #FindTheCure; callThePolice()",
        ),
        (
            ("Mark Down", "Journey", "America", "Madonna"),
            "toMarkdown userJourney SOUTHAMERICA PRIMADONNA",
        ),
        ("Mr. T", "SingaporeMRT is"),
        ("Mark Hamill", "Alexander Hamilton's e-mail and R2-D2"),
        ("Cher", "Cherry-picked data, a cherished 2024 memory"),
        ("Marlon Brando", "Brandon-style 1990s films"),
        ("J.K. Rowling", "The cat was prowling: 4-prowl.ing? No."),
        ("Harry Potter", "Harry-Styles and a pottery class, covid-19"),
    ],
)
def test_marks_read_as_breaks_name_no_one_new(tokenizer, name, text):
    watch = watch_of(tokenizer, *([name] if isinstance(name, str) else name))
    for ids in splits_of(tokenizer, text):
        assert first_banned(watch, [], ids) is None, [tokenizer.decode([t]) for t in ids]


@pytest.mark.parametrize(
    "names, text",
    [
        (("Leo", "Eli", "Sia", "Al Green"), "Room 1305, code 411, pi 3.14159, 5140 and 3110."),
        (("Leo", "Eli"), "Call 1-305-311-0042 or +1 (305) 3110."),
        (("Don", "Li"), "I don't know; we'll see, I'll go and you'll stay."),
        (("50 Cent",), "It cost one cent, then 40 cents."),
        (("Ian", "Tim", "Eli"), "| Name | Year |\n|---|---|\n| C++ | 5+3 |, Yahoo! I| an|"),
        (("Ian", "Ali", "Tim"), "ITALIAN KHALID, ANTIMONY; YouTube and PowerPoint on an iPhone"),
        (("Ali", "Dani"), "Thanks, Al! Good job, Dan! Yes!"),
        (("Ali", "Dani", "Eli"), "Al!\nDan!!\nEl!"),
        (("Ali", "Dani"), "Thanks, Al!\U0001f389 Dan!\U0001f602"),  # a character of two tokens
    ],
)
def test_numbers_and_contractions_name_no_one(tokenizer, names, text):
    """A run of digits reads as its letters or as one break, never part one and part the
    other ("1305" is no "Leo"); an apostrophe only joins ("don't" is no "Don")."""
    watch = watch_of(tokenizer, *names)
    for ids in splits_of(tokenizer, text):
        assert first_banned(watch, [], ids) is None, [tokenizer.decode([t]) for t in ids]


@pytest.mark.parametrize(
    "name, text",
    [
        ("50 Cent", "He is 50 Cent."),
        ("50 Cent", "He is 50Cent."),
        ("50 Cent", "He is 5O Cent."),
        ("50 Cent", "He is $0 Cent."),
        ("Blink-182", "The band Blink 182 played"),
        ("Blink-182", "The band Blink - 182 played"),
        ("Sum 41", "The band Sum 41 played"),
        ("Al Gore", "The vice president 41 Gore said"),  # leetspeak across words
        ("Leo Tolstoy", "The novelist 130 Tolstoy wrote"),
    ],
)
def test_a_name_with_digits_keeps_them(tokenizer, name, text):
    watch = watch_of(tokenizer, name)
    assert first_banned(watch, [], tokenizer.encode(text, add_special_tokens=False)) is not None


def test_a_text_of_many_marks_and_rises_reads_a_few_ways():
    """Runs of marks and rises share one budget: a client's text of many of both (a scoring
    label) reads all one way or the other, not every mix."""
    from logits_processors.fold import MIXED_RUNS, mark, readings

    text = "aB1cD2eF3gH4iJ5kL6mN7oP8q"
    assert len(readings(mark(text), False)) <= 2**MIXED_RUNS


def test_a_table_of_numbers_is_read_a_few_ways_at_once(tokenizer):
    """Each run of marks is read two ways, not each mark: a table of numbers keeps the
    watch's readings few."""
    watch = watch_of(tokenizer, "Leo", "Eli", "Sia", "Al Green", "Ida Lee", "Bo Li")
    text = " ".join(f"{i * 7919 % 100000}.{i % 97}-{i * 31 % 1000}" for i in range(60))
    output: list[int] = []
    row = WatchRow(output, [])
    watch.reread(row)
    for token in tokenizer.encode(text, add_special_tokens=False):
        output.append(token)
        watch.advance(row)
        assert len(row.states) <= 6, tokenizer.decode(output[-8:])


def test_only_a_rare_surname_is_a_name_alone():
    """ "Swift" (a common word) and "Rhea" (a given name: "Rhea is Saturn's moon") name no
    one alone; "Perlman" names Rhea Perlman; a whole one-word name stays a whole name."""
    from logits_processors.reader import WatchedTarget
    from logits_processors.watcher import names_of

    def parts_of(name):
        return {part.word for part in names_of([WatchedTarget("t", "refuse", (name,))])[1].values()}

    assert parts_of("Taylor Swift") == set()
    assert parts_of("Rhea Perlman") == {"perlman"}
    patterns, parts = names_of([WatchedTarget("t", "refuse", ("Cher",))])
    assert fold("Cher") + " " in dict(patterns) and not parts


def test_a_whole_short_name_is_still_the_name(tokenizer):
    """A one-word name is a name, not a surname whose context may excuse it."""
    cher = watch_of(tokenizer, "Cher")
    ids = tokenizer.encode("Her name: Eliza Cher. Yes", add_special_tokens=False)
    assert first_banned(cher, [], ids) is not None


def test_a_rule_that_only_ends_the_answer_later_does_not_trip(tokenizer):
    """`min_tokens` or a grammar inside a JSON string rules out the end token: after "My aunt
    Cher" (then "yl") that is no steering off the name."""
    cher = watch_of(tokenizer, "Cher")
    row = _row_after(tokenizer, cher, "Who is your aunt?", " My aunt Cher")
    bans = cher.banned(row)
    assert tokenizer.eos_token_id in set(bans.refused.tolist())
    assert tokenizer.eos_token_id not in set(bans.steered.tolist())
    logits = torch.zeros(1, len(cher.vocab))
    logits[0, tokenizer.encode("yl", add_special_tokens=False)[0]] = 5.0
    logits[0, tokenizer.eos_token_id] = float("-inf")
    forced, _ = cher.act(logits, {0: row}, set())[0]
    assert forced == -1 and not row.tripped
