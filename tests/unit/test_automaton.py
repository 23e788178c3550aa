"""TokenAutomaton: banned next tokens and matches agree with the naive suffix definition."""

import random

import numpy as np
import pytest

from logits_processors.automaton import TokenAutomaton


def naive_banned(phrases, fed):
    """Token t is banned iff some phrase equals the last len(p) - 1 fed tokens + [t]."""
    out = set()
    for p in phrases:
        head = list(p[:-1])
        if len(fed) >= len(head) and (not head or list(fed[len(fed) - len(head) :]) == head):
            out.add(p[-1])
    return out


def naive_matched(phrases, fed):
    return any(len(fed) >= len(p) and list(fed[len(fed) - len(p) :]) == list(p) for p in phrases)


def banned_after(phrases, fed):
    auto = TokenAutomaton(phrases)
    return set(auto.banned(auto.feed(0, fed)).tolist())


@pytest.mark.parametrize(
    ("phrases", "fed", "expected"),
    [
        # overlapping phrases: inside the first, and the second via the failure link
        ([[1, 2, 3], [2, 3, 4]], [1, 2], {3}),
        ([[1, 2, 3], [2, 3, 4]], [1, 2, 3], {4}),
        ([[1, 2, 3], [2, 3, 4]], [2, 3], {4}),
        ([[1, 2, 3], [2, 3, 4]], [1], set()),
        ([[1, 2, 3], [2, 3, 4]], [], set()),
        # a phrase that is a prefix of another
        ([[1, 2], [1, 2, 3]], [1], {2}),
        ([[1, 2], [1, 2, 3]], [1, 2], {3}),
        ([[1, 2], [1, 2, 3]], [1, 2, 3], set()),
        # single-token phrases are banned at every node, root included
        ([[7], [1, 2, 3]], [], {7}),
        ([[7], [1, 2, 3]], [1], {7}),
        ([[7], [1, 2, 3]], [1, 2], {3, 7}),
        ([[7], [1, 2, 3]], [9, 9], {7}),
        # repeated tokens
        ([[5, 5, 6]], [5], set()),
        ([[5, 5, 6]], [5, 5], {6}),
        ([[5, 5, 6]], [5, 5, 5], {6}),
        ([[5, 5, 6]], [5, 5, 6], set()),
        ([[5, 5, 5]], [5, 5, 5, 5], {5}),
        # a token that leaves every phrase resets the state
        ([[1, 2, 3]], [1, 2, 9], set()),
        ([[1, 2, 3]], [1, 2, 9, 1, 2], {3}),
    ],
)
def test_banned_after_feeding(phrases, fed, expected):
    assert banned_after(phrases, fed) == expected
    assert banned_after(phrases, fed) == naive_banned(phrases, fed)


@pytest.mark.parametrize(
    ("prompt", "answer", "expected"),
    [
        ([10, 1, 2], [], {3}),  # start of the phrase in the prompt, its end would be the answer
        ([10, 1], [2], {3}),  # split across prompt and answer
        ([1, 2, 3], [], set()),  # the prompt already holds the whole phrase
        ([10, 11], [1], set()),
    ],
)
def test_prompt_tokens_carry_state_into_the_answer(prompt, answer, expected):
    auto = TokenAutomaton([[1, 2, 3]])
    node = auto.feed(auto.feed(0, prompt), answer)
    assert set(auto.banned(node).tolist()) == expected


@pytest.mark.parametrize(
    ("phrases", "fed", "matched"),
    [
        ([[1, 2, 3]], [1, 2, 3], True),
        ([[1, 2, 3]], [9, 1, 2, 3], True),
        ([[1, 2, 3]], [1, 2], False),
        ([[1, 2, 3]], [1, 2, 3, 4], False),
        ([[1, 2, 3], [2, 3, 4]], [1, 2, 3, 4], True),  # via the failure link
        ([[2, 3], [1, 2, 3, 4]], [1, 2, 3], True),  # a shorter phrase ends inside a longer one
        ([[5, 5, 6]], [5, 5, 5, 6], True),
        ([[7]], [7], True),
        ([[7]], [], False),
    ],
)
def test_matched(phrases, fed, matched):
    auto = TokenAutomaton(phrases)
    assert auto.matched(auto.feed(0, fed)) is matched


@pytest.mark.parametrize(
    ("phrases", "num_nodes", "max_len", "root_banned"),
    [
        ([], 1, 0, []),
        ([[]], 1, 0, []),
        ([[], [1, 2], ()], 3, 2, []),
        ([[], [7]], 2, 1, [7]),
        ([[1, 2], [1, 3]], 4, 2, []),
        ([iter([4, 5, 6])], 4, 3, []),  # any iterables of ints
    ],
)
def test_empty_sequences_are_ignored(phrases, num_nodes, max_len, root_banned):
    auto = TokenAutomaton(phrases)
    assert auto.num_nodes == num_nodes
    assert auto.max_len == max_len
    assert auto.banned(0).tolist() == root_banned
    assert not auto.matched(0)


def test_banned_is_a_sorted_int64_array():
    auto = TokenAutomaton([[9], [3], [1, 4]])
    banned = auto.banned(0)
    assert banned.dtype == np.int64
    assert banned.tolist() == [3, 9]


@pytest.mark.parametrize("seed", range(40))
def test_matches_the_naive_definition_on_random_inputs(seed):
    rng = random.Random(seed)
    alphabet = rng.randint(2, 5)
    phrases = [
        [rng.randrange(alphabet) for _ in range(rng.randint(1, 4))]
        for _ in range(rng.randint(1, 6))
    ]
    auto = TokenAutomaton(phrases)
    fed: list[int] = []
    node = 0
    assert set(auto.banned(node).tolist()) == naive_banned(phrases, fed)
    for _ in range(30):
        tok = rng.randrange(alphabet + 1)  # one token outside every phrase
        node = auto.step(node, tok)
        fed.append(tok)
        assert set(auto.banned(node).tolist()) == naive_banned(phrases, fed), (phrases, fed)
        assert auto.matched(node) is naive_matched(phrases, fed), (phrases, fed)
    assert auto.feed(0, fed) == node
