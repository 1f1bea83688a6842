"""`python -m crossmodel_edge`: settings -> logging and telemetry -> app -> uvicorn."""

from __future__ import annotations

import math

import uvicorn
from fastapi import FastAPI

from crossmodel_common.config import load_settings
from crossmodel_common.logging import setup_logging
from crossmodel_common.telemetry import setup_telemetry, shutdown_telemetry
from crossmodel_edge.app import create_app
from crossmodel_edge.config import Settings


def server_config(settings: Settings, app: FastAPI) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # SIGTERM: stop accepting, let in-flight requests (streams too) finish for this long,
        # then the lifespan flushes the usage events and closes the channels.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
    )


def main() -> None:
    settings = load_settings(Settings, "edge")
    setup_logging("edge", settings.log_level)
    setup_telemetry("edge")
    try:
        uvicorn.Server(server_config(settings, create_app(settings))).run()
    finally:
        shutdown_telemetry()


if __name__ == "__main__":
    main()
