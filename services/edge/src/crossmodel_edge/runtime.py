"""The edge's long-lived parts, created inside the event loop at start-up and closed at
shutdown: channels, the catalog cache, the usage producer, the relay."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from crossmodel_common.kafka import SpooledProducer
from crossmodel_common.logging import get_logger
from crossmodel_edge.adapters.backends import Backends
from crossmodel_edge.adapters.catalog import CatalogCache
from crossmodel_edge.adapters.events import Background, UsagePublisher
from crossmodel_edge.config import Settings
from crossmodel_edge.relay import Relay

log = get_logger(__name__)


@dataclass(slots=True)
class Edge:
    settings: Settings
    backends: Backends
    catalog: CatalogCache
    producer: SpooledProducer
    publisher: UsagePublisher
    background: Background
    relay: Relay

    @classmethod
    async def start(cls, settings: Settings) -> Edge:
        backends = Backends.connect(settings)
        producer = SpooledProducer(
            settings.kafka_bootstrap,
            settings.spool_dir,
            client_id="crossmodel-edge",
            enable_idempotence=settings.kafka_idempotence,
            linger_seconds=settings.event_linger_ms / 1000,
        )
        await producer.start()
        catalog = CatalogCache(backends.router, refresh_seconds=settings.catalog_refresh_seconds)
        await catalog.start()
        background = Background()
        publisher = UsagePublisher(producer, settings.usage_topic)
        relay = Relay(
            backends=backends,
            catalog=catalog,
            publisher=publisher,
            background=background,
            max_body_bytes=settings.max_body_bytes,
            auth_timeout=settings.auth_timeout_seconds,
            route_timeout=settings.route_timeout_seconds,
        )
        log.info("edge started", models=len(catalog.catalog) if catalog.catalog else 0)
        return cls(settings, backends, catalog, producer, publisher, background, relay)

    async def stop(self) -> None:
        """After the server stopped taking requests and drained them: finish the Settle calls,
        spool and flush the usage events, close the channels."""
        await self.catalog.stop()
        # Requests cancelled at the end of the grace period publish their events as they unwind.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.relay.idle.wait(), timeout=2.0)
        await self.background.drain(timeout=self.settings.shutdown_grace_seconds)
        self.publisher.close()
        await self.publisher.delivered(timeout=self.settings.shutdown_grace_seconds)
        await self.producer.stop(timeout=self.settings.shutdown_grace_seconds)
        await self.backends.close()
        log.info(
            "edge stopped", events_sent=self.producer.sent, spooled_segments=self.producer.pending_segments
        )
