"""Idempotency records in Redis, one hash per account and key, next to the account's wallet
state (same `{account_id}` hash tag):

    cm:{A}:idem:<sha256(key)>   st = p (in progress) | d (done), bh = body hash, rid = request id
                                of the claim, t0 = claim time (ms, Redis clock), and once done
                                with a stored result: code, ct (content type), body

Each step is one script, so two replicas claiming the same key at once cannot both win."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from crossmodel_auth.domain.errors import Unavailable
from crossmodel_auth.domain.idempotency import Claim, ClaimOutcome, StoredResult, key_digest

T = TypeVar("T")

# KEYS: record   ARGV: body_hash request_id in_progress_ttl_ms
# Returns {0} claimed, {1, code, ct, body, rid} replay, {2} in progress, {3} mismatch,
#         {4} done without a stored result
_CLAIM = """
if redis.replicate_commands then redis.replicate_commands() end
local k = KEYS[1]
local cur = redis.call('HMGET', k, 'st', 'bh', 'rid')
if not cur[1] then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', k, 'st', 'p', 'bh', ARGV[1], 'rid', ARGV[2], 't0', now)
  redis.call('PEXPIRE', k, ARGV[3])
  return {0}
end
if cur[2] ~= ARGV[1] then return {3} end
-- The claiming request authorizing again (a retried Authorize) keeps its claim.
if cur[3] == ARGV[2] then return {0} end
if cur[1] == 'p' then return {2} end
local r = redis.call('HMGET', k, 'code', 'ct', 'body')
if not r[1] then return {4} end
return {1, r[1], r[2], r[3], cur[3]}
"""

# KEYS: record   ARGV: request_id keep(1|0) has_result(1|0) code ct body done_ttl_ms
# Returns 1 when applied, 0 when the record is not this request's claim in progress.
_COMPLETE = """
local k = KEYS[1]
local cur = redis.call('HMGET', k, 'st', 'rid', 't0')
if cur[1] ~= 'p' or cur[2] ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then
  redis.call('DEL', k)
  return 1
end
redis.call('HSET', k, 'st', 'd')
if ARGV[3] == '1' then redis.call('HSET', k, 'code', ARGV[4], 'ct', ARGV[5], 'body', ARGV[6]) end
redis.call('PEXPIREAT', k, tonumber(cur[3]) + tonumber(ARGV[7]))
return 1
"""


def record_key(account_id: str, idempotency_key: str) -> str:
    return "cm:{" + account_id + "}:idem:" + key_digest(idempotency_key)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _guard(call: Awaitable[T]) -> T:
    try:
        return await call
    except RedisError as exc:
        raise Unavailable(f"idempotency state unavailable: {type(exc).__name__}") from exc


class RedisIdempotency:
    def __init__(self, redis: Redis, *, in_progress_ttl_ms: int, done_ttl_ms: int) -> None:
        self._claim = redis.register_script(_CLAIM)
        self._complete = redis.register_script(_COMPLETE)
        self.in_progress_ttl_ms = in_progress_ttl_ms
        self.done_ttl_ms = done_ttl_ms

    async def claim(self, account_id: str, idempotency_key: str, body_hash: bytes, request_id: str) -> Claim:
        raw = await _guard(
            self._claim(
                keys=[record_key(account_id, idempotency_key)],
                args=[body_hash, request_id, self.in_progress_ttl_ms],
            )
        )
        code = int(raw[0])
        if code == 0:
            return Claim(ClaimOutcome.CLAIMED)
        if code == 1:
            body = raw[3] if isinstance(raw[3], bytes) else str(raw[3]).encode()
            result = StoredResult(int(raw[1]), _text(raw[2]), body, _text(raw[4]))
            return Claim(ClaimOutcome.REPLAY, result)
        if code == 2:
            return Claim(ClaimOutcome.IN_PROGRESS)
        if code == 3:
            return Claim(ClaimOutcome.MISMATCH)
        return Claim(ClaimOutcome.NOT_STORED)

    async def complete(
        self,
        account_id: str,
        idempotency_key: str,
        request_id: str,
        *,
        keep: bool,
        result: StoredResult | None,
    ) -> bool:
        args: list[Any] = [request_id, int(keep), int(result is not None)]
        if result is None:
            args += [0, "", b""]
        else:
            args += [result.status_code, result.content_type, result.body]
        args.append(self.done_ttl_ms)
        raw = await _guard(self._complete(keys=[record_key(account_id, idempotency_key)], args=args))
        return int(raw) == 1
