"""The guard's keys in `SamplingParams.extra_args` and their validation (API process side)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

TARGETS_KEY = "forget_targets"
ACTION_KEY = "forget_action"
# The server's own questions about a target (`guard_server.learner`) are answered with its
# name: the answer watch leaves them alone. A client's key is dropped with the others.
UNWATCHED_KEY = "forget_unwatched"
GUARD_KEYS = frozenset({TARGETS_KEY, ACTION_KEY, UNWATCHED_KEY})
# refuse: the refusal, then end. restrict: bans and penalties. partial: restrict, and end with
# the target's note instead of ending silently (a mixed request whose target clauses the server
# removed: the answer says what it leaves out).
ACTIONS = ("refuse", "restrict", "partial")
MAX_TARGETS_PER_REQUEST = 64
_TARGET_REF = re.compile(r"^(?P<id>[A-Za-z0-9_-]{1,64})@(?P<version>[0-9]{1,9})$")

ERR_TARGETS_TYPE = "vllm_xargs.forget_targets must be a list of '<id>@<version>' strings"
ERR_TARGET_REF = (
    "vllm_xargs.forget_targets has a malformed entry {value!r}; expected '<id>@<version>'"
)
ERR_TOO_MANY = "vllm_xargs.forget_targets names {n} targets; at most {limit} are allowed"
ERR_ACTION = "vllm_xargs.forget_action must be one of {choices}, got {value!r}"


@dataclass(frozen=True)
class TargetRef:
    target_id: str
    version: int


@dataclass(frozen=True)
class GuardParams:
    """The guard's per-request choices, parsed from extra_args."""

    targets: tuple[TargetRef, ...]
    action: str


def unwatched(extra_args: dict[str, Any] | None) -> bool:
    """Whether a request is the server's own, which the answer watch does not follow."""
    return bool(extra_args and extra_args.get(UNWATCHED_KEY) is True)


def parse_guard_params(extra_args: dict[str, Any] | None) -> GuardParams | None:
    """Parse and validate the guard's extra args; None when the request is not flagged.

    Raises:
        ValueError: with a message naming the bad key and value (the API turns it into a 400).
    """
    if not extra_args or TARGETS_KEY not in extra_args:
        if extra_args and ACTION_KEY in extra_args:
            raise ValueError(ERR_TARGETS_TYPE)
        return None
    raw = extra_args[TARGETS_KEY]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError(ERR_TARGETS_TYPE)
    if len(raw) > MAX_TARGETS_PER_REQUEST:
        raise ValueError(ERR_TOO_MANY.format(n=len(raw), limit=MAX_TARGETS_PER_REQUEST))
    refs = []
    for value in raw:
        match = _TARGET_REF.match(value)
        if match is None:
            raise ValueError(ERR_TARGET_REF.format(value=value))
        refs.append(TargetRef(match["id"], int(match["version"])))
    action = extra_args.get(ACTION_KEY, "restrict")
    if action not in ACTIONS:
        raise ValueError(ERR_ACTION.format(choices=ACTIONS, value=action))
    if not refs:
        return None
    return GuardParams(tuple(refs), action)
