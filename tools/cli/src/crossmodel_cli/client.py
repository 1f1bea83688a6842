"""A small synchronous client of the admin API (/admin/v1), raising one exception type whose
message is what an operator should read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
URL_VAR = "CROSSMODEL_ADMIN_URL"
TOKEN_VAR = "CROSSMODEL_ADMIN_TOKEN"  # noqa: S105 - a variable name, not a secret

# Exit statuses (docs/admin.md).
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_API_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _describe(resp: httpx.Response) -> str:
    """`message (HTTP 404 not_found, param x, request req_…)` from the API's error body."""
    detail: list[str] = []
    message = ""
    try:
        error = resp.json()["error"]
        message = str(error.get("message") or "")
        if error.get("code"):
            detail.append(str(error["code"]))
        if error.get("param"):
            detail.append(f"param {error['param']}")
    except (ValueError, KeyError, TypeError, AttributeError):
        message = resp.text.strip()[:200] or resp.reason_phrase
    rid = resp.headers.get("x-request-id")
    if rid:
        detail.append(f"request {rid}")
    head = f"HTTP {resp.status_code}"
    return f"{message} ({', '.join([head, *detail])})"


class AdminClient:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url + "/admin/v1",
            headers={"authorization": f"Bearer {token}", "user-agent": "crossmodel-cli/0.1"},
            timeout=timeout,
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            resp = self._http.request(method, path, json=json, params=_clean(params), headers=headers)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if resp.status_code >= 400:
            raise CliError(_describe(resp))
        return resp.json()

    def stream(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        """The body of a streamed response, chunk by chunk; a stream cut short is an error."""
        try:
            with self._http.stream("GET", path, params=_clean(params)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise CliError(_describe(resp))
                yield from resp.iter_bytes()
        except httpx.RemoteProtocolError as exc:
            raise CliError(f"the export was cut short by the server: {exc}") from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: httpx.TransportError) -> CliError:
        return CliError(
            f"cannot reach the admin API at {self.url} ({type(exc).__name__}: {exc}); "
            f"is the edge running? ({URL_VAR} sets the address)",
            EXIT_UNREACHABLE,
        )


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Leaves out unset filters, so the API applies its defaults."""
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None and v != ""}
