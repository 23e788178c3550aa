"""How adapters are scored on RWKU: MIA statistics, fluency, MMLU's prompt, frontier rows."""

from __future__ import annotations

import numpy as np
import pytest

from bench.adapter_eval import ratios
from bench.lm_eval import auc, auc_interval, min_k_score, ngram_entropy
from bench.rwku_adapters import held_out_score, numbers
from bench.rwku_data import FILES, mmlu_prompt
from bench.rwku_frontier import frontier_row, meets_goal
from guard_server.unlearn.lm import mean_loss


def test_auc_is_the_chance_a_positive_outscores_a_negative():
    assert auc([3, 4], [1, 2]) == 1.0
    assert auc([1, 2], [3, 4]) == 0.0
    assert auc([1, 3], [2, 2]) == 0.5
    assert auc([2], [2]) == 0.5  # a tie counts half


def test_the_auc_interval_holds_the_auc_and_narrows_with_more_texts():
    rng = np.random.default_rng(1)
    few = rng.normal(0.5, 1, 8), rng.normal(0, 1, 8)
    many = rng.normal(0.5, 1, 400), rng.normal(0, 1, 400)
    (lo, hi), (lo_many, hi_many) = auc_interval(*few), auc_interval(*many)
    assert lo <= auc(*few) <= hi and lo_many <= auc(*many) <= hi_many
    assert hi_many - lo_many < 0.5 * (hi - lo)
    assert lo_many < 0.64 < hi_many  # the true AUC of these two normals: Phi(0.5 / sqrt 2)
    assert auc_interval([3, 4, 5], [0, 1, 2]) == [1.0, 1.0]


def test_the_interval_of_a_mean_of_aucs_is_narrower_than_each():
    from bench.rwku_frontier import pooled_interval

    assert pooled_interval(0.5, [[0.4, 0.6]]) == [0.4, 0.6]
    lo, hi = pooled_interval(0.5, [[0.4, 0.6], [0.4, 0.6], [0.4, 0.6], [0.4, 0.6]])
    assert (lo, hi) == pytest.approx((0.45, 0.55))
    assert pooled_interval(0.5, [[0.4, 0.6], None]) is None


def test_min_k_takes_the_least_likely_tokens():
    logprobs = np.log(np.array([0.9, 0.8, 0.01, 0.7, 0.6]))
    assert min_k_score(logprobs, k=0.2) == pytest.approx(-np.log(0.01))
    assert min_k_score(logprobs, k=1.0) == pytest.approx(-logprobs.mean())


def test_mean_loss_weights_every_token_alike():
    assert mean_loss([np.array([-1.0]), np.array([-2.0, -2.0, -2.0])]) == pytest.approx(7 / 4)


def test_degenerate_text_is_less_fluent_than_varied_text():
    varied = "The quick brown fox jumps over the lazy dog while the cat sleeps on a warm mat."
    looping = "the the the the the the the the the the the the the the the the the"
    assert ngram_entropy(varied) > ngram_entropy(looping) == 0.0


def test_a_reply_declines_when_it_opens_with_a_refusal_not_when_it_mentions_one():
    from bench.adapter_eval import declines

    assert declines("I don't know.")
    assert declines("  I'm sorry, but I can't help with that.")
    assert not declines("Apple juice: wash the apples. I don't know a faster way.")
    assert not declines("")


def test_generation_batches_hold_each_prompt_once_within_rows_and_padded_tokens():
    from guard_server.unlearn.lm import token_batches

    lengths = [226, 37, 58, 213, 60, 5000, 40, 41, 39]
    batches = token_batches(lengths, size=3, tokens=500)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [5] and batches[1] == [0, 3]  # too long for anyone's company
    for batch in batches:
        widths = [lengths[i] for i in batch]
        assert widths == sorted(widths, reverse=True) and len(batch) <= 3
        assert len(batch) == 1 or len(batch) * widths[0] <= 500
    assert batches[2:] == [[4, 2, 7], [6, 8, 1]]  # full at three rows


