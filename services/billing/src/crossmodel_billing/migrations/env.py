"""Alembic environment of the billing database, run by `python -m crossmodel_billing migrate`."""

from __future__ import annotations

from crossmodel_billing.adapters.tables import metadata
from crossmodel_common.db import alembic_env

alembic_env(metadata)
