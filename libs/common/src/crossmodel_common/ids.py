"""Identifiers. Request ids are sortable by time so logs and the request log read in order."""

from __future__ import annotations

import os
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_ulid() -> str:
    """A ULID-shaped id: 48-bit millisecond time + 80 random bits, 26 characters."""
    return _b32(int(time.time() * 1000), 10) + _b32(int.from_bytes(os.urandom(10), "big"), 16)


def new_request_id() -> str:
    return "req_" + new_ulid()


def new_id(prefix: str) -> str:
    return f"{prefix}_{new_ulid()}"


def new_api_key() -> str:
    """`cm-` + 48 url-safe random characters (288 bits)."""
    return "cm-" + secrets.token_urlsafe(36)
