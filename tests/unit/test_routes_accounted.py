"""Default deny: every route of the served app that can make the model speak is checked."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from starlette.routing import WebSocketRoute

from guard_server import surface


@pytest.fixture(scope="session")
def vllm_app(model_dir):
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.app import build_app

    from guard_server.cli import finalize_args, make_parser

    args = finalize_args(make_parser().parse_args(["--model", model_dir, "--api-key", "k"]))
    model_config = AsyncEngineArgs.from_cli_args(args).create_model_config()
    return args, build_app(args, ("generate",), model_config), model_config


def served(app):
    return {(r.path, m) for r in app.router.routes if isinstance(r, APIRoute) for m in r.methods}


def test_every_served_route_that_can_reach_the_engine_is_checked(vllm_app):
    from vllm.entrypoints.launchers.app import build_app

    from guard_server.server import guard_routes

    args, _, model_config = vllm_app
    app = guard_routes(build_app(args, ("generate",), model_config), args)
    unchecked = [r for r in app.router.routes if not surface.checked(r)]
    assert unchecked == []
    for path, method in served(app):
        if surface.is_admin_path(path):
            continue
        if method in ("GET", "HEAD"):
            assert path in surface.READ_ROUTES, path
        else:
            assert path in surface.ENGINE_ROUTES or path in surface.NO_ENGINE_ROUTES, path
    # vLLM serves these; nobody has checked that the guard screens them, so they go.
    for gone in ("/scale_elastic_ep", "/v1/systemone", "/inference/v1/generate"):
        assert gone not in {p for p, _ in served(app)}


def test_the_checked_table_names_routes_vllm_really_has(vllm_app):
    _, app, _ = vllm_app
    posts = {p for p, m in served(app) if m == "POST"}
    assert posts >= (surface.ENGINE_ROUTES | surface.NO_ENGINE_ROUTES)
    gets = {r.path for r in app.router.routes if "GET" in (getattr(r, "methods", None) or ())}
    assert gets >= surface.READ_ROUTES


def test_a_get_route_a_later_vllm_adds_is_not_served():
    """A GET can make the model speak as well as a POST ("GET /v1/generate?prompt=...")."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/generate")
    async def generate(prompt: str):  # pragma: no cover - must never be reachable
        return {}

    @app.get("/v1/models")
    async def models():  # pragma: no cover - never called here
        return {}

    assert surface.restrict_routes(app) == ["/v1/generate"]


def test_the_guard_does_not_run_with_a_store_that_serves_old_answers(monkeypatch, capsys):
    """A Responses store serves an answer again by id, after its target was forgotten."""
    from guard_server.cli import main

    monkeypatch.setenv(surface.RESPONSE_STORE_ENV, "1")
    with pytest.raises(SystemExit) as stopped:
        main(["serve"])
    assert surface.RESPONSE_STORE_ENV in str(stopped.value.code)
    surface.refuse_response_store({surface.RESPONSE_STORE_ENV: "0"})
    surface.refuse_response_store({})


def test_a_route_a_later_vllm_adds_is_not_served(vllm_app):
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/brand_new_generation")
    async def brand_new():  # pragma: no cover - must never be reachable
        return {}

    app.router.routes.append(WebSocketRoute("/v1/realtime", brand_new))
    dropped = surface.restrict_routes(app)
    assert dropped == ["/v1/brand_new_generation", "/v1/realtime"]
    assert not any(getattr(r, "path", "") in dropped for r in app.router.routes)


def test_mounts_and_routes_without_methods_are_not_served():
    from fastapi import FastAPI
    from starlette.routing import Mount, Route

    class Anything:  # an ASGI app as endpoint: Starlette routes every method to it
        async def __call__(self, scope, receive, send):  # pragma: no cover - never reached
            return None

    app = FastAPI()
    app.router.routes.append(Mount("/sub", app=FastAPI()))
    app.router.routes.append(Route("/v1/any_method", Anything()))
    assert app.router.routes[-1].methods is None
    app.router.routes.append(Mount("/metrics", app=FastAPI()))
    dropped = surface.restrict_routes(app)
    assert {"/sub", "/v1/any_method"} <= set(dropped)
    assert "/metrics" not in dropped


@pytest.mark.parametrize(
    "path", ["/invocations", "/generative_scoring", "/tokenize", "/v1/completions"]
)
def test_the_client_key_guards_every_route_that_generates_or_scores(vllm_app, path):
    from fastapi.testclient import TestClient
    from vllm.entrypoints.launchers.app import build_app

    from guard_server.server import guard_routes

    args, _, model_config = vllm_app
    app = guard_routes(build_app(args, ("generate",), model_config), args)
    http = TestClient(app, raise_server_exceptions=False)
    refused = http.post(path, json={})
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == surface.ERR_API_KEY
    assert http.post(path, json={}, headers={"Authorization": "Bearer k"}).status_code != 401
    assert http.get("/health").status_code != 401


def test_api_key_middleware_is_replaced_so_admins_need_no_client_key(vllm_app):
    from vllm.entrypoints.launchers.app import build_app

    from guard_server.server import guard_routes

    args, _, model_config = vllm_app
    app = guard_routes(build_app(args, ("generate",), model_config), args)
    classes = [m.cls for m in app.user_middleware]
    assert surface.ClientApiKey in classes
    assert surface.AuthenticationMiddleware not in classes
