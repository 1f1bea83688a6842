"""argon2id password hashing (argon2-cffi, RFC 9106 low-memory parameters), off the event loop.

A hash costs tens of milliseconds of CPU and 64 MiB; it runs in a worker thread (the binding
releases the GIL) and at most `concurrency` at once, so a burst of sign-ins cannot starve
admission, which shares this process."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Argon2Passwords:
    def __init__(self, *, concurrency: int = 2) -> None:
        self._hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 defaults
        self._slots = asyncio.Semaphore(concurrency)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
