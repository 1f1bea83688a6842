"""`make run`: infrastructure, migrations, the simulator and the five services, the development
account, then a readable tail of every service's log until Ctrl-C (or SIGTERM) stops it all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

from crossmodel.router.v1 import router_pb2, router_pb2_grpc
from crossmodel_common.grpcio import channel
from crossmodel_common.money import format_micros
from crossmodel_devstack.bootstrap import (
    DevCredentials,
    bootstrap,
    dev_env,
    new_or_previous_admin_token,
    read_env_file,
    write_env_file,
)
from crossmodel_devstack.infra import Infra, InfraError, port_is_free, redact
from crossmodel_devstack.stack import SERVICES, Stack, StackConfig, StackError

# The broker gets a fixed port under `make run` so that Kafka tools can be pointed at it; any
# free port when that one is taken.
BROKER_PORT = 9092
_COLORS = ("36", "33", "35", "32", "34", "31")
# Keys every log line has; the rest are printed as key=value after the message.
_SKIP = frozenset({"event", "timestamp", "level", "service", "logger", "span_id"})
# Readiness and liveness probes stay in the log files, off the terminal.
_PROBE_PATHS = frozenset({"/readyz", "/healthz"})


class LogTail:
    """Follows each service's log file from its current end and prints readable, prefixed lines."""

    def __init__(self, stack: Stack, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.color = out.isatty() and os.environ.get("NO_COLOR") is None
        self.files = {s.name: stack.config.log_dir / f"{s.name}.log" for s in stack.specs}
        # Each run starts new log files (the previous run's are rotated away), so from the top.
        self.offsets = dict.fromkeys(self.files, 0)
        self.width = max(len(n) for n in self.files)
        self.partial: dict[str, bytes] = {}

    def prefix(self, name: str) -> str:
        label = name.ljust(self.width)
        if not self.color:
            return f"{label} | "
        color = _COLORS[list(self.files).index(name) % len(_COLORS)]
        return f"\x1b[{color}m{label}\x1b[0m | "

    @staticmethod
    def render(line: str) -> str | None:
        """A readable line, or None for one not worth the terminal (probe requests)."""
        try:
            ev: dict[str, Any] = json.loads(line)
        except ValueError:
            return line
        if not isinstance(ev, dict) or "event" not in ev:
            return line
        if ev.get("path") in _PROBE_PATHS and ev.get("event") == "request":
            return None
        ts = str(ev.get("timestamp", ""))[11:19]
        level = str(ev.get("level", "")).upper()[:5].ljust(5)
        extra = " ".join(f"{k}={v}" for k, v in ev.items() if k not in _SKIP and v is not None)
        return f"{ts} {level} {ev['event']}" + (f"  {extra}" if extra else "")

    def poll(self) -> None:
        for name, path in self.files.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[name])
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            self.offsets[name] += len(data)
            data = self.partial.pop(name, b"") + data
            *lines, rest = data.split(b"\n")
            if rest:
                self.partial[name] = rest
            for raw in lines:
                text = self.render(raw.decode(errors="replace")) if raw.strip() else None
                if text is not None:
                    self.out.write(self.prefix(name) + text + "\n")
        self.out.flush()

    async def follow(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(0.25)


def _busy_ports(config: StackConfig) -> list[str]:
    return [f"{name} {port}" for name, port in config.ports.items() if not port_is_free(port)]


async def _example_model(stack: Stack) -> str:
    async with channel(stack.target("router")) as ch:
        resp = await router_pb2_grpc.RouterServiceStub(ch).ListModels(
            router_pb2.ListModelsRequest(), timeout=10
        )
    ids = [m.id for m in resp.models]
    for preferred in ("openai/gpt-4o-mini", "openai/gpt-4.1-mini"):
        if preferred in ids:
            return preferred
    return ids[0] if ids else "openai/gpt-4o-mini"


def _shown(path: Path) -> str:
    """Paths relative to the working directory when under it, as a reader would type them."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def banner(stack: Stack, infra: Infra, creds: DevCredentials, env_path: Path, model: str) -> str:
    cfg = stack.config
    grpc_line = "  ".join(f"{s.name} {stack.target(s.name)}" for s in SERVICES if s.probe == "grpc")
    rows = [
        ("OpenAI API", f"{stack.edge_url}/v1"),
        ("Anthropic API", stack.edge_url),
        ("gRPC", grpc_line),
        ("simulator", stack.simulator_url),
        ("PostgreSQL", f"{redact(infra.postgres.url)}  [{infra.postgres.origin}]"),
        ("Redis", f"{redact(infra.redis.url)}  [{infra.redis.origin}]"),
        ("Kafka", f"{infra.kafka.url}  [{infra.kafka.origin}]  topic {cfg.usage_topic}"),
        ("logs", f"{_shown(cfg.log_dir)}/<service>.log  (JSON lines; docs/development.md has jq recipes)"),
        ("credentials", f"{_shown(env_path)}  (key {'reused' if creds.key_reused else 'created'})"),
        ("dev account", f"{creds.account_id}  balance {format_micros(creds.balance_micros)}"),
    ]
    width = max(len(r[0]) for r in rows)
    body = "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)
    curl = (
        f"  set -a; . {_shown(env_path)}; set +a\n"
        f'  curl {stack.edge_url}/v1/chat/completions -H "Authorization: Bearer $OPENAI_API_KEY" \\\n'
        f"    -H 'content-type: application/json' \\\n"
        f'    -d \'{{"model":"{model}","messages":[{{"role":"user","content":"Hello!"}}]}}\''
    )
    rule = "-" * 78
    return f"{rule}\nCrossModel is running.\n{body}\n\nTry it:\n{curl}\n\nCtrl-C stops everything.\n{rule}\n"


def _take_lock(state_dir: Path) -> Path:
    lock = state_dir / "run.pid"
    with contextlib.suppress(FileNotFoundError, ValueError):
        pid = int(lock.read_text().strip())
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pass
            else:
                raise StackError(f"`make run` is already running (pid {pid}); stop it first (Ctrl-C there)")
    state_dir.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"{os.getpid()}\n")
    return lock


async def _serve(state_dir: Path) -> int:
    env_path = state_dir / "dev.env"
    previous = read_env_file(env_path)
    token = new_or_previous_admin_token(previous)
    config = StackConfig.for_run(state_dir, token)
    if busy := _busy_ports(config):
        raise StackError(
            f"ports already in use: {', '.join(busy)} (another `make run`, or stop what holds them)"
        )
    lock = _take_lock(state_dir)
    try:
        print("Starting PostgreSQL, Redis and the broker…", flush=True)
        infra = await Infra.open(state_dir, config.log_dir, persist=True, broker_port=BROKER_PORT)
        try:
            return await _serve_on(infra, config, previous, env_path)
        finally:
            infra.close()
    finally:
        lock.unlink(missing_ok=True)


async def _serve_on(infra: Infra, config: StackConfig, previous: dict[str, str], env_path: Path) -> int:
    stack = Stack(config, infra)
    follower: LogTail | None = None
    tail: asyncio.Task[None] | None = None
    try:
        for kind, url, origin in infra.describe():
            print(f"  {kind:<8} {url}  [{origin}]", flush=True)
        print("Creating databases and topics, applying migrations…", flush=True)
        await stack.prepare()
        print(
            f"Starting {', '.join(s.name for s in SERVICES)} (logs in {_shown(config.log_dir)})…", flush=True
        )
        stack.spawn()
        follower = LogTail(stack)
        tail = asyncio.create_task(follower.follow())
        await stack.wait_ready()
        creds = await bootstrap(stack.target("auth"), stack.target("billing"), previous, config.admin_token)
        write_env_file(
            env_path,
            dev_env(creds, stack.edge_url),
            "CrossModel development credentials, written by `make run`.\n"
            "Use them with: set -a; . .crossmodel/dev.env; set +a",
        )
        model = await _example_model(stack)
        follower.poll()
        print(banner(stack, infra, creds, env_path, model), flush=True)
        await _until_one_exits(stack)
        for proc in stack.dead():
            print(f"\n{proc.name} exited with {proc.returncode}; stopping everything.", file=sys.stderr)
        return 1
    finally:
        _ignore_signals_while_stopping()
        if tail is not None:
            tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tail
        print("\nStopping…", flush=True)
        stack.stop()
        if follower is not None:
            follower.poll()  # the services' own shutdown lines
        print("Stopped.", flush=True)


async def _until_one_exits(stack: Stack) -> None:
    while True:
        if stack.dead():
            return
        await asyncio.sleep(0.5)


def _ignore_signals_while_stopping() -> None:
    """A second Ctrl-C must not interrupt the shutdown that the first one started."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda: print("still stopping…", file=sys.stderr, flush=True))


async def _main(state_dir: Path) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    # SIGHUP too: closing the terminal stops the stack like Ctrl-C does.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await _serve(state_dir)
    except asyncio.CancelledError:
        return 0


def run(state_dir: Path) -> int:
    try:
        return asyncio.run(_main(state_dir))
    except (InfraError, StackError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
