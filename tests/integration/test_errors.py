"""Errors in OpenAI's shape, with the right status, and x-request-id on every one of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from crossmodel_devstack.harness import AccountKey, Harness


def _chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


@dataclass(frozen=True)
class ErrorCase:
    name: str
    auth: str  # "key": the account's key; "bad": a well-formed unknown key; "": no header
    body: Callable[[str], dict[str, Any] | bytes]  # from the catalog model; bytes are sent as is
    status: int
    code: str | None = None


CASES = [
    ErrorCase("bad key", "bad", _chat, 401),
    ErrorCase("no key", "", _chat, 401),
    ErrorCase("unknown model", "key", lambda _: _chat("nope/not-a-model"), 404, "model_not_found"),
    ErrorCase("malformed JSON", "key", lambda _: b'{"model": "x", "messages": [', 400),
    ErrorCase("messages missing", "key", lambda m: {"model": m}, 400),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_error_status_body_and_request_id(
    harness: Harness, account: AccountKey, model: str, case: ErrorCase
) -> None:
    headers = {"content-type": "application/json"}
    if case.auth == "key":
        headers["authorization"] = f"Bearer {account.api_key}"
    elif case.auth == "bad":
        headers["authorization"] = "Bearer cm-" + "x" * 48
    body = case.body(model)
    async with httpx.AsyncClient(base_url=harness.edge_url, timeout=30) as http:
        if isinstance(body, bytes):
            resp = await http.post("/v1/chat/completions", content=body, headers=headers)
        else:
            resp = await http.post("/v1/chat/completions", json=body, headers=headers)
    assert resp.status_code == case.status, resp.text
    assert resp.headers.get("x-request-id", "").strip()
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    if case.code is not None:
        assert error["code"] == case.code


async def test_errors_surface_as_the_sdk_exceptions(
    harness: Harness, account: AccountKey, model: str
) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{harness.edge_url}/v1", api_key="cm-wrong", max_retries=0
    ) as bad:
        with pytest.raises(openai.AuthenticationError) as auth_err:
            await bad.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert auth_err.value.status_code == 401
    assert auth_err.value.response.headers["x-request-id"]
    async with openai.AsyncOpenAI(
        base_url=f"{harness.edge_url}/v1", api_key=account.api_key, max_retries=0
    ) as good:
        with pytest.raises(openai.NotFoundError) as not_found:
            await good.chat.completions.create(
                model="nope/not-a-model", messages=[{"role": "user", "content": "hi"}]
            )
    assert not_found.value.code == "model_not_found"
    assert not_found.value.response.headers["x-request-id"]
