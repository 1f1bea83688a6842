"""The ledger's values and the rules that need no I/O. Amounts are integer micro-units."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class EntryKind(Enum):
    CHARGE = "charge"
    TOP_UP = "top_up"
    ADJUSTMENT = "adjustment"


class BillingError(Exception):
    pass


class InvalidArgument(BillingError):
    pass


class FailedPrecondition(BillingError):
    pass


class Unavailable(BillingError):
    """The ledger change is durable but could not be published; a retry publishes it."""


class InvalidEvent(BillingError):
    """A usage event that can never be billed (it goes to the dead-letter topic)."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: str
    account_id: str
    kind: EntryKind
    amount_micros: int  # signed: charges negative, credits positive
    balance_after_micros: int
    created_at_ms: int
    request_id: str = ""
    idempotency_key: str = ""
    description: str = ""
    key_id: str = ""
    model: str = ""


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: str
    balance_micros: int = 0
    total_charged_micros: int = 0
    total_credited_micros: int = 0
    # Bumped by every ledger entry of the account, in commit order; the balance state in Redis
    # only accepts a publish with a higher version than it holds.
    version: int = 0


@dataclass(frozen=True, slots=True)
class Charge:
    request_id: str
    account_id: str
    key_id: str
    model: str
    cost_micros: int
    description: str = ""


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    applied: bool  # False: the request id was charged before; nothing changed
    balance: Balance
    key_spent_micros: int | None


@dataclass(frozen=True, slots=True)
class Credit:
    account_id: str
    amount_micros: int
    idempotency_key: str
    description: str
    adjustment: bool


@dataclass(frozen=True, slots=True)
class CreditOutcome:
    entry: LedgerEntry
    replayed: bool
    balance: Balance


def validate_charge(charge: Charge) -> None:
    if not charge.request_id:
        raise InvalidEvent("request_id is empty")
    if not charge.account_id:
        raise InvalidEvent("account_id is empty")
    if charge.cost_micros < 0:
        raise InvalidEvent(f"cost_micros is negative ({charge.cost_micros})")


def validate_credit(credit: Credit) -> None:
    if not credit.account_id:
        raise InvalidArgument("account_id is required")
    if not credit.idempotency_key:
        raise InvalidArgument("idempotency_key is required: a replayed request must not credit twice")
    if credit.adjustment:
        if credit.amount_micros == 0:
            raise InvalidArgument("an adjustment must not be zero")
    elif credit.amount_micros <= 0:
        raise InvalidArgument("amount_micros must be positive for a top-up")


def same_credit(entry: LedgerEntry, credit: Credit) -> bool:
    kind = EntryKind.ADJUSTMENT if credit.adjustment else EntryKind.TOP_UP
    return entry.kind is kind and entry.amount_micros == credit.amount_micros
