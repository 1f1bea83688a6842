"""What only one vendor serves reaches that vendor's models and is refused for any other, never
dropped on the way (the answer would read as if it had been honoured): a vendor's own tools
(OpenAI's hosted tools, Anthropic's server tools, OpenAI chat's custom tools), with a 400 naming
`tools[i].type`, and the request fields that shape the answer (audio, web search, a stored
conversation or prompt, MCP servers), with a 400 naming the field. Log probabilities, which
every vendor but Anthropic has, reach each in its own fields and are refused for Anthropic.
Images reach only models whose catalog entry has `vision`."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from crossmodel_protocols import validation as v
from crossmodel_protocols.anthropic import AnthropicIngress
from crossmodel_protocols.canonical import InvalidRequest, Protocol
from crossmodel_protocols.codec import IngressCodec
from crossmodel_protocols.openai_chat import ChatIngress
from crossmodel_protocols.openai_responses import ResponsesIngress
from libs.protocols.tests.test_upstream_robustness import PROVIDERS

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}
# Per client protocol: its parser, a body with a function tool then the vendor's own tool, and
# the providers that speak that tool's protocol.
CASES: dict[Protocol, tuple[IngressCodec, dict[str, Any], set[str]]] = {
    Protocol.OPENAI_CHAT: (
        ChatIngress(),
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
                {"type": "custom", "custom": {"name": "run_sql", "description": "SQL in, rows out"}},
            ],
        },
        {"openai", "deepseek", "compatible"},
    ),
    Protocol.OPENAI_RESPONSES: (
        ResponsesIngress(),
        {
            "model": "m",
            "input": "hi",
            "tools": [
                {"type": "function", "name": "get_weather", "parameters": WEATHER},
                {"type": "web_search"},
            ],
        },
        {"openai"},
    ),
    Protocol.ANTHROPIC_MESSAGES: (
        AnthropicIngress(),
        {
            "model": "m",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {"name": "get_weather", "input_schema": WEATHER},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
            ],
        },
        {"anthropic"},
    ),
}


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("protocol", list(CASES), ids=lambda p: p.value)
def test_a_vendors_own_tool_reaches_its_vendor_or_is_refused(protocol: Protocol, provider: str) -> None:
    ingress, body, carriers = CASES[protocol]
    request = ingress.parse_request(orjson.dumps(body), {})
    own_tool = body["tools"][1]
    if provider in carriers:
        sent = orjson.loads(PROVIDERS[provider].build_request(request, "up", "sk").body)
        assert own_tool in sent["tools"]
        assert len(sent["tools"]) == 2
        return
    with pytest.raises(InvalidRequest) as caught:
        PROVIDERS[provider].build_request(request, "up", "sk")
    assert caught.value.param == "tools[1].type"
    assert f"'{own_tool['type']}' is not supported with this model" in str(caught.value)


# Per client protocol: a field only its own vendor serves, a base body, and the providers that
# speak that protocol.
FIELDS: list[tuple[Protocol, str, Any, set[str]]] = [
    (Protocol.OPENAI_CHAT, "modalities", ["text", "audio"], {"openai", "deepseek", "compatible"}),
    (Protocol.OPENAI_CHAT, "web_search_options", {}, {"openai", "deepseek", "compatible"}),
    (Protocol.OPENAI_RESPONSES, "previous_response_id", "resp_1", {"openai"}),
    (Protocol.OPENAI_RESPONSES, "conversation", "conv_1", {"openai"}),
    (Protocol.OPENAI_RESPONSES, "prompt", {"id": "pmpt_1"}, {"openai"}),
    (Protocol.OPENAI_RESPONSES, "background", True, {"openai"}),
    (
        Protocol.ANTHROPIC_MESSAGES,
        "mcp_servers",
        [{"type": "url", "url": "https://mcp.test", "name": "m"}],
        {"anthropic"},
    ),
]


def _plain(protocol: Protocol) -> dict[str, Any]:
    _, body, _ = CASES[protocol]
    return {k: val for k, val in body.items() if k != "tools"}


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(("protocol", "field", "value", "carriers"), FIELDS, ids=[f[1] for f in FIELDS])
def test_a_field_only_one_vendor_serves_reaches_it_or_is_refused(
    protocol: Protocol, field: str, value: Any, carriers: set[str], provider: str
) -> None:
    ingress, _, _ = CASES[protocol]
    request = ingress.parse_request(orjson.dumps(_plain(protocol) | {field: value}), {})
    if provider in carriers:
        sent = orjson.loads(PROVIDERS[provider].build_request(request, "up", "sk").body)
        assert sent[field] == value
        return
    with pytest.raises(InvalidRequest) as caught:
        PROVIDERS[provider].build_request(request, "up", "sk")
    assert caught.value.param == field
    assert f"'{field}'" in str(caught.value)


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(
    ("protocol", "field", "value"),
    [
        (Protocol.OPENAI_CHAT, "logprobs", False),
        (Protocol.OPENAI_CHAT, "top_logprobs", 0),
        (Protocol.OPENAI_CHAT, "modalities", ["text"]),
        (Protocol.OPENAI_RESPONSES, "background", False),
    ],
)
def test_the_same_fields_asking_nothing_reach_every_vendor(
    protocol: Protocol, field: str, value: Any, provider: str
) -> None:
    ingress, _, _ = CASES[protocol]
    request = ingress.parse_request(orjson.dumps(_plain(protocol) | {field: value}), {})
    PROVIDERS[provider].build_request(request, "up", "sk")


# Log probabilities as each client protocol asks them, and the field a refusal names.
LOGPROBS: dict[Protocol, tuple[dict[str, Any], str]] = {
    Protocol.OPENAI_CHAT: ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
    Protocol.OPENAI_RESPONSES: ({"include": ["message.output_text.logprobs"], "top_logprobs": 3}, "include"),
}


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("protocol", list(LOGPROBS), ids=lambda p: p.value)
def test_log_probabilities_reach_every_vendor_that_has_them_in_its_own_fields(
    protocol: Protocol, provider: str
) -> None:
    ingress, _, _ = CASES[protocol]
    asked, param = LOGPROBS[protocol]
    request = ingress.parse_request(orjson.dumps(_plain(protocol) | asked), {})
    if provider == "anthropic":
        with pytest.raises(InvalidRequest) as caught:
            PROVIDERS[provider].build_request(request, "up", "sk")
        assert caught.value.param == param
        assert "does not return log probabilities" in str(caught.value)
        return
    sent = orjson.loads(PROVIDERS[provider].build_request(request, "up", "sk").body)
    if provider == "gemini":
        assert sent["generationConfig"] == {"responseLogprobs": True, "logprobs": 3}
    elif provider == "openai" and protocol is Protocol.OPENAI_RESPONSES:
        assert "message.output_text.logprobs" in sent["include"]
        assert sent["top_logprobs"] == 3
    else:
        assert sent["logprobs"] is True
        assert sent["top_logprobs"] == 3


IMAGE_URL = "https://x.test/cat.png"
# Per client protocol: a body with an image in a message and one in a tool result, and the
# client's field of the first image.
IMAGE_CASES: list[tuple[IngressCodec, dict[str, Any], str]] = [
    (
        ChatIngress(),
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {"type": "image_url", "image_url": {"url": IMAGE_URL}},
                    ],
                }
            ],
        },
        "messages[0].content[1]",
    ),
    (
        ResponsesIngress(),
        {
            "model": "m",
            "input": [
                {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [{"type": "input_image", "image_url": IMAGE_URL}],
                },
            ],
        },
        "input[1].output[0]",
    ),
    (
        AnthropicIngress(),
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "image", "source": {"type": "url", "url": IMAGE_URL}}],
                        }
                    ],
                },
            ],
        },
        "messages[1].content[0].content[0]",
    ),
]


@pytest.mark.parametrize(("codec", "body", "param"), IMAGE_CASES)
def test_images_are_refused_for_a_model_without_vision(
    codec: IngressCodec, body: dict[str, Any], param: str
) -> None:
    req = codec.parse_request(orjson.dumps(body), {})
    req.capabilities = frozenset({"streaming", "tools", "vision"})
    v.refuse_images(req)  # a model with vision takes them
    req.capabilities = frozenset({"streaming", "tools"})
    with pytest.raises(InvalidRequest) as err:
        v.refuse_images(req)
    assert (err.value.param, err.value.code) == (param, "unsupported_value")
    assert param in err.value.message
