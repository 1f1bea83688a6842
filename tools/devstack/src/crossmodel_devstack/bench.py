"""`make bench`: what the gateway adds on top of the upstream, measured in one run.

The whole stack comes up on free ports (the same machinery as the integration tests: infra found
in the same order, databases and topics named after the run), with OTLP export off and logs at
WARNING. A funded account with a key without limits sends the same chat body two ways:

- direct: to the provider simulator's OpenAI chat endpoint (the baseline);
- gateway: to the edge, i.e. edge -> auth -> router -> simulator, with the usage event going to
  Kafka and on to billing and usage in the background.

Measured for each: latency p50/p99 at concurrency 1 (non-streaming), throughput at concurrency
N (default 32), and time to the first streamed bytes (p50/p99) at concurrency 1. The load
generator is an aiohttp client in its own process (`python -m crossmodel_devstack.bench
--loadgen`, a JSON plan on stdin and results on stdout), so it does not share an event loop or
a GIL with the runner. docs/performance.md has the figures and how to read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    # The stack's modules (grpc, Kafka, PostgreSQL clients) are imported where the stack is
    # started: the load-generator process needs none of them and starts in a fraction of the time.
    from crossmodel_devstack.harness import Harness

MODEL = "openai/gpt-4o-mini"  # the catalog id the gateway is asked for
UPSTREAM_MODEL = "gpt-4o-mini"  # what the router sends the simulator for it
SIMULATOR_KEY = "sk-simulator"  # the dev stack's placeholder upstream key
CHAT_PATH = "/openai/v1/chat/completions"
# Generous: the bench spends cents at catalog prices; no balance gate may ever refuse it.
CREDIT_MICROS = 10_000_000_000
# Warm-up per target: connections, the auth key cache, the catalog, first-call code paths.
WARMUP_REQUESTS = 200
WARMUP_STREAMS = 50
# A phase never runs longer than this, whatever --requests says (the whole bench stays short).
PHASE_SECONDS = 30.0
# The concurrency-1 phases alternate between the targets in this many rounds, so that a machine
# whose speed drifts during the run (other work, frequency, a neighbour) shifts every target
# alike instead of whichever happened to run last.
ROUNDS = 10
REQUEST_TIMEOUT_SECONDS = 30.0
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def chat_body(model: str, *, stream: bool) -> bytes:
    """A small, typical chat request. Streams ask for usage, as the router always does upstream."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello to the benchmark in a few words."},
        ],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


# ---------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted samples; 0.0 for none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Timings:
    """One phase against one target, as the load generator reports it."""

    ok: int
    errors: int
    elapsed_s: float
    samples_ms: list[float] = field(default_factory=list)  # per request (latency or TTFT)
    first_error: str = ""

    @property
    def p50(self) -> float:
        return percentile(self.samples_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples_ms, 99)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0


# ---------------------------------------------------------------- the load generator


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    headers: dict[str, str]
    body: bytes
    stream_body: bytes


class _Failed(Exception):
    pass


async def _one(session: aiohttp.ClientSession, t: Target) -> float:
    """One non-streaming request; seconds until its whole body was read."""
    started = time.perf_counter()
    async with session.post(t.url, data=t.body, headers=t.headers) as resp:
        data = await resp.read()
        if resp.status != 200:
            raise _Failed(f"{resp.status} {data[:300]!r}")
    return time.perf_counter() - started


async def _first_bytes(session: aiohttp.ClientSession, t: Target) -> float:
    """One streamed request; seconds until the first body bytes (the first SSE event). The rest
    of the stream is read to its end, so every request completes as a client would see it."""
    started = time.perf_counter()
    async with session.post(t.url, data=t.stream_body, headers=t.headers) as resp:
        if resp.status != 200:
            raise _Failed(f"{resp.status} {(await resp.read())[:300]!r}")
        first = await resp.content.readany()
        ttft = time.perf_counter() - started
        rest = await resp.read()
    if not first or not (first + rest).rstrip().endswith(b"data: [DONE]"):
        raise _Failed(f"stream did not end with [DONE]: {(first + rest)[-300:]!r}")
    return ttft


