"""Thin HTTP routes where vLLM's own need a check first; everything else is vLLM's serving code.

No route decides a verdict: the guarded engine client does, for every route alike.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter, Depends, FastAPI, Request
from vllm.entrypoints.openai.chat_completion import api_router as vllm_chat
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.entrypoints.serve.engine.protocol import ErrorResponse
from vllm.entrypoints.serve.utils.api_utils import validate_json_request

from guard_server import errors
from guard_server.guard import conversation_texts
from guard_server.limits import check_length

router = APIRouter()
_ERRORS = {
    HTTPStatus.BAD_REQUEST.value: {"model": ErrorResponse},
    HTTPStatus.NOT_FOUND.value: {"model": ErrorResponse},
}


@router.post(
    "/v1/chat/completions", dependencies=[Depends(validate_json_request)], responses=_ERRORS
)
async def create_chat_completion(request: ChatCompletionRequest, raw_request: Request):
    """A chat too long for the model is refused before vLLM renders it (microseconds, not the
    seconds a 10 MB chat would take to render and tokenize)."""
    if not request.messages:
        raise errors.InvalidRequest(errors.ERR_EMPTY_MESSAGES, param="messages")
    engine = raw_request.app.state.engine_client
    texts = conversation_texts(request.messages)
    check_length(texts, engine.model_config.max_model_len, engine.reader.tokenizer)
    return await vllm_chat.create_chat_completion(request, raw_request)


def attach(app: FastAPI) -> None:
    errors.install(app)
    app.include_router(router)
