"""An operator's day through the `crossmodel` command line against the whole system: create an
account, credit it, issue a key with limits; a request with that key succeeds through the OpenAI
SDK and shows up in the request log, the usage, the ledger and the balance."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from typing import Any

import openai
import pytest

from crossmodel_cli.__main__ import main
from crossmodel_devstack.harness import Harness, eventually


@pytest.fixture
def admin_env(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "CROSSMODEL_ADMIN_URL": harness.edge_url,
        "CROSSMODEL_ADMIN_TOKEN": harness.stack.config.admin_token,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


async def crossmodel(*argv: str) -> Any:
    """`crossmodel ARGS --json` in-process (in a thread: the CLI is synchronous)."""
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(main, [*argv, "--json"], out, err)
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


async def test_cli_account_credit_key_then_a_request_shows_up_in_usage(
    harness: Harness, admin_env: dict[str, str], model: str
) -> None:
    account = (await crossmodel("accounts", "create", "cli-operator"))["id"]
    credited = await crossmodel("credit", account, "5.00", "--idempotency-key", f"cli-it-{account}")
    assert credited["balance"] == "5.000000"
    replay = await crossmodel("credit", account, "5.00", "--idempotency-key", f"cli-it-{account}")
    assert replay["replayed"] is True
    assert replay["balance_micros"] == 5_000_000

    vendor = model.split("/", 1)[0]
    key = await crossmodel(
        "keys", "create", account, "it-key", "--rpm", "30", "--tpm", "200000", "--models", f"{vendor}/*"
    )
    assert key["limits"]["rpm"] == 30
    assert key["limits"]["allowed_models"] == [f"{vendor}/*"]

    async with openai.AsyncOpenAI(
        base_url=f"{harness.edge_url}/v1", api_key=key["secret"], max_retries=0, timeout=30
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Hello from the CLI test"}], max_tokens=50
        )
        completion = raw.parse()
        request_id = raw.headers["x-request-id"]
        assert completion.choices[0].message.content
        assert raw.headers["x-ratelimit-limit-requests"] == "30"
        # The key's model pattern is enforced.
        other = next(m for m in await harness.models() if not m.startswith(f"{vendor}/"))
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model=other, messages=[{"role": "user", "content": "hi"}])

    async def logged() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await crossmodel("requests", account, "--request-id", request_id))[
            "data"
        ]
        return found

    found = (await eventually(logged, timeout=60, what="the request in `crossmodel requests`"))[0]
    assert found["status"] == "succeeded"
    assert found["key_id"] == key["id"]
    assert found["model"] == model
    assert found["input_tokens"] == completion.usage.prompt_tokens  # type: ignore[union-attr]
    assert found["output_tokens"] == completion.usage.completion_tokens  # type: ignore[union-attr]
    assert found["cost_micros"] > 0

    usage = await crossmodel("usage", account, "--key", key["id"])
    assert usage["totals"]["requests"] >= 1
    assert any(d["model"] == model and d["key_id"] == key["id"] for d in usage["daily"])

    async def charged() -> bool:
        balance = await crossmodel("balance", account)
        return bool(balance["balance_micros"] == 5_000_000 - found["cost_micros"])

    await eventually(charged, timeout=60, what="the charge in `crossmodel balance`")
    ledger = (await crossmodel("ledger", account))["data"]
    assert [e["request_id"] for e in ledger if e["kind"] == "charge"] == [request_id]

    async def last_used() -> bool:
        keys = await crossmodel("keys", "list", account)
        return keys[0]["last_used_at"] is not None

    await eventually(last_used, timeout=30, what="the key's last use in `crossmodel keys list`")

    # The installed command as a process: the export carries the request.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crossmodel_cli",
        "export",
        account,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    assert request_id in {r["request_id"] for r in rows}

    revoked = await crossmodel("keys", "revoke", key["id"])
    assert revoked["status"] == "revoked"
    async with openai.AsyncOpenAI(
        base_url=f"{harness.edge_url}/v1", api_key=key["secret"], max_retries=0, timeout=30
    ) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
