"""Length buckets of the ONNX encoder and the tokens a span pools."""

from __future__ import annotations

import pytest

from classifiers.encoder import BATCH, RUN_TOKENS, _batches, _tokens_in


@pytest.mark.parametrize(
    "lengths, expected",
    [
        ([], []),
        ([7], [[0]]),
        ([10, 10, 10], [[0, 1, 2]]),
        # A mixed request: the whole turn, then its two clauses (measured token counts).
        ([28, 21, 8], [[0, 1], [2]]),
        ([8, 28, 21], [[1, 2], [0]]),
        ([28, 28 - RUN_TOKENS], [[0, 1]]),
        ([28, 28 - RUN_TOKENS - 1], [[0], [1]]),
        ([5, 40, 6, 41], [[3, 1], [2, 0]]),
    ],
)
def test_batches_pad_rows_at_most_one_run_of_tokens(lengths, expected):
    assert _batches(lengths) == expected


def test_batches_hold_every_row_once_and_at_most_batch_rows():
    same = _batches([10] * (3 * BATCH + 5))
    assert [len(b) for b in same] == [BATCH, BATCH, BATCH, 5]
    lengths = [(i * 37) % 50 + 1 for i in range(3 * BATCH + 5)]
    batches = _batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= BATCH
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= RUN_TOKENS


@pytest.mark.parametrize(
    "offsets, span, expected",
    [
        # [CLS] who wrote it ? [SEP]: special tokens have no extent and are never picked.
        ([(0, 0), (0, 3), (4, 9), (10, 12), (12, 13), (0, 0)], (0, 13), [1, 2, 3, 4]),
        ([(0, 0), (0, 3), (4, 9), (10, 12), (12, 13), (0, 0)], (4, 12), [2, 3]),
        # A token belongs where it starts: "##ter" of a word cut by the span stays out.
        ([(0, 3), (3, 6), (7, 9)], (3, 9), [1, 2]),
        ([(0, 3), (3, 6), (7, 9)], (2, 3), []),
        ([(0, 3)], (5, 9), []),  # past the window: nothing to pool
    ],
)
def test_tokens_in_a_span(offsets, span, expected):
    assert _tokens_in(offsets, span) == expected
