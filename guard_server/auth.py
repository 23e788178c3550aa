"""Named admin keys: who may change the registry, and how the audit trail names them.

A key is never stored or shown; what the audit keeps is its name and a fingerprint (the
first 12 hex digits of its SHA-256), enough to tell keys apart, useless to an attacker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

ADMIN_KEY_ENV = "GUARD_ADMIN_KEY"
DEFAULT_NAME = "admin"
ERR_KEYS_FILE = "--admin-keys-file {path}: expected a JSON object of key name to key, {error}"


@dataclass(frozen=True)
class AdminKey:
    """Who made an admin request: a key's name and fingerprint (never the key)."""

    name: str
    fingerprint: str


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class AdminKeys:
    """The server's admin keys, by name; compared in constant time."""

    def __init__(self, keys: dict[str, str] | None = None):
        self._keys = {name: key for name, key in (keys or {}).items() if key}
        self._digests = [
            (hashlib.sha256(key.encode()).digest(), AdminKey(name, fingerprint(key)))
            for name, key in self._keys.items()
        ]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:  # never the keys themselves
        return f"AdminKeys({sorted(self._keys)})"

    @classmethod
    def from_options(cls, key: str | None, keys_file: str | None) -> AdminKeys:
        """`--admin-key` (named "admin"; `$GUARD_ADMIN_KEY` by default) and the named keys
        of `--admin-keys-file`, a JSON object `{"name": "key", ...}`."""
        keys = {DEFAULT_NAME: key or os.environ.get(ADMIN_KEY_ENV) or ""}
        if keys_file:
            try:
                named = json.loads(Path(keys_file).read_text())
                if not isinstance(named, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) and v for k, v in named.items()
                ):
                    raise ValueError("with non-empty string keys")
            except (OSError, ValueError) as exc:
                raise SystemExit(ERR_KEYS_FILE.format(path=keys_file, error=exc)) from exc
            keys.update(named)
        return cls(keys)

    def match(self, token: str | None) -> AdminKey | None:
        """The admin key `token` is, or None; every key is compared whatever matches."""
        if not token:
            return None
        offered = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for digest, who in self._digests:
            if hmac.compare_digest(offered, digest):
                found = who
        return found
