"""Console sessions in the browser: the session cookie, the session lookup at auth, and CSRF.

- The cookie holds auth's opaque session token: HttpOnly, SameSite=Lax, Path=/console, Secure
  over https. The edge keeps nothing; every request asks auth (GetSession).
- Every POST carries a synchronizer token: the session's CSRF token from auth, or, before
  sign-in, a random token paired with a short-lived cookie (so a login form cannot be posted
  from another site either). Both are compared in constant time, and an Origin header, when
  the browser sends one, must be this server's.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

import grpc
from fastapi import Request, Response

from crossmodel.auth.v1 import auth_pb2
from crossmodel_edge.runtime import Edge

SESSION_COOKIE = "cm_session"
PRE_CSRF_COOKIE = "cm_csrf"
COOKIE_PATH = "/console"
PRE_CSRF_MAX_AGE = 2 * 3600


class Problem(Exception):
    """Ends a console request with an error page (status, a message the user can act on)."""

    def __init__(self, status: int, title: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.headers = headers or {}


class SignInRequired(Exception):
    """No valid session: GET pages redirect to sign-in, other methods are refused."""


FORGED = Problem(
    403,
    "This form could not be accepted",
    "The form was not sent by this console page or your session changed since it was shown. "
    "Reload the page and try again.",
)


@dataclass(frozen=True, slots=True)
class Viewer:
    token: str
    user_id: str
    email: str
    account_id: str
    account_name: str
    csrf: str


def secure_cookies(request: Request, mode: Literal["auto", "always", "never"]) -> bool:
    if mode == "auto":
        return request.url.scheme == "https"
    return mode == "always"


def set_session(response: Response, token: str, max_age: int, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure
    )
    response.delete_cookie(PRE_CSRF_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure)


def clear_session(response: Response, secure: bool) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure)


def pre_session_token(request: Request) -> str:
    """The token for the sign-in and sign-up forms (double submit: cookie + form field)."""
    token = request.cookies.get(PRE_CSRF_COOKIE) or ""
    return token if len(token) >= 32 else secrets.token_urlsafe(32)


def set_pre_session_cookie(response: Response, token: str, secure: bool) -> None:
    response.set_cookie(
        PRE_CSRF_COOKIE,
        token,
        max_age=PRE_CSRF_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure,
    )


def tokens_match(sent: str, expected: str) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not sent by every browser on same-origin posts; the token still decides
    host = request.headers.get("host", "")
    return origin == f"{request.url.scheme}://{host}"


async def viewer(request: Request, edge: Edge) -> Viewer | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    try:
        resp = await edge.backends.auth.GetSession(
            auth_pb2.GetSessionRequest(token=token), timeout=edge.settings.backend_timeout_seconds
        )
    except grpc.aio.AioRpcError as exc:
        raise unavailable("auth", exc) from exc
    if not resp.found:
        return None
    return Viewer(
        token=token,
        user_id=resp.user.id,
        email=resp.user.email,
        account_id=resp.account.id,
        account_name=resp.account.name,
        csrf=resp.csrf_token,
    )


async def require_viewer(request: Request, edge: Edge) -> Viewer:
    found = await viewer(request, edge)
    if found is None:
        raise SignInRequired
    return found


async def read_form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return {}  # not a form: no CSRF token either, so the caller refuses it
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def checked_form(request: Request, who: Viewer) -> dict[str, str]:
    """The posted form of a signed-in user, after the origin and CSRF checks."""
    if not same_origin(request):
        raise FORGED
    form = await read_form(request)
    if not tokens_match(form.get("csrf_token", ""), who.csrf):
        raise FORGED
    return form


async def checked_anonymous_form(request: Request) -> dict[str, str]:
    if not same_origin(request):
        raise FORGED
    form = await read_form(request)
    if not tokens_match(form.get("csrf_token", ""), request.cookies.get(PRE_CSRF_COOKIE, "")):
        raise FORGED
    return form


def unavailable(service: str, exc: grpc.aio.AioRpcError) -> Problem:
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Problem(
            503,
            "Temporarily unavailable",
            f"The {service} service did not answer. Your data is safe; try again in a moment.",
            {"retry-after": "5"},
        )
    return Problem(500, "Something went wrong", f"The {service} service failed ({exc.code().name}).")
