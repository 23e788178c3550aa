"""The served surface: which routes exist (default deny) and who is an admin.

Every route that can make the model produce or score text reaches the engine through the
guarded engine client (`guard_server.engine_guard`). A route is served only if it is listed here as
checked: a route vLLM adds in a later release is dropped, with a warning, until someone has
checked it and written its test (`tests/server/test_every_route.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from vllm.entrypoints.serve.middleware.authenticate import AuthenticationMiddleware

from guard_server.auth import AdminKeys
from guard_server.errors import envelope

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send

logger = logging.getLogger(__name__)

# Reach the engine (generate, encode, beam search); screened at the seam, tested per route.
ENGINE_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/chat/completions/batch",
        "/v1/completions",
        "/v1/responses",
        "/v1/messages",
        "/invocations",
        "/generative_scoring",
    }
)
# Never reach the engine: they cannot make the model produce or score text.
NO_ENGINE_ROUTES = frozenset(
    {
        "/tokenize",
        "/detokenize",
        "/ping",
        "/v1/messages/count_tokens",
        "/v1/responses/{response_id}/cancel",
    }
)
# Read-only routes someone has checked: they describe the server and its models, and none
# returns text the model wrote. `/v1/responses/{response_id}` returns a stored response, and
# none is stored (`refuse_response_store`): one stored before its target was forgotten would
# be served after it.
READ_ROUTES = frozenset(
    {
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/load",
        "/version",
        "/kv_event_sources",
        "/health",
        "/metrics",
        "/v1/models",
        "/ping",
        "/v1/responses/{response_id}",
    }
)
# The guard's own admin API (admin key, never the client API key).
ADMIN_PREFIXES = ("/v1/forget-targets", "/v1/adapters")
_READ_METHODS = frozenset({"GET", "HEAD"})
RESPONSE_STORE_ENV = "VLLM_ENABLE_RESPONSES_API_STORE"
ADMIN_HEADER = "x-guard-admin-key"


def is_admin_path(path: str) -> bool:
    return path.startswith(ADMIN_PREFIXES)


# Mounted sub-applications someone has checked: Prometheus' exposition only reads.
CHECKED_MOUNTS = frozenset({"/metrics"})


def checked(route: object) -> bool:
    """Whether a route may be served: the admin API, or a route listed as checked for its
    methods (a read route for GET and HEAD). Anything else is not served: websockets, mounts
    nobody checked (a sub-application's routes are not listed here), a route declared without
    methods (it answers every method), and a GET route nobody listed (a GET can generate as
    well as a POST)."""
    if isinstance(route, Mount):
        return route.path in CHECKED_MOUNTS
    if not isinstance(route, APIRoute | Route) or route.methods is None:
        return False
    if is_admin_path(route.path):
        return True
    if not set(route.methods) - _READ_METHODS:
        return route.path in READ_ROUTES
    return route.path in ENGINE_ROUTES or route.path in NO_ENGINE_ROUTES


def refuse_response_store(environ: Mapping[str, str]) -> None:
    """vLLM's store of Responses (`VLLM_ENABLE_RESPONSES_API_STORE=1`) keeps every answer in
    memory and serves it again by id, screened by nobody: an answer stored before its target
    was forgotten would be served after. The guard does not run with it."""
    if environ.get(RESPONSE_STORE_ENV, "0").strip() not in ("", "0"):
        raise SystemExit(
            f"guard-server: {RESPONSE_STORE_ENV} must be unset or 0: stored responses are "
            "served again by id after their target is forgotten, and kept only in memory"
        )


def restrict_routes(app: FastAPI) -> list[str]:
    """Drop every route that is not checked; returns what was dropped."""
    dropped = [getattr(r, "path", repr(r)) for r in app.router.routes if not checked(r)]
    app.router.routes = [r for r in app.router.routes if checked(r)]
    for path in dropped:
        logger.warning("not serving %s: no one has checked that the guard screens it", path)
    return dropped


def is_admin(headers: Headers, admin_keys: AdminKeys) -> bool:
    """An admin sends an admin key as `x-guard-admin-key` or as its bearer token."""
    scheme, _, bearer = headers.get("authorization", "").partition(" ")
    offered = [headers.get(ADMIN_HEADER, "")]
    if scheme.lower() == "bearer":
        offered.append(bearer)
    return any(admin_keys.match(o) is not None for o in offered)


# What a client reaches without the client key: health checks, metrics and the API's own
# description. vLLM's own check covers only paths under /v1, /v2, /inference and /cohere,
# which left /invocations, /generative_scoring and /tokenize open.
OPEN_PATHS = frozenset(
    {"/health", "/ping", "/metrics", "/version", "/docs", "/redoc", "/openapi.json"}
)
ERR_API_KEY = "a valid API key is required: send it as the bearer token (Authorization header)"


class ClientApiKey(AuthenticationMiddleware):
    """`--api-key` for every route but the open ones and the admin API, which has its own
    key: an API client is not an admin, and an admin needs no API key."""

    def __call__(self, scope: Scope, receive: Receive, send: Send):
        if scope["type"] not in ("http", "websocket") or scope.get("method") == "OPTIONS":
            return self.app(scope, receive, send)
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if path in OPEN_PATHS or is_admin_path(path) or self.verify_token(Headers(scope=scope)):
            return self.app(scope, receive, send)
        body = envelope(ERR_API_KEY, "AuthenticationError", 401)
        return JSONResponse(body, status_code=401)(scope, receive, send)


def separate_admin_auth(app: FastAPI) -> None:
    for middleware in app.user_middleware:
        if middleware.cls is AuthenticationMiddleware:
            middleware.cls = ClientApiKey
