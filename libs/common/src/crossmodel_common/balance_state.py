"""The wallet and rate-limit state that auth (admission) and billing (settlement) share in Redis.

Billing owns the balance: after every ledger commit it publishes the account's balance with a
version (the balance row's version in billing's database) and, in the same script, releases the
request's reservation. Auth reserves against `balance - outstanding reservations` and counts
requests and tokens per key, all in one script, so one Redis round trip admits a request.

Every key of an account carries the `{account_id}` hash tag, so each script touches one Redis
Cluster slot. Layout (docs/money.md explains the choices):

    cm:{A}:bal          hash   m = balance micros, v = version (0 = seeded from billing.GetBalance)
    cm:{A}:resv         hash   request_id -> "<micros>:<key_id>" outstanding reservations
    cm:{A}:resv:exp     zset   request_id -> expiry (ms); stale reservations are dropped
    cm:{A}:held         hash   "=acct" -> micros reserved by the account, key_id -> by that key
    cm:{A}:keygen       hash   key_id -> generation of the key's record (bumped on update/revoke)
    cm:{A}:spent        hash   key_id -> micros charged to the key so far (published by billing)
    cm:{A}:win:<key_id> zset   request_id -> admission time (ms), the key's sliding window
    cm:{A}:wtok:<key_id> hash  request_id -> tokens counted for it, "=sum" -> their sum

Time is Redis server time (`TIME`), so every auth replica sees the same windows whatever its own
clock says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the result types are imported by pure domain code, which must not pull redis in
    from redis.asyncio import Redis

    from crossmodel_common.resp import PipelinedRedis

WINDOW_MS = 60_000
DEFAULT_RESERVATION_TTL_MS = 15 * 60 * 1000


def _tag(account_id: str) -> str:
    return "cm:{" + account_id + "}"


def balance_key(account_id: str) -> str:
    return _tag(account_id) + ":bal"


def reservations_key(account_id: str) -> str:
    return _tag(account_id) + ":resv"


def reservation_expiry_key(account_id: str) -> str:
    return _tag(account_id) + ":resv:exp"


def held_key(account_id: str) -> str:
    return _tag(account_id) + ":held"


def key_generation_key(account_id: str) -> str:
    return _tag(account_id) + ":keygen"


def key_spent_key(account_id: str) -> str:
    return _tag(account_id) + ":spent"


def window_key(account_id: str, key_id: str) -> str:
    return _tag(account_id) + ":win:" + key_id


def window_tokens_key(account_id: str, key_id: str) -> str:
    return _tag(account_id) + ":wtok:" + key_id


# Redis < 7 replicates scripts verbatim unless told to replicate their effects, and a script
# that read TIME may not write otherwise. Redis 7 always replicates effects.
_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function num(v) if v then return tonumber(v) end return 0 end
-- Amounts cross into Redis commands as the decimal strings they were given: Lua 5.1 would
-- print a large number as 1e+15, which HINCRBY rejects.
local function neg(s) if s == '0' then return nil end return '-' .. s end
local function drop_reservation(resv, rexp, held, rid)
  local r = redis.call('HGET', resv, rid)
  if r then
    local m, k = string.match(r, '^(%d+):(.*)$')
    local minus = neg(m)
    if minus then
      redis.call('HINCRBY', held, '=acct', minus)
      if redis.call('HINCRBY', held, k, minus) == 0 then redis.call('HDEL', held, k) end
    end
    redis.call('HDEL', resv, rid)
  end
  redis.call('ZREM', rexp, rid)
  return r
end
"""

