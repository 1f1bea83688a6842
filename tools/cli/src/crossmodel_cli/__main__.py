"""`crossmodel`: the operator command line over the admin API.

Reads CROSSMODEL_ADMIN_URL (default http://127.0.0.1:8080) and CROSSMODEL_ADMIN_TOKEN, which
`make run` writes to .crossmodel/dev.env. Tables by default, `--json` for machines. Exit status 0
on success, 1 when the API refused, 2 for a usage mistake, 3 when the API cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from crossmodel_cli.client import (
    DEFAULT_URL,
    EXIT_USAGE,
    TOKEN_VAR,
    URL_VAR,
    AdminClient,
    CliError,
)
from crossmodel_cli.render import fields, table, when

Handler = Callable[[AdminClient, argparse.Namespace, TextIO], None]


def _emit(out: TextIO, args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n" if args.json else text() + "\n")


# -- accounts -----------------------------------------------------------------------------------


def _account_rows(accounts: Sequence[dict[str, Any]]) -> str:
    return table(
        ["ID", "NAME", "CREATED", "DISABLED"],
        [[a["id"], a["name"], when(a["created_at"]), a["disabled"]] for a in accounts],
    )


def accounts_create(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    account = api.request("POST", "/accounts", json={"name": args.name})
    _emit(out, args, account, lambda: _account_rows([account]))


def accounts_list(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    accounts: list[dict[str, Any]] = []
    token = ""
    while True:
        page = api.request("GET", "/accounts", params={"limit": 1000, "page_token": token})
        accounts += page["data"]
        token = page["next_page_token"] or ""
        if not token:
            break
    _emit(out, args, accounts, lambda: _account_rows(accounts))


def _balance_block(b: dict[str, Any]) -> list[tuple[str, Any]]:
    cur = b["currency"]
    return [
        ("balance", f"{b['balance']} {cur}"),
        ("total credited", f"{b['total_credited']} {cur}"),
        ("total charged", f"{b['total_charged']} {cur}"),
    ]


def accounts_show(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    a = api.request("GET", f"/accounts/{args.account}")
    _emit(
        out,
        args,
        a,
        lambda: fields(
            [
                ("id", a["id"]),
                ("name", a["name"]),
                ("created", when(a["created_at"])),
                ("disabled", a["disabled"]),
                *_balance_block(a["balance"]),
            ]
        ),
    )


# -- money --------------------------------------------------------------------------------------


def _credit(api: AdminClient, args: argparse.Namespace, out: TextIO, path: str) -> None:
    key = args.idempotency_key or f"cli-{uuid.uuid4()}"
    body: dict[str, Any] = {"amount": args.amount}
    if args.description:
        body["description"] = args.description
    result = api.request(
        "POST", f"/accounts/{args.account}/{path}", json=body, headers={"idempotency-key": key}
    )
    entry = result["entry"]

    def text() -> str:
        lines = [
            fields(
                [
                    ("entry", entry["id"]),
                    ("kind", entry["kind"]),
                    ("amount", entry["amount"]),
                    ("balance", result["balance"]),
                    ("idempotency key", key),
                ]
            )
        ]
        if result["replayed"]:
            lines.append("Already recorded under this idempotency key: nothing new was credited.")
        return "\n".join(lines)

    _emit(out, args, result, text)


def credit(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    _credit(api, args, out, "credits")


def adjust(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    _credit(api, args, out, "adjustments")


def balance(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    b = api.request("GET", f"/accounts/{args.account}/balance")
    _emit(out, args, b, lambda: fields([("account", b["account_id"]), *_balance_block(b)]))


def ledger(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    page = api.request(
        "GET", f"/accounts/{args.account}/ledger", params={"limit": args.limit, "page_token": args.page_token}
    )

    def text() -> str:
        rows = [
            [
                when(e["created_at"]),
                e["kind"],
                e["amount"],
                e["balance_after"],
                e["request_id"] or e["idempotency_key"],
                e["model"] or e["description"],
            ]
            for e in page["data"]
        ]
        body = table(["TIME", "KIND", "AMOUNT", "BALANCE", "REFERENCE", "DETAIL"], rows)
        return body + _next_hint(page)

    _emit(out, args, page, text)


def _next_hint(page: dict[str, Any]) -> str:
    token = page.get("next_page_token")
    return f"\nMore: add --page-token {token}" if token else ""


# -- keys ---------------------------------------------------------------------------------------


def _key_rows(keys: Sequence[dict[str, Any]]) -> str:
    return table(
        [
            "ID",
            "NAME",
            "KEY",
            "STATUS",
            "CREATED",
            "LAST USED",
            "RPM",
            "TPM",
            "MODELS",
            "SPEND CAP",
            "EXPIRES",
        ],
        [
            [
                k["id"],
                k["name"],
                k["redacted"],
                k["status"],
                when(k["created_at"]),
                when(k["last_used_at"]),
                k["limits"]["rpm"],
                k["limits"]["tpm"],
                k["limits"]["allowed_models"] or "all",
                k["limits"]["spend_cap"],
                when(k["limits"]["expires_at"]),
            ]
            for k in keys
        ],
    )


def _unlimited(value: str) -> bool:
    return value.strip().lower() in ("none", "never", "unlimited", "0")


def _limits(args: argparse.Namespace, *, update: bool) -> dict[str, Any]:
    """Only the options given; in an update 0/none removes a limit."""
    limits: dict[str, Any] = {}
    if args.rpm is not None:
        limits["rpm"] = args.rpm or None
    if args.tpm is not None:
        limits["tpm"] = args.tpm or None
    if args.models is not None:
        limits["allowed_models"] = args.models
    if update and args.all_models:
        limits["allowed_models"] = None
    if args.spend_cap is not None:
        limits["spend_cap"] = None if _unlimited(args.spend_cap) else args.spend_cap
    if args.expires is not None:
        limits["expires_at"] = None if _unlimited(args.expires) else args.expires
    return limits


def keys_create(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    key = api.request(
        "POST",
        f"/accounts/{args.account}/keys",
        json={"name": args.name, "limits": _limits(args, update=False)},
    )
    _emit(
        out,
        args,
        key,
        lambda: _key_rows([key]) + f"\n\nSecret (shown once, store it now):\n{key['secret']}",
    )


def keys_list(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    keys = api.request("GET", f"/accounts/{args.account}/keys")["data"]
    _emit(out, args, keys, lambda: _key_rows(keys))


def keys_show(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    key = api.request("GET", f"/keys/{args.key}")
    _emit(out, args, key, lambda: _key_rows([key]))


def keys_update(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    body: dict[str, Any] = {}
    if args.name is not None:
        body["name"] = args.name
    limits = _limits(args, update=True)
    if limits:
        body["limits"] = limits
    if not body:
        raise CliError("nothing to change: give --name or a limit option", EXIT_USAGE)
    key = api.request("PATCH", f"/keys/{args.key}", json=body)
    _emit(out, args, key, lambda: _key_rows([key]))


def keys_revoke(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    key = api.request("POST", f"/keys/{args.key}/revoke")
    _emit(out, args, key, lambda: _key_rows([key]))


# -- usage --------------------------------------------------------------------------------------


def usage(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    u = api.request(
        "GET",
        f"/accounts/{args.account}/usage",
        params={"key_id": args.key, "model": args.model, "from": args.start, "to": args.end},
    )

    def text() -> str:
        t = u["totals"]
        head = fields(
            [
                ("requests", t["requests"]),
                ("errors", t["errors"]),
                ("input tokens", t["input_tokens"]),
                ("output tokens", t["output_tokens"]),
                ("cached input tokens", t["cached_input_tokens"]),
                ("reasoning tokens", t["reasoning_tokens"]),
                ("cost", t["cost"]),
            ]
        )
        rows = [
            [
                d["day"],
                d["key_id"],
                d["model"],
                d["requests"],
                d["input_tokens"],
                d["output_tokens"],
                d["cost"],
                d["errors"],
            ]
            for d in u["daily"]
        ]
        days = table(["DAY", "KEY", "MODEL", "REQUESTS", "INPUT", "OUTPUT", "COST", "ERRORS"], rows)
        return f"{head}\n\n{days}"

    _emit(out, args, u, text)


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "request_id": args.request_id,
        "key_id": args.key,
        "model": args.model,
        "status": args.status,
        "from": args.start,
        "to": args.end,
    }


def requests(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    page = api.request(
        "GET",
        f"/accounts/{args.account}/requests",
        params={**_filters(args), "limit": args.limit, "page_token": args.page_token},
    )

    def text() -> str:
        rows = [
            [
                when(r["started_at"]),
                r["request_id"],
                r["key_name"] or r["key_id"],
                r["model"],
                r["status"],
                r["http_status"],
                r["input_tokens"],
                r["output_tokens"],
                r["cost"],
                r["latency_ms"],
            ]
            for r in page["data"]
        ]
        headers = [
            "STARTED",
            "REQUEST ID",
            "KEY",
            "MODEL",
            "STATUS",
            "HTTP",
            "INPUT",
            "OUTPUT",
            "COST",
            "LATENCY MS",
        ]
        return table(headers, rows) + _next_hint(page)

    _emit(out, args, page, text)


def export(api: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    chunks = api.stream(f"/accounts/{args.account}/requests.csv", params=_filters(args))
    if args.output:
        with open(args.output, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        return
    binary = getattr(out, "buffer", None)
    for chunk in chunks:
        if binary is not None:
            binary.write(chunk)
        else:
            out.write(chunk.decode())
    out.flush()


# -- arguments ----------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On the top parser with defaults; repeated on every command so they may come after it too.
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print the API's JSON instead of tables",
    )
    parser.add_argument(
        "--url", default=default, help=f"admin API base URL (${URL_VAR}, default {DEFAULT_URL})"
    )
    parser.add_argument("--token", default=default, help=f"admin token (${TOKEN_VAR})")


def _limit_options(p: argparse.ArgumentParser, *, update: bool) -> None:
    p.add_argument("--rpm", type=int, help="requests per minute (0 = unlimited)")
    p.add_argument("--tpm", type=int, help="tokens per minute (0 = unlimited)")
    p.add_argument("--models", nargs="+", metavar="PATTERN", help="allowed models, e.g. 'anthropic/*'")
    if update:
        p.add_argument("--all-models", action="store_true", help="allow every model again")
    p.add_argument("--spend-cap", metavar="AMOUNT", help="lifetime spend cap, e.g. 25.00 (none = no cap)")
    p.add_argument("--expires", metavar="ISO8601", help="expiry, e.g. 2027-01-31T00:00:00Z (never = none)")


def _filter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--request-id", help="one request by its x-request-id")
    p.add_argument("--key", help="key id")
    p.add_argument("--model", help="model id, e.g. openai/gpt-4o-mini")
    p.add_argument("--status", choices=["succeeded", "failed", "cancelled"])
    p.add_argument("--from", dest="start", metavar="TIME", help="RFC 3339 start (inclusive)")
    p.add_argument("--to", dest="end", metavar="TIME", help="RFC 3339 end (exclusive)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="crossmodel",
        description="Operate CrossModel: accounts, credits, API keys and usage, over the admin API.",
        epilog=f"Environment: {URL_VAR}, {TOKEN_VAR} (make run writes both to .crossmodel/dev.env).",
    )
    _common(top, top=True)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler, help_: str
    ) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help_, description=help_)
        _common(p, top=False)
        p.set_defaults(handler=handler)
        return p

    accounts = commands.add_parser("accounts", help="create, list and show accounts")
    acc = accounts.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(acc, "create", accounts_create, "create an account").add_argument("name")
    command(acc, "list", accounts_list, "list every account")
    command(acc, "show", accounts_show, "an account and its balance").add_argument("account")

    for name, handler, help_ in (
        ("credit", credit, "top up an account (a replay with the same --idempotency-key credits once)"),
        ("adjust", adjust, "correct a balance by a signed amount, with a reason"),
    ):
        p = command(commands, name, handler, help_)
        p.add_argument("account")
        p.add_argument("amount", help="decimal amount, e.g. 10.50")
        p.add_argument("--idempotency-key", help="default: a new random key, printed")
        p.add_argument("--description", required=name == "adjust", help="kept in the ledger")

    command(commands, "balance", balance, "an account's balance").add_argument("account")
    p = command(commands, "ledger", ledger, "an account's ledger, newest first")
    p.add_argument("account")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--page-token")

    keys = commands.add_parser("keys", help="create, list, show, update and revoke API keys")
    ks = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = command(ks, "create", keys_create, "create a key; its secret is printed once")
    p.add_argument("account")
    p.add_argument("name")
    _limit_options(p, update=False)
    command(ks, "list", keys_list, "an account's keys").add_argument("account")
    command(ks, "show", keys_show, "one key").add_argument("key")
    p = command(ks, "update", keys_update, "rename a key or change its limits")
    p.add_argument("key")
    p.add_argument("--name")
    _limit_options(p, update=True)
    command(ks, "revoke", keys_revoke, "revoke a key").add_argument("key")

    p = command(commands, "usage", usage, "usage totals and daily rows per key and model")
    p.add_argument("account")
    p.add_argument("--key", help="key id")
    p.add_argument("--model")
    p.add_argument("--from", dest="start", metavar="DAY", help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--to", dest="end", metavar="DAY", help="last day, YYYY-MM-DD (UTC), inclusive")

    p = command(commands, "requests", requests, "search the request log, newest first")
    p.add_argument("account")
    _filter_options(p)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--page-token")

    p = command(commands, "export", export, "the request log as CSV (to stdout or --output)")
    p.add_argument("account")
    _filter_options(p)
    p.add_argument("-o", "--output", metavar="FILE")
    return top


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = parser().parse_args(argv)
    url = args.url or os.environ.get(URL_VAR) or DEFAULT_URL
    token = args.token or os.environ.get(TOKEN_VAR, "")
    if not token:
        err.write(
            f"crossmodel: no admin token: set {TOKEN_VAR} or pass --token "
            "(after `make run`: set -a; . .crossmodel/dev.env; set +a)\n"
        )
        return EXIT_USAGE
    try:
        with AdminClient(url, token) as api:
            args.handler(api, args, out)
    except CliError as exc:
        err.write(f"crossmodel: {exc}\n")
        return exc.exit_code
    except BrokenPipeError:
        # `crossmodel export … | head`: the reader left; not an error of ours.
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
