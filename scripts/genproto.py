"""Generate the typed Python package for every .proto under proto/ (make proto).

With --check, generate into a temporary directory and fail when libs/proto/src differs, so CI
catches stubs that were not regenerated after a contract change.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "libs" / "proto" / "src"
PACKAGE = "crossmodel"


def generate(out: Path) -> None:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    bindir = Path(sys.executable).parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out={out}",
            f"--mypy_grpc_out={out}",
            *files,
        ],
        check=True,
    )
    for d in [out / PACKAGE, *(p for p in (out / PACKAGE).rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    (out / PACKAGE / "py.typed").touch()


def snapshot(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in (root / PACKAGE).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            want, have = snapshot(Path(tmp)), snapshot(OUT)
            stale = sorted(
                name
                for name in want.keys() | have.keys()
                if name not in want
                or name not in have
                or not filecmp.cmp(want[name], have[name], shallow=False)
            )
        if stale:
            print("generated code is stale; run `make proto`:", *stale, sep="\n  ")
            return 1
        print("generated code is up to date")
        return 0
    shutil.rmtree(OUT / PACKAGE, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    generate(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
