"""A circuit breaker per deployment: after `failures` consecutive failures a deployment is
skipped for `open_seconds`; then one call is let through (half-open) and its result decides."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class Breakers:
    def __init__(self, *, failures: int, open_seconds: float, clock: Callable[[], float]) -> None:
        self._threshold = max(1, failures)
        self._open_seconds = open_seconds
        self._clock = clock
        self._states: dict[str, _State] = {}

    def available(self, name: str) -> bool:
        s = self._states.get(name)
        if s is None or s.failures < self._threshold:
            return True
        if self._clock() < s.open_until or s.probing:
            return False
        s.probing = True  # half-open: this caller is the probe
        return True

    def order(self, items: Sequence[T], name: Callable[[T], str]) -> list[T]:
        """Available first (in catalog order), then the open ones, so a request still has a
        chance when every deployment looks broken."""
        ok = [i for i in items if self.available(name(i))]
        return ok + [i for i in items if i not in ok]

    def success(self, name: str) -> None:
        s = self._states.get(name)
        if s is not None:
            s.failures = 0
            s.probing = False

    def failure(self, name: str) -> None:
        s = self._states.setdefault(name, _State())
        s.failures += 1
        s.probing = False
        if s.failures >= self._threshold:
            s.open_until = self._clock() + self._open_seconds

    def is_open(self, name: str) -> bool:
        s = self._states.get(name)
        return s is not None and s.failures >= self._threshold and self._clock() < s.open_until
