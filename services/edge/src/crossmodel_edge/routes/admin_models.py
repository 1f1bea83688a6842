"""Request and response bodies of the admin API (pydantic: the admin API is off the hot path, and
the models document it on /docs), and their translation from the services' messages.

Conventions (docs/admin.md): money as `<name>_micros` (integer micro-units) plus `<name>` (the
same amount as a decimal string with six places); times as RFC 3339 UTC; a limit of null is
unlimited."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crossmodel.auth.v1 import auth_pb2
from crossmodel.billing.v1 import billing_pb2
from crossmodel.events.v1 import usage_event_pb2
from crossmodel.usage.v1 import usage_pb2
from crossmodel_edge.domain.admin import (
    entry_kind_name,
    from_ms,
    key_status_name,
    money,
    status_name,
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors -----------------------------------------------------------------------------------


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    error: ErrorObject


ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "A parameter or the body is invalid; `param` names it"},
    401: {"model": ErrorBody, "description": "No admin token, or a wrong one"},
    404: {"model": ErrorBody, "description": "No such resource, or the admin API is disabled"},
    409: {"model": ErrorBody, "description": "Conflicts with the current state"},
    # Also keeps FastAPI from documenting a 422: validation errors are answered as 400.
    "4XX": {"model": ErrorBody, "description": "Any refusal has this shape"},
}


# -- accounts and money -----------------------------------------------------------------------


class AccountCreate(_In):
    name: str = Field(min_length=1, max_length=200, examples=["acme"])


class Account(BaseModel):
    object: Literal["account"] = "account"
    id: str
    name: str
    created_at: datetime
    disabled: bool

    @classmethod
    def of(cls, a: auth_pb2.Account) -> Account:
        created = from_ms(a.created_at_unix_ms)
        assert created is not None
        return cls(id=a.id, name=a.name, created_at=created, disabled=a.disabled)


class Balance(BaseModel):
    object: Literal["balance"] = "balance"
    account_id: str
    currency: str
    balance_micros: int
    balance: str
    total_credited_micros: int
    total_credited: str
    total_charged_micros: int
    total_charged: str

    @classmethod
    def of(cls, b: billing_pb2.GetBalanceResponse) -> Balance:
        return cls(
            account_id=b.account_id,
            currency=b.currency,
            balance_micros=b.balance_micros,
            balance=money(b.balance_micros),
            total_credited_micros=b.total_credited_micros,
            total_credited=money(b.total_credited_micros),
            total_charged_micros=b.total_charged_micros,
            total_charged=money(b.total_charged_micros),
        )


class AccountDetail(Account):
    balance: Balance


class AccountList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Account]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last")


class CreditCreate(_In):
    """Exactly one of `amount` and `amount_micros`."""

    amount: str | None = Field(default=None, description="Decimal, at most six places", examples=["10.50"])
    amount_micros: int | None = Field(default=None, description="Integer micro-units", examples=[10_500_000])
    description: str = Field(default="", max_length=500)


class AdjustmentCreate(CreditCreate):
    """Exactly one of `amount` and `amount_micros`, either sign; the reason is required."""

    description: str = Field(min_length=1, max_length=500, description="Why; it stays in the ledger")


class LedgerEntry(BaseModel):
    object: Literal["ledger_entry"] = "ledger_entry"
    id: str
    account_id: str
    kind: Literal["charge", "top_up", "adjustment"]
    amount_micros: int = Field(description="Signed: charges negative, credits positive")
    amount: str
    balance_after_micros: int
    balance_after: str
    request_id: str | None
    idempotency_key: str | None
    key_id: str | None
    model: str | None
    description: str
    created_at: datetime

    @classmethod
    def of(cls, e: billing_pb2.LedgerEntry) -> LedgerEntry:
        created = from_ms(e.created_at_unix_ms)
        assert created is not None
        return cls(
            id=e.id,
            account_id=e.account_id,
            kind=entry_kind_name(e.kind),  # type: ignore[arg-type]
            amount_micros=e.amount_micros,
            amount=money(e.amount_micros),
            balance_after_micros=e.balance_after_micros,
            balance_after=money(e.balance_after_micros),
            request_id=e.request_id or None,
            idempotency_key=e.idempotency_key or None,
            key_id=e.key_id or None,
            model=e.model or None,
            description=e.description,
            created_at=created,
        )


class Credit(BaseModel):
    object: Literal["credit"] = "credit"
    entry: LedgerEntry
    replayed: bool = Field(description="The Idempotency-Key was used before; nothing new was credited")
    balance_micros: int
    balance: str


class LedgerPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[LedgerEntry]
    next_page_token: str | None


# -- keys ---------------------------------------------------------------------------------------


class LimitsIn(_In):
    """In a create, a missing or null field is unlimited. In an update, a missing field keeps
    its value and a null one removes the limit."""

    rpm: int | None = Field(default=None, ge=0, description="Requests per minute")
    tpm: int | None = Field(default=None, ge=0, description="Tokens per minute")
    allowed_models: list[str] | None = Field(
        default=None, description="Glob patterns like anthropic/*; empty or null = every model"
    )
    spend_cap: str | None = Field(default=None, description="Lifetime spend cap, decimal", examples=["25.00"])
    spend_cap_micros: int | None = Field(default=None, ge=0, description="The same in micro-units")
    expires_at: datetime | None = Field(default=None, description="RFC 3339; naive times are UTC")

    @model_validator(mode="after")
    def _one_cap(self) -> LimitsIn:
        if self.spend_cap is not None and self.spend_cap_micros is not None:
            raise ValueError("give spend_cap or spend_cap_micros, not both")
        return self


class Limits(BaseModel):
    rpm: int | None
    tpm: int | None
    allowed_models: list[str]
    spend_cap_micros: int | None
    spend_cap: str | None
    expires_at: datetime | None

    @classmethod
    def of(cls, lim: auth_pb2.KeyLimits) -> Limits:
        return cls(
            rpm=lim.rpm or None,
            tpm=lim.tpm or None,
            allowed_models=list(lim.allowed_models),
            spend_cap_micros=lim.spend_cap_micros or None,
            spend_cap=money(lim.spend_cap_micros) if lim.spend_cap_micros else None,
            expires_at=from_ms(lim.expires_at_unix_ms),
        )


class KeyCreate(_In):
    name: str = Field(min_length=1, max_length=200, examples=["production"])
    limits: LimitsIn = Field(default_factory=lambda: LimitsIn())


class KeyUpdate(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    limits: LimitsIn | None = None


class Key(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    account_id: str
    name: str
    redacted: str = Field(description="cm-…last4; the secret is never shown again")
    status: Literal["active", "revoked", "expired"]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    limits: Limits

    @classmethod
    def of(cls, k: auth_pb2.ApiKey) -> Key:
        created = from_ms(k.created_at_unix_ms)
        assert created is not None
        return cls(
            id=k.id,
            account_id=k.account_id,
            name=k.name,
            redacted=k.redacted,
            status=key_status_name(k.status),  # type: ignore[arg-type]
            created_at=created,
            last_used_at=from_ms(k.last_used_at_unix_ms),
            revoked_at=from_ms(k.revoked_at_unix_ms),
            limits=Limits.of(k.limits),
        )


class KeyCreated(Key):
    secret: str = Field(description="The API key itself. Shown in this response only; store it now")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Key]


# -- usage --------------------------------------------------------------------------------------


class Totals(BaseModel):
    requests: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cost_micros: int
    cost: str
    errors: int

    @classmethod
    def of(cls, t: usage_pb2.Totals) -> Totals:
        return cls(
            requests=t.requests,
            input_tokens=t.input_tokens,
            output_tokens=t.output_tokens,
            cached_input_tokens=t.cached_input_tokens,
            reasoning_tokens=t.reasoning_tokens,
            cost_micros=t.cost_micros,
            cost=money(t.cost_micros),
            errors=t.errors,
        )


class DailyUsage(Totals):
    day: str = Field(description="YYYY-MM-DD (UTC)")
    key_id: str
    model: str

    @classmethod
    def of_day(cls, d: usage_pb2.DailyUsage) -> DailyUsage:
        return cls(day=d.day, key_id=d.key_id, model=d.model, **Totals.of(d.totals).model_dump())


class Usage(BaseModel):
    object: Literal["usage"] = "usage"
    account_id: str
    key_id: str | None
    model: str | None
    from_day: str | None
    to_day: str | None
    totals: Totals
    daily: list[DailyUsage] = Field(description="One row per day, key and model, oldest first")


class RequestRecord(BaseModel):
    object: Literal["request"] = "request"
    request_id: str
    account_id: str
    key_id: str
    key_name: str
    model: str
    provider: str
    deployment: str
    upstream_model: str
    protocol: str
    stream: bool
    status: Literal["succeeded", "failed", "cancelled", "unspecified"]
    http_status: int
    error_type: str | None
    error_message: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_micros: int
    cost: str
    started_at: datetime | None
    finished_at: datetime | None
    latency_ms: int
    upstream_latency_ms: int
    ttft_ms: int
    finish_reason: str | None
    end_user: str | None
    usage_estimated: bool

    @classmethod
    def of(cls, e: usage_event_pb2.UsageEvent) -> RequestRecord:
        return cls(
            request_id=e.request_id,
            account_id=e.account_id,
            key_id=e.key_id,
            key_name=e.key_name,
            model=e.model,
            provider=e.provider,
            deployment=e.deployment,
            upstream_model=e.upstream_model,
            protocol=e.protocol,
            stream=e.stream,
            status=status_name(e.status),  # type: ignore[arg-type]
            http_status=e.http_status,
            error_type=e.error_type or None,
            error_message=e.error_message or None,
            input_tokens=e.input_tokens,
            output_tokens=e.output_tokens,
            cached_input_tokens=e.cached_input_tokens,
            cache_write_tokens=e.cache_write_tokens,
            reasoning_tokens=e.reasoning_tokens,
            cost_micros=e.cost_micros,
            cost=money(e.cost_micros),
            started_at=from_ms(e.started_at_unix_ms),
            finished_at=from_ms(e.finished_at_unix_ms),
            latency_ms=e.latency_ms,
            upstream_latency_ms=e.upstream_latency_ms,
            ttft_ms=e.ttft_ms,
            finish_reason=e.finish_reason or None,
            end_user=e.end_user or None,
            usage_estimated=e.usage_estimated,
        )


class RequestPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[RequestRecord]
    next_page_token: str | None
