"""The console under /console: server-rendered pages for an account's keys, balance, usage and
the model catalog (docs/console.md)."""

from crossmodel_edge.console.routes import router

__all__ = ["router"]
