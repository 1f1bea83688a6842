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
    sub.add_parser("bench", help="gateway latency and throughput against the direct upstream")
    args = parser.parse_args(argv)
    if args.command == "bench":
        print("make bench: the benchmark is not built yet.", file=sys.stderr)
        return 2
    from crossmodel_devstack.run import run

    return run(args.state_dir.resolve())


if __name__ == "__main__":
    sys.exit(main())
