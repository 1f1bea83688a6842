"""Templates (Jinja2, autoescaped) and the console's static files, read once at import and
served with a content hash in their URL so browsers cache them for good."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from crossmodel_edge.console import forms

_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    version: str


def _load_assets() -> dict[str, Asset]:
    out: dict[str, Asset] = {}
    for entry in resources.files("crossmodel_edge.console").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in _TYPES:
            body = entry.read_bytes()
            out[entry.name] = Asset(body, _TYPES[suffix], hashlib.sha256(body).hexdigest()[:12])
    return out


ASSETS = _load_assets()


def asset_url(name: str) -> str:
    return f"/console/static/{name}?v={ASSETS[name].version}"


env = Environment(
    loader=PackageLoader("crossmodel_edge.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals.update(asset_url=asset_url)
env.filters.update(money=forms.money, number=forms.number, when=forms.when)


def render(template: str, **context: Any) -> str:
    return env.get_template(template).render(**context)
