"""Reading model, stream flag and output limit from a body, per protocol."""

from __future__ import annotations

import pytest

from crossmodel_edge.domain.request import BodyError, RequestFacts, read_facts
from crossmodel_protocols.canonical import Protocol

CHAT, RESPONSES, MESSAGES = Protocol.OPENAI_CHAT, Protocol.OPENAI_RESPONSES, Protocol.ANTHROPIC_MESSAGES


@pytest.mark.parametrize(
    ("body", "protocol", "facts"),
    [
        (b'{"model":"a/b","messages":[]}', CHAT, RequestFacts("a/b", False, None)),
        (b'{"model":"a/b","stream":true,"max_tokens":5}', CHAT, RequestFacts("a/b", True, 5)),
        (b'{"model":"a/b","max_tokens":5,"max_completion_tokens":7}', CHAT, RequestFacts("a/b", False, 7)),
        (b'{"model":"a/b","stream":null,"max_tokens":null}', CHAT, RequestFacts("a/b", False, None)),
        (b'{"model":"a/b","max_output_tokens":9,"max_tokens":5}', RESPONSES, RequestFacts("a/b", False, 9)),
        (b'{"model":"a/b","max_tokens":1024,"stream":true}', MESSAGES, RequestFacts("a/b", True, 1024)),
        (b'{"model":"a/b","n":3,"max_tokens":5}', CHAT, RequestFacts("a/b", False, 5, 3)),
        # the router names a bad `n`; admission counts it as one choice
        (b'{"model":"a/b","n":"3"}', CHAT, RequestFacts("a/b", False, None, 1)),
        (b'{"model":"a/b","n":0}', CHAT, RequestFacts("a/b", False, None, 1)),
        (b'{"model":"a/b","n":true}', CHAT, RequestFacts("a/b", False, None, 1)),
        (b'{"model":"a/b","n":3}', RESPONSES, RequestFacts("a/b", False, None, 1)),
    ],
)
def test_facts(body: bytes, protocol: Protocol, facts: RequestFacts) -> None:
    assert read_facts(body, protocol) == facts


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"", None),
        (b"{", None),
        (b"null", None),
        (b'"model"', None),
        (b"\xff\xfe", None),
        (b"{}", "model"),
        (b'{"model": 5}', "model"),
        (b'{"model": ""}', "model"),
        (b'{"model":"a/b","stream":"true"}', "stream"),
        (b'{"model":"a/b","stream":1}', "stream"),
        (b'{"model":"a/b","max_tokens":0}', "max_tokens"),
        (b'{"model":"a/b","max_tokens":1.5}', "max_tokens"),
        (b'{"model":"a/b","max_tokens":true}', "max_tokens"),
        (b'{"model":"a/b","max_completion_tokens":"9"}', "max_completion_tokens"),
    ],
)
def test_bad_bodies_name_the_field(body: bytes, param: str | None) -> None:
    with pytest.raises(BodyError) as err:
        read_facts(body, CHAT)
    assert err.value.param == param
    assert err.value.message


@pytest.mark.parametrize(
    ("body", "protocol", "param", "code"),
    [
        (b'{"model":"a/b","stream":"true"}', RESPONSES, "stream", "invalid_type"),
        (b'{"model":"a/b","stream":1}', CHAT, "stream", "invalid_type"),
        (b'{"model":"a/b","max_output_tokens":"9"}', RESPONSES, "max_output_tokens", "invalid_type"),
        (b'{"model":"a/b","max_output_tokens":1.5}', RESPONSES, "max_output_tokens", "invalid_type"),
        (b'{"model":"a/b","max_completion_tokens":true}', CHAT, "max_completion_tokens", "invalid_type"),
        (b'{"model":"a/b","max_output_tokens":0}', RESPONSES, "max_output_tokens", "invalid_value"),
        (b'{"model":"a/b","max_tokens":-1}', MESSAGES, "max_tokens", "invalid_value"),
    ],
)
def test_type_and_value_errors_carry_the_routers_code(
    body: bytes, protocol: Protocol, param: str, code: str
) -> None:
    """The same codes the router gives every other field's mistakes (OpenAI's)."""
    with pytest.raises(BodyError) as err:
        read_facts(body, protocol)
    assert (err.value.param, err.value.code) == (param, code)
    assert err.value.message.startswith("Invalid ")
    assert f"'{param}'" in err.value.message
