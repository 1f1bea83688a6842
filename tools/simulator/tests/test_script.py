from crossmodel_simulator.script import Script, count_tokens, expected_completion, parse_script


def test_echo_reply_and_token_rule() -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "hello   world"},
        ],
    }
    exp = expected_completion(body)
    assert exp.text == "You said: hello world"
    assert exp.pieces == ("You", " said:", " hello", " world")
    # 3 priming + (4 + 2 words) system + (4 + 2 words) user
    assert exp.prompt_tokens == 15
    assert exp.completion_tokens == 4
    assert exp.finish_reason == "stop"


def test_markers_are_parsed_and_removed_from_the_echo() -> None:
    text = "hi [sim:status=429] [sim:retry_after_ms=250] [sim:no_usage] [sim:cached=3] there"
    assert parse_script(text) == Script(status=429, retry_after_ms=250, no_usage=True, cached=3)
    exp = expected_completion({"messages": [{"role": "user", "content": text}]})
    assert exp.text == "You said: hi there"
    assert exp.prompt_tokens == 3 + 4 + count_tokens(text)
    assert exp.cached_tokens == 3


def test_words_max_tokens_and_stop() -> None:
    exp = expected_completion({"messages": [{"role": "user", "content": "[sim:words=10]"}], "max_tokens": 4})
    assert exp.text == "w1 w2 w3 w4"
    assert exp.finish_reason == "length"
    exp = expected_completion({"messages": [{"role": "user", "content": "a b c"}], "stop": [" b"]})
    assert exp.text == "You said: a"
    assert exp.finish_reason == "stop"


def test_parts_images_and_tool_calls_count() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look at"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/i.png"}},
                    {"type": "text", "text": "this"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": "done"},
            {"role": "user", "content": [{"type": "text", "text": "and"}, {"type": "text", "text": "now"}]},
        ]
    }
    exp = expected_completion(body)
    assert exp.text == "You said: and now"
    assert exp.prompt_tokens == 3 + (4 + 3 + 85) + (4 + 1 + 1) + (4 + 1) + (4 + 2)
