"""The guard's extra-args contract: valid shapes parse, every bad shape names the key."""

import pytest

from logits_processors.params import (
    ACTION_KEY,
    MAX_TARGETS_PER_REQUEST,
    TARGETS_KEY,
    GuardParams,
    TargetRef,
    parse_guard_params,
)


@pytest.mark.parametrize(
    "extra_args, expected",
    [
        (None, None),
        ({}, None),
        ({"other": 1}, None),
        ({TARGETS_KEY: []}, None),
        ({TARGETS_KEY: ["t1@3"]}, GuardParams((TargetRef("t1", 3),), "restrict")),
        ({TARGETS_KEY: "t1@3"}, GuardParams((TargetRef("t1", 3),), "restrict")),
        (
            {TARGETS_KEY: ["a@1", "b-2@10"], ACTION_KEY: "refuse"},
            GuardParams((TargetRef("a", 1), TargetRef("b-2", 10)), "refuse"),
        ),
    ],
)
def test_valid(extra_args, expected):
    assert parse_guard_params(extra_args) == expected


@pytest.mark.parametrize(
    "extra_args, fragment",
    [
        ({TARGETS_KEY: 5}, "forget_targets must be a list"),
        ({TARGETS_KEY: [1, 2]}, "forget_targets must be a list"),
        ({TARGETS_KEY: ["no-version"]}, "'no-version'"),
        ({TARGETS_KEY: ["a@b"]}, "'a@b'"),
        ({TARGETS_KEY: ["sp ace@1"]}, "'sp ace@1'"),
        ({TARGETS_KEY: ["a@1"], ACTION_KEY: "explode"}, "forget_action must be one of"),
        ({ACTION_KEY: "refuse"}, "forget_targets must be a list"),
        ({TARGETS_KEY: ["a@1"] * (MAX_TARGETS_PER_REQUEST + 1)}, "at most"),
    ],
)
def test_invalid_names_the_key(extra_args, fragment):
    with pytest.raises(ValueError, match="vllm_xargs.forget_") as info:
        parse_guard_params(extra_args)
    assert fragment in str(info.value)
