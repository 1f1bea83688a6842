"""`python -m crossmodel_devstack run` (make run) and `bench` (make bench)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crossmodel-devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start the whole system locally until Ctrl-C")
    run_p.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".crossmodel"),
        help="logs, credentials and embedded servers' data (default: .crossmodel)",
    )
    bench_p = sub.add_parser("bench", help="gateway latency and throughput against the direct upstream")
    bench_p.add_argument("--requests", type=int, default=1000, help="requests per phase at concurrency 1")
    bench_p.add_argument("--concurrency", type=int, default=32, help="in flight in the throughput phase")
    bench_p.add_argument("--json", action="store_true", help="machine-readable results on stdout")
    bench_p.add_argument("--state-dir", type=Path, default=Path(".crossmodel"), help="(default: .crossmodel)")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from crossmodel_devstack.bench import run_bench

        return run_bench(
            args.state_dir.resolve(), requests=args.requests, concurrency=args.concurrency, as_json=args.json
        )
    from crossmodel_devstack.run import run

    return run(args.state_dir.resolve())


if __name__ == "__main__":
    sys.exit(main())
