"""How the held-out recipe run reports people: pooled over persons, each person's row, the worst."""

from __future__ import annotations

import pytest

from bench.rwku_data import FILES
from bench.rwku_heldout import meets, overrides, row, summary


def scores(recalls: dict[str, list[float]], mmlu: float, fluency: float = 5.0) -> dict:
    probes = {g: [{"recall": r, "answer": str(r)} for r in recalls.get(g, [1.0])] for g in FILES}
    utility = {"mmlu": mmlu, "mmlu_questions": 5758, "fluency": fluency}
    utility |= {"fluency_refused": 0.0, "triviaqa": 0.2}
    mia = {"mia_auc_loss": 0.5, "mia_auc_loss_ci": [0.4, 0.6], "mia_texts": [25, 39]}
    return {"probes": probes, "utility": utility, "mia": mia}


def test_people_are_pooled_by_recall_summed_not_by_averaging_their_ratios():
    # One person knew half a probe's worth and forgot it all; the other knew four probes and
    # forgot one: pooled, 3 of 4.5 remain, where a mean of ratios would say 0.375.
    before = [scores({"forget_fb": [0.5]}, 0.40), scores({"forget_fb": [1, 1, 1, 1]}, 0.40)]
    after = [scores({"forget_fb": [0.0]}, 0.39), scores({"forget_fb": [1, 1, 1, 0]}, 0.40)]
    got = row([[], []], before, after)
    assert got["forget_fb_ratio"] == pytest.approx(3 / 4.5)
    assert got["forget_fb_before"] == pytest.approx(4.5)
    assert got["forget_fb_after"] == pytest.approx(3.0)  # the same unit as before: summed
    assert got["forget_fb_probes"] == 5
    assert got["mmlu_delta"] == pytest.approx(-0.5)  # points, averaged over the units
    assert "mia_auc_loss_ci_after" not in got  # an interval is one unit's


def test_a_persons_row_carries_what_rwku_reports_beside_mmlu():
    got = row([[]], [scores({}, 0.4, fluency=5.0)], [scores({}, 0.4, fluency=4.0)])
    assert (got["fluency_before"], got["fluency_after"]) == (5.0, 4.0)
    assert got["mia_auc_loss_after"] == 0.5 and got["mia_auc_loss_ci_after"] == [0.4, 0.6]
    assert got["fluency_refused_after"] == 0.0 and got["triviaqa_before"] == 0.2


@pytest.mark.parametrize(
    ("forget", "neighbour", "mmlu", "ok"),
    [(0.4, 0.95, -1.0, True), (0.6, 0.95, 0.0, False), (0.4, 0.8, 0.0, False), (0.4, 1, -3, False)],
)
def test_the_goal_needs_every_part_of_it(forget, neighbour, mmlu, ok):
    r = {f"{g}_ratio": forget for g in ("forget_fb", "forget_qa", "forget_aa")}
    r |= {f"{g}_ratio": neighbour for g in ("neighbor_fb", "neighbor_qa")}
    assert meets({**r, "mmlu_delta": mmlu}) is ok


def test_the_worst_person_is_the_one_who_forgot_least_or_kept_least():
    rows = [
        {"forget_fb_ratio": 0.1, "neighbor_fb_ratio": 1.0},
        {"forget_fb_ratio": 0.7, "neighbor_fb_ratio": 0.8},
    ]
    rows = [{**{f"{g}_ratio": None for g in FILES}, **r} for r in rows]
    got = summary(rows)
    assert got["forget_fb_ratio_worst"] == 0.7 and got["neighbor_fb_ratio_worst"] == 0.8
    assert got["forget_fb_ratio_mean"] == pytest.approx(0.4)
    assert "forget_qa_ratio_mean" not in got  # no person had a ratio there


def test_a_recipe_setting_is_read_as_the_number_or_word_it_is():
    got = overrides(["lr=3e-4", "steps=60", "retain_loss=kl", "keep_related=6"])
    assert got == {"lr": 3e-4, "steps": 60, "retain_loss": "kl", "keep_related": 6}
    with pytest.raises(ValueError, match="key=value"):
        overrides(["lr"])