# KEYS: bal resv resv:exp held keygen spent win wtok
# ARGV: key_id generation request_id tokens reserve_micros rpm tpm spend_cap reservation_ttl_ms window_ms
# Returns {code, limit_req, remaining_req, reset_req_ms, limit_tok, remaining_tok, reset_tok_ms,
#          retry_after_ms, reserved_micros, reserved_tokens}
_ADMIT = (
    _PRELUDE
    + """
local bal, resv, rexp, held, keygen, spent, win, wtok =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local kid, gen, rid = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local tokens, reserve = tonumber(ARGV[4]), tonumber(ARGV[5])
local rpm, tpm, cap = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local ttl, window = tonumber(ARGV[9]), tonumber(ARGV[10])

local g = redis.call('HGET', keygen, kid)
if (not g) or tonumber(g) ~= gen then return {5, 0, 0, 0, 0, 0, 0, 0, 0, 0} end

for _, old in ipairs(redis.call('ZRANGEBYSCORE', rexp, '-inf', now)) do
  drop_reservation(resv, rexp, held, old)
end

local limited = rpm > 0 or tpm > 0
local count, used = 0, 0
local oldest_reset = 0
if limited then
  local cutoff = now - window
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', win, '-inf', cutoff)) do
    local tk = redis.call('HGET', wtok, old)
    if tk then
      local minus = neg(tk)
      if minus then redis.call('HINCRBY', wtok, '=sum', minus) end
      redis.call('HDEL', wtok, old)
    end
  end
  redis.call('ZREMRANGEBYSCORE', win, '-inf', cutoff)
  count = redis.call('ZCARD', win)
  used = num(redis.call('HGET', wtok, '=sum'))
  local first = redis.call('ZRANGE', win, 0, 0, 'WITHSCORES')
  if first[2] then oldest_reset = tonumber(first[2]) + window - now end
end

local function state(extra_req, extra_tok, reset_if_empty)
  local rr, rt = oldest_reset, oldest_reset
  if rr == 0 and reset_if_empty then rr, rt = window, window end
  local rem_req, rem_tok = 0, 0
  if rpm > 0 then rem_req = math.max(rpm - count - extra_req, 0) else rr = 0 end
  if tpm > 0 then rem_tok = math.max(tpm - used - extra_tok, 0) else rt = 0 end
  return rpm, rem_req, rr, tpm, rem_tok, rt
end

local existing = redis.call('HGET', resv, rid)
if existing then
  local m = string.match(existing, '^(%d+):')
  local a, b, c, d, e, f = state(0, 0, false)
  return {0, a, b, c, d, e, f, 0, tonumber(m), num(redis.call('HGET', wtok, rid))}
end

if rpm > 0 and count >= rpm then
  local a, b, c, d, e, f = state(0, 0, false)
  return {1, a, b, c, d, e, f, oldest_reset, 0, 0}
end

if tpm > 0 and used > 0 and used + tokens > tpm then
  -- The earliest moment enough of the window has expired for this request to fit (or for the
  -- window to be empty, when the request alone is larger than the limit).
  local retry, freed = 0, 0
  local entries = redis.call('ZRANGE', win, 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    freed = freed + num(redis.call('HGET', wtok, entries[i]))
    retry = tonumber(entries[i + 1]) + window - now
    if used - freed + tokens <= tpm or used - freed <= 0 then break end
  end
  local a, b, c, d, e, f = state(0, 0, false)
  return {2, a, b, c, d, e, f, math.max(retry, 1), 0, 0}
end

local need = math.max(reserve, 1)
if cap > 0 then
  local s = redis.call('HGET', spent, kid)
  if not s then return {7, 0, 0, 0, 0, 0, 0, 0, 0, 0} end
  if tonumber(s) + num(redis.call('HGET', held, kid)) + need > cap then
    local a, b, c, d, e, f = state(0, 0, false)
    return {3, a, b, c, d, e, f, 0, 0, 0}
  end
end

local m = redis.call('HGET', bal, 'm')
if not m then return {6, 0, 0, 0, 0, 0, 0, 0, 0, 0} end
if tonumber(m) - num(redis.call('HGET', held, '=acct')) < need then
  local a, b, c, d, e, f = state(0, 0, false)
  return {4, a, b, c, d, e, f, 0, 0, 0}
end

redis.call('HSET', resv, rid, ARGV[5] .. ':' .. kid)
redis.call('ZADD', rexp, now + ttl, rid)
redis.call('HINCRBY', held, '=acct', ARGV[5])
redis.call('HINCRBY', held, kid, ARGV[5])
redis.call('PEXPIRE', resv, ttl)
redis.call('PEXPIRE', rexp, ttl)
redis.call('PEXPIRE', held, ttl)
if limited then
  redis.call('ZADD', win, now, rid)
  redis.call('HSET', wtok, rid, ARGV[4])
  redis.call('HINCRBY', wtok, '=sum', ARGV[4])
  redis.call('PEXPIRE', win, window)
  redis.call('PEXPIRE', wtok, window)
end
local a, b, c, d, e, f = state(1, tokens, true)
-- reserved_tokens tells the caller whether a Settle can correct anything: only windows count.
local counted = 0
if limited then counted = tokens end
return {0, a, b, c, d, e, f, 0, reserve, counted}
"""
)

