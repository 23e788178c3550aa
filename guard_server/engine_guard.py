"""The one enforcement point: the engine client that every vLLM serving class calls.

Chat, completions, Responses, Anthropic Messages, batch, SageMaker `/invocations`, generative
scoring, beam search and any route a later vLLM adds all reach the engine through
`EngineClient.generate` or `.encode`. `GuardedEngineClient` screens the prompt there, as the
token ids the engine will run, and writes the verdict into the request's sampling params.
Route handlers may sharpen a verdict (turns, clauses, a partial answer) through the request's
`RequestScope`; they are never the only check.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from vllm.exceptions import VLLMValidationError
from vllm.sampling_params import RequestOutputKind

from guard_server.guard import Verdict, apply_verdict, merge
from guard_server.logprobs import withhold
from guard_server.prompts import PromptReader
from logits_processors.watch import REFUSAL, TRIP_NOTE, TripNote

if TYPE_CHECKING:
    from vllm import SamplingParams

    from guard_server.batcher import ScreenBatcher
    from guard_server.detection import DetectionProcess
    from guard_server.guard import Guard

ERR_LOGPROBS = (
    "{param} is not available for this request: it asks for a forgotten subject, and "
    "log-probabilities would show what the answer leaves out"
)
ERR_SCORING = "this request asks for a forgotten subject and cannot be scored or encoded"
ERR_LABELS = (
    "label_token_ids holds tokens that write part of a forgotten name after this prompt: "
    "their probabilities would tell the forgotten answer"
)
ERR_UNSCREENABLE = (
    "prompts given as {shape} cannot be screened for forgotten subjects and are not accepted "
    "while forget targets are registered"
)
# How much of a scored prompt is read to tell whether a label continues a name.
CONTEXT_TOKENS = 32
# Constraints that could forbid the refusal's tokens or force others: a flagged request is
# generated without them (its answer is the refusal or a restricted one either way).
_CONSTRAINTS = {
    "allowed_token_ids": None,
    "bad_words": None,
    "logit_bias": None,
    "min_tokens": 0,
    "structured_outputs": None,
}


@dataclass
class RequestScope:
    """One HTTP request's view of the guard, shared by its route handler, the engine seam
    and the reporting middleware (a context variable, so concurrent requests never mix)."""

    admin: bool = False
    route: Verdict = field(default_factory=Verdict)  # the route's structural verdict
    screened: dict[tuple[str, ...], Verdict] = field(default_factory=dict)
    enforced: Verdict | None = None  # what the seam applied (merged over sub-requests)

    def record(self, verdict: Verdict) -> None:
        self.enforced = verdict if self.enforced is None else merge(self.enforced, verdict)

    @property
    def verdict(self) -> Verdict:
        return self.enforced if self.enforced is not None else self.route


SCOPE: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "guard_scope", default=None
)


def current_scope() -> RequestScope:
    """The request's scope; a fresh one where no middleware opened one (engine-only callers)."""
    scope = SCOPE.get()
    if scope is None:
        scope = RequestScope()
        SCOPE.set(scope)
    return scope