def test_mmlu_questions_are_spread_over_the_pool_not_its_first_subjects(tmp_path):
    import json

    from bench.adapter_eval import utility_scores

    class Picks:  # an LM that picks A for every question; nothing else is asked of it here
        def choices(self, prompts):
            self.asked = prompts
            return [0] * len(prompts)

        def answers(self, prompts, *args):
            return [""] * len(prompts)

    pool = [
        {"task": f"subject_{i // 10}", "question": f"q{i}", "choices": ["a", "b", "c", "d"]}
        | {"answer": i % 4, "examples": []}
        for i in range(100)
    ]
    (tmp_path / "utility").mkdir()
    (tmp_path / "utility" / "mmlu_pool.json").write_text(json.dumps(pool))
    trivia = [{"question": "Capital of France?", "answers": ["Paris"]}]
    (tmp_path / "utility" / "triviaqa.json").write_text(json.dumps(trivia))
    (tmp_path / "utility" / "fluency.json").write_text(json.dumps([{"instruction": "Write."}]))
    lm = Picks()
    got = utility_scores(lm, tmp_path, mmlu_count=20)
    assert got["mmlu_questions"] == 20
    subjects = {prefix.split("about ")[1].split(".")[0] for prefix, _ in lm.asked}
    assert len(subjects) == 10  # every subject, two questions each
    assert got["mmlu"] == pytest.approx(sum(q["answer"] == 0 for q in pool[::5]) / 20)


def test_the_table_shows_every_person_the_pool_and_the_batch():
    from bench.rwku_heldout import markdown

    one = {f"{g}_ratio": 0.4 for g in FILES} | {f"{g}_before": 2.0 for g in FILES}
    one |= {"mmlu_delta": -0.3, "fluency_refused_before": 0.04, "fluency_refused_after": 0.1}
    results = {
        "recipe": {"preset": "idk-kl-early-stop"},
        "rows": [{"target": 11, **one, "best_step": 40, "train_s": 300.0, "meets_goal": True}],
        "pooled": {**one, "targets": [11], "meets_goal": True},
        "batch": {**one, "targets": list(range(11, 21)), "meets_goal": False},
    }
    table = markdown(results)
    assert "| 11 | 0.40 (2.0) |" in table and "2 -> 5" in table and "| 40 | 300 | met |" in table
    assert table.count("| goal |") == 1
    assert "pooled: 11" in table and "one adapter: 11-20" in table and "missed" in table


def test_a_ratio_s_interval_holds_it_and_widens_with_fewer_probes():
    from bench.rwku_heldout import ratio_interval

    many = ratio_interval([1.0] * 40, [1.0] * 10 + [0.0] * 30)
    few = ratio_interval([1.0] * 4, [1.0] + [0.0] * 3)
    assert many[0] < 0.25 < many[1] and few[0] < 0.25 < few[1]
    assert few[1] - few[0] > many[1] - many[0]
    assert ratio_interval([0.0, 0.0], [0.0, 1.0]) is None  # no recall before: no ratio


def _child_peak(_):
    from bench.rwku_adapters import peak_rss_gib

    return peak_rss_gib()


def test_a_training_process_reports_its_own_peak_memory_not_its_parent_s():
    """Linux keeps ru_maxrss across execve: a spawned child reported its parent's peak."""
    import multiprocessing

    from bench.rwku_adapters import peak_rss_gib

    held = bytearray(600 * 2**20)
    for i in range(0, len(held), 4096):
        held[i] = 1
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        child = pool.apply(_child_peak, (0,))
    assert peak_rss_gib() > 0.55 and child < peak_rss_gib() - 0.4, (child, peak_rss_gib())


def test_combined_modes_are_pooled_by_recall_summed():
    """One person's guard kept 10 of 20 recall points over 2 probes, the other's 0 of 40 over
    4: pooled, 0.2 probes' worth of 2.0 remain (0.1), not the mean of 0.5 and 0."""
    from bench.rwku_heldout import COMBINED_MODES, combined_markdown, pooled_combined

    def cell(probes, before, after):
        ratio = after / before if before else None
        return {"probes": probes, "before": before, "after": after, "after_over_before": ratio}

    people = [(2, 20.0, 10.0), (4, 40.0, 0.0)]
    rows = [
        {"target": 11 + i, "combined": {m: {"forget_fb": cell(*p)} for m in COMBINED_MODES}}
        for i, p in enumerate(people)
    ]
    pooled = pooled_combined(rows)
    assert pooled["guard"]["forget_fb"] == pytest.approx((2 * 10.0) / (2 * 20.0 + 4 * 40.0))
    assert pooled["adapter + guard"]["neighbor_qa"] is None  # no probe: no ratio
    table = "\n".join(combined_markdown({"rows": rows, "combined": pooled}))
    assert "| pooled | guard | 0.10 |" in table and "| 11 | adapter | 0.50 (0.4) |" in table
