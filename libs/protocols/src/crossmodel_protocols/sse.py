"""Server-sent events: an incremental decoder for upstream streams and the encoders for ours.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    data: bytes
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """Feed raw bytes as they arrive; get the complete events so far. Comments (`:` lines,
    e.g. keep-alives) and events without data are dropped."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # CRLF streams (some proxies); a lone CR at the very end may be half of a CRLF.
            tail = b"\r" if buf.endswith(b"\r") else b""
            buf = buf[: len(buf) - len(tail)].replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        out: list[SSEEvent] = []
        for block in buf[:end].split(b"\n\n"):
            ev = _parse_block(block)
            if ev is not None:
                out.append(ev)
        return out

    def flush(self) -> list[SSEEvent]:
        """At end of stream: a final event not followed by a blank line still counts (lenient,
        as several upstreams end that way)."""
        buf, self._buf = self._buf, b""
        ev = _parse_block(buf.strip(b"\r\n")) if buf.strip() else None
        return [ev] if ev is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and b"\n" not in block:  # the common case, one data line
        return SSEEvent(block[6:])
    data: list[bytes] = []
    event: str | None = None
    ev_id: str | None = None
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode()
        elif name == b"id":
            ev_id = value.decode()
    if not data:
        return None
    return SSEEvent(b"\n".join(data), event, ev_id)


def encode_data(payload: bytes) -> bytes:
    """`data: <payload>\\n\\n` (payload must be one line: compact JSON is)."""
    return b"data: " + payload + b"\n\n"


def encode_event(event: str, payload: bytes) -> bytes:
    """`event: <name>\\ndata: <payload>\\n\\n`, the framing Anthropic and Responses use."""
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
