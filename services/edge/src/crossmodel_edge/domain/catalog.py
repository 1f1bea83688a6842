"""The model catalog as the edge caches it: what admission prices and /v1/models lists."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from crossmodel_common.money import Prices, format_micros


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str  # vendor/model
    vendor: str
    display_name: str
    context_window: int
    max_output_tokens: int
    capabilities: tuple[str, ...]
    prices: Prices
    created_unix: int


def model_allowed(model_id: str, patterns: Sequence[str]) -> bool:
    """A key's scope: glob patterns like `anthropic/*`; no patterns means every model."""
    return not patterns or any(fnmatch.fnmatchcase(model_id, p) for p in patterns)


def openai_model_object(m: ModelInfo) -> dict[str, Any]:
    """OpenAI's model object (`id`, `object`, `created`, `owned_by`) plus what a gateway's
    users need to choose a model; OpenAI clients ignore the extra fields."""
    p = m.prices
    return {
        "id": m.id,
        "object": "model",
        "created": m.created_unix,
        "owned_by": m.vendor,
        "display_name": m.display_name,
        "context_window": m.context_window,
        "max_output_tokens": m.max_output_tokens,
        "capabilities": list(m.capabilities),
        # Account currency per million tokens, as decimal strings (never floats).
        "pricing": {
            "input_per_mtok": format_micros(p.input_per_mtok_micros),
            "output_per_mtok": format_micros(p.output_per_mtok_micros),
            "cached_input_per_mtok": format_micros(p.cached_input_per_mtok_micros),
            "cache_write_per_mtok": format_micros(p.cache_write_per_mtok_micros),
        },
    }


class Catalog:
    """An immutable snapshot; the cache swaps whole snapshots."""

    __slots__ = ("__dict__", "models")

    def __init__(self, models: Iterable[ModelInfo]) -> None:
        self.models: Mapping[str, ModelInfo] = {m.id: m for m in models}

    def get(self, model_id: str) -> ModelInfo | None:
        return self.models.get(model_id)

    def __len__(self) -> int:
        return len(self.models)

    @cached_property
    def _objects(self) -> list[dict[str, Any]]:
        return [openai_model_object(m) for m in sorted(self.models.values(), key=lambda m: m.id)]

    @cached_property
    def openai_list_body(self) -> bytes:
        """The whole list, rendered once per snapshot: the common case of an unscoped key."""
        return orjson.dumps({"object": "list", "data": self._objects})

    def openai_list(self, allowed: Sequence[str]) -> bytes:
        if not allowed:
            return self.openai_list_body
        data = [o for o in self._objects if model_allowed(o["id"], allowed)]
        return orjson.dumps({"object": "list", "data": data})
