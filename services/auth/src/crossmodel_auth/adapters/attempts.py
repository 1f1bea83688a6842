"""Attempt limits for sign-in and sign-up in Redis: one fixed-window counter per bucket, all
buckets of an attempt counted (or refused) atomically by one script."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from crossmodel_auth.domain.console import Limit
from crossmodel_auth.domain.errors import Unavailable

# One hash tag: the script touches several buckets, which Redis Cluster needs on one slot.
PREFIX = "cm:{console}:"

# KEYS: buckets; ARGV: limit_1, window_ms_1, limit_2, window_ms_2, ...
# Counts the attempt in every bucket; if one is then over its limit, takes the attempt back from
# all of them and returns that bucket's remaining window (ms), else 0.
_TAKE = """
local wait = 0
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ARGV[2 * i]) end
  if n > tonumber(ARGV[2 * i - 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then
  for _, key in ipairs(KEYS) do redis.call('DECR', key) end
end
return wait
"""

_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""


class RedisAttempts:
    def __init__(self, redis: Redis) -> None:
        self._take = redis.register_script(_TAKE)
        self._give_back = redis.register_script(_GIVE_BACK)

    async def take(self, limits: list[Limit]) -> int:
        args: list[int] = []
        for lim in limits:
            args += [lim.limit, lim.window_ms]
        try:
            return int(await self._take(keys=[PREFIX + lim.bucket for lim in limits], args=args))
        except RedisError as exc:
            raise Unavailable(f"rate-limit store unavailable: {type(exc).__name__}") from exc

    async def give_back(self, limits: list[Limit]) -> None:
        try:
            await self._give_back(keys=[PREFIX + lim.bucket for lim in limits])
        except RedisError as exc:
            raise Unavailable(f"rate-limit store unavailable: {type(exc).__name__}") from exc
