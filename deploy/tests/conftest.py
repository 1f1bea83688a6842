"""Shared fixtures of the deployment tests: chart renders (offline, through the Helm library),
the parsed manifests, and the repository paths. `python -m pytest deploy --update-golden`
rewrites the golden renders under deploy/tests/golden/ instead of comparing against them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "crossmodel"
DEVINFRA_CHART = REPO / "deploy" / "helm" / "crossmodel-devinfra"
RELEASE = "crossmodel"
NAMESPACE = "crossmodel"
DEVINFRA_RELEASE = "crossmodel-infra"

# The variants every test sees: name -> (chart, values file or None for the chart's defaults).
VARIANTS: dict[str, tuple[Path, Path | None]] = {
    "default": (CHART, None),
    "full": (CHART, CHART / "ci" / "full-values.yaml"),
    "minimal": (CHART, CHART / "ci" / "minimal-values.yaml"),
    "dev": (CHART, REPO / "deploy" / "helm" / "values-dev.yaml"),
    "devinfra": (DEVINFRA_CHART, None),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    # Another conftest in the same run may register the same flag.
    with contextlib.suppress(ValueError):
        parser.addoption(
            "--update-golden",
            action="store_true",
            default=False,
            help="rewrite golden files instead of comparing against them",
        )


@dataclass(frozen=True)
class Render:
    """One rendered release: template path -> text, and every manifest parsed."""

    templates: dict[str, str]
    docs: list[dict[str, Any]]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def manifests_text(self) -> str:
        """The manifests as `helm template` prints them (NOTES.txt excluded), in template order."""
        parts = []
        for path in sorted(self.templates):
            text = self.templates[path]
            if path.endswith("NOTES.txt") or not text.strip():
                continue
            parts.append(f"# Source: {path}\n{text.strip()}\n")
        return "---\n".join(parts)


def load_values(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def render_chart(chart: Path, values: dict[str, Any], *, release: str = RELEASE) -> Render:
    templates = helm_python.Chart.load(str(chart)).render(
        values, name=release, namespace=NAMESPACE, is_install=True
    )
    docs: list[dict[str, Any]] = []
    for path in sorted(templates):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(templates[path]) if d)
    return Render(templates, docs)


@pytest.fixture(scope="session")
def render() -> Callable[..., Render]:
    """Render any values against the main chart (for one-off checks)."""

    def _render(values: dict[str, Any] | None = None, **kwargs: Any) -> Render:
        return render_chart(CHART, values or {}, **kwargs)

    return _render


@pytest.fixture(scope="session")
def renders() -> dict[str, Render]:
    out = {}
    for name, (chart, values_file) in VARIANTS.items():
        release = DEVINFRA_RELEASE if chart == DEVINFRA_CHART else RELEASE
        out[name] = render_chart(chart, load_values(values_file), release=release)
    return out


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (path, value) of a nested dict/list structure."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, (*path, str(i)))
