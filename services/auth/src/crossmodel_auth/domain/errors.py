"""Failures the domain reports; the servicer maps each to one gRPC status code."""

from __future__ import annotations


class AuthError(Exception):
    pass


class NotFound(AuthError):
    pass


class InvalidArgument(AuthError):
    pass


class FailedPrecondition(AuthError):
    pass


class Unavailable(AuthError):
    """A dependency (Redis, billing) could not answer; the caller may retry."""
