"""Thin HTTP routes: parse, screen with the guard, hand over to vLLM's own serving code."""

from __future__ import annotations

import json
from http import HTTPStatus

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from vllm.entrypoints.openai.chat_completion import api_router as vllm_chat
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.entrypoints.openai.completion import api_router as vllm_completion
from vllm.entrypoints.openai.completion.protocol import CompletionRequest
from vllm.entrypoints.serve.engine.protocol import ErrorResponse
from vllm.entrypoints.serve.utils.api_utils import validate_json_request
from vllm.renderers.inputs.preprocess import prompt_to_seq

from guard_server import errors
from guard_server.engine_guard import current_scope
from guard_server.guard import Verdict, conversation_texts, keep_only
from guard_server.limits import check_length

router = APIRouter()
# Recomputed by the new response: copying them would describe the old body.
_BODY_HEADERS = frozenset({"content-length", "content-type"})
_ERRORS = {
    HTTPStatus.BAD_REQUEST.value: {"model": ErrorResponse},
    HTTPStatus.NOT_FOUND.value: {"model": ErrorResponse},
}


def _report(response: Response) -> Response:
    """A `guard` field on a JSON body: what the engine seam enforced for this request."""
    scope = current_scope()
    if isinstance(response, JSONResponse) and response.status_code == HTTPStatus.OK:
        body = json.loads(response.body)
        body["guard"] = scope.verdict.report(scope.admin)
        headers = {k: v for k, v in response.headers.items() if k not in _BODY_HEADERS}
        return JSONResponse(body, headers=headers, background=response.background)
    return response


async def _screen_turns(raw_request: Request, texts: list[str]) -> Verdict:
    """The route's structural verdict on a chat's turns (turns and clauses: a partial answer
    is only possible here); the seam reuses it when the engine's prompt holds these texts."""
    scope = current_scope()
    verdict = await raw_request.app.state.guard_batcher.screen(texts) if texts else Verdict()
    scope.screened[tuple(texts)] = verdict
    scope.route = verdict
    return verdict


@router.post(
    "/v1/chat/completions", dependencies=[Depends(validate_json_request)], responses=_ERRORS
)
async def create_chat_completion(request: ChatCompletionRequest, raw_request: Request):
    if not request.messages:
        raise errors.InvalidRequest(errors.ERR_EMPTY_MESSAGES, param="messages")
    texts = conversation_texts(request.messages)
    engine = raw_request.app.state.engine_client
    check_length(texts, engine.model_config.max_model_len, engine.reader.tokenizer)
    verdict = await _screen_turns(raw_request, texts)
    keep_only(request.messages, verdict)
    return _report(await vllm_chat.create_chat_completion(request, raw_request))


@router.post("/v1/completions", dependencies=[Depends(validate_json_request)], responses=_ERRORS)
async def create_completion(request: CompletionRequest, raw_request: Request):
    # Raw prompts (text or token ids) are screened at the seam, one verdict per prompt; a
    # stream's headers leave before the engine is called, so its prompts are screened first.
    if request.stream and request.prompt:
        engine = raw_request.app.state.engine_client
        await engine.prescreen(prompt_to_seq(request.prompt), request.add_special_tokens)
    return _report(await vllm_completion.create_completion(request, raw_request))


def attach(app: FastAPI) -> None:
    errors.install(app)
    app.include_router(router)
