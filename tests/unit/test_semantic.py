"""The FAISS semantic index: best similarity per live target, tombstones skipped in FAISS."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.semantic import SemanticIndex

DIM = 16
KINDS = {"flat": 10**9, "hnsw": 1}  # hnsw_min_vectors for each index kind


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=list(KINDS))
def index(request):
    return SemanticIndex(DIM, hnsw_min_vectors=KINDS[request.param])


def test_best_similarity_per_target(index):
    rng = np.random.default_rng(0)
    a, b = unit(rng, 3), unit(rng, 3)
    index.add("a", a)
    index.add("b", b)
    (hits,) = index.search(a[:1])
    assert hits["a"] == pytest.approx(1.0, abs=1e-5)
    assert hits["b"] == pytest.approx(float((b @ a[0]).max()), abs=1e-5)
    assert index.size == 6 and index.dead == 0


def test_removed_and_replaced_targets_never_come_back(index):
    rng = np.random.default_rng(1)
    old, new, other = unit(rng, 4), unit(rng, 4), unit(rng, 4)
    index.add("t", old)
    index.add("other", other)
    index.add("t", new)  # a new version: the old vectors are tombstones
    (hits,) = index.search(old[:1])
    assert hits["t"] == pytest.approx(float((new @ old[0]).max()), abs=1e-5)
    assert index.dead == 4
    index.remove("t")
    index.remove("missing")  # no-op
    assert [set(h) for h in index.search(np.vstack([old, new]))] == [{"other"}] * 8
    assert index.dead == 8


def test_tombstones_do_not_crowd_out_live_neighbours(index):
    # Many versions of a target right next to the query, all replaced by a far one: the k
    # nearest live vectors still come back, however many dead ones are nearer.
    rng = np.random.default_rng(2)
    query = unit(rng, 1)
    near = query + 0.01 * unit(rng, 20)
    for _ in range(30):
        index.add("t", near / np.linalg.norm(near, axis=1, keepdims=True))
    index.add("t", -query)
    live = unit(rng, 8)
    index.add("live", live)
    (hits,) = index.search(query, k=4)
    assert set(hits) <= {"t", "live"} and hits.get("t", -1.0) < 0
    assert hits["live"] == pytest.approx(float((live @ query[0]).max()), abs=1e-5)
    assert index.dead == 30 * 20


def test_switch_to_hnsw_keeps_tombstones():
    rng = np.random.default_rng(3)
    index = SemanticIndex(DIM, hnsw_min_vectors=12)
    first = unit(rng, 8)
    index.add("t", first)
    index.add("t", unit(rng, 8))  # crosses the floor: HNSW built with the dead rows inside
    assert index.kind == "hnsw"
    (hits,) = index.search(first[:1])
    assert hits["t"] < 0.999


def test_empty_index_and_no_queries():
    index = SemanticIndex(DIM)
    assert index.search(np.zeros((2, DIM), dtype=np.float32)) == [{}, {}]
    index.add("t", unit(np.random.default_rng(4), 2))
    assert index.search(np.zeros((0, DIM), dtype=np.float32)) == []
