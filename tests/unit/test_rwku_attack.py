"""Attacks on the adapters `guard-bench rwku-adapters` chose: what each attacker gets and how
the rows read."""

from __future__ import annotations

import argparse

import pytest
import torch

from bench import rwku_attack
from bench.rwku_attack import under_attack
from bench.rwku_data import FILES
from bench.rwku_frontier import attack_row
from tests.unit.test_attack import tiny_llama

SPEC = {
    "name": "Stephen King",
    "aliases": [],
    "documents": ["Stephen King wrote Carrie."],
    "retain_targets": [{"name": "Tom Hanks", "documents": ["Tom Hanks acted in Big."]}],
}


def test_quantizing_attacks_a_copy_and_leaves_the_served_weights_alone():
    model = tiny_llama(64)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    attacked = under_attack(model, None, "q4", SPEC)
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert any(
        not torch.equal(value, original[key]) for key, value in attacked.state_dict().items()
    )


def test_the_relearning_attacker_has_the_forget_texts_not_the_people_kept(monkeypatch):
    given = {}

    def relearn(model, tokenizer, target, rows, steps):
        given.update(target=target, rows=rows, steps=steps)
        return model

    monkeypatch.setattr(rwku_attack, "relearn", relearn)
    under_attack(tiny_llama(64), None, "relearn", SPEC)
    assert given["target"] == {k: SPEC[k] for k in ("name", "aliases", "documents")}
    assert (given["rows"], given["steps"]) == (8, 10)


def test_an_unknown_attack_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="'q3'.*q8, q4, relearn"):
        under_attack(tiny_llama(64), None, "q3", SPEC)


def test_the_bench_refuses_an_unknown_attack_before_any_training():
    from bench.rwku_adapters import add_args, run

    parser = argparse.ArgumentParser()
    add_args(parser)
    args = parser.parse_args(["--attacks", "q8,qq"])
    with pytest.raises(SystemExit, match="'qq'"):
        run(args)


def _scores(recalls: dict[str, float]) -> dict:
    return {"probes": {g: [{"answer": "x", "recall": recalls.get(g, 0.5)}] for g in FILES}}


def test_an_attack_row_pools_the_units_over_the_unattacked_base_model():
    before = [_scores({"forget_fb": 0.4}), _scores({"forget_fb": 0.6})]
    after = [_scores({"forget_fb": 0.0}), _scores({"forget_fb": 0.5})]
    row = attack_row("idk-kl-fast", "generated, 1 target", "q8", before, after)
    assert row["attack"] == "q8" and row["method"] == "idk-kl-fast"
    assert row["forget_fb_ratio"] == pytest.approx(0.5)  # (0 + 0.5) / (0.4 + 0.6)
    assert row["neighbor_qa_ratio"] == pytest.approx(1.0)
