"""gRPC core settings that only take effect when they are in the environment before grpc is
imported. Every service package applies them on import (its `__init__`), which runs before
anything of the service imports grpc, so they hold under `python -m`, in the containers and in
the dev stack alike. A value the operator set wins.

GRPC_EXPERIMENTS: grpcio 1.85 carries each call over the EventEngine client and listener by
default. With both experiments off it uses its older I/O path, which on the reference machine
(docs/performance.md) costs a third less CPU per call on either side: a unary round trip p50
0.45 -> 0.28 ms and a server-streaming one 0.50 -> 0.29 ms, server CPU per call 0.28 -> 0.19 ms.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

GRPC_EXPERIMENTS = "-event_engine_client,-event_engine_listener"


def apply(environ: MutableMapping[str, str] = os.environ) -> None:
    environ.setdefault("GRPC_EXPERIMENTS", GRPC_EXPERIMENTS)
