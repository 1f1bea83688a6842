"""Alembic environment of the auth database, run by `python -m crossmodel_auth migrate`."""

from __future__ import annotations

from crossmodel_auth.adapters.tables import metadata
from crossmodel_common.db import alembic_env

alembic_env(metadata)
