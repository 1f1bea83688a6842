"""The gRPC environment defaults are in place before any service imports grpc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crossmodel_common import grpc_env

# Run in a fresh interpreter: records GRPC_EXPERIMENTS at the moment `grpc` is first imported,
# then imports the service's entry module the way `python -m` does.
_PROBE = """
import importlib, importlib.abc, os, sys

class Watch(importlib.abc.MetaPathFinder):
    seen = None
    def find_spec(self, name, path=None, target=None):
        if name == "grpc" and Watch.seen is None:
            Watch.seen = os.environ.get("GRPC_EXPERIMENTS", "<unset>")
        return None

sys.meta_path.insert(0, Watch())
importlib.import_module(sys.argv[1])
print(Watch.seen)
"""


def _seen_when_grpc_imported(module: str, env: dict[str, str]) -> str:
    argv = [sys.executable, "-c", _PROBE, module]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("service", ["edge", "auth", "router", "billing", "usage"])
def test_every_service_sets_grpc_experiments_before_grpc_is_imported(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    assert _seen_when_grpc_imported(f"crossmodel_{service}.__main__", env) == grpc_env.GRPC_EXPERIMENTS


def test_an_operator_setting_wins() -> None:
    env = {**os.environ, "GRPC_EXPERIMENTS": "-event_engine_dns"}
    assert _seen_when_grpc_imported("crossmodel_router.__main__", env) == "-event_engine_dns"
    mine: dict[str, str] = {"GRPC_EXPERIMENTS": ""}
    grpc_env.apply(mine)
    assert mine == {"GRPC_EXPERIMENTS": ""}
    empty: dict[str, str] = {}
    grpc_env.apply(empty)
    assert empty == {"GRPC_EXPERIMENTS": grpc_env.GRPC_EXPERIMENTS}
