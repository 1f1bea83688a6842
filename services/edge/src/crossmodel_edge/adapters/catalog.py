"""The router's model catalog, cached in the edge and refreshed in the background, so that
admission prices a request without a call."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc

from crossmodel.router.v1 import router_pb2, router_pb2_grpc
from crossmodel_common.logging import get_logger
from crossmodel_common.money import Prices
from crossmodel_edge.domain.catalog import Catalog, ModelInfo

log = get_logger(__name__)

# A miss refreshes at most this often, so unknown model names cannot turn into a call each.
MISS_REFRESH_INTERVAL_S = 5.0


def model_info(m: router_pb2.Model) -> ModelInfo:
    p = m.price
    return ModelInfo(
        id=m.id,
        vendor=m.vendor,
        display_name=m.display_name or m.id,
        context_window=m.context_window,
        max_output_tokens=m.max_output_tokens,
        capabilities=tuple(m.capabilities),
        prices=Prices(
            input_per_mtok_micros=p.input_per_mtok_micros,
            output_per_mtok_micros=p.output_per_mtok_micros,
            cached_input_per_mtok_micros=p.cached_input_per_mtok_micros,
            cache_write_per_mtok_micros=p.cache_write_per_mtok_micros,
            reasoning_per_mtok_micros=p.reasoning_per_mtok_micros,
        ),
        created_unix=m.created_unix,
    )


class CatalogCache:
    def __init__(
        self, router: router_pb2_grpc.RouterServiceAsyncStub, *, refresh_seconds: float, timeout: float = 2.0
    ) -> None:
        self._router = router
        self._every = refresh_seconds
        self._timeout = timeout
        self.catalog: Catalog | None = None
        self._last_attempt = 0.0
        self._failing = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        return self.catalog is not None

    async def refresh(self, *, unless_fresher_than: float = 0.0) -> bool:
        """Fetch the catalog; with `unless_fresher_than`, skip when another refresh ran within
        that many seconds (concurrent misses wait for one call instead of making one each)."""
        async with self._lock:
            if unless_fresher_than and time.monotonic() - self._last_attempt < unless_fresher_than:
                return self.loaded
            self._last_attempt = time.monotonic()
            try:
                resp = await self._router.ListModels(router_pb2.ListModelsRequest(), timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                if not self._failing:
                    log.warning("model catalog refresh failed", code=exc.code().name, details=exc.details())
                self._failing = True
                return False
            if self._failing:
                log.info("model catalog refreshed again", models=len(resp.models))
            self._failing = False
            self.catalog = Catalog(model_info(m) for m in resp.models)
            return True

    async def lookup(self, model_id: str) -> ModelInfo | None:
        """The model, refreshing first when it is unknown and the last refresh is not recent
        (a model just added to the router's catalog is found at once)."""
        cat = self.catalog
        if cat is not None:
            found = cat.get(model_id)
            if found is not None:
                return found
        await self.refresh(unless_fresher_than=MISS_REFRESH_INTERVAL_S)
        cat = self.catalog
        return cat.get(model_id) if cat is not None else None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every if self.loaded else min(self._every, 1.0))
            await self.refresh()

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="catalog-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
