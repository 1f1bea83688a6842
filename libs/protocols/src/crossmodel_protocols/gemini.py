"""Google Gemini API (`generateContent` / `streamGenerateContent?alt=sse`), provider direction.

https://ai.google.dev/api/generate-content

- Canonical -> a `GenerateContentRequest`: `systemInstruction`, `contents` (roles `user` and
  `model`; tool results are `functionResponse` parts of a `user` turn), `tools[].functionDeclarations`
  with JSON Schema in `parametersJsonSchema`, `toolConfig.functionCallingConfig`, and
  `generationConfig` (sampling, `maxOutputTokens`, `stopSequences`, JSON mode via
  `responseMimeType`/`responseJsonSchema`, `thinkingConfig`). The key goes in `x-goog-api-key`.
- Responses and SSE chunks -> canonical. Thought parts (`thought: true`) become reasoning, never
  text. `functionCall` parts become tool calls; Gemini gives no call ids (or only sometimes), so
  ids are derived from the response id and the call's position, which keeps the codec pure.
- Thought signatures (`thoughtSignature`) ride in canonical `ReasoningPart`s with
  `provider=GEMINI`: on a thought part they are that part's signature; on any other part they are
  an empty reasoning part placed right before it. Rebuilding a request puts each signature back on
  the part it came with. Gemini 3 rejects a replayed `functionCall` without a signature, so calls
  that never had one (history from another vendor) carry Google's documented
  `skip_thought_signature_validator` sentinel (https://ai.google.dev/gemini-api/docs/thought-signatures).
- Usage: `promptTokenCount` (+ `toolUsePromptTokenCount`) is input, `candidatesTokenCount` +
  `thoughtsTokenCount` is output (Gemini counts thoughts apart from candidates; the canonical
  model, like OpenAI, counts reasoning inside output), `cachedContentTokenCount` is cached input.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson

from crossmodel_protocols import validation as v
from crossmodel_protocols.canonical import (
    BlockStart,
    BlockStop,
    ErrorKind,
    FilePart,
    FinishReason,
    ImagePart,
    InvalidRequest,
    Message,
    Part,
    Protocol,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningPart,
    RefusalPart,
    Request,
    Response,
    StreamError,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    TokenLogprob,
    ToolArgumentsDelta,
    ToolCallPart,
    ToolResultPart,
    UpstreamProtocolError,
    Usage,
    UsageUpdate,
)
from crossmodel_protocols.codec import (
    UpstreamError,
    UpstreamRequest,
    json_array,
    json_object,
    json_text,
    only_allowed_tools,
    reads_upstream,
    token_count,
    upstream_json_object,
)
from crossmodel_protocols.openai_chat import error_kind_for_status, parse_retry_after
from crossmodel_protocols.sse import SSEDecoder

CONTENT_TYPE_JSON = "application/json"
SKIP_SIGNATURE = "skip_thought_signature_validator"
MAX_STOP_SEQUENCES = 5
# Thinking config, `parametersJsonSchema` and `responseJsonSchema` are v1beta fields.
API_VERSION = "v1beta"

_FINISH = {
    "STOP": FinishReason.END_TURN,
    "MAX_TOKENS": FinishReason.MAX_TOKENS,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "LANGUAGE": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
    "IMAGE_PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "MALFORMED_FUNCTION_CALL": FinishReason.ERROR,
    "UNEXPECTED_TOOL_CALL": FinishReason.ERROR,
    "TOO_MANY_TOOL_CALLS": FinishReason.ERROR,
    "OTHER": FinishReason.ERROR,
}

# google.rpc status names -> error kinds (https://ai.google.dev/gemini-api/docs/troubleshooting).
_STATUS_KINDS = {
    "RESOURCE_EXHAUSTED": ErrorKind.UPSTREAM_RATE_LIMITED,
    "UNAVAILABLE": ErrorKind.UPSTREAM_OVERLOADED,
    "INTERNAL": ErrorKind.UPSTREAM_ERROR,
    "DEADLINE_EXCEEDED": ErrorKind.UPSTREAM_TIMEOUT,
    "INVALID_ARGUMENT": ErrorKind.UPSTREAM_INVALID_REQUEST,
    "FAILED_PRECONDITION": ErrorKind.UPSTREAM_INVALID_REQUEST,
    "NOT_FOUND": ErrorKind.UPSTREAM_INVALID_REQUEST,
    "PERMISSION_DENIED": ErrorKind.UPSTREAM_AUTH,
    "UNAUTHENTICATED": ErrorKind.UPSTREAM_AUTH,
}

_MEDIA_BY_EXT = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
}


def call_id(response_id: str, position: int) -> str:
    """A tool-call id for a Gemini `functionCall` that came without one."""
    return "call_" + hashlib.sha256(f"{response_id}/{position}".encode()).hexdigest()[:24]


def _media_for_url(url: str, default: str) -> str:
    m = re.search(r"\.([A-Za-z0-9]+)(?:[?#]|$)", url)
    return _MEDIA_BY_EXT.get(m.group(1).lower(), default) if m else default


def is_gemini_3(model: str) -> bool:
    return model.removeprefix("models/").startswith("gemini-3")


# ============================================================================================
# Request


def _user_part(p: Part) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        # Google refuses an empty text part ("required oneof field 'data' must have one
        # initialized field"); it says nothing, so it is left out.
        return {"text": p.text} if p.text else None
    if isinstance(p, ImagePart):
        if p.data is not None:
            return {"inlineData": {"mimeType": p.media_type or "image/png", "data": p.data}}
        url = p.url or ""
        return {"fileData": {"mimeType": _media_for_url(url, "image/jpeg"), "fileUri": url}}
    if isinstance(p, FilePart):
        if p.data is not None:
            return {"inlineData": {"mimeType": p.media_type or "application/pdf", "data": p.data}}
        if p.file_id:
            # An OpenAI or Anthropic file id is not a Gemini Files API URI.
            raise v.unsupported_file(p.param, "a file id of another vendor")
        uri = p.url or ""
        return {
            "fileData": {"mimeType": p.media_type or _media_for_url(uri, "application/pdf"), "fileUri": uri}
        }
    return None


def _args_object(arguments: str, path: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        args = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            f"Invalid value for '{path}': tool call arguments must be a JSON object for this model.",
            param=path,
            code="invalid_value",
        ) from None
    if not isinstance(args, dict):
        raise InvalidRequest(
            f"Invalid value for '{path}': tool call arguments must be a JSON object for this model.",
            param=path,
            code="invalid_value",
        )
    return args


def _model_parts(m: Message, gemini3: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pending: str | None = None  # a signature that belongs to the next part
    for p in m.content:
        part: dict[str, Any] | None = None
        if isinstance(p, ReasoningPart):
            if p.provider is not Protocol.GEMINI:
                continue  # another vendor's thinking cannot be replayed to Gemini
            if p.text:
                part = {"text": p.text, "thought": True}
                if p.signature:
                    part["thoughtSignature"] = p.signature
            elif p.signature:
                pending = p.signature
            if part is None:
                continue
        elif isinstance(p, TextPart | RefusalPart):
            if not p.text:
                continue  # refused by Google, as above; a pending signature goes to the next part
            part = {"text": p.text}
        elif isinstance(p, ToolCallPart):
            part = {
                "functionCall": {"name": p.name, "args": _args_object(p.arguments, f"tool_calls[{p.id}]")}
            }
            if pending is None and gemini3:
                pending = SKIP_SIGNATURE
        if part is None:
            continue
        if pending is not None:
            part["thoughtSignature"] = pending
            pending = None
        out.append(part)
    if pending is not None and pending != SKIP_SIGNATURE and out:
        # A trailing signature (Gemini puts it on the last part of a text answer).
        out[-1].setdefault("thoughtSignature", pending)
    return out


def _tool_names(request: Request) -> dict[str, str]:
    names: dict[str, str] = {}
    for m in request.messages:
        for p in m.content:
            if isinstance(p, ToolCallPart):
                names[p.id] = p.name
    return names


def _result_text(p: ToolResultPart) -> str:
    return "".join(c.text for c in p.content if isinstance(c, TextPart))


def _result_parts(p: ToolResultPart, names: dict[str, str]) -> list[dict[str, Any]]:
    name = p.name or names.get(p.tool_call_id)
    if name is None:
        raise InvalidRequest(
            f"The tool result for '{p.tool_call_id}' answers no earlier tool call; Gemini needs "
            "the function's name.",
            param="tool_call_id",
            code="invalid_value",
        )
    text = _result_text(p)
    response = {"error": text} if p.is_error else {"output": text}
    parts: list[dict[str, Any]] = [{"functionResponse": {"name": name, "response": response}}]
    # Images returned by a tool go along as ordinary parts of the same turn.
    parts.extend(
        x for x in (_user_part(c) for c in p.content if not isinstance(c, TextPart)) if x is not None
    )
    return parts


def build_contents(request: Request, upstream_model: str) -> list[dict[str, Any]]:
    gemini3 = is_gemini_3(upstream_model)
    names = _tool_names(request)
    contents: list[dict[str, Any]] = []
    calls: dict[str, int] = {}  # the last model turn's call ids, in the order of its calls
    results: list[ToolResultPart] = []  # the run of tool results not yet added

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        # Gemini wants turns to alternate; parallel tool results are one user turn.
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    def add_results() -> None:
        # Gemini pairs function responses with the calls by position (no ids), while OpenAI and
        # Anthropic clients may answer parallel calls in any order: the calls' order is sent.
        ordered = sorted(results, key=lambda r: calls.get(r.tool_call_id, len(calls)))
        add("user", [x for r in ordered for x in _result_parts(r, names)])
        results.clear()

    for m in request.messages:
        if m.role == "tool":
            results.extend(p for p in m.content if isinstance(p, ToolResultPart))
            continue
        add_results()
        if m.role == "user":
            add("user", [x for x in (_user_part(p) for p in m.content) if x is not None])
        else:
            add("model", _model_parts(m, gemini3))
            ids = [p.id for p in m.content if isinstance(p, ToolCallPart)]
            calls = {i: n for n, i in enumerate(ids)}
    add_results()
    return contents


# Thinking budgets each Gemini 2.5 model takes, by model family (longest prefix first):
# (family, lowest budget when thinking, highest, whether 0 turns thinking off). Outside them Google
# answers 400 ("thinking budget is out of range", "Budget 0 is invalid. This model only works in
# thinking mode"). https://ai.google.dev/gemini-api/docs/thinking#set-budget
THINKING_BUDGETS = (
    ("gemini-2.5-flash-lite", 512, 24576, True),
    ("gemini-2.5-flash", 1, 24576, True),
    ("gemini-2.5-pro", 128, 32768, False),
)
_EFFORT_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}


def _budget_range(model: str) -> tuple[int, int, bool] | None:
    for family, low, high, can_stop in THINKING_BUDGETS:
        if model.startswith(family):
            return low, high, can_stop
    return None


def _thinking_config(r: ReasoningConfig, model: str) -> dict[str, Any]:
    gemini3 = is_gemini_3(model)
    limits = _budget_range(model)
    if not r.enabled:
        if gemini3:
            # Gemini 3 cannot stop thinking; `low` is the least every Gemini 3 model takes.
            return {"thinkingLevel": "low"}
        if limits is not None and not limits[2]:
            # 2.5 Pro cannot stop thinking either: its least budget, thoughts not shown.
            return {"thinkingBudget": limits[0]}
        return {"thinkingBudget": 0}
    cfg: dict[str, Any] = {"includeThoughts": True}
    budget: int | None = r.budget_tokens
    if budget is None and r.effort is not None:
        if gemini3:
            cfg["thinkingLevel"] = "high" if r.effort in ("medium", "high", "xhigh") else "low"
            return cfg
        budget = _EFFORT_BUDGETS.get(r.effort, -1)
    if budget is None:
        return cfg
    if limits is not None and budget != -1:  # -1: the model decides, on every model
        budget = min(max(budget, limits[0]), limits[1])
    cfg["thinkingBudget"] = budget
    return cfg


def _json_with_tools(request: Request) -> InvalidRequest:
    param = v.response_format_field(request)
    return InvalidRequest(
        f"Invalid value for '{param}': this model cannot answer in JSON when tools are given; "
        "send the request without tools or without the JSON response format.",
        param=param,
        code="unsupported_value",
    )


def build_gemini_body(request: Request, upstream_model: str) -> dict[str, Any]:
    v.refuse_vendor_only_fields(request, None)
    v.refuse_choices(request)
    tc = request.tool_choice
    if tc is not None and tc.allowed is not None and tc.mode != "required":
        # `allowedFunctionNames` goes only with mode ANY: otherwise the others are not declared.
        request = only_allowed_tools(request)
    contents = build_contents(request, upstream_model)
    system = [{"text": s.text} for s in request.system if s.text]
    if not contents and system:
        # Google refuses a request without contents ("contents is not specified"), which OpenAI
        # serves: instructions alone are sent as the user turn.
        contents, system = [{"role": "user", "parts": system}], []
    if not contents:
        raise InvalidRequest(
            "The request has no content for this model to answer; send at least one message with text.",
            param="input" if request.ingress is Protocol.OPENAI_RESPONSES else "messages",
            code="invalid_value",
        )
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    decls: list[dict[str, Any]] = []
    for i, t in enumerate(request.tools):
        if t.kind != "function":
            # No client protocol carries Gemini's own tools (googleSearch, codeExecution, …).
            raise v.unsupported_tool(i, t.kind)
        d: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            d["description"] = t.description
        if t.parameters is not None:
            d["parametersJsonSchema"] = t.parameters
        decls.append(d)
    if decls:
        body["tools"] = [{"functionDeclarations": decls}]
    tc = request.tool_choice
    if tc is not None and (decls or tc.mode == "none"):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[tc.mode]
        fcc: dict[str, Any] = {"mode": mode}
        if tc.mode == "tool" and tc.name:
            fcc["allowedFunctionNames"] = [tc.name]
        elif tc.allowed is not None:
            fcc["allowedFunctionNames"] = [d["name"] for d in decls if d["name"] in tc.allowed]
        body["toolConfig"] = {"functionCallingConfig": fcc}
    gen: dict[str, Any] = {}
    for key, value in (
        ("temperature", request.temperature),
        ("topP", request.top_p),
        ("topK", request.top_k),
        ("maxOutputTokens", request.max_tokens),
        ("seed", request.seed),
        # `presence_penalty` / `frequency_penalty` are not sent: Gemini 2.5 and later refuse them
        # ("Penalty is not enabled for models/…"), and they only tune the answer.
    ):
        if value is not None:
            gen[key] = value
    if request.stop:
        v.refuse_stop_over(request, MAX_STOP_SEQUENCES)
        gen["stopSequences"] = request.stop
    rf = request.response_format
    if rf is not None and rf.type != "text":
        if decls and not is_gemini_3(upstream_model):
            # Gemini 2.5 refuses function calling with a JSON response type; dropping either would
            # answer without what was asked, unnoticed.
            raise _json_with_tools(request)
        gen["responseMimeType"] = "application/json"
        if rf.type == "json_schema" and rf.schema is not None:
            gen["responseJsonSchema"] = rf.schema
    if request.reasoning is not None:
        gen["thinkingConfig"] = _thinking_config(request.reasoning, upstream_model)
    if request.logprobs:
        gen["responseLogprobs"] = True
        if request.top_logprobs is not None:
            gen["logprobs"] = request.top_logprobs
    if gen:
        body["generationConfig"] = gen
    return body


# ============================================================================================
# Responses


def usage_from_gemini(u: Any) -> Usage | None:
    """None when absent or unreadable (the router then estimates)."""
    if not isinstance(u, dict):
        return None
    try:
        thoughts = token_count(u.get("thoughtsTokenCount"))
        return Usage(
            input_tokens=token_count(u.get("promptTokenCount"))
            + token_count(u.get("toolUsePromptTokenCount")),
            output_tokens=token_count(u.get("candidatesTokenCount")) + thoughts,
            cached_input_tokens=token_count(u.get("cachedContentTokenCount")),
            reasoning_tokens=thoughts,
        )
    except ValueError:
        return None


def finish_from_gemini(reason: Any, has_calls: bool) -> FinishReason | None:
    if reason is None:
        return None
    mapped = _FINISH.get(reason, FinishReason.END_TURN) if isinstance(reason, str) else FinishReason.END_TURN
    if mapped is FinishReason.END_TURN and has_calls:
        return FinishReason.TOOL_USE
    return mapped


def _candidate(data: dict[str, Any]) -> dict[str, Any] | None:
    cands = data.get("candidates")
    if isinstance(cands, list) and cands and isinstance(cands[0], dict):
        return cands[0]
    return None


def _token(raw: Any) -> TokenLogprob | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("token"), str):
        return None
    lp = raw.get("logProbability", 0.0)  # proto3: a zero is left out
    if not isinstance(lp, int | float) or isinstance(lp, bool):
        return None
    return TokenLogprob(raw["token"], float(lp))


def logprobs_from_gemini(cand: dict[str, Any]) -> list[TokenLogprob] | None:
    """`Candidate.logprobsResult` -> canonical: the chosen token at each step, with that step's
    top candidates. None when absent or unreadable (dropped rather than failing the answer)."""
    result = cand.get("logprobsResult")
    if not isinstance(result, dict):
        return None
    chosen = result.get("chosenCandidates")
    tops = result.get("topCandidates")
    tops = tops if isinstance(tops, list) else []
    out: list[TokenLogprob] = []
    for i, raw in enumerate(chosen if isinstance(chosen, list) else ()):
        t = _token(raw)
        if t is None:
            return None
        step = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        for alt in step.get("candidates") or ():
            top = _token(alt)
            if top is not None:
                t.top.append(top)
        out.append(t)
    return out


def parse_gemini_response(data: dict[str, Any]) -> Response:
    response_id = str(data.get("responseId") or "")
    cand = _candidate(data)
    content: list[Part] = []
    calls = 0
    if cand is not None:
        for raw in json_array(json_object(cand.get("content"), "content").get("parts"), "parts"):
            if not isinstance(raw, dict):
                continue
            sig = json_text(raw.get("thoughtSignature"), "thoughtSignature") or None
            if raw.get("thought"):
                text = json_text(raw.get("text"), "thought text")
                content.append(ReasoningPart(text, signature=sig, provider=Protocol.GEMINI))
                continue
            if sig:
                content.append(ReasoningPart("", signature=sig, provider=Protocol.GEMINI))
            if "functionCall" in raw:
                fc = json_object(raw["functionCall"], "functionCall")
                content.append(
                    ToolCallPart(
                        id=json_text(fc.get("id"), "functionCall id") or call_id(response_id, calls),
                        name=json_text(fc.get("name"), "functionCall name"),
                        arguments=orjson.dumps(fc.get("args") or {}).decode(),
                    )
                )
                calls += 1
            elif isinstance(raw.get("text"), str) and raw["text"]:
                if content and isinstance(content[-1], TextPart) and not sig:
                    content[-1].text += raw["text"]
                else:
                    content.append(TextPart(raw["text"]))
        finish = finish_from_gemini(cand.get("finishReason"), calls > 0) or FinishReason.END_TURN
        logprobs = logprobs_from_gemini(cand)
        text_parts = [p for p in content if isinstance(p, TextPart)]
        if logprobs is not None and text_parts:
            # Gemini reports them per candidate, not per part.
            text_parts[0].logprobs = logprobs
    else:
        if not (data.get("promptFeedback") or {}).get("blockReason"):
            raise UpstreamProtocolError("upstream Gemini response has no candidates")
        finish = FinishReason.CONTENT_FILTER
    return Response(
        id=response_id,
        model=str(data.get("modelVersion") or ""),
        content=content,
        finish_reason=finish,
        usage=usage_from_gemini(data.get("usageMetadata")),
    )


class GeminiStreamParser:
    """`streamGenerateContent?alt=sse` chunks -> canonical events. Text and thought parts stream
    as deltas of one open block; each `functionCall` arrives whole and becomes one block."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._started = False
        self._response_id = ""
        self._next = 0
        self._open: int | None = None
        self._open_kind = ""
        self._calls = 0
        self._usage: Usage | None = None
        self._finished = False
        self._logprobs: list[TokenLogprob] | None = None  # the current chunk's
        self._failed = False  # nothing follows an upstream error
        self.done = False

    @reads_upstream("a stream event")
    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.feed(data):
            if not self._failed:
                self._chunk(ev.data, out)
        return out

    def _begin(self, part: Part, kind: str, out: list[StreamEvent]) -> int:
        self._stop(out)
        idx = self._next
        self._next += 1
        out.append(BlockStart(idx, part))
        self._open, self._open_kind = idx, kind
        return idx

    def _stop(self, out: list[StreamEvent]) -> None:
        if self._open is not None:
            out.append(BlockStop(self._open))
            self._open, self._open_kind = None, ""

    def _signature_block(self, sig: str, out: list[StreamEvent]) -> None:
        self._begin(ReasoningPart("", signature=sig, provider=Protocol.GEMINI), "signature", out)
        self._stop(out)

    def _chunk(self, payload: bytes, out: list[StreamEvent]) -> None:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"upstream sent a stream chunk that is not JSON: {payload[:80]!r}"
            ) from None
        if not isinstance(data, dict):
            raise UpstreamProtocolError("upstream sent a stream chunk that is not an object")
        if isinstance(data.get("error"), dict):
            err = data["error"]
            kind = _STATUS_KINDS.get(str(err.get("status")), ErrorKind.UPSTREAM_ERROR)
            out.append(StreamError(kind, str(err.get("message") or "upstream error"), err.get("status")))
            self._failed = True
            return
        if not self._started:
            self._started = True
            self._response_id = str(data.get("responseId") or "")
            out.append(StreamStart(id=self._response_id, model=str(data.get("modelVersion") or "")))
        cand = _candidate(data)
        if cand is not None:
            self._logprobs = logprobs_from_gemini(cand)
            for raw in (cand.get("content") or {}).get("parts") or ():
                if isinstance(raw, dict):
                    self._part(raw, out)
        usage = usage_from_gemini(data.get("usageMetadata"))
        if usage is not None and usage != self._usage:
            self._usage = usage
            out.append(UsageUpdate(usage))
        reason = cand.get("finishReason") if cand is not None else None
        if reason is None and cand is None and (data.get("promptFeedback") or {}).get("blockReason"):
            reason = "PROHIBITED_CONTENT"
        if reason and not self._finished:
            self._finished = True
            self._stop(out)
            out.append(StreamFinish(finish_from_gemini(reason, self._calls > 0) or FinishReason.END_TURN))
            self.done = True

    def _part(self, raw: dict[str, Any], out: list[StreamEvent]) -> None:
        sig = raw.get("thoughtSignature")
        text = raw.get("text")
        if raw.get("thought"):
            if self._open_kind != "thought":
                self._begin(ReasoningPart("", provider=Protocol.GEMINI), "thought", out)
            assert self._open is not None
            if isinstance(text, str) and text:
                out.append(ReasoningDelta(self._open, text))
            if sig:
                out.append(ReasoningDelta(self._open, signature=sig))
            return
        if "functionCall" in raw:
            if sig:
                self._signature_block(sig, out)
            fc = raw["functionCall"] or {}
            idx = self._begin(
                ToolCallPart(
                    id=fc.get("id") or call_id(self._response_id, self._calls), name=fc.get("name") or ""
                ),
                "call",
                out,
            )
            self._calls += 1
            out.append(ToolArgumentsDelta(idx, orjson.dumps(fc.get("args") or {}).decode()))
            self._stop(out)
            return
        if isinstance(text, str) and text:
            if self._open_kind != "text":
                self._begin(TextPart(""), "text", out)
            assert self._open is not None
            # The chunk's log probabilities go with its (first) text.
            out.append(TextDelta(self._open, text, self._logprobs))
            self._logprobs = None
        if sig:
            self._signature_block(sig, out)

    @reads_upstream("a stream event")
    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.flush():
            if not self._failed:
                self._chunk(ev.data, out)
        if not self._failed:
            self._stop(out)
        return out


