from __future__ import annotations

from typing import Any

import pytest

from crossmodel_router.adapters.catalog_file import load_catalog
from crossmodel_router.domain.catalog import CatalogError, ProviderType, env_name, parse_catalog

SHIPPED = [
    "openai/gpt-4o-mini",
    "openai/gpt-4.1",
    "anthropic/claude-sonnet-4.6",
    "anthropic/claude-haiku-4.5",
    "deepseek/deepseek-v4-pro",
    "deepseek/deepseek-chat",
    "google/gemini-2.5-flash",
    "google/gemini-2.5-pro",
    "xai/grok-4",
    "mistral/mistral-large",
]


def test_packaged_catalog_ships_the_documented_models() -> None:
    catalog = load_catalog("", {})
    for model_id in SHIPPED:
        entry = catalog.get(model_id)
        assert entry is not None, model_id
        assert entry.prices.input_per_mtok_micros > 0
        assert entry.prices.output_per_mtok_micros >= entry.prices.input_per_mtok_micros
        assert entry.context_window >= entry.max_output_tokens
        assert "streaming" in entry.capabilities
        assert entry.deployments
    assert catalog.providers["openai"].base_url == "https://api.openai.com/v1"
    assert catalog.providers["xai"].type is ProviderType.OPENAI_COMPATIBLE


def test_environment_overrides_base_url_and_key() -> None:
    env = {
        "CROSSMODEL_ROUTER_PROVIDER_OPENAI_BASE_URL": "http://127.0.0.1:9100/openai/v1/",
        "CROSSMODEL_ROUTER_PROVIDER_OPENAI_API_KEY": "sk-abc",
    }
    catalog = load_catalog("", env)
    openai = catalog.providers["openai"]
    assert openai.base_url == "http://127.0.0.1:9100/openai/v1"
    assert openai.api_key == "sk-abc"
    assert "sk-abc" not in repr(openai)
    assert catalog.get("openai/gpt-4o-mini").deployments[0].provider is openai  # type: ignore[union-attr]
    assert env_name("my-vendor.eu") == "MY_VENDOR_EU"


def _catalog(**model: Any) -> dict[str, Any]:
    entry = {
        "context_window": 1000,
        "max_output_tokens": 100,
        "price": {"input": 1, "output": 2},
        "deployments": [{"provider": "p", "model": "up"}],
    }
    entry.update(model)
    return {
        "providers": {"p": {"type": "openai-compatible", "base_url": "http://x"}},
        "models": {"v/m": entry},
    }


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        ({"price": {"input": 1}}, "models.v/m.price.output"),
        ({"price": {"input": 1, "output": 2, "bogus": 3}}, "unknown price field"),
        ({"deployments": []}, "models.v/m.deployments"),
        ({"deployments": [{"provider": "nope", "model": "x"}]}, "unknown provider 'nope'"),
        ({"capabilities": ["telepathy"]}, "models.v/m.capabilities"),
        ({"context_window": 0}, "models.v/m.context_window"),
    ],
)
def test_bad_catalogs_name_the_field(mutate: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CatalogError) as err:
        parse_catalog(_catalog(**mutate), {})
    assert fragment in str(err.value)


def test_unknown_provider_type_and_missing_base_url() -> None:
    with pytest.raises(CatalogError, match=r"providers\.p\.type"):
        parse_catalog({"providers": {"p": {"type": "carrier-pigeon"}}, "models": {}}, {})
    with pytest.raises(CatalogError, match=r"providers\.p\.base_url"):
        parse_catalog({"providers": {"p": {"type": "openai-compatible"}}, "models": {}}, {})
