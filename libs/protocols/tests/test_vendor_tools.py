"""A vendor's own tools (OpenAI's hosted tools, Anthropic's server tools, OpenAI chat's custom
tools) reach that vendor's models verbatim; asked of any other vendor they are refused with a
400 naming `tools[i].type`, never dropped (the answer would read as if the tool had run)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from crossmodel_protocols.anthropic import AnthropicIngress, AnthropicProvider
from crossmodel_protocols.canonical import InvalidRequest, Protocol
from crossmodel_protocols.codec import IngressCodec, ProviderCodec
from crossmodel_protocols.gemini import GeminiProvider
from crossmodel_protocols.openai_chat import ChatIngress, ChatProvider, Dialect
from crossmodel_protocols.openai_responses import OpenAIProvider, ResponsesIngress

PROVIDERS: dict[str, ProviderCodec] = {
    "openai": OpenAIProvider(),
    "deepseek": ChatProvider(Dialect.DEEPSEEK),
    "compatible": ChatProvider(Dialect.COMPATIBLE),
    "anthropic": AnthropicProvider(),
    "gemini": GeminiProvider(),
}
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
