"""Admin API routes for forget targets: thin; the work is in `Registry` and `Guard`."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from guard_server import errors, metrics
from guard_server.adapters import card
from guard_server.auth import AdminKey
from guard_server.guard import conversation_texts, explain
from guard_server.learner import learning_status
from guard_server.protocol import (
    AdapterLoad,
    ScreenRequest,
    TargetCreate,
    TargetDeleted,
    TargetImport,
    TargetList,
    TargetPatch,
)
from guard_server.registry import Registry, to_wire

ERR_NO_AUTH = "missing bearer token: send 'Authorization: Bearer <admin key>'"
ERR_BAD_KEY = "the admin key is not valid"
ERR_IF_MATCH = 'If-Match must be a target version such as "3", got {value!r}'
ERR_DISABLED = "the admin API is disabled: start the server with --admin-key or GUARD_ADMIN_KEY"
ERR_SCREEN_BODY = "send either messages or prompt"
ERR_NO_VERIFICATION = "target {id!r} has not been verified: POST .../verify first"
_bearer = HTTPBearer(auto_error=False, description="an admin key (--admin-key, --admin-keys-file)")


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AdminKey:
    """Bearer auth, constant-time: 401 without a token, 403 with a wrong one; which admin."""
    if credentials is None or not credentials.credentials.strip():
        raise errors.Unauthorized(ERR_NO_AUTH, "authorization")
    keys = request.app.state.guard_admin_keys
    if not keys:
        raise errors.Forbidden(ERR_DISABLED, "authorization")
    who = keys.match(credentials.credentials)
    if who is None:
        raise errors.Forbidden(ERR_BAD_KEY, "authorization")
    return who


Admin = Annotated[AdminKey, Depends(require_admin)]
router = APIRouter(prefix="/v1/forget-targets", dependencies=[Depends(require_admin)])


def _registry(request: Request) -> Registry:
    return request.app.state.guard_registry


async def _write(request: Request, op: str, fn, *args):
    """Run a registry write off the event loop, then make this replica's guard see it."""
    row = await asyncio.to_thread(fn, *args)
    await asyncio.to_thread(request.app.state.detection.sync)
    metrics.REGISTRY_WRITES.labels(op).inc()
    return row


@router.post("", status_code=201)
async def create_target(body: TargetCreate, request: Request, who: Admin):
    row = await _write(request, "create", _registry(request).create, body, who)
    return JSONResponse(to_wire(row), status_code=201)


@router.get("", response_model=TargetList)
async def list_targets(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, max_length=64),
    name: str | None = Query(None, max_length=200, description="part of the name, any case"),
):
    """Targets in the order they were created; `after` the last id of the page before."""
    rows, more = await asyncio.to_thread(_registry(request).list, limit, after, name)
    data = [to_wire(r) for r in rows]
    return {"data": data, "has_more": more, "last_id": data[-1]["id"] if data else None}


@router.post("/import")
async def import_targets(body: TargetImport, request: Request, who: Admin):
    """Create many targets (an export's `spec`s); each result says what happened to it."""
    results = await _write(request, "import", _registry(request).import_many, body.targets, who)
    return {"object": "list", "data": results}


@router.post("/screen")
async def screen(body: ScreenRequest, request: Request):
    """Would this be refused, and by what? The verdict, without generating anything."""
    if (body.messages is None) == (body.prompt is None):
        raise errors.InvalidRequest(ERR_SCREEN_BODY, "messages")
    texts = conversation_texts(body.messages) if body.messages else [body.prompt]
    verdict = await request.app.state.screen_batcher.screen(texts)
    return await asyncio.to_thread(explain, verdict, _registry(request).store)


@router.get("/audit")
async def audit_log(
    request: Request,
    target_id: str | None = Query(None, max_length=64),
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(None, ge=1, description="page: the seq of the last entry seen"),
):
    """Every write to the registry, newest first: who (key name and fingerprint), what, when."""
    store = _registry(request).store
    entries = await asyncio.to_thread(store.audit_log, target_id, limit, before)
    return {"object": "list", "data": [asdict(e) for e in entries]}


def _tagged(row, learning: dict | None = None) -> JSONResponse:
    """A target, its whole spec included (an export), with its version as ETag: send it
    back as If-Match to PATCH safely."""
    body = to_wire(row, full=True)
    if learning is not None:
        body["learning"] = learning
    return JSONResponse(body, headers={"etag": f'"{row.version}"'})


def _if_match(request: Request) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise errors.InvalidRequest(ERR_IF_MATCH.format(value=raw), "if-match")
    return int(value)


@router.get("/{target_id}")
async def get_target(target_id: str, request: Request):
    """A target, and what the server has learned about it (`learning`: pending, learning,
    done with its associations and cost, failed; off where no replica learns)."""
    registry = _registry(request)
    row = await asyncio.to_thread(registry.get, target_id)
    learned = (await asyncio.to_thread(registry.store.learned, row.id)).get(row.id)
    learning = learning_status(row, learned)
    if learning["status"] == "pending" and request.app.state.guard_learner is None:
        learning = {"status": "off"}
    return _tagged(row, learning)


@router.post("/{target_id}/verify", status_code=202)
async def verify_target(target_id: str, request: Request):
    """Start asking the served model the target's probes; read the outcome back with GET."""
    row = await asyncio.to_thread(_registry(request).get, target_id)
    job = request.app.state.guard_verifier.start(row, str(request.base_url))
    return JSONResponse(job, status_code=202)


@router.get("/{target_id}/verify")
async def verification(target_id: str, request: Request):
    """The target's latest verification: running, or what its probes found."""
    await asyncio.to_thread(_registry(request).get, target_id)  # 404 for an unknown target
    job = await asyncio.to_thread(_registry(request).store.latest_verification, target_id)
    if job is None:
        raise errors.NotFound(ERR_NO_VERIFICATION.format(id=target_id), "id")
    return job


@router.patch("/{target_id}")
async def patch_target(target_id: str, body: TargetPatch, request: Request, who: Admin):
    update = _registry(request).update
    row = await _write(request, "patch", update, target_id, body, _if_match(request), who)
    return _tagged(row)


@router.delete("/{target_id}", response_model=TargetDeleted)
async def delete_target(target_id: str, request: Request, who: Admin):
    await _write(request, "delete", _registry(request).delete, target_id, who)
    return {"id": target_id}


adapters = APIRouter(prefix="/v1/adapters", dependencies=[Depends(require_admin)])


@adapters.post("", status_code=201)
async def load_adapter(body: AdapterLoad, request: Request):
    served = await request.app.state.guard_adapters.load(body.name, body.path)
    return JSONResponse({"name": body.name, "model": served, "path": body.path}, status_code=201)


@adapters.get("")
async def list_adapters(request: Request):
    manager = request.app.state.guard_adapters
    data = [
        {"name": n, "model": manager.served_name(n), "path": p, "card": card(p)}
        for n, p in manager.loaded().items()
    ]
    return {"object": "list", "data": data, "limit": manager.limit}


@adapters.delete("/{name}")
async def unload_adapter(name: str, request: Request):
    await request.app.state.guard_adapters.unload(name)
    return {"name": name, "deleted": True}


def attach(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(adapters)
