"""The model catalog as the edge caches it: what admission prices and /v1/models lists."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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


def anthropic_model_object(m: ModelInfo) -> dict[str, Any]:
    """Anthropic's model object (https://docs.anthropic.com/en/api/models): `created_at` is
    RFC 3339; `lifecycle` is required, and every model the catalog serves is `active`; the
    token limits are the catalog's (the context window as the input limit)."""
    created = datetime.fromtimestamp(m.created_unix, UTC).isoformat().replace("+00:00", "Z")
    return {
        "type": "model",
        "id": m.id,
        "display_name": m.display_name,
        "created_at": created,
        "lifecycle": "active",
        "max_input_tokens": m.context_window,
        "max_tokens": m.max_output_tokens,
    }


@dataclass(frozen=True, slots=True)
class Page:
    """Anthropic's list paging: `limit` items after `after_id` or before `before_id`."""

    limit: int = 20
    after_id: str | None = None
    before_id: str | None = None


def anthropic_page(objects: Sequence[dict[str, Any]], page: Page) -> dict[str, Any]:
    """Anthropic's list shape: `data`, `has_more`, `first_id`, `last_id`. Ids that are not in
    the list page from its start (or end), as a cursor past a removed model should."""
    ids = [o["id"] for o in objects]
    if page.before_id is not None:
        end = ids.index(page.before_id) if page.before_id in ids else len(ids)
        start = max(0, end - page.limit)
        has_more = start > 0
    else:
        start = ids.index(page.after_id) + 1 if page.after_id in ids else 0
        end = min(len(ids), start + page.limit)
        has_more = end < len(ids)
    data = list(objects[start:end])
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
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

    @cached_property
    def _anthropic_objects(self) -> list[dict[str, Any]]:
        return [anthropic_model_object(m) for m in sorted(self.models.values(), key=lambda m: m.id)]

    def anthropic_list(self, allowed: Sequence[str], page: Page) -> bytes:
        objects = self._anthropic_objects
        if allowed:
            objects = [o for o in objects if model_allowed(o["id"], allowed)]
        return orjson.dumps(anthropic_page(objects, page))

    def openai_list(self, allowed: Sequence[str]) -> bytes:
        if not allowed:
            return self.openai_list_body
        data = [o for o in self._objects if model_allowed(o["id"], allowed)]
        return orjson.dumps({"object": "list", "data": data})
