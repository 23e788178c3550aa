"""Assemble the server: vLLM's engine and OpenAI app, with the guard's routes layered on."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING, Any

from fastapi.routing import APIRoute

from guard_server import admin, limits, reporting, routes, surface
from guard_server.adapters import AdapterManager
from guard_server.batcher import ScreenBatcher
from guard_server.detection import DetectionProcess, build_guard
from guard_server.engine_guard import GuardedEngineClient, guard_beam_search
from guard_server.guard import LiveNames
from guard_server.learner import Learner
from guard_server.priority import lower_engine_priority
from guard_server.prompts import PromptReader
from guard_server.registry import Registry
from guard_server.store import open_store
from guard_server.verify import Verifier

if TYPE_CHECKING:
    from fastapi import FastAPI
    from vllm.engine.protocol import EngineClient

    from guard_server.store import TargetStore

logger = logging.getLogger("guard_server")

# vLLM's handler for this stays the one doing the work; ours checks the chat's length first.
WRAPPED_PATHS = frozenset({"/v1/chat/completions"})


async def build_guard_app(engine_client: EngineClient, args: argparse.Namespace) -> FastAPI:
    """vLLM's OpenAI app on the guarded engine client, its unchecked routes dropped."""
    from vllm.entrypoints.launchers.api_server.app_state import init_app_state
    from vllm.entrypoints.launchers.app import build_app

    surface.refuse_response_store(os.environ)  # however the server is started
    supported_tasks = await engine_client.get_supported_tasks()
    model_config = engine_client.model_config
    app = guard_routes(build_app(args, supported_tasks, model_config), args, model_config)
    guard, store = build_guard_state(app, args)
    guarded = GuardedEngineClient(
        engine_client,
        guard,
        app.state.screen_batcher,
        PromptReader(engine_client.renderer.get_tokenizer()),
        LiveNames(store),
    )
    await init_app_state(guarded, app.state, args, supported_tasks)
    guard_beam_search(app.state._state.values())  # Starlette keeps the state's values there
    base = app.state.openai_serving_models.base_model_paths[0].name
    max_loras = args.max_loras if args.enable_lora else None
    app.state.guard_adapters = AdapterManager(
        app.state.openai_serving_models, store, base, max_loras
    )
    key = getattr(args, "api_key", None)
    app.state.guard_verifier = Verifier(store, base, key[0] if isinstance(key, list) else key)
    app.state.guard_learner = None
    if args.learn_associations:
        app.state.guard_learner = Learner(store, engine_client, guarded.reader.tokenizer)
        app.state.guard_learner.start()
    restored = await app.state.guard_adapters.restore()
    if restored:
        logger.info("restored adapters: %s", restored)
    return app


def guard_routes(app: FastAPI, args: argparse.Namespace, model_config: Any = None) -> FastAPI:
    """vLLM's app with the guard's routes and middleware, and no route left unchecked."""
    app.router.routes = [
        r
        for r in app.router.routes
        if not (isinstance(r, APIRoute) and r.path in WRAPPED_PATHS and "POST" in r.methods)
    ]
    routes.attach(app)
    admin.attach(app)
    surface.restrict_routes(app)
    surface.separate_admin_auth(app)
    # build_app already built the middleware stack (SageMaker bootstrap), freezing the
    # exception handlers it saw; drop it so Starlette rebuilds it with ours on first request.
    app.middleware_stack = None
    app.add_middleware(reporting.ReportMiddleware, admin_keys=args.admin_keys)
    # Outermost: a body too large for the context is refused before a byte of it is read.
    context = model_config.max_model_len if model_config is not None else args.max_model_len
    app.add_middleware(
        limits.BodyLimit, limit=limits.max_body_bytes(context), is_admin=surface.is_admin_path
    )
    return app


def build_guard_state(
    app: FastAPI, args: argparse.Namespace
) -> tuple[DetectionProcess, TargetStore]:
    """Registry and compiler here, detection in its own process with the batcher that feeds
    it; compiles whatever a crash left half-done. Returns the detection process and the
    store."""
    from guard_server.compiler import Compiler

    store = open_store(args.db)
    registry = Registry(store, Compiler.from_model_dir(args.model))
    recovered = registry.recover()
    if recovered:
        logger.info("recompiled %d forget targets left half-done", recovered)
    guard = DetectionProcess(build_guard, args.db, args.embedding_model, args.encoder_backend)
    app.state.detection = guard
    app.state.screen_batcher = ScreenBatcher(guard)
    app.state.guard_registry = registry
    app.state.guard_admin_keys = args.admin_keys
    return guard, store


async def run_server(args: argparse.Namespace) -> None:
    """Start the engine, build the app, serve until interrupted (mirrors vLLM's own)."""
    import vllm.envs as envs
    from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
    from vllm.entrypoints.launchers.launcher import serve_http, setup_server

    listen_address, sock = setup_server(args, reuse_port=False)
    async with build_async_engine_client(args) as engine_client:
        if args.engine_nice:
            lower_engine_priority(args.engine_nice)
        app = await build_guard_app(engine_client, args)
        logger.info("guard server listening on %s", listen_address)
        shutdown_task = await serve_http(
            app,
            sock=sock,
            host=args.host,
            port=args.port,
            log_level=args.uvicorn_log_level,
            access_log=not args.disable_uvicorn_access_log,
            timeout_keep_alive=envs.VLLM_HTTP_TIMEOUT_KEEP_ALIVE,
        )
        if app.state.guard_learner is not None:  # before the engine it asks goes
            await app.state.guard_learner.stop()
    try:
        await shutdown_task
    finally:
        sock.close()
