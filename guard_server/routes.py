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

from guard_server import errors
from guard_server.guard import (
    HEADER,
    Guard,
    Verdict,
    apply_verdict,
    conversation_texts,
    keep_only,
)

router = APIRouter()
# Recomputed by the new response: copying them would describe the old body.
_BODY_HEADERS = frozenset({"content-length", "content-type"})
_ERRORS = {
    HTTPStatus.BAD_REQUEST.value: {"model": ErrorResponse},
    HTTPStatus.NOT_FOUND.value: {"model": ErrorResponse},
}


def _guard(raw_request: Request) -> Guard:
    return raw_request.app.state.guard


def _decorate(response: Response, verdict: Verdict) -> Response:
    """Report the verdict: a header on every response, a `guard` field on JSON bodies."""
    response.headers[HEADER] = verdict.header()
    if isinstance(response, JSONResponse) and response.status_code == HTTPStatus.OK:
        body = json.loads(response.body)
        body["guard"] = verdict.report()
        headers = {k: v for k, v in response.headers.items() if k not in _BODY_HEADERS}
        return JSONResponse(body, headers=headers, background=response.background)
    return response


@router.post(
    "/v1/chat/completions", dependencies=[Depends(validate_json_request)], responses=_ERRORS
)
async def create_chat_completion(request: ChatCompletionRequest, raw_request: Request):
    if not request.messages:
        raise errors.InvalidRequest(errors.ERR_EMPTY_MESSAGES, param="messages")
    verdict = _guard(raw_request).screen(conversation_texts(request.messages))
    keep_only(request.messages, verdict)
    request.vllm_xargs = apply_verdict(request.vllm_xargs, verdict)
    response = await vllm_chat.create_chat_completion(request, raw_request)
    return _decorate(response, verdict)


@router.post("/v1/completions", dependencies=[Depends(validate_json_request)], responses=_ERRORS)
async def create_completion(request: CompletionRequest, raw_request: Request):
    prompts = request.prompt if isinstance(request.prompt, list) else [request.prompt]
    verdict = _guard(raw_request).screen([p for p in prompts if isinstance(p, str)])
    verdict = verdict.without_partial()
    request.vllm_xargs = apply_verdict(request.vllm_xargs, verdict)
    response = await vllm_completion.create_completion(request, raw_request)
    return _decorate(response, verdict)


def attach(app: FastAPI) -> None:
    errors.install(app)
    app.include_router(router)
