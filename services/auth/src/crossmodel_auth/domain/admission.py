"""Admission: the key check, then rate limits, spend cap and the balance reservation in one
Redis script. The only auth work on a request's path."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from crossmodel_auth.domain.errors import InvalidArgument, NotFound, Unavailable
from crossmodel_auth.domain.idempotency import Claim, ClaimOutcome, StoredResult, valid_key
from crossmodel_auth.domain.keycache import KeyCache
from crossmodel_auth.domain.keys import ApiKey, KeyStatus, hash_secret, model_allowed, plausible_secret
from crossmodel_auth.domain.ports import BalanceSource, IdempotencyStore, Repository, UsageRecorder, Wallet
from crossmodel_common.balance_state import AdmitCode, AdmitResult


class Decision(Enum):
    ALLOWED = "allowed"
    INVALID_KEY = "invalid_key"
    KEY_REVOKED = "key_revoked"
    KEY_EXPIRED = "key_expired"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    RATE_LIMITED_REQUESTS = "rate_limited_requests"
    RATE_LIMITED_TOKENS = "rate_limited_tokens"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    SPEND_CAP_EXCEEDED = "spend_cap_exceeded"
    ACCOUNT_DISABLED = "account_disabled"
    IDEMPOTENT_REPLAY = "idempotent_replay"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
    IDEMPOTENCY_NOT_STORED = "idempotency_not_stored"


_REFUSALS = {
    AdmitCode.RATE_LIMITED_REQUESTS: Decision.RATE_LIMITED_REQUESTS,
    AdmitCode.RATE_LIMITED_TOKENS: Decision.RATE_LIMITED_TOKENS,
    AdmitCode.SPEND_CAP_EXCEEDED: Decision.SPEND_CAP_EXCEEDED,
    AdmitCode.INSUFFICIENT_BALANCE: Decision.INSUFFICIENT_BALANCE,
}

_IDEMPOTENCY_REFUSALS = {
    ClaimOutcome.IN_PROGRESS: (
        Decision.IDEMPOTENCY_IN_PROGRESS,
        "A request with this Idempotency-Key is still in progress. Retry after it finished.",
    ),
    ClaimOutcome.MISMATCH: (
        Decision.IDEMPOTENCY_MISMATCH,
        "This Idempotency-Key was already used with a different request body. Use a new key.",
    ),
    ClaimOutcome.NOT_STORED: (
        Decision.IDEMPOTENCY_NOT_STORED,
        "This Idempotency-Key was already used by a request whose result is not stored (a stream,"
        " or a response over 1 MiB). Use a new key.",
    ),
}


@dataclass(slots=True)
class _IdempotencyContext:
    key: str
    body_hash: bytes
    claimed_by: str = ""  # the account whose key this request claimed


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    message: str = ""
    key: ApiKey | None = None
    state: AdmitResult | None = None
    replay: StoredResult | None = None


def _status_verdict(key: ApiKey | None, now_ms: int) -> Verdict | None:
    if key is None:
        return Verdict(Decision.INVALID_KEY, "invalid API key")
    status = key.status(now_ms)
    if status is KeyStatus.REVOKED:
        return Verdict(Decision.KEY_REVOKED, "this API key has been revoked", key)
    if status is KeyStatus.EXPIRED:
        return Verdict(Decision.KEY_EXPIRED, "this API key has expired", key)
    if key.account_disabled:
        return Verdict(Decision.ACCOUNT_DISABLED, "this account is disabled", key)
    return None


def _idempotency_verdict(claim: Claim, key: ApiKey) -> Verdict:
    if claim.outcome is ClaimOutcome.REPLAY:
        return Verdict(Decision.IDEMPOTENT_REPLAY, "", key, replay=claim.result)
    decision, message = _IDEMPOTENCY_REFUSALS[claim.outcome]
    return Verdict(decision, message, key)


def _refusal_message(code: AdmitCode, key: ApiKey, result: AdmitResult) -> str:
    if code is AdmitCode.RATE_LIMITED_REQUESTS:
        return f"rate limit reached: {key.limits.rpm} requests per minute"
    if code is AdmitCode.RATE_LIMITED_TOKENS:
        return f"rate limit reached: {key.limits.tpm} tokens per minute"
    if code is AdmitCode.SPEND_CAP_EXCEEDED:
        return "this API key has reached its spend cap"
    return "insufficient balance: top up the account to continue"


class Admission:
    # Each retry repairs one missing or stale piece of Redis state (key record, balance, key
    # spend); more than that in one call means the state is changing under us.
    _MAX_ATTEMPTS = 5

    def __init__(
        self,
        keys: KeyCache,
        repo: Repository,
        wallet: Wallet,
        balances: BalanceSource,
        recorder: UsageRecorder,
        *,
        idempotency: IdempotencyStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._repo = repo
        self._wallet = wallet
        self._balances = balances
        self._recorder = recorder
        self._idempotency = idempotency
        self._clock = clock

    async def authorize(
        self,
        *,
        request_id: str,
        secret: str,
        model: str,
        tokens: int,
        reserve_micros: int,
        idempotency_key: str = "",
        body_hash: bytes = b"",
    ) -> Verdict:
        if not plausible_secret(secret):
            return Verdict(Decision.INVALID_KEY, "invalid API key")
        if not idempotency_key:
            return await self._authorize(request_id, secret, model, tokens, reserve_micros, None)
        if self._idempotency is None or not valid_key(idempotency_key):
            raise InvalidArgument("Idempotency-Key must be 1-255 printable characters")
        idem = _IdempotencyContext(idempotency_key, body_hash)
        try:
            verdict = await self._authorize(request_id, secret, model, tokens, reserve_micros, idem)
        except BaseException:
            if idem.claimed_by:
                with contextlib.suppress(Exception):
                    await self._release(idem.claimed_by, idempotency_key, request_id)
            raise
        if idem.claimed_by and verdict.decision is not Decision.ALLOWED:
            # A refused request did not run: the key stays free for a retry.
            await self._release(idem.claimed_by, idempotency_key, request_id)
        return verdict

    async def _authorize(
        self,
        request_id: str,
        secret: str,
        model: str,
        tokens: int,
        reserve_micros: int,
        idem: _IdempotencyContext | None,
    ) -> Verdict:
        now_ms = int(self._clock() * 1000)
        key_hash = hash_secret(secret)
        key = await self._keys.get(key_hash)
        verified = False
        for _ in range(self._MAX_ATTEMPTS):
            refused = _status_verdict(key, now_ms)
            if refused is None and key is not None and not model_allowed(key.limits.allowed_models, model):
                refused = Verdict(
                    Decision.MODEL_NOT_ALLOWED, f"this API key may not use the model {model!r}", key
                )
            if refused is not None:
                # Revocation is final and an unknown hash stays unknown; any other refusal may
                # come from a cached record that an update has since changed (a new expiry, more
                # models), so it is confirmed against the generation in Redis first.
                if key is None or refused.decision is Decision.KEY_REVOKED or verified:
                    return refused
                verified = True
                if await self._wallet.key_generation(key.account_id, key.id) == key.generation:
                    return refused
                key = await self._keys.refresh(key_hash)
                if key is not None:
                    await self._wallet.publish_key_generation(key.account_id, key.id, key.generation)
                continue
            assert key is not None
            if idem is not None and not idem.claimed_by:
                # After the key checks (a revoked key replays nothing), before admission (a
                # replay is not counted, reserved or charged).
                assert self._idempotency is not None
                claim = await self._idempotency.claim(key.account_id, idem.key, idem.body_hash, request_id)
                if claim.outcome is not ClaimOutcome.CLAIMED:
                    # Answered without the admission script, which is what checks the cached
                    # record against Redis: check it here, so a revoked key replays nothing.
                    if await self._wallet.key_generation(key.account_id, key.id) == key.generation:
                        return _idempotency_verdict(claim, key)
                    key = await self._keys.refresh(key_hash)
                    if key is not None:
                        await self._wallet.publish_key_generation(key.account_id, key.id, key.generation)
                    continue
                idem.claimed_by = key.account_id
            result = await self._wallet.admit(
                account_id=key.account_id,
                key_id=key.id,
                generation=key.generation,
                request_id=request_id,
                tokens=tokens,
                reserve_micros=reserve_micros,
                rpm=key.limits.rpm,
                tpm=key.limits.tpm,
                spend_cap_micros=key.limits.spend_cap_micros,
            )
            code = result.code
            if code is AdmitCode.ALLOWED:
                self._recorder.note(key.id, now_ms)
                return Verdict(Decision.ALLOWED, "", key, result)
            if code in _REFUSALS:
                return Verdict(_REFUSALS[code], _refusal_message(code, key, result), key, result)
            if code is AdmitCode.STALE_KEY:
                key = await self._keys.refresh(key_hash)
                if key is not None:
                    await self._wallet.publish_key_generation(key.account_id, key.id, key.generation)
            elif code is AdmitCode.NO_BALANCE_STATE:
                balance = await self._balances.balance(key.account_id)
                await self._wallet.seed_balance(key.account_id, balance)
            elif code is AdmitCode.NO_SPEND_STATE:
                spent = await self._balances.key_spend(key.id)
                await self._wallet.seed_key_spent(key.account_id, key.id, spent)
        raise Unavailable("admission state changed during the call; retry")

    async def _release(self, account_id: str, idempotency_key: str, request_id: str) -> None:
        assert self._idempotency is not None
        await self._idempotency.complete(account_id, idempotency_key, request_id, keep=False, result=None)

    async def complete_idempotency(
        self,
        *,
        account_id: str,
        idempotency_key: str,
        request_id: str,
        keep: bool,
        result: StoredResult | None,
    ) -> bool:
        """Store the finished request's result under its key (`keep`), or release the key so a
        retry runs the request again. Only the request that claimed the key can do either."""
        if self._idempotency is None or not valid_key(idempotency_key):
            raise InvalidArgument("Idempotency-Key must be 1-255 printable characters")
        return await self._idempotency.complete(
            account_id, idempotency_key, request_id, keep=keep, result=result
        )

    async def introspect(self, secret: str) -> Verdict:
        """Resolve a key from the database, with no admission side effects."""
        if not plausible_secret(secret):
            return Verdict(Decision.INVALID_KEY, "invalid API key")
        key = await self._repo.key_by_hash(hash_secret(secret))
        refused = _status_verdict(key, int(self._clock() * 1000))
        return refused or Verdict(Decision.ALLOWED, "", key)

    async def settle(self, *, request_id: str, key_id: str, actual_tokens: int) -> None:
        """Correct the key's token window from the admission estimate to the real count."""
        account_id = self._keys.account_of(key_id)
        if account_id is None:
            key = await self._repo.get_key(key_id)
            if key is None:
                raise NotFound(f"no key {key_id!r}")
            account_id = key.account_id
            self._keys.remember_account(key_id, account_id)
        await self._wallet.settle_tokens(
            account_id=account_id, key_id=key_id, request_id=request_id, actual_tokens=actual_tokens
        )