async def _phase(
    session: aiohttp.ClientSession,
    t: Target,
    *,
    kind: str,
    requests: int,
    concurrency: int,
    seconds: float = PHASE_SECONDS,
) -> Timings:
    """`requests` requests, `concurrency` in flight, stopped early after `seconds`."""
    op = _first_bytes if kind == "stream" else _one
    samples: list[float] = []
    errors = 0
    first_error = ""
    remaining = requests
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal remaining, errors, first_error
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            try:
                samples.append(await op(session, t) * 1000)
            except (_Failed, aiohttp.ClientError, TimeoutError) as exc:
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, requests)))))
    elapsed = time.perf_counter() - started
    return Timings(len(samples), errors, elapsed, samples, first_error)


async def run_plan(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the phases of `plan` in order. `plan`: {"targets": {name: Target fields},
    "phases": [{"target", "kind" ("request" | "stream"), "requests", "concurrency", "seconds"?}]}."""
    targets = {
        name: Target(t["url"], t["headers"], t["body"].encode(), t["stream_body"].encode())
        for name, t in plan["targets"].items()
    }
    limit = max(p["concurrency"] for p in plan["phases"])
    # One pooled keep-alive session per target, sized for the widest phase, as a real client has.
    sessions = {
        name: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, force_close=False),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            skip_auto_headers=("User-Agent",),
        )
        for name in targets
    }
    try:
        out = []
        for p in plan["phases"]:
            timings = await _phase(
                sessions[p["target"]],
                targets[p["target"]],
                kind=p["kind"],
                requests=p["requests"],
                concurrency=p["concurrency"],
                seconds=p.get("seconds", PHASE_SECONDS),
            )
            out.append(asdict(timings))
        return out
    finally:
        for s in sessions.values():
            await s.close()


def loadgen_main() -> int:
    """`python -m crossmodel_devstack.bench --loadgen`: a plan as JSON on stdin, results on stdout."""
    plan = json.loads(sys.stdin.read())
    try:
        import uvloop

        results = uvloop.run(run_plan(plan))
    except ImportError:
        results = asyncio.run(run_plan(plan))
    sys.stdout.write(json.dumps(results))
    return 0


async def run_loadgen(
    targets: dict[str, Target], phases: list[dict[str, Any]], *, measure_from: int = 0
) -> list[Timings]:
    """Run phases in a separate load-generator process; the timings of phases[measure_from:]."""
    plan = {
        "targets": {
            name: {
                "url": t.url,
                "headers": t.headers,
                "body": t.body.decode(),
                "stream_body": t.stream_body.decode(),
            }
            for name, t in targets.items()
        },
        "phases": phases,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crossmodel_devstack.bench",
        "--loadgen",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(json.dumps(plan).encode()), PHASE_SECONDS * len(phases) + 30
        )
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        raise RuntimeError(
            f"load generator exited with {proc.returncode}: {err.decode(errors='replace')[-2000:]}"
        )
    return [Timings(**r) for r in json.loads(out)][measure_from:]


# ---------------------------------------------------------------- the comparison


@dataclass(frozen=True, slots=True)
class Comparison:
    direct: Timings
    gateway: Timings


@dataclass
class Report:
    latency: Comparison
    ttft: Comparison
    throughput: Comparison
    requests: int
    concurrency: int
    cores: int
    usage_drain_s: float | None = None  # after the load, until billing and usage consumed it all
    # The same hops with no work in them (crossmodel_devstack.floor), at concurrency 1.
    floor: Timings | None = None
    # Per target of the throughput phase: CPU ms each process spent per request (the CPU of the
    # load generator's run, over the requests it made, priming ones included).
    cpu_ms_per_request: dict[str, dict[str, float]] = field(default_factory=dict)
    # Per target of the latency phase (concurrency 1, where the path is serial and its latency
    # about the sum of this CPU): CPU ms each of its own processes spent per request.
    cpu_ms_serial: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def floor_added_p50(self) -> float | None:
        """What the hops alone add at p50: the floor's latency over the direct one."""
        return None if self.floor is None else self.floor.p50 - self.latency.direct.p50

    def rows(self) -> list[dict[str, Any]]:
        """One row per figure: direct, gateway, added (gateway - direct) and the ratio."""

        def row(what: str, unit: str, d: float, g: float) -> dict[str, Any]:
            return {
                "what": what,
                "unit": unit,
                "direct": d,
                "gateway": g,
                "added": g - d,
                "ratio": g / d if d else 0.0,
            }

        lat, ttft, thr = self.latency, self.ttft, self.throughput
        return [
            row("latency p50, concurrency 1", "ms", lat.direct.p50, lat.gateway.p50),
            row("latency p99, concurrency 1", "ms", lat.direct.p99, lat.gateway.p99),
            row("stream first bytes p50, concurrency 1", "ms", ttft.direct.p50, ttft.gateway.p50),
            row("stream first bytes p99, concurrency 1", "ms", ttft.direct.p99, ttft.gateway.p99),
            row(f"throughput, concurrency {self.concurrency}", "req/s", thr.direct.rate, thr.gateway.rate),
        ]

    def errors(self) -> list[str]:
        out = []
        for name, c in (("latency", self.latency), ("stream", self.ttft), ("throughput", self.throughput)):
            for side, t in (("direct", c.direct), ("gateway", c.gateway)):
                if t.errors:
                    out.append(f"{name} {side}: {t.errors} failed requests, first: {t.first_error}")
        if self.floor is not None and self.floor.errors:
            out.append(f"latency floor: {self.floor.errors} failed requests, first: {self.floor.first_error}")
        return out

    def as_json(self) -> dict[str, Any]:
        def side(t: Timings) -> dict[str, Any]:
            return {
                "ok": t.ok,
                "errors": t.errors,
                "elapsed_s": round(t.elapsed_s, 3),
                "p50_ms": round(t.p50, 3),
                "p99_ms": round(t.p99, 3),
                "rate_per_s": round(t.rate, 1),
            }

        return {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "cores": self.cores,
            "rows": [
                {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in self.rows()
            ],
            "phases": {
                name: {"direct": side(c.direct), "gateway": side(c.gateway)}
                for name, c in (
                    ("latency", self.latency),
                    ("stream", self.ttft),
                    ("throughput", self.throughput),
                )
            },
            "cpu_ms_per_request": {
                k: {p: round(ms, 3) for p, ms in v.items()} for k, v in self.cpu_ms_per_request.items()
            },
            "cpu_ms_serial": {
                k: {p: round(ms, 3) for p, ms in v.items()} for k, v in self.cpu_ms_serial.items()
            },
            "floor": None
            if self.floor is None or self.floor_added_p50 is None
            else {**side(self.floor), "added_p50_ms": round(self.floor_added_p50, 3)},
            "usage_drain_s": None if self.usage_drain_s is None else round(self.usage_drain_s, 2),
            "errors": self.errors(),
            "notes": self.notes,
        }

    def table(self) -> str:
        header = ("", "direct", "gateway", "added", "gateway/direct")
        lines = []
        for r in self.rows():
            unit = r["unit"]
            if unit == "ms":
                cells = (f"{r['direct']:.2f} ms", f"{r['gateway']:.2f} ms", f"+{r['added']:.2f} ms")
            else:
                cells = (f"{r['direct']:,.0f} {unit}", f"{r['gateway']:,.0f} {unit}", "")
            lines.append((r["what"], *cells, f"{r['ratio']:.2f}x"))
        widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]

        def fmt(cols: Sequence[str]) -> str:
            first = cols[0].ljust(widths[0])
            rest = "  ".join(str(c).rjust(w) for c, w in zip(cols[1:], widths[1:], strict=True))
            return f"  {first}  {rest}"

        rule = "  " + "-" * (sum(widths) + 2 * (len(widths) - 1))
        drained = (
            "" if self.usage_drain_s is None else f" (all consumed {self.usage_drain_s:.1f}s after the load)"
        )
        out = [
            f"CrossModel bench: {self.requests} requests per phase at concurrency 1, "
            f"{2 * self.requests} at concurrency {self.concurrency}; model {MODEL}",
            fmt(header),
            rule,
            *(fmt(line) for line in lines),
            rule,
            "  gateway = edge -> auth -> router -> simulator; usage events to Kafka, billing and usage "
            f"consume them{drained}.",
            *self._floor_lines(),
            f"  {self.cores} cores shared by the load generator, the simulator and the five services:",
            "  compare ratios and added ms; absolute numbers depend on the machine.",
        ]

        def listed(per: Mapping[str, float]) -> str:
            parts = "  ".join(
                f"{p} {ms:.2f}" for p, ms in sorted(per.items(), key=lambda kv: -kv[1]) if ms > 0
            )
            return f"{parts}  (total {sum(per.values()):.2f})"

        if self.cpu_ms_serial:
            out.append("  CPU ms per request at concurrency 1, the serial path's own processes:")
            out += [f"    {name}: {listed(per)}" for name, per in self.cpu_ms_serial.items()]
        for name, per in self.cpu_ms_per_request.items():
            out.append(f"  CPU ms per request, {name} throughput phase: {listed(per)}")
        out += [f"  note: {n}" for n in self.notes]
        out += [f"  ERROR: {e}" for e in self.errors()]
        return "\n".join(out)

    def _floor_lines(self) -> list[str]:
        added = self.floor_added_p50
        if self.floor is None or added is None:
            return []
        return [
            f"  floor = the same hops with no work in them (HTTP server, a unary gRPC call running one Redis"
            f" script, a server-streaming gRPC call POSTing upstream): latency p50 {self.floor.p50:.2f} ms,"
            f" +{added:.2f} ms over direct; p99 {self.floor.p99:.2f} ms.",
        ]


def cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (Linux /proc); {} elsewhere."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                # Fields after the parenthesised command name; utime and stime are fields 14, 15.
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return out


def _merged(parts: Sequence[Timings]) -> Timings:
    return Timings(
        sum(t.ok for t in parts),
        sum(t.errors for t in parts),
        sum(t.elapsed_s for t in parts),
        [ms for t in parts for ms in t.samples_ms],
        next((t.first_error for t in parts if t.first_error), ""),
    )


async def _interleaved(
    targets: Mapping[str, Target], names: Sequence[str], kind: str, requests: int
) -> dict[str, Timings]:
    """`requests` sequential requests to each of `names`, in ROUNDS rounds that visit the
    targets in turn (one load-generator process, each target primed first)."""
    rounds = max(1, min(ROUNDS, requests))
    sizes = [requests // rounds + (1 if i < requests % rounds else 0) for i in range(rounds)]
    primes = [{"target": name, "kind": kind, "requests": 2, "concurrency": 1} for name in names]
    # Each target's rounds together stop after PHASE_SECONDS, as one phase would.
    blocks = [
        {"target": name, "kind": kind, "requests": size, "concurrency": 1, "seconds": PHASE_SECONDS / rounds}
        for size in sizes
        for name in names
    ]
    timings = await run_loadgen(dict(targets), [*primes, *blocks], measure_from=len(primes))
    return {
        name: _merged([t for b, t in zip(blocks, timings, strict=True) if b["target"] == name])
        for name in names
    }


async def compare(
    direct: Target,
    gateway: Target,
    *,
    requests: int,
    concurrency: int,
    warmup: bool = True,
    pids: Mapping[str, int] | None = None,
    floor: Target | None = None,
    serial_pids: Mapping[str, Mapping[str, int]] | None = None,
) -> Report:
    """Warm the targets up, then measure. The concurrency-1 phases (latency, then time to first
    bytes) alternate between the targets in ROUNDS rounds in one load-generator process.
    Throughput goes last, direct first, each target in its own load-generator process after a
    short unmeasured prime of its connections: its burst of usage events must not be consumed
    during the c=1 phases, and `pids` (name -> process) are sampled around each target's run for
    the CPU each request costs each process. `floor` (crossmodel_devstack.floor) is measured in
    the latency phase only. `serial_pids` (target -> its own processes, none shared with another
    target) are sampled around the latency phase for the CPU a sequential request costs them."""
    targets = {"direct": direct, "gateway": gateway}
    if floor is not None:
        targets["floor"] = floor
    if warmup:
        await run_loadgen(
            targets,
            [
                {"target": name, "kind": kind, "requests": n, "concurrency": c}
                for name in targets
                for kind, n, c in (("request", WARMUP_REQUESTS, 8), ("stream", WARMUP_STREAMS, 4))
                if name != "floor" or kind == "request"
            ],
        )
    results: dict[tuple[str, str], Timings] = {}
    cpu: dict[str, dict[str, float]] = {}
    serial: dict[str, dict[str, float]] = {}
    for phase, kind, n in (("latency", "request", requests), ("stream", "stream", requests)):
        names = [name for name in targets if name != "floor" or phase == "latency"]
        own = serial_pids if phase == "latency" and serial_pids else {}
        at_start = {name: cpu_seconds(p) for name, p in own.items()}
        for name, timings in (await _interleaved(targets, names, kind, n)).items():
            results[phase, name] = timings
        for name, p in own.items():
            after, ok = cpu_seconds(p), results[phase, name].ok
            if ok:
                start = at_start[name]
                serial[name] = {q: (after[q] - start[q]) * 1000 / ok for q in after if q in start}
    for name in ("direct", "gateway"):
        prime = {"target": name, "kind": "request", "requests": 2 * concurrency, "concurrency": concurrency}
        measured = {**prime, "requests": 2 * requests}
        before = cpu_seconds(pids or {})
        timings = (await run_loadgen(targets, [prime, measured], measure_from=1))[0]
        after = cpu_seconds(pids or {})
        results["throughput", name] = timings
        if timings.ok:
            cpu[name] = {p: (after[p] - before[p]) * 1000 / timings.ok for p in after if p in before}

    def pair(phase: str) -> Comparison:
        return Comparison(results[phase, "direct"], results[phase, "gateway"])

    return Report(
        pair("latency"),
        pair("stream"),
        pair("throughput"),
        requests=requests,
        concurrency=concurrency,
        cores=os.cpu_count() or 0,
        cpu_ms_per_request=cpu,
        cpu_ms_serial=serial,
        floor=results.get(("latency", "floor")),
    )


# ---------------------------------------------------------------- the stack


def _loadavg() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


@dataclass(frozen=True, slots=True)
class BenchStack:
    harness: Harness
    direct: Target
    gateway: Target

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.harness.stack.processes.items() if p.pid is not None}


@contextlib.asynccontextmanager
async def bench_stack(
    state_dir: Path, say: Callable[[str], None] = lambda _: None
) -> AsyncIterator[BenchStack]:
    """The whole stack on free ports, OTLP export off, logs at WARNING, a funded account and a
    key without limits; stopped (databases dropped) on exit. Also what profiling sessions use
    (docs/performance.md)."""
    from crossmodel_devstack.broker import free_port
    from crossmodel_devstack.harness import Harness
    from crossmodel_devstack.infra import Infra
    from crossmodel_devstack.otlp import SpanReceiver
    from crossmodel_devstack.stack import SERVICES, Stack, StackConfig

    run_id = secrets.token_hex(4)
    run_dir = state_dir / "bench"
    # Throwaway state: last run's logs and spool go, this run's stay for a post-mortem.
    shutil.rmtree(run_dir / "run", ignore_errors=True)
    config = StackConfig(
        state_dir=run_dir / "run",
        log_dir=run_dir / "run" / "logs",
        spool_dir=run_dir / "run" / "spool" / "edge",
        ports={s.name: free_port() for s in SERVICES},
        databases={s.name: f"crossmodel_b{run_id}_{s.name}" for s in SERVICES if s.database},
        admin_token="cm-admin-" + secrets.token_urlsafe(24),
        usage_topic=f"usage.v1.b{run_id}",
        log_level="WARNING",
        extra_env={
            # Spans are still made (and stamped), as in production; only their export is off.
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        },
    )
    say("Starting PostgreSQL, Redis and the broker…")
    infra = await Infra.open(run_dir / "infra", config.log_dir, persist=False)
    # Nothing exports to it (OTLP is off); Harness owns one and stops it on close.
    receiver = SpanReceiver().start()
    harness = Harness(infra, Stack(config, infra), receiver, run_id)
    try:
        say(f"Starting the simulator and the five services (logs in {config.log_dir})…")
        await harness.stack.prepare()
        await harness.stack.start()
        account = await harness.new_account("bench", credit_micros=CREDIT_MICROS)
        stack = harness.stack
        direct = Target(
            stack.simulator_url + CHAT_PATH,
            {"authorization": f"Bearer {SIMULATOR_KEY}", "content-type": "application/json"},
            chat_body(UPSTREAM_MODEL, stream=False),
            chat_body(UPSTREAM_MODEL, stream=True),
        )
        gateway = Target(
            stack.edge_url + "/v1/chat/completions",
            {"authorization": f"Bearer {account.api_key}", "content-type": "application/json"},
            chat_body(MODEL, stream=False),
            chat_body(MODEL, stream=True),
        )
        yield BenchStack(harness, direct, gateway)
    finally:
        say("Stopping…")
        await harness.close()


async def bench(state_dir: Path, *, requests: int, concurrency: int, quiet: bool) -> Report:
    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    from crossmodel_devstack.floor import floor_target

    async with (
        bench_stack(state_dir, say) as b,
        floor_target(b.direct.url, SIMULATOR_KEY, b.harness.infra.redis.url) as floor_processes,
    ):
        floor = Target(floor_processes.url, b.direct.headers, b.direct.body, b.direct.stream_body)
        # The request path's own processes; the simulator serves every target and is left out.
        gateway_pids = {name: pid for name, pid in b.pids.items() if name in ("edge", "auth", "router")}
        load_before = _loadavg()
        say(f"Measuring ({requests} requests per phase, concurrency 1 and {concurrency})…")
        report = await compare(
            b.direct,
            b.gateway,
            requests=requests,
            concurrency=concurrency,
            pids=b.pids,
            floor=floor,
            serial_pids={"gateway": gateway_pids, "floor": floor_processes.pids},
        )
        # Other work on the machine takes cores from the hops; the figures are only as quiet
        # as the machine was.
        report.notes.append(
            f"load average (1 min) before/after the measurement: {load_before} / {_loadavg()}"
        )
        if dead := b.harness.stack.dead():
            report.notes.append("exited during the run: " + ", ".join(p.name for p in dead))
        t0 = time.perf_counter()
        try:
            await b.harness.wait_consumed(timeout=60)
            report.usage_drain_s = time.perf_counter() - t0
        except AssertionError as exc:
            report.notes.append(f"usage consumers did not catch up: {exc}")
        return report


def run_bench(state_dir: Path, *, requests: int, concurrency: int, as_json: bool) -> int:
    """`make bench`: the table (or JSON) on stdout, progress on stderr; 1 if any request failed."""
    from crossmodel_devstack.infra import InfraError
    from crossmodel_devstack.stack import StackError

    try:
        report = asyncio.run(bench(state_dir, requests=requests, concurrency=concurrency, quiet=as_json))
    except (InfraError, StackError) as exc:
        print(f"make bench: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(report.table())
    return 1 if report.errors() else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--loadgen"]:
        sys.exit(loadgen_main())
    sys.exit("usage: python -m crossmodel_devstack bench [--requests N] [--concurrency N] [--json]")
