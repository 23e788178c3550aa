"""Attacks on the adapters `guard-bench rwku-adapters` chose: what each attacker gets and how
the rows read."""

from __future__ import annotations

import argparse

import pytest
import torch

from bench import rwku_attack
from bench.rwku_attack import setup, under_attack
from bench.rwku_data import FILES
from bench.rwku_frontier import attack_row
from tests.unit.test_attack import tiny_llama

SPEC = {
    "name": "Stephen King",
    "aliases": [],
    "documents": ["Stephen King wrote Carrie."],
    "retain_targets": [{"name": "Tom Hanks", "documents": ["Tom Hanks acted in Big."]}],
}


def test_a_quantizing_attack_rounds_the_weights_and_asks_for_no_forget_rows():
    model = tiny_llama(64)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    attacked = under_attack(model, None, "q4", SPEC)
    assert any(not torch.equal(v, original[k]) for k, v in attacked.state_dict().items())
    assert setup("q4", SPEC) == setup("q4", {**SPEC, "documents": ["other"]})
    assert setup("relearn", SPEC) != setup("relearn", {**SPEC, "documents": ["other"]})
    kept = {**SPEC, "retain_targets": []}  # the people kept are not the attacker's
    assert setup("relearn", SPEC) == setup("relearn", kept)


def test_the_relearning_attacker_has_the_forget_texts_not_the_people_kept(monkeypatch):
    given = {}

    def relearn(model, tokenizer, target, rows, steps, lr):
        given.update(target=target, rows=rows, steps=steps, lr=lr)
        return model

    monkeypatch.setattr(rwku_attack, "relearn", relearn)
    under_attack(tiny_llama(64), None, "relearn", SPEC)
    assert given["target"] == {k: SPEC[k] for k in ("name", "aliases", "documents")}
    assert (given["rows"], given["steps"], given["lr"]) == (8, 10, 1e-3)


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


def test_a_method_run_again_replaces_its_attack_rows_and_keeps_the_others(tmp_path, monkeypatch):
    import json

    from bench import report, rwku_frontier

    monkeypatch.setattr(report, "out_dir", lambda name: tmp_path)
    monkeypatch.setattr(rwku_frontier, "frontier_plot", lambda path, rows: None)

    def row(method: str, **more) -> dict:
        return {"method": method, "setting": "one"} | {f"{g}_ratio": 1.0 for g in FILES} | more

    first = [row("idk-kl-fast", attack="q8"), row("base model", attack="q8")]
    rwku_frontier.write("x", {}, [], [row("idk-kl-fast"), row("gd")], first)
    # idk-kl-fast again, not attacked this time (it stopped at step 0, or no --attacks)
    rwku_frontier.write("x", {}, [], [row("idk-kl-fast")], [])
    written = json.loads((tmp_path / "rwku.json").read_text())
    assert [(r["method"], r["attack"]) for r in written["attacks"]] == [("base model", "q8")]
    assert {r["method"] for r in written["frontier"]} == {"idk-kl-fast", "gd"}
