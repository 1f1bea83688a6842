"""The body of GET /v1/account: balance, usage totals and the calling key."""

from __future__ import annotations

from typing import Any

from crossmodel.auth.v1 import auth_pb2
from crossmodel.billing.v1 import billing_pb2
from crossmodel.usage.v1 import usage_pb2
from crossmodel_common.money import format_micros


def _status(status: int) -> str:
    return auth_pb2.KeyStatus.Name(status).removeprefix("KEY_STATUS_").lower()  # type: ignore[arg-type]


def key_object(key: auth_pb2.ApiKey) -> dict[str, Any]:
    lim = key.limits
    return {
        "id": key.id,
        "name": key.name,
        "redacted": key.redacted,
        "status": _status(key.status),
        "created_at_unix_ms": key.created_at_unix_ms,
        "last_used_at_unix_ms": key.last_used_at_unix_ms or None,
        "limits": {
            "rpm": lim.rpm or None,
            "tpm": lim.tpm or None,
            "allowed_models": list(lim.allowed_models),
            "spend_cap_micros": lim.spend_cap_micros or None,
            "expires_at_unix_ms": lim.expires_at_unix_ms or None,
        },
    }


def account_object(
    key: auth_pb2.ApiKey, balance: billing_pb2.GetBalanceResponse, totals: usage_pb2.Totals
) -> dict[str, Any]:
    """Money as integer micro-units plus the same amount as a decimal string; null limits are
    unlimited."""
    return {
        "object": "account",
        "account_id": key.account_id,
        "balance": {
            "currency": balance.currency or None,
            "balance_micros": balance.balance_micros,
            "balance": format_micros(balance.balance_micros),
            "total_charged_micros": balance.total_charged_micros,
            "total_credited_micros": balance.total_credited_micros,
        },
        "usage": {
            "requests": totals.requests,
            "input_tokens": totals.input_tokens,
            "output_tokens": totals.output_tokens,
            "cached_input_tokens": totals.cached_input_tokens,
            "reasoning_tokens": totals.reasoning_tokens,
            "cost_micros": totals.cost_micros,
            "cost": format_micros(totals.cost_micros),
            "errors": totals.errors,
        },
        "key": key_object(key),
    }