# KEYS: wtok   ARGV: request_id actual_tokens
_SETTLE_TOKENS = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local delta = tonumber(ARGV[2]) - tonumber(cur)
if delta ~= 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HINCRBY', KEYS[1], '=sum', delta)
end
return delta
"""

# KEYS: bal resv resv:exp held spent
# ARGV: balance version request_id key_id key_spent   ('' = not given)
# Returns {balance applied, reservation released micros or -1, spent applied}
_PUBLISH = (
    _PRELUDE
    + """
local bal, resv, rexp, held, spent = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local applied, released, spent_applied = 0, -1, 0
if ARGV[1] ~= '' then
  local v = redis.call('HGET', bal, 'v')
  if (not v) or tonumber(v) < tonumber(ARGV[2]) then
    redis.call('HSET', bal, 'm', ARGV[1], 'v', ARGV[2])
    applied = 1
  end
end
if ARGV[4] ~= '' and ARGV[5] ~= '' then
  local s = redis.call('HGET', spent, ARGV[4])
  if (not s) or tonumber(s) < tonumber(ARGV[5]) then
    redis.call('HSET', spent, ARGV[4], ARGV[5])
    spent_applied = 1
  end
end
if ARGV[3] ~= '' then
  local r = drop_reservation(resv, rexp, held, ARGV[3])
  if r then released = tonumber(string.match(r, '^(%d+):')) end
end
return {applied, released, spent_applied}
"""
)

# KEYS: bal   ARGV: balance. Only when nothing is there: billing's versioned publish always wins.
_SEED_BALANCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'm', ARGV[1], 'v', 0)
return 1
"""

# KEYS: hash   ARGV: field value. Monotonic: a smaller value never replaces a larger one.
_SET_MAX = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class AdmitCode(IntEnum):
    ALLOWED = 0
    RATE_LIMITED_REQUESTS = 1
    RATE_LIMITED_TOKENS = 2
    SPEND_CAP_EXCEEDED = 3
    INSUFFICIENT_BALANCE = 4
    STALE_KEY = 5  # the caller's key record is older than the one in Redis (or Redis has none)
    NO_BALANCE_STATE = 6  # Redis knows no balance for the account: seed it from billing
    NO_SPEND_STATE = 7  # Redis knows no spend for the key: seed it from billing


@dataclass(frozen=True, slots=True)
class AdmitResult:
    code: AdmitCode
    limit_requests: int = 0
    remaining_requests: int = 0
    reset_requests_ms: int = 0
    limit_tokens: int = 0
    remaining_tokens: int = 0
    reset_tokens_ms: int = 0
    retry_after_ms: int = 0
    reserved_micros: int = 0
    reserved_tokens: int = 0


@dataclass(frozen=True, slots=True)
class PublishResult:
    balance_applied: bool
    released_micros: int | None
    spent_applied: bool


@dataclass(frozen=True, slots=True)
class Publish:
    """One of billing's writes (see BalanceState.publish)."""

    account_id: str
    balance_micros: int | None = None
    version: int = 0
    release_request_id: str = ""
    key_id: str = ""
    key_spent_micros: int | None = None


@dataclass(frozen=True, slots=True)
class AccountState:
    balance_micros: int | None
    version: int | None
    held_micros: int
    reservations: dict[str, int]


def _publish_call(item: Publish) -> tuple[list[str], list[Any]]:
    return (
        [
            balance_key(item.account_id),
            reservations_key(item.account_id),
            reservation_expiry_key(item.account_id),
            held_key(item.account_id),
            key_spent_key(item.account_id),
        ],
        [
            "" if item.balance_micros is None else item.balance_micros,
            item.version,
            item.release_request_id,
            item.key_id,
            "" if item.key_spent_micros is None else item.key_spent_micros,
        ],
    )


def _publish_result(raw: Any) -> PublishResult:
    applied, released, spent = (int(v) for v in raw)
    return PublishResult(applied == 1, None if released < 0 else released, spent == 1)


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


