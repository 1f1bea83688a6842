"""`python -m crossmodel_simulator --host 127.0.0.1 --port 9100`: wiring only."""

from __future__ import annotations

import argparse
import logging

import uvloop
from aiohttp import web

from crossmodel_simulator.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="crossmodel-simulator", description="LLM provider simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").disabled = True
    logging.getLogger(__name__).info("provider simulator listening on http://%s:%d", args.host, args.port)
    web.run_app(
        create_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
