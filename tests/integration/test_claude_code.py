"""The requests Claude Code sends, through the `anthropic` SDK's beta client (which adds
`?beta=true` and the `anthropic-beta` header, as Claude Code does), against Claude itself and
against models of other vendors: system blocks with `cache_control`, a long list of tools with
draft-07 JSON Schemas, thinking with a large budget, streaming, `metadata.user_id`, a tool loop
with `tool_result` blocks, and `count_tokens`.

Expectations follow the simulator's documented rule (docs/protocols.md)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest

from crossmodel_devstack.harness import Harness
from crossmodel_simulator.anthropic import expected_message

MODELS = ["anthropic/claude-sonnet-4.6", "openai/gpt-4.1", "deepseek/deepseek-v4-pro"]
BETAS = ["claude-code-20250219", "interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"]
CLAUDE_CODE_HEADERS = {"x-app": "cli", "anthropic-dangerous-direct-browser-access": "true"}
EPHEMERAL = {"type": "ephemeral"}
THINKING: Any = {"type": "enabled", "budget_tokens": 31999}
SYSTEM: Any = [
    {
        "type": "text",
        "text": "You are Claude Code, Anthropic's official CLI for Claude.",
        "cache_control": EPHEMERAL,
    },
    {
        "type": "text",
        "text": "You are an interactive CLI tool that helps users with software engineering tasks. "
        "Use the instructions below and the tools available to you to assist the user. " * 20,
        "cache_control": EPHEMERAL,
    },
]


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    }


S = {"type": "string"}
N = {"type": "number"}
B = {"type": "boolean"}
TOOLS: Any = [
    {
        "name": "Task",
        "description": "Launch a new agent",
        "input_schema": _schema(
            {"description": S, "prompt": S, "subagent_type": S}, ["description", "prompt", "subagent_type"]
        ),
    },
    {
        "name": "Bash",
        "description": "Run a shell command",
        "input_schema": _schema(
            {"command": S, "timeout": N, "description": S, "run_in_background": B}, ["command"]
        ),
    },
    {
        "name": "Glob",
        "description": "Find files by pattern",
        "input_schema": _schema({"pattern": S, "path": S}, ["pattern"]),
    },
    {
        "name": "Grep",
        "description": "Search file contents",
        "input_schema": _schema(
            {
                "pattern": S,
                "path": S,
                "glob": S,
                "output_mode": {"type": "string", "enum": ["content", "files_with_matches", "count"]},
                "-n": B,
                "-i": B,
            },
            ["pattern"],
        ),
    },
    {
        "name": "Read",
        "description": "Read a file",
        "input_schema": _schema({"file_path": S, "offset": N, "limit": N}, ["file_path"]),
    },
    {
        "name": "Edit",
        "description": "Replace text in a file",
        "input_schema": _schema(
            {
                "file_path": S,
                "old_string": S,
                "new_string": S,
                "replace_all": {"type": "boolean", "default": False},
            },
            ["file_path", "old_string", "new_string"],
        ),
    },
    {
        "name": "MultiEdit",
        "description": "Several edits to one file",
        "input_schema": _schema(
            {
                "file_path": S,
                "edits": {
                    "type": "array",
                    "minItems": 1,
                    "items": _schema({"old_string": S, "new_string": S}, ["old_string", "new_string"]),
                },
            },
            ["file_path", "edits"],
        ),
    },
    {
        "name": "Write",
        "description": "Write a file",
        "input_schema": _schema({"file_path": S, "content": S}, ["file_path", "content"]),
    },
    {
        "name": "NotebookEdit",
        "description": "Edit a notebook cell",
        "input_schema": _schema(
            {
                "notebook_path": S,
                "cell_id": S,
                "new_source": S,
                "edit_mode": {"type": "string", "enum": ["replace", "insert", "delete"]},
            },
            ["notebook_path", "new_source"],
        ),
    },
    {
        "name": "WebFetch",
        "description": "Fetch a URL",
        "input_schema": _schema({"url": {"type": "string", "format": "uri"}, "prompt": S}, ["url", "prompt"]),
    },
    {
        "name": "TodoWrite",
        "description": "Update the todo list",
        "input_schema": _schema(
            {
                "todos": {
                    "type": "array",
                    "items": _schema(
                        {
                            "content": S,
                            "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                            "activeForm": S,
                        },
                        ["content", "status", "activeForm"],
                    ),
                }
            },
            ["todos"],
        ),
    },
    {
        "name": "WebSearch",
        "description": "Search the web",
        "input_schema": _schema(
            {"query": {"type": "string", "minLength": 2}, "allowed_domains": {"type": "array", "items": S}},
            ["query"],
        ),
    },
    {
        "name": "BashOutput",
        "description": "Output of a background shell",
        "input_schema": _schema({"bash_id": S, "filter": S}, ["bash_id"]),
    },
    {
        "name": "KillShell",
        "description": "Kill a background shell",
        "input_schema": _schema({"shell_id": S}, ["shell_id"]),
    },
    {
        "name": "ExitPlanMode",
        "description": "Leave plan mode",
        "input_schema": _schema({"plan": S}, ["plan"]),
    },
    {
        "name": "SlashCommand",
        "description": "Run a slash command",
        "input_schema": _schema({"command": S}, ["command"]),
        "cache_control": EPHEMERAL,
    },
]


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
async def client(harness: Harness) -> AsyncIterator[anthropic.AsyncAnthropic]:
    key = (await harness.new_account("it-claude-code", credit_micros=100_000_000)).api_key
    # Claude Code authenticates with ANTHROPIC_AUTH_TOKEN (a bearer token) or ANTHROPIC_API_KEY.
    async with anthropic.AsyncAnthropic(
        base_url=harness.edge_url,
        auth_token=key,
        max_retries=0,
        timeout=30,
        default_headers=CLAUDE_CODE_HEADERS,
        # Claude Code calls /v1/messages?beta=true (and count_tokens likewise).
        default_query={"beta": "true"},
    ) as c:
        yield c


async def upstream(harness: Harness, marker: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=harness.stack.simulator_url, timeout=10) as sim:
        found = (await sim.get("/_sim/requests", params={"contains": marker})).json()
    assert len(found) == 1, found
    sent: dict[str, Any] = found[0]
    return sent


def user_id() -> str:
    return f"user_{secrets.token_hex(32)}_account__session_{secrets.token_hex(16)}"


@pytest.mark.parametrize("model", MODELS)
async def test_a_claude_code_turn(harness: Harness, client: anthropic.AsyncAnthropic, model: str) -> None:
    marker = "m" + secrets.token_hex(5)
    grep = '[sim:tool=Grep:{"pattern":"def test_","-n":true}]'
    prompt = f"Find the failing test and fix it {marker} [sim:thinking] {grep}"
    messages: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": prompt, "cache_control": EPHEMERAL}]},
    ]
    uid = user_id()
    async with client.beta.messages.stream(
        model=model,
        max_tokens=32000,
        system=SYSTEM,
        tools=TOOLS,
        messages=messages,
        thinking=THINKING,
        metadata={"user_id": uid},
        betas=BETAS,
        extra_body={"temperature": 1},
    ) as stream:
        json_pieces = [ev.partial_json async for ev in stream if ev.type == "input_json"]
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    kinds = [b.type for b in final.content]
    assert kinds[-2:] == ["text", "tool_use"]
    thinking = "".join(b.thinking for b in final.content if b.type == "thinking")
    expected_thinking = f"Thinking about: Find the failing test and fix it {marker}"
    assert thinking == ("" if model.startswith("openai/") else expected_thinking)
    text = next(b for b in final.content if b.type == "text")
    assert text.text == f"You said: Find the failing test and fix it {marker}"
    call = final.content[-1]
    assert call.type == "tool_use"
    assert (call.name, call.input) == ("Grep", {"pattern": "def test_", "-n": True})
    assert json.loads("".join(json_pieces)) == call.input
    assert final.usage.output_tokens > 0

    sent = await upstream(harness, marker)
    body = sent["body"]
    if model.startswith("anthropic/"):
        assert sent["path"] == "/anthropic/v1/messages"
        # Claude gets the request as Claude Code sent it: betas, cache breakpoints, tools, user.
        assert set(sent["headers"]["anthropic-beta"].split(",")) == set(BETAS)
        assert body["system"] == SYSTEM
        assert body["tools"] == TOOLS
        assert body["messages"][0]["content"][0]["cache_control"] == EPHEMERAL
        assert body["thinking"] == {"type": "enabled", "budget_tokens": 31999}
        assert body["metadata"] == {"user_id": uid}
    else:
        # Other vendors get every tool, with its schema, in their own shape.
        assert [t["function"]["name"] for t in body["tools"]] == [t["name"] for t in TOOLS]
        assert body["tools"][3]["function"]["parameters"] == TOOLS[3]["input_schema"]
        assert body["messages"][0]["role"] == "system"
        assert "cache_control" not in json.dumps(body)

    # The tool loop: the result goes back with Claude Code's shapes (list content, cache_control).
    follow = f"Tests pass now {marker}x"
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": [{"type": "text", "text": "tests/test_app.py:12:def test_home():"}],
                },
                {"type": "text", "text": follow, "cache_control": EPHEMERAL},
            ],
        },
    ]
    second = await client.beta.messages.create(
        model=model,
        max_tokens=32000,
        system=SYSTEM,
        tools=TOOLS,
        messages=messages,
        thinking=THINKING,
        metadata={"user_id": uid},
        betas=BETAS,
    )
    assert second.stop_reason == "end_turn"
    assert second.content[-1].type == "text"
    assert second.content[-1].text == f"You said: {follow}"
    if model.startswith("anthropic/"):
        back = (await upstream(harness, follow))["body"]["messages"]
        assert [m["role"] for m in back] == ["user", "assistant", "user"]
        assert back[1]["content"][0]["signature"] == final.content[0].signature  # type: ignore[union-attr]
        assert back[2]["content"][0]["tool_use_id"] == call.id


@pytest.mark.parametrize("model", MODELS)
async def test_count_tokens_and_the_small_fast_model_call(
    client: anthropic.AsyncAnthropic, model: str
) -> None:
    counted = await client.beta.messages.count_tokens(
        model=model,
        system=SYSTEM,
        tools=TOOLS,
        messages=[{"role": "user", "content": "hello"}],
        betas=BETAS,
    )
    assert counted.input_tokens > sum(len(b["text"]) for b in SYSTEM) // 4
    # Claude Code's quick side requests (titles, topic checks): small, plain, not streamed.
    prompt = "Summarize this coding conversation in under 50 characters"
    brief: Any = [{"type": "text", "text": "Summarize in a few words."}]
    quick = await client.beta.messages.create(
        model=model,
        max_tokens=512,
        system=brief,
        messages=[{"role": "user", "content": prompt}],
        betas=BETAS,
    )
    assert quick.content[0].type == "text"
    assert quick.content[0].text == f"You said: {prompt}"
    assert quick.usage.output_tokens == words(f"You said: {prompt}")


PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.mark.parametrize("model", MODELS)
async def test_a_screenshot_in_a_tool_result(
    harness: Harness, client: anthropic.AsyncAnthropic, model: str
) -> None:
    # Claude Code's Read tool returns images as tool_result content; OpenAI's tool message takes
    # text only, so the image follows the tool messages in a user message there.
    marker = "m" + secrets.token_hex(5)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
    messages: Any = [
        {"role": "user", "content": "Look at the screenshot"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/tmp/s.png"}},
                {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"file_path": "/tmp/t.png"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [image]},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "File does not exist.",
                    "is_error": True,
                },
                {"type": "text", "text": f"What do you see? {marker}"},
            ],
        },
    ]
    if model == "deepseek/deepseek-v4-pro":
        # DeepSeek's models take no images (no `vision` in the catalog): a 400 naming the image.
        with pytest.raises(anthropic.BadRequestError) as err:
            await client.beta.messages.create(
                model=model, max_tokens=1024, tools=TOOLS, messages=messages, betas=BETAS
            )
        assert "messages[2].content[0].content[0]" in err.value.message
        return
    reply = await client.beta.messages.create(
        model=model,
        max_tokens=1024,
        tools=TOOLS,
        messages=messages,
        metadata={"user_id": user_id()},
        betas=BETAS,
    )
    assert reply.content[-1].type == "text"
    assert reply.content[-1].text == f"You said: What do you see? {marker}"
    sent = (await upstream(harness, marker))["body"]["messages"]
    if model.startswith("openai/"):
        assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user", "user"]
        assert all(isinstance(m["content"], str) for m in sent[2:4])
        assert sent[3]["content"] == "Error: File does not exist."
        assert sent[4]["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG_B64}"


# Claude Code's WebSearch tool is Anthropic's server-side web search.
WEB_SEARCH: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_a_web_search_turn_and_the_next_turn(
    harness: Harness, client: anthropic.AsyncAnthropic, stream: bool
) -> None:
    """Claude's server tool blocks reach the client as Claude sent them (with the citation,
    `usage.server_tool_use` and `pause_turn`), and the next turn, which carries them in its
    history, reaches Claude with them unchanged, and GPT without them."""
    marker = "w" + secrets.token_hex(5)
    messages: list[Any] = [
        {"role": "user", "content": f"Latest news {marker} [sim:web_search] [sim:pause_turn]"}
    ]
    create: Any = {"model": "anthropic/claude-sonnet-4.6", "max_tokens": 1024, "tools": [WEB_SEARCH]}
    if stream:
        async with client.messages.stream(**create, messages=messages) as s:
            first = await s.get_final_message()
    else:
        first = await client.messages.create(**create, messages=messages)
    sent = (await upstream(harness, marker))["body"]
    assert sent["tools"] == [WEB_SEARCH]
    exp = expected_message(sent)
    blocks = [b.model_dump(exclude_none=True) for b in first.content]
    cited = {"type": "text", "text": f"You said: Latest news {marker}", "citations": [exp.citation]}
    assert blocks == [exp.server_tool_use, exp.web_search_result, cited]
    assert first.stop_reason == "pause_turn"
    assert first.usage.server_tool_use is not None
    assert first.usage.server_tool_use.web_search_requests == 1

    messages += [{"role": "assistant", "content": blocks}]
    for model in ("anthropic/claude-sonnet-4.6", "openai/gpt-4.1"):
        follow = f"And tomorrow {marker}{model[:3]}"
        turn = [*messages, {"role": "user", "content": follow}]
        # Asked of GPT, the web search tool would be refused ("What only one vendor serves").
        tools = [WEB_SEARCH] if model.startswith("anthropic/") else []
        second = await client.messages.create(**dict(create, model=model, tools=tools), messages=turn)
        assert second.content[-1].type == "text"
        assert second.content[-1].text == f"You said: {follow}"
        back = (await upstream(harness, follow))["body"]["messages"]
        if model.startswith("anthropic/"):
            assert back == turn
        else:
            assert back[1]["content"] == f"You said: Latest news {marker}"
            assert "srvtoolu" not in json.dumps(back)
