"""One exception hierarchy for the guard, mapped to the OpenAI error envelope in one place."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ERR_EMPTY_MESSAGES = "messages must hold at least one message"


class GuardError(Exception):
    """Base of the guard's errors: a message, the offending parameter and an HTTP status."""

    status = HTTPStatus.BAD_REQUEST
    type = "BadRequestError"

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(GuardError):
    pass


class Unauthorized(GuardError):
    status = HTTPStatus.UNAUTHORIZED
    type = "AuthenticationError"


class Forbidden(GuardError):
    status = HTTPStatus.FORBIDDEN
    type = "PermissionDeniedError"


class NotFound(GuardError):
    status = HTTPStatus.NOT_FOUND
    type = "NotFoundError"


class Conflict(GuardError):
    status = HTTPStatus.CONFLICT
    type = "ConflictError"


class PreconditionFailed(GuardError):
    status = HTTPStatus.PRECONDITION_FAILED
    type = "PreconditionFailedError"


class Unprocessable(GuardError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    type = "UnprocessableEntityError"


def envelope(message: str, type_: str, code: int, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


async def _handle(_: Request, exc: GuardError) -> JSONResponse:
    body = envelope(exc.message, exc.type, int(exc.status), exc.param)
    return JSONResponse(body, status_code=int(exc.status))


def install(app: FastAPI) -> None:
    app.add_exception_handler(GuardError, _handle)
