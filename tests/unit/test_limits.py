"""Bounded work per request: a body too large is refused unread, a conversation too long for
the context is refused unscreened, and what the guard cannot screen whole is not answered."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from vllm.exceptions import VLLMValidationError

from guard_server import limits, surface


@pytest.fixture
def app():
    app = FastAPI()
    seen = []

    @app.post("/echo")
    async def echo(request: Request):
        body = await request.body()
        seen.append(len(body))
        return {"bytes": len(body)}

    app.add_middleware(limits.BodyLimit, limit=1000, is_admin=surface.is_admin_path)
    app.state.seen = seen
    return app


def test_a_body_over_the_limit_is_refused_by_its_length_before_it_is_read(app):
    http = TestClient(app)
    r = http.post("/echo", content=b"x" * 1001)
    assert r.status_code == 413
    assert r.json()["error"]["message"] == limits.ERR_BODY.format(size=1001, limit=1000)
    assert app.state.seen == []  # the route never ran
    assert http.post("/echo", content=b"x" * 1000).json() == {"bytes": 1000}


def test_the_admin_api_takes_bodies_as_large_as_registrations_need(app):
    @app.post("/v1/forget-targets")
    async def register(request: Request):
        return {"bytes": len(await request.body())}

    http = TestClient(app)
    assert http.post("/v1/forget-targets", content=b"x" * 5000).status_code == 200
    assert http.post("/echo", content=b"x" * 5000).status_code == 413  # only the admin API


def test_a_chunked_body_is_refused_once_its_chunks_pass_the_limit(app):
    def chunks():
        for _ in range(20):
            yield b"y" * 100

    r = TestClient(app).post("/echo", content=chunks())  # no Content-Length: chunked
    assert r.status_code == 413 and app.state.seen == []


class CountingTokenizer:
    def __init__(self):
        self.calls = 0

    def __call__(self, texts, add_special_tokens=False):
        self.calls += 1
        return {"input_ids": [t.split() for t in texts]}  # a token a word


def test_a_text_certainly_too_long_is_refused_without_tokenizing():
    tokenizer = CountingTokenizer()
    with pytest.raises(VLLMValidationError, match="maximum context length is 100") as info:
        limits.check_length(["a" * (100 * limits.CHARS_PER_TOKEN + 1)], 100, tokenizer)
    assert info.value.parameter == "messages" and tokenizer.calls == 0


def test_a_text_that_may_not_fit_is_counted_as_tokens():
    tokenizer = CountingTokenizer()
    limits.check_length(["word " * 90], 100, tokenizer)  # 90 tokens: fits
    with pytest.raises(VLLMValidationError, match="resulted in 120 tokens"):
        limits.check_length(["word " * 60, "word " * 60], 100, tokenizer)
    assert tokenizer.calls == 2
    limits.check_length(["short"], 100, tokenizer)  # 5 characters cannot be 100 tokens
    assert tokenizer.calls == 2


def test_what_the_guard_cannot_screen_whole_is_not_answered():
    limits.check_screenable(["x" * limits.MAX_SCREEN_CHARS])
    with pytest.raises(VLLMValidationError, match="screens at most"):
        limits.check_screenable(["x" * limits.MAX_SCREEN_CHARS, "y"])
