"""The model catalog: public `vendor/model` ids -> deployments (provider + upstream model), with
prices, limits and capabilities. Built from the parsed YAML and the environment (per-provider
base URL and API key overrides); see docs/catalog.md."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crossmodel_common.money import Prices


class CatalogError(ValueError):
    """The catalog file is wrong; the message names the entry and field."""


class ProviderType(enum.StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    DEEPSEEK = "deepseek"
    OPENAI_COMPATIBLE = "openai-compatible"


# The vendors' public API roots, in the form their official SDKs take as base URL.
DEFAULT_BASE_URLS: dict[ProviderType, str] = {
    ProviderType.OPENAI: "https://api.openai.com/v1",
    ProviderType.ANTHROPIC: "https://api.anthropic.com",
    ProviderType.GEMINI: "https://generativelanguage.googleapis.com",
    ProviderType.DEEPSEEK: "https://api.deepseek.com",
}

KNOWN_CAPABILITIES = frozenset(
    {
        "streaming",
        "tools",
        "parallel_tool_calls",
        "vision",
        "pdf",
        "json_mode",
        "structured_outputs",
        "reasoning",
        "prompt_caching",
    }
)


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    type: ProviderType
    base_url: str
    api_key: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str  # "<provider>/<upstream model>", unique in the catalog
    provider: Provider
    upstream_model: str


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: str
    vendor: str
    display_name: str
    context_window: int
    max_output_tokens: int
    capabilities: tuple[str, ...]
    prices: Prices
    created_unix: int
    deployments: tuple[Deployment, ...]


@dataclass(frozen=True, slots=True)
class Catalog:
    providers: Mapping[str, Provider]
    models: Mapping[str, ModelEntry]

    def get(self, model_id: str) -> ModelEntry | None:
        return self.models.get(model_id)


def env_name(provider: str) -> str:
    """`my-vendor` -> `MY_VENDOR`, the part of CROSSMODEL_ROUTER_PROVIDER_<NAME>_*."""
    return re.sub(r"[^A-Za-z0-9]", "_", provider).upper()


def _int(raw: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise CatalogError(f"{where}: expected an integer >= {minimum}, got {raw!r}")
    return raw


def _str(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise CatalogError(f"{where}: expected a non-empty string, got {raw!r}")
    return raw


def _providers(raw: Any, env: Mapping[str, str], prefix: str) -> dict[str, Provider]:
    if not isinstance(raw, dict) or not raw:
        raise CatalogError("providers: expected a mapping of provider name -> settings")
    out: dict[str, Provider] = {}
    for name, spec in raw.items():
        where = f"providers.{name}"
        if not isinstance(spec, dict):
            raise CatalogError(f"{where}: expected a mapping")
        try:
            ptype = ProviderType(str(spec.get("type")))
        except ValueError:
            allowed = ", ".join(t.value for t in ProviderType)
            raise CatalogError(f"{where}.type: expected one of {allowed}, got {spec.get('type')!r}") from None
        key = f"{prefix}PROVIDER_{env_name(str(name))}_"
        base_url = env.get(key + "BASE_URL") or spec.get("base_url") or DEFAULT_BASE_URLS.get(ptype)
        if not base_url:
            raise CatalogError(f"{where}.base_url: required for type {ptype.value} (or set {key}BASE_URL)")
        out[str(name)] = Provider(
            name=str(name),
            type=ptype,
            base_url=_str(base_url, f"{where}.base_url").rstrip("/"),
            api_key=env.get(key + "API_KEY", ""),
        )
    return out


def _prices(raw: Any, where: str) -> Prices:
    if not isinstance(raw, dict):
        raise CatalogError(
            f"{where}: expected a mapping with input/output prices in micro-units per million tokens"
        )
    unknown = set(raw) - {"input", "output", "cached_input", "cache_write", "reasoning"}
    if unknown:
        raise CatalogError(f"{where}: unknown price field(s) {sorted(unknown)}")
    return Prices(
        input_per_mtok_micros=_int(raw.get("input"), f"{where}.input"),
        output_per_mtok_micros=_int(raw.get("output"), f"{where}.output"),
        cached_input_per_mtok_micros=_int(raw.get("cached_input", 0), f"{where}.cached_input"),
        cache_write_per_mtok_micros=_int(raw.get("cache_write", 0), f"{where}.cache_write"),
        reasoning_per_mtok_micros=_int(raw.get("reasoning", 0), f"{where}.reasoning"),
    )


def parse_catalog(data: Any, env: Mapping[str, str], *, prefix: str = "CROSSMODEL_ROUTER_") -> Catalog:
    """Validate the parsed YAML and apply the environment's provider overrides."""
    if not isinstance(data, dict):
        raise CatalogError("catalog: expected a mapping with `providers` and `models`")
    providers = _providers(data.get("providers"), env, prefix)
    raw_models = data.get("models")
    if not isinstance(raw_models, dict) or not raw_models:
        raise CatalogError("models: expected a mapping of `vendor/model` -> entry")
    models: dict[str, ModelEntry] = {}
    for model_id, spec in raw_models.items():
        where = f"models.{model_id}"
        vendor, sep, name = str(model_id).partition("/")
        if not sep or not vendor or not name:
            raise CatalogError(f"{where}: model ids are `vendor/model`")
        if not isinstance(spec, dict):
            raise CatalogError(f"{where}: expected a mapping")
        caps = spec.get("capabilities", [])
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise CatalogError(f"{where}.capabilities: expected a list of strings")
        unknown_caps = set(caps) - KNOWN_CAPABILITIES
        if unknown_caps:
            raise CatalogError(f"{where}.capabilities: unknown {sorted(unknown_caps)}")
        raw_deps = spec.get("deployments")
        if not isinstance(raw_deps, list) or not raw_deps:
            raise CatalogError(f"{where}.deployments: expected a non-empty list")
        deployments: list[Deployment] = []
        for i, dep in enumerate(raw_deps):
            dwhere = f"{where}.deployments[{i}]"
            if not isinstance(dep, dict):
                raise CatalogError(f"{dwhere}: expected a mapping with `provider` and `model`")
            pname = _str(dep.get("provider"), f"{dwhere}.provider")
            if pname not in providers:
                raise CatalogError(f"{dwhere}.provider: unknown provider {pname!r}")
            upstream = _str(dep.get("model"), f"{dwhere}.model")
            deployments.append(Deployment(f"{pname}/{upstream}", providers[pname], upstream))
        models[str(model_id)] = ModelEntry(
            id=str(model_id),
            vendor=vendor,
            display_name=str(spec.get("display_name") or name),
            context_window=_int(spec.get("context_window"), f"{where}.context_window", minimum=1),
            max_output_tokens=_int(spec.get("max_output_tokens"), f"{where}.max_output_tokens", minimum=1),
            capabilities=tuple(caps),
            prices=_prices(spec.get("price"), f"{where}.price"),
            created_unix=_int(spec.get("created", 0), f"{where}.created"),
            deployments=tuple(deployments),
        )
    return Catalog(providers, models)
