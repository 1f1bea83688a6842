"""Model objects and lists in Anthropic's shapes (GET /v1/models with anthropic-version)."""

from __future__ import annotations

import orjson

from crossmodel_common.money import Prices
from crossmodel_edge.domain.catalog import Catalog, ModelInfo, Page, anthropic_model_object


def _model(model_id: str, created: int = 1_771_286_400) -> ModelInfo:
    return ModelInfo(
        id=model_id,
        vendor=model_id.split("/")[0],
        display_name=model_id.upper(),
        context_window=1000,
        max_output_tokens=100,
        capabilities=(),
        prices=Prices(1, 2),
        created_unix=created,
    )


CATALOG = Catalog(_model(f"v{i}/m") for i in range(5))


def test_anthropic_model_object() -> None:
    assert anthropic_model_object(_model("anthropic/claude-sonnet-4.6")) == {
        "type": "model",
        "id": "anthropic/claude-sonnet-4.6",
        "display_name": "ANTHROPIC/CLAUDE-SONNET-4.6",
        "created_at": "2026-02-17T00:00:00Z",
        "lifecycle": "active",
        "max_input_tokens": 1000,
        "max_tokens": 100,
    }


def _ids(body: bytes) -> tuple[list[str], bool, str | None, str | None]:
    page = orjson.loads(body)
    return [m["id"] for m in page["data"]], page["has_more"], page["first_id"], page["last_id"]


def test_anthropic_list_pages_forward_and_back() -> None:
    assert _ids(CATALOG.anthropic_list([], Page())) == (
        ["v0/m", "v1/m", "v2/m", "v3/m", "v4/m"],
        False,
        "v0/m",
        "v4/m",
    )
    assert _ids(CATALOG.anthropic_list([], Page(limit=2))) == (["v0/m", "v1/m"], True, "v0/m", "v1/m")
    assert _ids(CATALOG.anthropic_list([], Page(limit=2, after_id="v1/m"))) == (
        ["v2/m", "v3/m"],
        True,
        "v2/m",
        "v3/m",
    )
    assert _ids(CATALOG.anthropic_list([], Page(limit=2, after_id="v3/m"))) == (
        ["v4/m"],
        False,
        "v4/m",
        "v4/m",
    )
    assert _ids(CATALOG.anthropic_list([], Page(limit=2, before_id="v2/m"))) == (
        ["v0/m", "v1/m"],
        False,
        "v0/m",
        "v1/m",
    )
    assert _ids(CATALOG.anthropic_list([], Page(limit=1, before_id="v2/m"))) == (
        ["v1/m"],
        True,
        "v1/m",
        "v1/m",
    )


def test_anthropic_list_is_scoped_to_the_key() -> None:
    assert _ids(CATALOG.anthropic_list(["v1/*", "v3/*"], Page())) == (["v1/m", "v3/m"], False, "v1/m", "v3/m")
    assert _ids(CATALOG.anthropic_list(["nope/*"], Page())) == ([], False, None, None)