class BalanceState:
    """The scripts above bound to one Redis client. With `pipelined` (a connection to the same
    Redis), admission, the script on the request path, goes through it instead of redis-py."""

    def __init__(
        self,
        redis: Redis,
        *,
        reservation_ttl_ms: int = DEFAULT_RESERVATION_TTL_MS,
        window_ms: int = WINDOW_MS,
        pipelined: PipelinedRedis | None = None,
    ) -> None:
        self.redis = redis
        self.pipelined = pipelined
        self.reservation_ttl_ms = reservation_ttl_ms
        self.window_ms = window_ms
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE_TOKENS)
        self._publish = redis.register_script(_PUBLISH)
        self._seed = redis.register_script(_SEED_BALANCE)
        self._set_max = redis.register_script(_SET_MAX)

    async def admit(
        self,
        *,
        account_id: str,
        key_id: str,
        generation: int,
        request_id: str,
        tokens: int,
        reserve_micros: int,
        rpm: int,
        tpm: int,
        spend_cap_micros: int,
    ) -> AdmitResult:
        """Check the key generation, RPM, TPM, spend cap and balance, and when all pass record
        the request in the key's window and reserve `reserve_micros` — atomically. Admitting the
        same request id again returns the first admission without counting it twice."""
        keys = [
            balance_key(account_id),
            reservations_key(account_id),
            reservation_expiry_key(account_id),
            held_key(account_id),
            key_generation_key(account_id),
            key_spent_key(account_id),
            window_key(account_id, key_id),
            window_tokens_key(account_id, key_id),
        ]
        args: list[str | int] = [
            key_id,
            generation,
            request_id,
            max(tokens, 0),
            max(reserve_micros, 0),
            max(rpm, 0),
            max(tpm, 0),
            max(spend_cap_micros, 0),
            self.reservation_ttl_ms,
            self.window_ms,
        ]
        if self.pipelined is not None:
            raw = await self.pipelined.evalsha(self._admit.sha, _ADMIT, keys, args)
        else:
            raw = await self._admit(keys=keys, args=args)
        values = [int(v) for v in raw]
        return AdmitResult(AdmitCode(values[0]), *values[1:])

    async def settle_tokens(
        self, *, account_id: str, key_id: str, request_id: str, actual_tokens: int
    ) -> int:
        """Replace the tokens counted for `request_id` in the key's window by the real count;
        returns the correction (0 when the request has already left the window)."""
        delta = await self._settle(
            keys=[window_tokens_key(account_id, key_id)], args=[request_id, max(actual_tokens, 0)]
        )
        return int(delta)

    async def publish(
        self,
        *,
        account_id: str,
        balance_micros: int | None = None,
        version: int = 0,
        release_request_id: str = "",
        key_id: str = "",
        key_spent_micros: int | None = None,
    ) -> PublishResult:
        """Billing's one write after a ledger commit: the balance (ignored when Redis already
        holds a newer version), the key's spend (never lowered) and the release of the request's
        reservation, atomically — so `balance - reservations` never counts a charge twice or
        frees a reservation before its charge is visible."""
        keys, args = _publish_call(
            Publish(account_id, balance_micros, version, release_request_id, key_id, key_spent_micros)
        )
        return _publish_result(await self._publish(keys=keys, args=args))

    async def publish_many(self, items: Sequence[Publish]) -> list[PublishResult]:
        """`publish` for many items in one pipelined round trip. Each item is atomic on its own;
        an item's balance must already include the charges of every request it releases."""
        if not items:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in items:
                keys, args = _publish_call(item)
                await self._publish(keys=keys, args=args, client=pipe)
            raw = await pipe.execute()
        return [_publish_result(r) for r in raw]

    async def seed_balance(self, account_id: str, balance_micros: int) -> bool:
        """Install a balance read from billing when Redis has none (version 0, so the next
        publish from billing replaces it)."""
        return int(await self._seed(keys=[balance_key(account_id)], args=[balance_micros])) == 1

    async def seed_key_spent(self, account_id: str, key_id: str, spent_micros: int) -> None:
        await self._set_max(keys=[key_spent_key(account_id)], args=[key_id, spent_micros])

    async def publish_key_generation(self, account_id: str, key_id: str, generation: int) -> None:
        """Make every auth replica's cached copy of the key older than `generation` stale."""
        await self._set_max(keys=[key_generation_key(account_id)], args=[key_id, generation])

    async def key_generation(self, account_id: str, key_id: str) -> int | None:
        """The key's current generation, for callers that refuse without running `admit`."""
        raw = await self.redis.hget(key_generation_key(account_id), key_id)
        return None if raw is None else int(raw)

    async def account_state(self, account_id: str) -> AccountState:
        """A read of the account's wallet state (operators and tests; not the admission path)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(balance_key(account_id), ["m", "v"])
            pipe.hget(held_key(account_id), "=acct")
            pipe.hgetall(reservations_key(account_id))
            (m, v), held, resv = await pipe.execute()
        reservations = {
            (k.decode() if isinstance(k, bytes) else str(k)): int(
                (r.decode() if isinstance(r, bytes) else str(r)).split(":", 1)[0]
            )
            for k, r in resv.items()
        }
        return AccountState(
            None if m is None else int(m), None if v is None else int(v), _int(held), reservations
        )
