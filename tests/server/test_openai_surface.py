"""The OpenAI-compatible surface through the official client: happy paths and bad inputs."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.server.conftest import MODEL

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_models_lists_the_base_model(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == [MODEL]


def test_chat_answers_and_reports_the_guard_verdict(client):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=16
    )
    chat = raw.parse()
    assert chat.choices[0].message.content.strip()  # answered (its words are the CPU's)
    assert chat.usage.completion_tokens <= 16
    assert raw.headers["x-guard-action"] == "none"
    assert chat.model_extra["guard"] == {"flagged": False, "action": "none"}


def test_stream_reassembles_to_the_non_streaming_text(client):
    kwargs = dict(model=MODEL, messages=QUESTION, temperature=0, max_tokens=24, seed=1)
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    assert len(chunks) > 3
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole


def test_n_stop_and_logprobs(client):
    chat = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0.8,
        seed=7,
        n=2,
        max_tokens=12,
        stop=["Paris"],
        logprobs=True,
        top_logprobs=2,
    )
    assert len(chat.choices) == 2
    for choice in chat.choices:
        assert "Paris" not in choice.message.content
        assert choice.logprobs.content and len(choice.logprobs.content[0].top_logprobs) == 2


def test_completions_endpoint(client):
    out = client.completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=5
    )
    assert out.choices[0].text.strip()


def test_health_and_metrics(server):
    assert httpx.get(f"{server.base_url}/health").status_code == 200
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert "vllm:" in metrics


@pytest.mark.parametrize(
    "override, status, param",
    [
        ({"model": "no-such-model"}, 404, "model"),
        ({"max_tokens": -1}, 400, "max_tokens"),
        ({"messages": []}, 400, "messages"),
        ({"temperature": -2}, 400, "temperature"),
    ],
)
def test_bad_inputs_get_the_error_envelope(client, override, status, param):
    kwargs = {"model": MODEL, "messages": QUESTION, "max_tokens": 4, **override}
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(**kwargs)
    assert info.value.status_code == status
    error = info.value.body
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["param"] == param
    assert error["code"] == status


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{not json", "application/json"),
        (b'{"model": "x", "messages": "not a list"}', "application/json"),
        (b'{"model": "x"}', "text/plain"),
    ],
)
def test_malformed_bodies_are_4xx_never_5xx(server, body, content_type):
    r = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        content=body,
        headers={"content-type": content_type},
    )
    assert 400 <= r.status_code < 500
    assert set(r.json()["error"]) >= {"message", "type", "param", "code"}


def test_the_readme_python_example_runs_as_written(server, capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    exec(code.replace("http://127.0.0.1:8000", server.base_url), {})
    answer, guard = capsys.readouterr().out.strip().splitlines()[-2:]
    assert answer and guard == "{'flagged': False, 'action': 'none'}"
