"""What the engine boundary enforced for one HTTP request, carried back to its response.

The response middleware (`guard_server.reporting`) opens an `Outcome` when a request arrives;
the guarded engine client (`guard_server.engine_guard`) is the only writer, once per prompt it
runs; the middleware reads it into the response's headers and `guard` field. vLLM's serving
classes call the engine client with the prompt and its sampling params only, so the outcome
travels in the request's context (a context variable: concurrent requests never mix). No
route reads or writes it.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from guard_server.guard import Verdict, merge


@dataclass
class Outcome:
    admin: bool = False  # whether the request carried an admin key (it may see target ids)
    enforced: Verdict | None = None  # merged over the prompts the request ran
    deciding: int = 0  # prompts being screened now

    def record(self, verdict: Verdict) -> None:
        self.enforced = verdict if self.enforced is None else merge(self.enforced, verdict)

    @property
    def decided(self) -> bool:
        """Whether every prompt the request has handed to the engine has its verdict."""
        return self.enforced is not None and self.deciding == 0

    @property
    def verdict(self) -> Verdict:
        return self.enforced if self.enforced is not None else Verdict()


_OUTCOME: contextvars.ContextVar[Outcome | None] = contextvars.ContextVar(
    "guard_outcome", default=None
)


def opened(admin: bool = False) -> tuple[Outcome, contextvars.Token]:
    """A fresh outcome for the request now arriving, and the token that closes it."""
    outcome = Outcome(admin=admin)
    return outcome, entered(outcome)


def entered(outcome: Outcome) -> contextvars.Token:
    """`outcome` as the current request's, until `close` is given the token."""
    return _OUTCOME.set(outcome)


def close(token: contextvars.Token) -> None:
    _OUTCOME.reset(token)


def current() -> Outcome:
    """The request's outcome; a fresh one where none was opened (engine-only callers)."""
    outcome = _OUTCOME.get()
    if outcome is None:
        outcome = Outcome()
        _OUTCOME.set(outcome)
    return outcome
