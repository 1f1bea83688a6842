"""What an in-stream error needs to know about the stream so far. Computed only when a stream
fails, from the first and last chunks relayed, so the relay never parses a chunk otherwise."""

from __future__ import annotations

from typing import Any

import orjson

from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, render_stream_error
from crossmodel_protocols.sse import SSEDecoder


def _events(chunk: bytes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    decoder = SSEDecoder()
    for ev in [*decoder.feed(chunk), *decoder.flush()]:
        try:
            data = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def stream_failure(error: ApiError, protocol: Protocol, first: bytes, last: bytes) -> bytes:
    """The closing bytes for a stream that fails after `first`...`last` were sent. Responses
    needs the response id (from `response.created`) and the next sequence number."""
    if protocol is not Protocol.OPENAI_RESPONSES:
        return render_stream_error(error, protocol)
    response: dict[str, Any] = {}
    for data in _events(first):
        if isinstance(data.get("response"), dict):
            response = dict(data["response"])
            break
    seq = -1
    for data in _events(last):
        if isinstance(data.get("sequence_number"), int):
            seq = max(seq, data["sequence_number"])
    return render_stream_error(error, protocol, response=response, sequence_number=seq + 1)
