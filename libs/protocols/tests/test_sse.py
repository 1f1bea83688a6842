from crossmodel_protocols.sse import SSEDecoder, SSEEvent, encode_data, encode_event


def test_events_split_across_arbitrary_chunk_boundaries() -> None:
    wire = b'data: {"a":1}\n\nevent: ping\ndata: {}\n\n: keep-alive\n\ndata: [DONE]\n\n'
    for size in range(1, len(wire) + 1):
        dec = SSEDecoder()
        got: list[SSEEvent] = []
        for i in range(0, len(wire), size):
            got.extend(dec.feed(wire[i : i + size]))
        got.extend(dec.flush())
        assert got == [SSEEvent(b'{"a":1}'), SSEEvent(b"{}", "ping"), SSEEvent(b"[DONE]")], size


def test_crlf_and_multiline_data() -> None:
    dec = SSEDecoder()
    got = dec.feed(b"event: x\r\ndata: one\r\ndata: two\r")
    assert got == []
    got = dec.feed(b"\n\r\n")
    assert got == [SSEEvent(b"one\ntwo", "x")]


def test_final_event_without_blank_line_is_kept_on_flush() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: last") == []
    assert dec.flush() == [SSEEvent(b"last")]


def test_encoders() -> None:
    assert encode_data(b"{}") == b"data: {}\n\n"
    assert encode_event("message_stop", b"{}") == b"event: message_stop\ndata: {}\n\n"
