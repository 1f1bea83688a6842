"""In-stream errors that need the stream's own state (Responses)."""

from __future__ import annotations

import orjson

from crossmodel_edge.domain.streams import stream_failure
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType
from crossmodel_protocols.sse import SSEDecoder, encode_event

ERR = ApiError(ErrorType.UPSTREAM_ERROR, "dropped")


def test_responses_failure_continues_the_sequence_and_repeats_the_response() -> None:
    created = {
        "type": "response.created",
        "sequence_number": 0,
        "response": {"id": "resp_9", "status": "in_progress"},
    }
    first = encode_event("response.created", orjson.dumps(created))
    last = encode_event("response.output_text.delta", orjson.dumps({"type": "x", "sequence_number": 4})) + (
        encode_event("response.output_text.delta", orjson.dumps({"type": "x", "sequence_number": 5}))
    )
    (ev,) = SSEDecoder().feed(stream_failure(ERR, Protocol.OPENAI_RESPONSES, first, last))
    body = orjson.loads(ev.data)
    assert ev.event == "response.failed"
    assert body["sequence_number"] == 6
    assert body["response"]["id"] == "resp_9"
    assert body["response"]["status"] == "failed"


def test_chat_and_anthropic_need_no_state() -> None:
    chat = stream_failure(ERR, Protocol.OPENAI_CHAT, b"data: {}\n\n", b"garbage")
    assert chat.startswith(b'data: {"error"')
    anthropic = stream_failure(ERR, Protocol.ANTHROPIC_MESSAGES, b"", b"")
    assert anthropic.startswith(b"event: error\n")
