"""Schemathesis hooks for `guard-bench fuzz` (loaded by `st` through SCHEMATHESIS_HOOKS).

Generated bodies keep every field and value schemathesis picks, except that a request may
not ask for more than a few tokens or choices: on a CPU engine, the 2,048-token answers a
fuzzer asks for would make one run take hours without reaching any new code.
"""

from __future__ import annotations

from typing import Any

import schemathesis

MODEL = "SmolLM2-135M-Instruct"
CAPPED = {
    "max_tokens": 4,
    "max_completion_tokens": 4,
    "max_output_tokens": 4,
    "min_tokens": 4,
    "n": 2,
    "best_of": 2,
    "logprobs": 5,
    "top_logprobs": 5,
    "prompt_logprobs": 5,
}


def _cap(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: min(v, CAPPED[k])
            if k in CAPPED and isinstance(v, int) and not isinstance(v, bool)
            else _cap(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_cap(v) for v in value]
    return value


# Where a route's body leaves the answer's length out, it is as long as the context allows.
LENGTH_FIELD = {
    "/v1/chat/completions": "max_tokens",
    "/v1/chat/completions/batch": "max_tokens",
    "/v1/messages": "max_tokens",
    "/v1/completions": "max_tokens",
    "/invocations": "max_tokens",
    "/v1/responses": "max_output_tokens",
}


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    if isinstance(case.body, dict | list):
        case.body = _cap(case.body)
    # A made-up model name stops a request at its first check; the served one takes it on
    # through screening and the engine, where the guard's code is.
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = MODEL
    field = LENGTH_FIELD.get(case.operation.path)
    if field and isinstance(case.body, dict) and case.body.get(field) is None:
        case.body[field] = CAPPED[field]  # absent or null: as long as the context allows
