"""Log-probabilities never show a token the answer watch bans (`guard_server.logprobs`): vLLM
returns them as computed before the watch runs, so each position's candidates that would
complete a registered name there are removed, and nothing else is."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from vllm.logprobs import FlatLogprobs, Logprob

from guard_server.guard import NameIndex
from guard_server.logprobs import withhold

NAMES = ("Genghis Khan", "Hogwarts")


@pytest.fixture(scope="session")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def guard():
    index = NameIndex(SimpleNamespace(spec={"name": n}) for n in NAMES)
    return SimpleNamespace(completing=index.completing)


@pytest.mark.parametrize(
    ("context", "candidate", "completes"),
    [
        ("The empire was founded by Genghis", " Khan", True),
        ("The empire was founded by Genghis", " and", False),
        ("The empire was founded by", " Genghis", False),  # begun, not completed: written
        ("The empire was founded by GENGHIS", " KHAN", True),
        ("a school called", " Hogwarts", True),
        ("a school called Hog", "warts", True),
        ("the hedgehog", " warts", False),
        ("", " Khan", False),
    ],
)
def test_a_candidate_is_withheld_only_where_it_completes_a_name(
    guard, context, candidate, completes
):
    assert guard.completing([(context, [candidate])]) == [[completes]]


@pytest.mark.parametrize(
    ("context", "candidate", "completes"),
    [
        ("Born to Run was written by", " Springsteen", True),
        ("Born to Run was written by Springste", "en", True),
        ("Born to Run was written by the", " spring", False),
        ("Born to Run was written by Mr", ".Springsteen", True),  # a joiner as a break
        ("Born to Run was written by", " @Springsteen", True),
    ],
)
def test_a_rare_surname_alone_is_withheld(context, candidate, completes):
    """ "Springsteen" alone names Bruce Springsteen, to the log-probabilities as to the
    answer: its probability after "written by" is the forgotten answer."""
    index = NameIndex([SimpleNamespace(spec={"name": "Bruce Springsteen"})])
    assert index.completing([(context, [candidate])]) == [[completes]]


def rows(tokenizer, held: list[int], alternatives: list[int]) -> list[dict[int, Logprob]]:
    """An answer's logprobs: at every position the token it holds, then `alternatives`."""
    return [
        {
            t: Logprob(-0.5 - rank, rank + 1, tokenizer.decode([t]))
            for rank, t in enumerate([token, *alternatives])
        }
        for token in held
    ]


def test_an_answers_banned_runner_up_is_withheld_and_everything_else_kept(tokenizer, guard):
    held = tokenizer.encode(" founded by Genghis and his sons")
    (khan,) = tokenizer.encode(" Khan")
    (sons,) = tokenizer.encode(" sons")
    given = rows(tokenizer, held, [khan, sons])
    got = asyncio.run(withhold(guard, given, held, "The Mongol Empire was", tokenizer))
    after = len(tokenizer.encode(" founded by Genghis"))  # the position right after the name
    for i, (before, now) in enumerate(zip(given, got, strict=True)):
        assert held[i] in now and now[held[i]] == before[held[i]]
        assert (khan in now) == (i != after), i
        assert sons in now


def test_flat_logprobs_are_withheld_too(tokenizer, guard):
    held = tokenizer.encode(" Genghis and")
    (khan,) = tokenizer.encode(" Khan")
    flat = FlatLogprobs()
    flat.extend(rows(tokenizer, held, [khan]))
    got = asyncio.run(withhold(guard, flat, held, "founded by", tokenizer))
    after = len(tokenizer.encode(" Genghis"))
    assert [khan in row for row in got] == [i != after for i in range(len(held))]
    assert all(t in row for t, row in zip(held, got, strict=True))


def test_logprobs_that_show_no_banned_token_are_returned_as_they_were(tokenizer, guard):
    held = tokenizer.encode(" Paris is the capital")
    given = rows(tokenizer, held, tokenizer.encode(" Khan London"))
    assert asyncio.run(withhold(guard, given, held, "", tokenizer)) is given


def test_prompt_logprobs_start_with_no_entry(tokenizer, guard):
    held = tokenizer.encode("Genghis and")
    (khan,) = tokenizer.encode(" Khan")
    given = [None, *rows(tokenizer, held[1:], [khan])]
    got = asyncio.run(withhold(guard, given, held, "", tokenizer))
    after = len(tokenizer.encode("Genghis"))
    assert got[0] is None
    assert [khan in row for row in got[1:]] == [i != after for i in range(1, len(held))]