def _retry_delay_ms(details: Any) -> int:
    for d in details if isinstance(details, list) else ():
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            m = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(d.get("retryDelay") or ""))
            if m:
                return int(float(m.group(1)) * 1000)
    return 0


def parse_gemini_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # streamGenerateContent without alt=sse wraps errors in an array
    err = data.get("error") if isinstance(data, dict) else None
    err = err if isinstance(err, dict) else {}
    rpc_status = str(err.get("status") or "") or None
    kind = _STATUS_KINDS.get(rpc_status or "") or error_kind_for_status(status)
    retry = 0
    if kind in (ErrorKind.UPSTREAM_RATE_LIMITED, ErrorKind.UPSTREAM_OVERLOADED):
        retry = parse_retry_after(headers) or _retry_delay_ms(err.get("details"))
    return UpstreamError(
        kind=kind,
        message=str(
            err.get("message") or body[:200].decode(errors="replace") or f"upstream returned HTTP {status}"
        ),
        status=status,
        upstream_type=rpc_status,
        retry_after_ms=retry,
    )


class GeminiProvider:
    """Provider codec for the Gemini API. The deployment's base URL is the API root, as Google's
    SDKs take it (`https://generativelanguage.googleapis.com`); the version is in the path."""

    protocol = Protocol.GEMINI

    def build_request(self, request: Request, upstream_model: str, api_key: str) -> UpstreamRequest:
        model = upstream_model.removeprefix("models/")
        body = orjson.dumps(build_gemini_body(request, model))
        headers = {"content-type": CONTENT_TYPE_JSON}
        if api_key:
            headers["x-goog-api-key"] = api_key
        # Usage always comes with the last chunk of a Gemini stream: nothing to ask for.
        if request.stream:
            return UpstreamRequest(
                f"/{API_VERSION}/models/{model}:streamGenerateContent?alt=sse", body, headers, True
            )
        return UpstreamRequest(f"/{API_VERSION}/models/{model}:generateContent", body, headers, False)

    @reads_upstream("an answer")
    def parse_response(self, body: bytes) -> Response:
        data = upstream_json_object(body)
        return parse_gemini_response(data)

    def stream_parser(self) -> GeminiStreamParser:
        return GeminiStreamParser()

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return parse_gemini_error(status, body, headers)
