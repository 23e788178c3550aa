"""A response says what was enforced: in its headers, even when a stream sends them before
the engine runs, and in a completion's JSON body."""

from __future__ import annotations

import asyncio
import json

import pytest

from guard_server import outcome
from guard_server.guard import Flag, Verdict
from guard_server.reporting import HEADER_ACTION, ReportMiddleware, _with_member

EVENT_STREAM = [(b"content-type", b"text/event-stream; charset=utf-8")]


def start(headers=EVENT_STREAM) -> dict:
    return {"type": "http.response.start", "status": 200, "headers": list(headers)}


def body(data: bytes, more: bool = True) -> dict:
    return {"type": "http.response.body", "body": data, "more_body": more}


def serve(
    app, log: list[str] | None = None, path: str = "/v1/responses", method: str = "POST"
) -> list[dict]:
    """Run `app` behind the middleware; what reached the client, in order (its types also
    appended to `log` as they arrive)."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)
        if log is not None:
            log.append(message["type"])

    async def receive() -> dict:
        return {"type": "http.request"}

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(ReportMiddleware(app)(scope, receive, send))
    return sent


def header(message: dict) -> str | None:
    return dict(message["headers"]).get(HEADER_ACTION.encode(), b"").decode() or None


def test_events_sent_before_the_engine_wait_for_its_verdict():
    async def app(scope, receive, send):
        await send(start())
        await send(body(b"event: response.created\n\n"))  # before the engine is called
        outcome.current().record(Verdict(action="refuse"))  # the seam, at the engine
        await send(body(b"event: delta\n\n"))
        await send(body(b"", more=False))

    sent = serve(app)
    assert header(sent[0]) == "refuse"
    assert [m.get("body") for m in sent[1:]] == [
        b"event: response.created\n\n",
        b"event: delta\n\n",
        b"",
    ]


def test_a_stream_that_never_reaches_the_engine_is_still_delivered_whole():
    async def app(scope, receive, send):
        await send(start())
        await send(body(b"event: error\n\n", more=False))

    sent = serve(app)
    assert header(sent[0]) is None and sent[1]["body"] == b"event: error\n\n"


def test_a_plain_response_is_not_held():
    order: list[str] = []

    async def app(scope, receive, send):
        await send(start([(b"content-type", b"application/json")]))
        order.append("after start")
        await send(body(b"{}", more=False))

    serve(app, order)
    assert order == ["http.response.start", "after start", "http.response.body"]


def test_a_stream_waits_for_every_prompt_it_handed_to_the_engine():
    async def app(scope, receive, send):
        request = outcome.current()
        await send(start())
        request.record(Verdict())  # the first prompt: nothing asked
        request.deciding += 1  # the second is being screened
        await send(body(b"data: 1\n\n"))
        request.record(Verdict((Flag("hp", 1, 0.9),), "refuse"))
        request.deciding -= 1
        await send(body(b"data: 2\n\n"))
        await send(body(b"", more=False))

    sent = serve(app)
    assert header(sent[0]) == "refuse"
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b""]


JSON = [(b"content-type", b"application/json"), (b"content-length", b"20")]


@pytest.mark.parametrize("status", [200, 400])
def test_a_completion_body_says_what_was_enforced(status):
    answer = json.dumps({"id": "x", "choices": [1]}).encode()

    async def app(scope, receive, send):
        outcome.current().record(Verdict((Flag("hp", 1, 0.9),), "refuse"))
        await send({**start(JSON), "status": status})
        await send(body(answer[:5]))
        await send(body(answer[5:], more=False))

    sent = serve(app, path="/v1/chat/completions")
    got = b"".join(m.get("body", b"") for m in sent[1:])
    if status != 200:  # an error envelope is vLLM's own
        assert got == answer
        return
    assert json.loads(got) == {
        "id": "x",
        "choices": [1],
        "guard": {"flagged": True, "action": "refuse"},
    }
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(got)).encode()


@pytest.mark.parametrize("body_text", [b"{}", b" { } ", b"[1]", b"not json"])
def test_a_guard_member_is_added_to_objects_only(body_text):
    got = _with_member(body_text, "guard", {"a": 1})
    if body_text.strip().startswith(b"{"):
        assert json.loads(got) == {"guard": {"a": 1}}
    else:
        assert got == body_text


def test_a_stream_that_calls_no_engine_is_not_held():
    order: list[str] = []

    async def app(scope, receive, send):  # a stored response, read back as a stream
        await send(start())
        order.append("after start")
        await send(body(b"event: response.completed\n\n", more=False))

    serve(app, order, path="/v1/responses/resp_1", method="GET")
    assert order == ["http.response.start", "after start", "http.response.body"]
