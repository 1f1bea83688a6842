"""`python -m crossmodel_edge`: settings -> logging and telemetry -> app -> uvicorn."""

from __future__ import annotations

import math
import sys

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from crossmodel_common.logging import setup_logging
from crossmodel_common.telemetry import setup_telemetry, shutdown_telemetry
from crossmodel_edge.app import create_app
from crossmodel_edge.config import Settings


def load_settings() -> Settings:
    try:
        return Settings()  # type: ignore[call-arg]
    except ValidationError as exc:
        names = ", ".join(
            "CROSSMODEL_EDGE_"
            + str(e["loc"][0]).upper()
            + (" (missing)" if e["type"] == "missing" else f": {e['msg']}")
            for e in exc.errors()
        )
        sys.exit(f"crossmodel-edge: invalid settings: {names}")


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
    settings = load_settings()
    setup_logging("edge", settings.log_level)
    setup_telemetry("edge")
    try:
        uvicorn.Server(server_config(settings, create_app(settings))).run()
    finally:
        shutdown_telemetry()


if __name__ == "__main__":
    main()
