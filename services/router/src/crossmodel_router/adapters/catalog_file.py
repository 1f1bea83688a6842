"""Reads the catalog YAML: the file named by CROSSMODEL_ROUTER_CATALOG, else the packaged one."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import yaml

from crossmodel_router.domain.catalog import Catalog, CatalogError, parse_catalog

PACKAGED = "catalog.yaml"


def read_catalog_text(path: str) -> str:
    if path:
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise CatalogError(f"cannot read the catalog {path}: {e.strerror}") from None
    return (resources.files("crossmodel_router") / PACKAGED).read_text(encoding="utf-8")


def load_catalog(path: str, env: Mapping[str, str]) -> Catalog:
    text = read_catalog_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CatalogError(f"catalog {path or PACKAGED} is not valid YAML: {e}") from None
    return parse_catalog(data, env)