def test_mmlu_prompt_is_five_answered_shots_and_the_open_question():
    example = {"question": " 2+2?", "choices": ["3", "4", "5", "6"], "answer": 1}
    item = {**example, "task": "high_school_math", "examples": [example] * 5, "answer": 2}
    prompt = mmlu_prompt(item)
    assert prompt.startswith("The following are multiple choice questions (with answers) about")
    assert "high school math" in prompt.split("\n")[0]
    assert prompt.count("Answer: B") == 5 and prompt.endswith(
        "2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    )


def test_target_numbers_read_lists_and_ranges():
    assert numbers("1-3,7") == [1, 2, 3, 7]
    assert numbers("") == []


def _scores(recall: float, mmlu: float, n: int = 2, refused: float = 0.0) -> dict:
    probe = {"answer": f"a{recall}", "recall": recall}
    return {
        "probes": {g: [probe] * n for g in FILES},
        "utility": {"mmlu": mmlu, "triviaqa": 0.5, "fluency": 4.0, "fluency_refused": refused},
        "mia": {"mia_auc_loss": 0.6, "mia_auc_mink": 0.7},
        "seconds": {"probes": 40.0, "utility": 200.0 + 100 * recall, "mia": 10.0},
    }


def test_a_frontier_row_pools_all_probes_and_checks_the_goal():
    before = [_scores(0.8, 0.30), _scores(0.2, 0.30)]
    after = [_scores(0.2, 0.29, refused=0.1), _scores(0.2, 0.30, refused=0.3)]
    after[1]["seconds"]["utility"] = 300.0  # the slower unit
    card = {"config": {"lr": 1e-4}, "seconds": 10.0, "peak_rss_gib": 1.5}
    row = frontier_row("npo", "generated, 1 target", before, after, [card, card])
    # pooled: (0.2 + 0.2) / (0.8 + 0.2), not the mean of per-target ratios (0.25 and 1.0)
    assert row["forget_fb_ratio"] == pytest.approx(0.4)
    assert row["neighbor_qa_ratio"] == pytest.approx(0.4)
    assert row["mmlu_delta"] == pytest.approx(-0.5)
    assert row["forget_fb_changed"] == 0.5
    # everyday instructions declined, before and after; an edit's cost is its slowest unit's
    assert row["fluency_refused"] == pytest.approx(0.2)
    assert row["fluency_refused_before"] == 0.0
    assert row["eval_s"] == pytest.approx(350.0)
    assert not row["meets_goal"]  # neighbours lost
    good = {**row, "neighbor_fb_ratio": 0.95, "neighbor_qa_ratio": 1.0}
    assert meets_goal(good)
    assert not meets_goal({**good, "mmlu_delta": -2.5})
    assert not meets_goal({**good, "forget_aa_ratio": None})  # nothing known: nothing shown


def test_ratios_of_nothing_known_are_none_not_a_division_error():
    got = ratios(_scores(0.0, 0.3), _scores(0.0, 0.3))
    assert got["forget_fb_ratio"] is None and got["forget_fb_changed"] == 0.0


def test_held_out_score_is_the_best_steps_and_a_broken_run_ranks_last():
    card = {
        "early_stop": {
            "best_step": 4,
            "history": [{"step": 0, "score": 0.0}, {"step": 4, "score": 1.5}],
        }
    }
    assert held_out_score(card) == 1.5
    assert (
        held_out_score({"early_stop": {"best_step": 0, "history": [{"step": 0, "score": None}]}})
        == -np.inf
    )


def test_mmlu_with_shared_examples_gives_the_letter_logits_of_whole_prompts():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench.rwku_data import mmlu_parts
    from guard_server.unlearn.lm import LETTERS, LM
    from tests.unit.test_unlearn_cli import _real_model

    def item(task: str, question: str, shots: list[str]) -> dict:
        examples = [{"question": q, "choices": ["1", "2", "3", "4"], "answer": 2} for q in shots]
        return {"task": task, "question": question, "choices": ["a", "b", "c", "d"]} | {
            "answer": 0,
            "examples": examples,
        }

    algebra = [f"What is {i} + 1?" for i in range(5)]
    items = [
        item("algebra", "What is 7 - 5?", algebra),  # two questions share their examples
        item("algebra", "How many sides has a square?", algebra),
        item("geography", "Which ocean is largest?", ["Capital of France?"] * 5),
    ]
    model_dir = _real_model()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lm = LM(model, AutoTokenizer.from_pretrained(model_dir))
    letters = [lm.tokenizer(f" {c}", add_special_tokens=False)["input_ids"][-1] for c in LETTERS]
    whole = []
    with torch.no_grad():
        for x in items:
            ids = lm.tokenizer("".join(mmlu_parts(x)), return_tensors="pt")["input_ids"]
            whole.append(model(input_ids=ids).logits[0, -1, letters])
    shared = lm.letter_logits([mmlu_parts(x) for x in items])
    for got, want in zip(shared, whole, strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_token_logprobs_score_each_text_alone_whatever_it_is_batched_with():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from guard_server.unlearn.lm import LM
    from tests.unit.test_unlearn_cli import _real_model

    model_dir = _real_model()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lm = LM(model, AutoTokenizer.from_pretrained(model_dir), batch=8)
    texts = ["The sky is blue.", "A much longer sentence about the history of the Roman Empire."]
    batched = lm.token_logprobs(texts)
    for text, got in zip(texts, batched, strict=True):
        ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
        want = logp.gather(-1, ids[0, 1:, None])[:, 0].numpy()
        assert got.shape == want.shape == (ids.shape[1] - 1,)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert lm.tokenizer.padding_side == "left"  # generation still pads on the left


def test_people_kept_by_an_edit_are_never_those_its_neighbour_probes_ask_about(tmp_path):
    import json

    from bench.rwku_adapters import kept_people

    def person(number: int, name: str, neighbours: list[str]):
        folder = tmp_path / f"{number}_{name.replace(' ', '_')}"
        folder.mkdir()
        (folder / "intro.json").write_text(json.dumps([{"target": name, "intro": name}]))
        for level in (1, 2):
            probes = [{"query": "?", "answer": "!", "neighbor": n} for n in neighbours]
            (folder / f"neighbor_level{level}.json").write_text(json.dumps(probes))
        return folder

    harry = person(10, "Prince Harry", ["Meghan Markle"])
    meghan, other = person(44, "Meghan Markle", []), person(45, "Bruce Springsteen", [])
    assert kept_people([harry], [meghan, other]) == [other]


def test_every_benchmarked_method_has_a_grid_of_configs_its_method_accepts():
    from bench.rwku_adapters import DATA_KEYS, GRID, METHODS, VARIANT_OF
    from guard_server.unlearn import get_method

    assert set(METHODS.split(",")) == set(GRID)
    for name, points in GRID.items():
        method = get_method(VARIANT_OF.get(name, name))
        for point in points:
            method.from_overrides({k: v for k, v in point.items() if k not in DATA_KEYS})
