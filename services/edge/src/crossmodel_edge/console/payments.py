"""Top-ups through a payment provider. Every credit is a billing TopUp with an idempotency key,
so a resubmitted form or a redelivered webhook credits once.

- DevPayments: credits at once (development and tests only; CROSSMODEL_EDGE_CONSOLE_DEV_PAYMENTS).
- WebhookPayments: sends the user to the provider's hosted checkout with the account id as
  `client_reference_id`; the provider then calls POST /console/webhooks/payments with a signed
  `checkout.session.completed` event (Stripe's shape), which credits the paid amount with the
  event id as the idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import orjson

from crossmodel.billing.v1 import billing_pb2, billing_pb2_grpc

# Stripe amounts are in the currency's minor unit (cents for USD): 1 cent = 10,000 micro-units.
MICROS_PER_MINOR_UNIT = 10_000
CREDITING_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


@dataclass(frozen=True, slots=True)
class Checkout:
    redirect_url: str = ""  # continue at the provider
    credited_micros: int = 0  # credited already
    balance_micros: int = 0


class PaymentProvider(Protocol):
    name: str

    async def start(self, *, account_id: str, email: str, amount_micros: int, attempt_id: str) -> Checkout:
        """`attempt_id` is unique per top-up form shown, so submitting one form twice credits once."""
        ...


class DevPayments:
    name = "development"

    def __init__(self, billing: billing_pb2_grpc.BillingServiceAsyncStub, timeout: float) -> None:
        self._billing = billing
        self._timeout = timeout

    async def start(self, *, account_id: str, email: str, amount_micros: int, attempt_id: str) -> Checkout:
        resp = await self._billing.TopUp(
            billing_pb2.TopUpRequest(
                account_id=account_id,
                amount_micros=amount_micros,
                idempotency_key=f"console-dev:{attempt_id}",
                description="Top-up (development payment provider)",
            ),
            timeout=self._timeout,
        )
        return Checkout(credited_micros=amount_micros, balance_micros=resp.balance_micros)


class WebhookPayments:
    name = "checkout"

    def __init__(self, checkout_url: str) -> None:
        self._url = checkout_url

    async def start(self, *, account_id: str, email: str, amount_micros: int, attempt_id: str) -> Checkout:
        query = urlencode({"client_reference_id": account_id, "prefilled_email": email})
        sep = "&" if "?" in self._url else "?"
        return Checkout(redirect_url=f"{self._url}{sep}{query}")


class EventError(ValueError):
    """A signed event that can never be credited (the provider shows the message)."""


@dataclass(frozen=True, slots=True)
class PaidEvent:
    event_id: str
    account_id: str
    amount_micros: int
    currency: str


def parse_event(body: bytes) -> PaidEvent | None:
    """The credit a verified event asks for, None for event types that credit nothing."""
    try:
        event: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise EventError("the body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        raise EventError("the event has no id")
    if event.get("type") not in CREDITING_EVENTS:
        return None
    obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    if not isinstance(obj, dict):
        raise EventError("the event has no data.object")
    if obj.get("payment_status") != "paid":
        return None
    account_id, amount, currency = (
        obj.get("client_reference_id"),
        obj.get("amount_total"),
        obj.get("currency"),
    )
    if not isinstance(account_id, str) or not account_id:
        raise EventError("data.object.client_reference_id (the account id) is missing")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise EventError("data.object.amount_total must be a positive integer")
    if not isinstance(currency, str) or not currency:
        raise EventError("data.object.currency is missing")
    return PaidEvent(event["id"], account_id, amount * MICROS_PER_MINOR_UNIT, currency.upper())