class GuardedEngineClient:
    """Wraps vLLM's engine client; everything but `generate` and `encode` passes through."""

    def __init__(
        self,
        inner: Any,
        guard: Guard | DetectionProcess,
        batcher: ScreenBatcher,
        reader: PromptReader,
    ):
        self._inner = inner
        self.guard = guard
        self.batcher = batcher
        self.reader = reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @cached_property
    def refusal_ids(self) -> tuple[int, ...]:
        return tuple(self.reader.tokenizer.encode(REFUSAL, add_special_tokens=False))

    @cached_property
    def trip_note(self) -> TripNote:
        return TripNote.of(self.reader.tokenizer)

    async def generate(
        self, prompt: Any, sampling_params: SamplingParams, request_id: str, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        if _is_core_request(prompt):
            params = prompt.sampling_params = await self.enforce(prompt, prompt.sampling_params)
        else:
            params = sampling_params = await self.enforce(prompt, sampling_params)
        kind = getattr(params, "output_kind", None)
        grammar = getattr(params, "structured_outputs", None) is not None
        streams: dict[int, _Stream] = {}
        async for output in self._inner.generate(prompt, sampling_params, request_id, **kwargs):
            await self._withhold_logprobs(output, streams)
            for completion in output.outputs:
                if kind == RequestOutputKind.DELTA:
                    streams.setdefault(completion.index, _Stream()).add(completion)
                if completion.finish_reason is not None:
                    await self._refuse_tripped(completion, kind, grammar, streams)
            yield output

    async def _withhold_logprobs(self, output: Any, streams: dict[int, _Stream]) -> None:
        """No log-probabilities of tokens the answer watch bans (`guard_server.logprobs`):
        of the prompt's positions, and of each answer's after the prompt and what a stream
        has already sent."""
        asked_prompt = getattr(output, "prompt_logprobs", None)
        answers = [c for c in output.outputs if c.logprobs]
        if not asked_prompt and not answers:
            return  # most requests: nothing to read
        tokenizer = self.reader.tokenizer
        prompt_ids = list(getattr(output, "prompt_token_ids", None) or ())
        if asked_prompt:
            output.prompt_logprobs = await withhold(
                self.guard, asked_prompt, prompt_ids, "", tokenizer
            )
        if not answers:
            return
        head = self._tail(prompt_ids)
        for completion in answers:
            stream = streams.get(completion.index)
            before = head + (stream.text if stream else "")
            completion.logprobs = await withhold(
                self.guard, completion.logprobs, completion.token_ids, before, tokenizer
            )

    async def _refuse_tripped(
        self, completion: Any, kind: Any, grammar: bool, streams: dict[int, _Stream]
    ) -> None:
        """A finished answer the answer watch tripped in becomes the refusal, with no trace
        of what it began to say (text, token ids, log-probabilities), where it has not been
        sent yet; a streamed one ends with the whole refusal note, however a stop string,
        a stop token or a token limit cut it. The trip is read from the token ids
        (`TripNote`): a client's stop string cannot hide it.

        A grammar (structured outputs) cannot take the note: the watch's trip, or its ban of
        the only token the grammar allows, ends such an answer in an engine error, which
        is answered as the trip it is, with the note or the refusal, not a 500.
        """
        stream = streams.get(completion.index)
        ids, text = (stream.ids, stream.text) if stream else (completion.token_ids, completion.text)
        errored = grammar and completion.finish_reason == "error"
        if not errored and self.trip_note.start(ids) < 0:
            return
        completion.finish_reason, completion.stop_reason = "stop", None
        if kind == RequestOutputKind.FINAL_ONLY:
            ids = self.refusal_ids
            completion.text, completion.token_ids = REFUSAL, list(ids)
            completion.cumulative_logprob = None
            if completion.logprobs is not None:
                completion.logprobs = [None] * len(ids)
        else:
            completion.text += unsent_note(text)
            if errored:
                completion.token_ids = []
        await self._record_refused(text)

    async def encode(
        self, prompt: Any, pooling_params: Any, request_id: str, *args: Any, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        await self.enforce(prompt, None)
        async for output in self._inner.encode(prompt, pooling_params, request_id, *args, **kwargs):
            yield output

    async def _record_refused(self, answer: str) -> None:
        """The request's verdict becomes a refusal of its answer, with the targets the
        written part of the answer names."""
        scope = current_scope()
        found = await self.batcher.screen([answer]) if answer.strip() else Verdict()
        named = tuple(replace(f, evidence=f"answer:{f.evidence}") for f in found.flags)
        scope.enforced = scope.verdict.refusing_answer(named)

    async def verdict(self, prompt: Any) -> Verdict:
        """The verdict for what the engine will run, merged with the route's, and recorded."""
        scope = current_scope()
        texts = await self._texts(prompt)
        found = scope.screened.get(tuple(texts))
        if found is None:
            found = await self.batcher.screen(texts) if texts else Verdict()
        verdict = merge(scope.route, found)
        scope.record(verdict)
        return verdict

    async def prescreen(self, prompts: list[Any], add_special_tokens: bool = True) -> None:
        """Screen raw prompts (texts or token ids) before the engine is called, for a stream
        whose headers leave first: tokenized as the renderer does, each is read as the seam
        will read it and screened once; the seam finds the verdict in the request's scope."""
        scope = current_scope()
        tokenizer = self.reader.tokenizer
        ids = [
            p if isinstance(p, list) else tokenizer.encode(p, add_special_tokens=add_special_tokens)
            for p in prompts
        ]
        # A prompt the engine cannot run is refused by vLLM: it is not screened.
        limit = self._inner.model_config.max_model_len
        texts = [t for i in ids if len(i) <= limit and (t := tuple(self.reader.texts(i)))]
        found = await asyncio.gather(*(self.batcher.screen(list(t)) for t in texts))
        scope.screened.update(zip(texts, found, strict=True))
        for verdict in found:
            scope.record(merge(scope.route, verdict))

    async def enforce(self, prompt: Any, params: SamplingParams | None) -> SamplingParams | None:
        """The sampling params the engine gets: the verdict's keys set, client ones dropped."""
        verdict = await self.verdict(prompt)
        if params is None:  # a pooling request: nothing to restrict, so nothing flagged runs
            if verdict.flagged:
                raise VLLMValidationError(ERR_SCORING, parameter="prompt")
            return None
        await self._refuse_name_labels(prompt, params)
        xargs = apply_verdict(params.extra_args, verdict)
        if not verdict.flagged and xargs == params.extra_args:
            return params  # unflagged and nothing forged: the very object, bit-identical
        params = params.clone()
        params.extra_args = xargs
        if verdict.flagged:
            _refuse_logprobs(params)
            for name, value in _CONSTRAINTS.items():
                setattr(params, name, value)
        return params

    async def _refuse_name_labels(self, prompt: Any, params: SamplingParams) -> None:
        """Scoring asks the probability of given next tokens: tokens that would write part of
        a registered name after the prompt ask the answer without generating it."""
        labels = getattr(params, "logprob_token_ids", None)
        if not labels:
            return
        ids, text, _ = _prompt_parts(prompt)
        context = text if ids is None else self._tail(ids)
        candidates = [self.reader.tokenizer.decode([t]) for t in labels]
        begun = await asyncio.to_thread(self.guard.begun, context or "", candidates)
        if any(begun):
            raise VLLMValidationError(ERR_LABELS, parameter="label_token_ids")

    def _tail(self, prompt_ids: Any) -> str:
        """The end of a prompt, as context for what its next tokens would write."""
        return self.reader.tokenizer.decode(list(prompt_ids)[-CONTEXT_TOKENS:])

    async def _texts(self, prompt: Any) -> list[str]:
        ids, text, shape = _prompt_parts(prompt)
        if shape is not None:
            if await asyncio.to_thread(self.guard.has_targets):
                raise VLLMValidationError(ERR_UNSCREENABLE.format(shape=shape), parameter="prompt")
            return []
        if ids is not None:
            return self.reader.texts(list(ids))
        return [text] if text and text.strip() else []


@dataclass
class _Stream:
    """A streamed answer's token ids and text so far (a stream's outputs carry what is new)."""

    ids: list[int] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)

    def add(self, completion: Any) -> None:
        self.ids.extend(completion.token_ids)
        self.pieces.append(completion.text)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def unsent_note(text: str) -> str:
    """What of the refusal note an answer that ends with `text` has not written yet."""
    for size in range(min(len(text), len(TRIP_NOTE)), 0, -1):
        if text.endswith(TRIP_NOTE[:size]):
            return TRIP_NOTE[size:]
    return TRIP_NOTE


def _refuse_logprobs(params: SamplingParams) -> None:
    for param in ("logprobs", "prompt_logprobs", "logprob_token_ids"):
        if getattr(params, param, None) not in (None, [], ()):
            raise VLLMValidationError(ERR_LOGPROBS.format(param=param), parameter=param)


def _is_core_request(prompt: Any) -> bool:
    return hasattr(prompt, "prompt_token_ids") and hasattr(prompt, "sampling_params")


def _prompt_parts(prompt: Any) -> tuple[list[int] | None, str | None, str | None]:
    """(token ids, text, unscreenable shape) of any prompt form the engine accepts.

    Token ids win over text wherever both are given: the ids are what the engine runs.
    """
    if isinstance(prompt, str):
        return None, prompt, None
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return prompt, None, None
    if _is_core_request(prompt):
        if getattr(prompt, "prompt_embeds", None) is not None:
            return None, None, "embeddings"
        return prompt.prompt_token_ids, None, None
    if not isinstance(prompt, Mapping):
        return None, None, type(prompt).__name__
    if "prompt_embeds" in prompt:
        return None, None, "embeddings"
    if "encoder_prompt" in prompt or "decoder_prompt" in prompt:
        return None, None, "encoder-decoder prompts"
    if prompt.get("multi_modal_data") or prompt.get("type") == "multimodal":
        return None, None, "multimodal data"
    if "prompt_token_ids" in prompt:
        return prompt["prompt_token_ids"], None, None
    if isinstance(prompt.get("prompt"), str):
        return None, prompt["prompt"], None
    return None, None, "this prompt shape"
