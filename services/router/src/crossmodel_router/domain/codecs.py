"""Which codec speaks each ingress protocol and each provider type. New protocols and vendors
are added here and nowhere else in the router."""

from __future__ import annotations

from crossmodel_protocols.anthropic import AnthropicIngress, AnthropicProvider
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.codec import IngressCodec, ProviderCodec
from crossmodel_protocols.gemini import GeminiProvider
from crossmodel_protocols.openai_chat import ChatIngress, ChatProvider, Dialect
from crossmodel_protocols.openai_responses import OpenAIProvider, ResponsesIngress
from crossmodel_router.domain.catalog import ProviderType

INGRESS: dict[Protocol, IngressCodec] = {
    Protocol.OPENAI_CHAT: ChatIngress(),
    Protocol.ANTHROPIC_MESSAGES: AnthropicIngress(),
    Protocol.OPENAI_RESPONSES: ResponsesIngress(),
}

PROVIDERS: dict[ProviderType, ProviderCodec] = {
    # Chat completions, and OpenAI's Responses API natively for Responses clients.
    ProviderType.OPENAI: OpenAIProvider(),
    ProviderType.DEEPSEEK: ChatProvider(Dialect.DEEPSEEK),
    ProviderType.OPENAI_COMPATIBLE: ChatProvider(Dialect.COMPATIBLE),
    ProviderType.ANTHROPIC: AnthropicProvider(),
    ProviderType.GEMINI: GeminiProvider(),
}
