"""The one enforcement point: the engine client that every vLLM serving class calls.

Chat, completions, Responses, Anthropic Messages, batch, SageMaker `/invocations`, generative
scoring, beam search and any route a later vLLM adds all reach the engine through
`EngineClient.generate` or `.encode`. `GuardedEngineClient` decides each request's verdict
there, once per prompt, from the token ids the engine will run: it reads the turns from them,
screens them, asks only the other clauses of a mixed question (a partial answer, on every
route), writes the verdict into the sampling params and records it in the request's
`Outcome` for the response to report. No route decides or sharpens a verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from vllm.exceptions import VLLMValidationError
from vllm.sampling_params import RequestOutputKind

from guard_server import outcome
from guard_server.answers import Stream, hide_stop, trim
from guard_server.guard import Verdict, apply_verdict, count, merge
from guard_server.logprobs import withhold
from guard_server.prompts import PromptReader
from logits_processors.watch import REFUSAL, TRIP_NOTE, TripNote

if TYPE_CHECKING:
    from vllm import SamplingParams

    from guard_server.batcher import ScreenBatcher
    from guard_server.detection import DetectionProcess
    from guard_server.guard import Guard, LiveNames, NameIndex

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


class GuardedEngineClient:
    """Wraps vLLM's engine client; everything but `generate` and `encode` passes through."""

    def __init__(
        self,
        inner: Any,
        guard: Guard | DetectionProcess,
        batcher: ScreenBatcher,
        reader: PromptReader,
        names: LiveNames | None = None,
    ):
        self._inner = inner
        self.guard = guard
        self.batcher = batcher
        self.reader = reader
        self.names = names  # None: answers are sent as written (engine-only callers)

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
            prompt, params = await self.enforce(prompt, prompt.sampling_params)
            prompt.sampling_params = params
        else:
            prompt, sampling_params = await self.enforce(prompt, sampling_params)
            params = sampling_params
        kind = getattr(params, "output_kind", None)
        grammar = getattr(params, "structured_outputs", None) is not None
        # Answers a client reads (beam search reads its steps' log-probabilities only).
        names = await self._names() if getattr(params, "detokenize", True) else None
        streams: dict[int, Stream] = {}
        head = None  # the prompt's end, as context for what the answer writes
        async for output in self._inner.generate(prompt, sampling_params, request_id, **kwargs):
            if head is None:
                head = self._tail(getattr(output, "prompt_token_ids", None) or ())
            await self._withhold_logprobs(output, streams, head)
            for completion in output.outputs:
                await self._deliver(completion, kind, grammar, streams, names, head)
            yield output

    async def _deliver(
        self,
        completion: Any,
        kind: Any,
        grammar: bool,
        streams: dict[int, Stream],
        names: NameIndex | None,
        head: str,
    ) -> None:
        """One answer's newest output as the client gets it: a stream's chunk less a name it
        has begun (`Stream.hold_back`), an answer cut inside a name without it, and a
        tripped answer as the refusal."""
        stream = None
        if kind == RequestOutputKind.DELTA:
            stream = streams.get(completion.index)
            if stream is None:
                reading = names.reading(head) if names is not None else None
                stream = streams[completion.index] = Stream(reading)
            stream.add(completion, self.reader.tokenizer)
            stream.hold_back(completion, self.trip_note, self.reader.tokenizer)
        if completion.finish_reason is None:
            return
        if await self._refuse_tripped(completion, kind, grammar, streams) or names is None:
            return
        # Cut by the client (a token limit, a stop string or token) or by a grammar, not
        # ended by the model's own choice of its end token.
        cut = completion.finish_reason == "length" or completion.stop_reason is not None or grammar
        written = stream.text if stream is not None else completion.text
        if stream is not None:
            stream.finish(completion, names, head, cut)
        elif cut:
            trim(completion, names, head, self.reader.tokenizer)
        hide_stop(completion, names, head, written)

    async def end_beams(self, output: Any) -> None:
        """Beam search's answers, which vLLM decodes from its beams itself: every beam ends
        before a name it has begun (`trim`). None ended by the model's own choice: the token
        limit cuts a beam, and beam search ends one at any end token among its candidates
        (a name's next token withheld, the end token is often among them). Each step ran
        through `generate`, whose log-probabilities held no token the watch bans."""
        names = await self._names()
        if names is None:
            return
        head = self._tail(getattr(output, "prompt_token_ids", None) or ())
        for completion in output.outputs:
            if completion.finish_reason != "error":
                trim(completion, names, head, self.reader.tokenizer)

    async def _names(self) -> NameIndex | None:
        """The registered names as this request's answers are read against them."""
        if self.names is None:
            return None
        return await asyncio.to_thread(self.names.current)

    async def _withhold_logprobs(self, output: Any, streams: dict[int, Stream], head: str) -> None:
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
        for completion in answers:
            stream = streams.get(completion.index)
            before = head + (stream.text if stream else "")
            completion.logprobs = await withhold(
                self.guard, completion.logprobs, completion.token_ids, before, tokenizer
            )

    async def _refuse_tripped(
        self, completion: Any, kind: Any, grammar: bool, streams: dict[int, Stream]
    ) -> bool:
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
        ids, text = (
            (stream.ids, stream.shown) if stream else (completion.token_ids, completion.text)
        )
        errored = grammar and completion.finish_reason == "error"
        if not errored and self.trip_note.start(ids) < 0:
            return False
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
        return True

    async def encode(
        self, prompt: Any, pooling_params: Any, request_id: str, *args: Any, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        await self.enforce(prompt, None)
        async for output in self._inner.encode(prompt, pooling_params, request_id, *args, **kwargs):
            yield output

    async def _record_refused(self, answer: str) -> None:
        """The request's verdict becomes a refusal of its answer, with the targets the
        written part of the answer names."""
        found = await self.batcher.screen([answer]) if answer.strip() else Verdict()
        named = tuple(replace(f, evidence=f"answer:{f.evidence}") for f in found.flags)
        request = outcome.current()
        request.enforced = request.verdict.refusing_answer(named)

    async def enforce(self, prompt: Any, params: SamplingParams | None) -> tuple[Any, Any]:
        """The prompt and sampling params the engine gets: the prompt's verdict decided and
        recorded in the request's outcome, its keys set in the params (client ones dropped);
        a mixed question's prompt asking only its other clauses."""
        request = outcome.current()
        request.deciding += 1
        try:
            prompt, verdict = await self._decide(prompt)
            request.record(verdict)
            count(verdict)
        finally:
            request.deciding -= 1
        if params is None:  # a pooling request: nothing to restrict, so nothing flagged runs
            if verdict.flagged:
                raise VLLMValidationError(ERR_SCORING, parameter="prompt")
            return prompt, None
        await self._refuse_name_labels(prompt, params)
        xargs = apply_verdict(params.extra_args, verdict)
        if not verdict.flagged and xargs == params.extra_args:
            return prompt, params  # unflagged and nothing forged: the very object, bit-identical
        params = params.clone()
        params.extra_args = xargs
        if verdict.flagged:
            _refuse_logprobs(params)
            for name, value in _CONSTRAINTS.items():
                setattr(params, name, value)
        return prompt, params

    async def _decide(self, prompt: Any) -> tuple[Any, Verdict]:
        """The prompt's verdict, and the prompt to run: a partial verdict's asks only the
        clauses of its last turn that match no target, or, where that turn cannot be cut
        out of the prompt, the verdict is a refusal (never a weaker restrict)."""
        ids, text, shape = _prompt_parts(prompt)
        texts = await self._texts(ids, text, shape)
        verdict = await self.batcher.screen(texts) if texts else Verdict()
        if verdict.action != "partial":
            return prompt, verdict
        if ids is None:  # a text prompt is one turn: it becomes the other clauses
            texts = [" ".join(verdict.keep)]
            cut = _with_text(prompt, texts[0])
        else:
            ids = self.reader.asking_only(list(ids), verdict.keep)
            if ids is None:
                return prompt, verdict.without_partial()
            cut, texts = _with_ids(prompt, ids, self.reader.tokenizer), self.reader.texts(ids)
        # The kept clauses, read together as the engine will run them, may ask another target.
        again = await self.batcher.screen(texts)
        if again.flagged:
            return prompt, merge(verdict, again).without_partial()
        return cut, verdict

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

    async def _texts(self, ids: Any, text: str | None, shape: str | None) -> list[str]:
        """What a prompt's parts (`_prompt_parts`) ask: its turns, or its text."""
        if shape is not None:
            if await asyncio.to_thread(self.guard.has_targets):
                raise VLLMValidationError(ERR_UNSCREENABLE.format(shape=shape), parameter="prompt")
            return []
        if ids is not None:
            return self.reader.texts(list(ids))
        return [text] if text and text.strip() else []


def guard_beam_search(servers: Any) -> None:
    """Route each of `servers` (vLLM's serving objects) that runs beam search through
    `GuardedEngineClient.end_beams`: its steps reach the engine client, its final text does not."""
    from vllm.entrypoints.generate.beam_search.online import BeamSearchOnlineMixin

    for server in servers:
        if isinstance(server, BeamSearchOnlineMixin) and isinstance(
            server.engine_client, GuardedEngineClient
        ):
            server.beam_search = _ended_beams(server.beam_search, server.engine_client)


def _ended_beams(search: Any, engine: GuardedEngineClient) -> Any:
    async def beam_search(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        async for output in search(*args, **kwargs):
            await engine.end_beams(output)
            yield output

    return beam_search


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


def _with_text(prompt: Any, text: str) -> Any:
    return text if isinstance(prompt, str) else {**prompt, "prompt": text}


def _with_ids(prompt: Any, ids: list[int], tokenizer: Any) -> Any:
    """`prompt` in its own form, running `ids` instead (its text, where it has one, too)."""
    if isinstance(prompt, list):
        return ids
    if _is_core_request(prompt):  # the engine's own request object: built for this call
        prompt.prompt_token_ids = ids
        return prompt
    changed = {k: v for k, v in prompt.items() if k != "prompt_token_offsets"}
    changed["prompt_token_ids"] = ids
    if "prompt" in changed:
        changed["prompt"] = tokenizer.decode(ids)
    return changed


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
