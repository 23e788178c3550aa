"""How the held-out recipe run reports people: pooled over persons, each person's row, the worst."""

from __future__ import annotations

import pytest

from bench.rwku_data import FILES
from bench.rwku_heldout import meets, row, summary


def scores(recalls: dict[str, list[float]], mmlu: float) -> dict:
    probes = {g: [{"recall": r, "answer": str(r)} for r in recalls.get(g, [1.0])] for g in FILES}
    return {"probes": probes, "utility": {"mmlu": mmlu, "mmlu_questions": 5758}}


def test_people_are_pooled_by_recall_summed_not_by_averaging_their_ratios():
    # One person knew half a probe's worth and forgot it all; the other knew four probes and
    # forgot one: pooled, 3 of 4.5 remain, where a mean of ratios would say 0.375.
    before = [scores({"forget_fb": [0.5]}, 0.40), scores({"forget_fb": [1, 1, 1, 1]}, 0.40)]
    after = [scores({"forget_fb": [0.0]}, 0.39), scores({"forget_fb": [1, 1, 1, 0]}, 0.40)]
    got = row([[], []], before, after)
    assert got["forget_fb_ratio"] == pytest.approx(3 / 4.5)
    assert got["forget_fb_before"] == pytest.approx(4.5)
    assert got["forget_fb_probes"] == 5
    assert got["mmlu_delta"] == pytest.approx(-0.5)  # points, averaged over the units


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
