"""Alembic environment of the usage database, run by `python -m crossmodel_usage migrate`."""

from __future__ import annotations

from crossmodel_common.db import alembic_env

alembic_env()
