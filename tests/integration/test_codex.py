"""Codex CLI's tool loop through the `openai` SDK's Responses client: its freeform `apply_patch`
tool is a `custom` tool, whose call is a `custom_tool_call` item (not a function call), answered
by a `custom_tool_call_output` in the next, stateless (`store: false`) turn. On an OpenAI model
the items reach the client and go back to OpenAI as OpenAI sent them; on another vendor's model
the history goes without them (docs/protocols.md, "What only one vendor serves")."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from crossmodel_devstack.harness import Harness

APPLY_PATCH: Any = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use the `apply_patch` tool to edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch\n"},
}


@pytest.fixture(scope="module")
async def clients(harness: Harness) -> AsyncIterator[tuple[openai.AsyncOpenAI, httpx.AsyncClient]]:
    account = await harness.new_account("it-codex", credit_micros=50_000_000)
    async with (
        openai.AsyncOpenAI(
            base_url=f"{harness.edge_url}/v1", api_key=account.api_key, max_retries=0, timeout=30
        ) as oa,
        httpx.AsyncClient(base_url=harness.stack.simulator_url, timeout=10) as sim,
    ):
        yield oa, sim


async def sent(sim: httpx.AsyncClient, marker: str) -> dict[str, Any]:
    found = (await sim.get("/_sim/requests", params={"contains": marker})).json()
    assert len(found) == 1, found
    body: dict[str, Any] = found[0]["body"]
    return body


async def test_an_apply_patch_turn_and_the_next_turn(
    clients: tuple[openai.AsyncOpenAI, httpx.AsyncClient],
) -> None:
    oa, sim = clients
    tag = "t" + secrets.token_hex(5)
    prompt = f"turn debug off {tag} [sim:tool=apply_patch]"
    async with oa.responses.stream(
        model="openai/gpt-4.1", input=prompt, tools=[APPLY_PATCH], store=False
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.custom_tool_call_input.delta"]
        final = await stream.get_final_response()
    call = final.output[-1]
    assert call.type == "custom_tool_call"
    assert call.name == "apply_patch"
    assert call.input == "".join(deltas)
    assert call.input  # the simulator's call text

    # The next turn: the whole conversation again, the call and its output included.
    history: list[Any] = [
        {"role": "user", "content": prompt},
        *[o.model_dump(exclude_none=True) for o in final.output],
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"},
        {"role": "user", "content": f"and now? {tag}b"},
    ]
    resp = await oa.responses.create(model="openai/gpt-4.1", input=history, tools=[APPLY_PATCH], store=False)
    assert resp.output_text == f"You said: and now? {tag}b"
    upstream = await sent(sim, f"{tag}b")
    kinds = [i.get("type", "message") for i in upstream["input"]]
    assert kinds == ["message", "message", "custom_tool_call", "custom_tool_call_output", "message"]
    assert upstream["input"][2]["input"] == call.input

    # Asked of Claude (without the tool, which only OpenAI serves), the history goes without them.
    resp = await oa.responses.create(
        model="anthropic/claude-sonnet-4.6",
        input=[*history[:-1], {"role": "user", "content": f"and now? {tag}c"}],
    )
    assert resp.output_text == f"You said: and now? {tag}c"
    claude = await sent(sim, f"{tag}c")
    assert "custom_tool_call" not in str(claude)
    assert all(m["content"] for m in claude["messages"])
