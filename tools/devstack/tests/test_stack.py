"""The service table's wiring and the process handling, without the services themselves."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from crossmodel_devstack.infra import Infra, Server
from crossmodel_devstack.stack import (
    PRODUCT_SERVICES,
    SERVICES,
    SPECS,
    ManagedProcess,
    Stack,
    StackConfig,
    stop_processes,
)


def _stack(tmp_path: Path) -> Stack:
    infra = Infra(
        Server("postgres", "postgresql://postgres@127.0.0.1:5432/postgres", "test"),
        Server("redis", "redis://127.0.0.1:6379/0", "test"),
        Server("kafka", "127.0.0.1:19092", "test"),
    )
    return Stack(StackConfig.for_tests(tmp_path, "abc123", "admin-token"), infra)


# What each service must be given, by the documented variable names (docs/services.md).
EXPECTED = {
    "edge": [
        "HOST",
        "PORT",
        "SPOOL_DIR",
        "KAFKA_BOOTSTRAP",
        "USAGE_TOPIC",
        "AUTH_TARGET",
        "ROUTER_TARGET",
        "BILLING_TARGET",
        "USAGE_TARGET",
    ],
    "auth": ["LISTEN", "DATABASE_URL", "REDIS_URL", "BILLING_TARGET"],
    "router": [
        "LISTEN",
        "PROVIDER_OPENAI_BASE_URL",
        "PROVIDER_ANTHROPIC_BASE_URL",
        "PROVIDER_GEMINI_BASE_URL",
        "PROVIDER_DEEPSEEK_BASE_URL",
    ],
    "billing": ["LISTEN", "DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP", "USAGE_TOPIC", "DLQ_TOPIC"],
    "usage": ["LISTEN", "DATABASE_URL", "KAFKA_BOOTSTRAP", "USAGE_TOPIC", "DLQ_TOPIC"],
}


@pytest.mark.parametrize("service", PRODUCT_SERVICES)
def test_every_service_gets_its_documented_settings(tmp_path: Path, service: str) -> None:
    stack = _stack(tmp_path)
    env = stack.env_for(SPECS[service], base={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    prefix = f"CROSSMODEL_{service.upper()}_"
    missing = [name for name in EXPECTED[service] if prefix + name not in env]
    assert missing == []
    assert env["OTEL_SERVICE_NAME"] == f"crossmodel-{service}"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"


def test_wiring_points_at_the_right_places(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    edge = stack.env_for(SPECS["edge"], base={})
    assert edge["CROSSMODEL_EDGE_AUTH_TARGET"] == stack.target("auth")
    assert edge["CROSSMODEL_EDGE_USAGE_TOPIC"] == "usage.v1.tabc123"
    billing = stack.env_for(SPECS["billing"], base={})
    assert billing["CROSSMODEL_BILLING_DATABASE_URL"] == (
        "postgresql+asyncpg://postgres@127.0.0.1:5432/crossmodel_tabc123_billing"
    )
    assert billing["CROSSMODEL_BILLING_DLQ_TOPIC"] == "usage.v1.tabc123.billing.dlq"
    router = stack.env_for(SPECS["router"], base={})
    assert router["CROSSMODEL_ROUTER_PROVIDER_OPENAI_BASE_URL"] == f"{stack.simulator_url}/openai/v1"
    assert stack.argv_for(SPECS["simulator"])[-4:] == [
        "--host",
        "127.0.0.1",
        "--port",
        str(stack.config.ports["simulator"]),
    ]


def test_run_config_uses_the_documented_ports_and_names(tmp_path: Path) -> None:
    cfg = StackConfig.for_run(tmp_path, "t")
    assert cfg.ports == {
        "simulator": 9100,
        "router": 50052,
        "usage": 50054,
        "billing": 50053,
        "auth": 50051,
        "edge": 8080,
    }
    assert cfg.databases == {
        "usage": "crossmodel_usage",
        "billing": "crossmodel_billing",
        "auth": "crossmodel_auth",
    }
    assert cfg.topics() == {"usage.v1": 4, "usage.v1.usage.dlq": 1, "usage.v1.billing.dlq": 1}
    assert {s.name for s in SERVICES} == {"simulator", *PRODUCT_SERVICES}


def test_a_user_log_level_wins_but_wiring_does_not(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    env = stack.env_for(
        SPECS["auth"], base={"CROSSMODEL_AUTH_LOG_LEVEL": "DEBUG", "CROSSMODEL_AUTH_LISTEN": "0.0.0.0:1"}
    )
    assert env["CROSSMODEL_AUTH_LOG_LEVEL"] == "DEBUG"
    assert env["CROSSMODEL_AUTH_LISTEN"] == stack.target("auth")


# A parent that ignores SIGTERM and has a child of its own: the whole group must go.
_STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def _wait_for(cond: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_stop_kills_the_whole_group_of_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    proc = ManagedProcess("stubborn", [sys.executable, "-c", _STUBBORN], os.environ, log)
    proc.start()
    _wait_for(lambda: log.exists() and log.read_text().strip().isdigit())
    grandchild = int(log.read_text().strip())
    assert proc.pid is not None
    assert os.getpgid(proc.pid) == proc.pid
    stop_processes([proc], grace=0.5)
    assert not proc.running
    _wait_for(lambda: not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie")


def test_a_service_dies_with_its_runner(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: even a SIGKILLed runner leaves nothing behind."""
    log = tmp_path / "orphan.log"
    runner_code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from crossmodel_devstack.stack import ManagedProcess\n"
        "argv = [sys.executable, '-c', 'import time; time.sleep(600)']\n"
        f"p = ManagedProcess('child', argv, os.environ, Path({str(log)!r}))\n"
        "p.start()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    import subprocess

    runner = subprocess.Popen([sys.executable, "-c", runner_code], stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    child = int(runner.stdout.readline())
    assert psutil.pid_exists(child)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    _wait_for(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie")


def test_embedded_servers_die_with_their_starter(tmp_path: Path) -> None:
    """The broker and the embedded redis-server started by a process that is then SIGKILLed."""
    import subprocess

    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from crossmodel_devstack.broker import TansuBroker\n"
        "from crossmodel_devstack.infra import _embedded_redis\n"
        f"b = TansuBroker(log_path=Path({str(tmp_path / 'b.log')!r})).start()\n"
        f"r = _embedded_redis(Path({str(tmp_path / 'redis')!r}), persist=False)\n"
        "print(b.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    starter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    broker_pid = starter.stdout.readline().strip()
    redis_pids = [c.pid for c in psutil.Process(starter.pid).children() if c.name().startswith("redis")]
    assert len(redis_pids) == 1
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    for pid in (int(broker_pid), redis_pids[0]):
        _wait_for(lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie")
