"""`last_used_at` off the request path: admissions only note the time in memory; a background
task writes the newest time per key in one batch every few seconds."""

from __future__ import annotations

import asyncio
import contextlib

from crossmodel_auth.domain.ports import Repository
from crossmodel_common.logging import get_logger

log = get_logger(__name__)


class LastUsedRecorder:
    def __init__(self, repo: Repository, *, interval_seconds: float = 5.0) -> None:
        self._repo = repo
        self._interval = interval_seconds
        self._seen: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, key_id: str, at_ms: int) -> None:
        self._seen[key_id] = at_ms

    async def flush(self) -> None:
        if not self._seen:
            return
        batch, self._seen = self._seen, {}
        try:
            await self._repo.record_last_used(batch)
        except Exception as exc:  # noqa: BLE001 - keep the times for the next attempt
            for key_id, at_ms in batch.items():
                self._seen[key_id] = max(at_ms, self._seen.get(key_id, 0))
            log.warning("could not record last_used_at", error=repr(exc), keys=len(batch))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="last-used-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
