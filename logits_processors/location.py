"""Where the registry lives, read one way by the server, the engine worker and the offline
tools: a `postgresql://` URL, or a SQLite file (a path, or a `file:` one)."""

from __future__ import annotations

from pathlib import Path

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
ERR_SCHEME = (
    "unsupported registry location {location!r}: expected a SQLite file path or a postgresql:// URL"
)


def is_postgres(location: str) -> bool:
    return location.startswith(POSTGRES_SCHEMES)


def sqlite_path(location: str) -> Path:
    """The SQLite file a location names.

    Raises:
        ValueError: for a URL of any other scheme.
    """
    if "://" in location and not location.startswith("file:"):
        raise ValueError(ERR_SCHEME.format(location=location))
    return Path(location.removeprefix("file:"))


def absolute(location: str) -> str:
    """The location as another process in another directory must be told it."""
    return location if is_postgres(location) else str(sqlite_path(location).resolve())
