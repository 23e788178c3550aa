"""Admin API routes for forget targets: thin; the work is in `Registry` and `Guard`."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from guard_server import errors, metrics
from guard_server.adapters import card
from guard_server.protocol import (
    AdapterLoad,
    TargetCreate,
    TargetDeleted,
    TargetList,
    TargetPatch,
)
from guard_server.registry import Registry, to_wire

ERR_NO_AUTH = "missing bearer token: send 'Authorization: Bearer <admin key>'"
ERR_BAD_KEY = "the admin key is not valid"
ERR_IF_MATCH = 'If-Match must be a target version such as "3", got {value!r}'
ERR_DISABLED = "the admin API is disabled: start the server with --admin-key or GUARD_ADMIN_KEY"


def require_admin(request: Request) -> None:
    """Bearer auth, constant-time: 401 without a token, 403 with a wrong one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized(ERR_NO_AUTH, "authorization")
    key = request.app.state.guard_admin_key
    if not key:
        raise errors.Forbidden(ERR_DISABLED, "authorization")
    if not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise errors.Forbidden(ERR_BAD_KEY, "authorization")


router = APIRouter(prefix="/v1/forget-targets", dependencies=[Depends(require_admin)])


def _registry(request: Request) -> Registry:
    return request.app.state.guard_registry


async def _write(request: Request, op: str, fn, *args):
    """Run a registry write off the event loop, then make this replica's guard see it."""
    row = await asyncio.to_thread(fn, *args)
    await asyncio.to_thread(request.app.state.guard.sync)
    metrics.REGISTRY_WRITES.labels(op).inc()
    return row


@router.post("", status_code=201)
async def create_target(body: TargetCreate, request: Request):
    row = await _write(request, "create", _registry(request).create, body)
    return JSONResponse(to_wire(row), status_code=201)


@router.get("", response_model=TargetList)
async def list_targets(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, max_length=64),
):
    rows, more = _registry(request).list(limit, after)
    data = [to_wire(r) for r in rows]
    return {"data": data, "has_more": more, "last_id": data[-1]["id"] if data else None}


def _tagged(row) -> JSONResponse:
    """A target with its version as ETag: send it back as If-Match to PATCH safely."""
    return JSONResponse(to_wire(row), headers={"etag": f'"{row.version}"'})


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
    return _tagged(await asyncio.to_thread(_registry(request).get, target_id))


@router.patch("/{target_id}")
async def patch_target(target_id: str, body: TargetPatch, request: Request):
    update = _registry(request).update
    return _tagged(await _write(request, "patch", update, target_id, body, _if_match(request)))


@router.delete("/{target_id}", response_model=TargetDeleted)
async def delete_target(target_id: str, request: Request):
    await _write(request, "delete", _registry(request).delete, target_id)
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
