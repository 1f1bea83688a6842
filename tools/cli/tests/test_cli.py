"""The crossmodel command line against a real edge and the real auth, billing and usage services."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crossmodel.events.v1 import usage_event_pb2 as ev
from crossmodel_cli.__main__ import main
from crossmodel_cli.render import table, when
from crossmodel_common.ids import new_request_id
from crossmodel_devstack.broker import free_port
from crossmodel_usage.domain.records import normalize
from crossmodel_usage.wire import record_from_event

from .conftest import CliRunner, Edge


async def new_account(cli: CliRunner, name: str = "acme") -> str:
    r = await cli("accounts", "create", name, "--json")
    assert r.code == 0, r.err
    return str(json.loads(r.out)["id"])


def as_json(out: str) -> Any:
    return json.loads(out)


# -- without a server -----------------------------------------------------------------------------


def test_usage_mistakes_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["keys", "create", "acct_1"])  # NAME missing
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["adjust", "acct_1", "5"])  # the reason is required
    assert exc.value.code == 2
    assert "--description" in capsys.readouterr().err

    monkeypatch.delenv("CROSSMODEL_ADMIN_TOKEN", raising=False)
    out, err = io.StringIO(), io.StringIO()
    assert main(["accounts", "list"], out, err) == 2
    assert "CROSSMODEL_ADMIN_TOKEN" in err.getvalue()
    assert out.getvalue() == ""


def test_an_unreachable_server_exits_3() -> None:
    out, err = io.StringIO(), io.StringIO()
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["--url", url, "--token", "t", "accounts", "list"], out, err) == 3
    assert f"cannot reach the admin API at {url}" in err.getvalue()


def test_tables_align_numbers_right_and_show_missing_values_as_dashes() -> None:
    text = table(["NAME", "RPM", "MODELS"], [["a", 5, ["x/*", "y/*"]], ["long-name", None, []]])
    assert text.splitlines() == [
        "NAME       RPM  MODELS",
        "a            5  x/*,y/*",
        "long-name    -  -",
    ]
    assert when("2026-11-20T12:00:00.123000Z") == "2026-11-20 12:00:00Z"
    assert when(None) == "-"


# -- against the edge -----------------------------------------------------------------------------


async def test_a_wrong_token_is_reported_with_the_api_message(cli: CliRunner, edge: Edge) -> None:
    r = await cli("--token", "nope", "accounts", "list")
    assert r.code == 1
    assert "Missing or wrong admin token" in r.err
    assert "HTTP 401" in r.err
    assert "invalid_admin_token" in r.err
    assert r.out == ""


async def test_accounts_credit_balance_and_ledger(cli: CliRunner) -> None:
    account = await new_account(cli, "acme-cli")
    r = await cli("accounts", "list")
    assert r.code == 0
    assert r.out.splitlines()[0].split() == ["ID", "NAME", "CREATED", "DISABLED"]
    assert any(line.split()[:2] == [account, "acme-cli"] for line in r.out.splitlines())

    r = await cli("credit", account, "10.50", "--idempotency-key", "inv-42", "--description", "invoice 42")
    assert r.code == 0, r.err
    assert "10.500000" in r.out
    assert "inv-42" in r.out
    assert "Already recorded" not in r.out
    replay = await cli("credit", account, "10.50", "--idempotency-key", "inv-42", "--json")
    assert replay.code == 0
    assert as_json(replay.out)["replayed"] is True
    again = await cli("credit", account, "10.50", "--idempotency-key", "inv-42")
    assert "Already recorded under this idempotency key" in again.out

    generated = await cli("credit", account, "0.25", "--json")
    assert as_json(generated.out)["entry"]["idempotency_key"].startswith("cli-")

    r = await cli("balance", account, "--json")
    assert as_json(r.out)["balance_micros"] == 10_750_000
    r = await cli("balance", account)
    assert r.out.splitlines()[1].split() == ["balance", "10.750000", "USD"]

    r = await cli("adjust", account, "-0.75", "--description", "goodwill correction")
    assert r.code == 0, r.err
    r = await cli("accounts", "show", account)
    assert "10.000000 USD" in r.out
    assert "acme-cli" in r.out

    r = await cli("ledger", account)
    lines = r.out.splitlines()
    assert lines[0].split() == ["TIME", "KIND", "AMOUNT", "BALANCE", "REFERENCE", "DETAIL"]
    kinds = sorted(line.split()[2] for line in lines[1:])
    assert kinds == ["adjustment", "top_up", "top_up"]
    assert sum("inv-42" in line for line in lines) == 1
    r = await cli("ledger", account, "--limit", "2", "--json")
    page = as_json(r.out)
    assert len(page["data"]) == 2
    rest = await cli("ledger", account, "--limit", "2", "--page-token", page["next_page_token"], "--json")
    assert len(as_json(rest.out)["data"]) == 1


async def test_api_refusals_exit_1_with_the_reason(cli: CliRunner) -> None:
    account = await new_account(cli)
    r = await cli("credit", account, "1.0000001")
    assert r.code == 1
    assert "more than six decimal places" in r.err
    assert "param amount" in r.err
    r = await cli("credit", "acct_missing", "1.00")
    assert r.code == 1
    assert "HTTP 404" in r.err
    r = await cli("credit", account, "5.00", "--idempotency-key", "k1")
    assert r.code == 0
    r = await cli("credit", account, "6.00", "--idempotency-key", "k1")
    assert r.code == 1
    assert "HTTP 409" in r.err
    r = await cli("keys", "create", account, "k", "--expires", "yesterday")
    assert r.code == 1
    assert "expires_at" in r.err
    r = await cli("keys", "update", "key_whatever")
    assert r.code == 2
    assert "nothing to change" in r.err


async def test_key_lifecycle(cli: CliRunner) -> None:
    account = await new_account(cli)
    expires = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    r = await cli(
        "keys",
        "create",
        account,
        "ci-key",
        "--rpm",
        "5",
        "--tpm",
        "1000",
        "--models",
        "openai/*",
        "anthropic/claude-*",
        "--spend-cap",
        "2.50",
        "--expires",
        expires.isoformat(),
    )
    assert r.code == 0, r.err
    secret = r.out.strip().splitlines()[-1]
    assert secret.startswith("cm-")
    assert "shown once" in r.out

    r = await cli("keys", "list", account)
    header, row = r.out.splitlines()
    assert re.split(r"\s{2,}", header) == [
        "ID", "NAME", "KEY", "STATUS", "CREATED", "LAST USED", "RPM", "TPM", "MODELS", "SPEND CAP", "EXPIRES",
    ]  # fmt: skip
    assert "ci-key" in row
    assert "cm-…" + secret[-4:] in row
    assert " active " in row
    assert "openai/*,anthropic/claude-*" in row
    assert "2.500000" in row
    assert secret not in r.out
    key_id = row.split()[0]

    listed = as_json((await cli("keys", "list", account, "--json")).out)
    limits = listed[0]["limits"]
    assert limits["rpm"] == 5
    assert limits["tpm"] == 1000
    assert limits["spend_cap_micros"] == 2_500_000
    assert limits["expires_at"] == expires.isoformat().replace("+00:00", "Z")

    r = await cli("keys", "update", key_id, "--name", "ci-key-2", "--rpm", "0", "--all-models", "--json")
    assert r.code == 0, r.err
    updated = as_json(r.out)
    assert updated["name"] == "ci-key-2"
    assert updated["limits"]["rpm"] is None
    assert updated["limits"]["tpm"] == 1000
    assert updated["limits"]["allowed_models"] == []
    r = await cli("keys", "update", key_id, "--spend-cap", "none", "--expires", "never", "--json")
    assert as_json(r.out)["limits"]["spend_cap"] is None
    assert as_json(r.out)["limits"]["expires_at"] is None

    r = await cli("keys", "revoke", key_id)
    assert r.code == 0
    assert " revoked " in r.out.splitlines()[1]
    r = await cli("keys", "show", key_id, "--json")
    assert as_json(r.out)["status"] == "revoked"


async def test_usage_requests_and_export(cli: CliRunner, edge: Edge, tmp_path: Path) -> None:
    account = await new_account(cli)
    start = datetime(2026, 11, 20, 9, tzinfo=UTC)
    events = []
    for i, (model, status) in enumerate(
        [
            ("openai/gpt-4o-mini", ev.REQUEST_STATUS_SUCCEEDED),
            ("openai/gpt-4o-mini", ev.REQUEST_STATUS_FAILED),
            ("anthropic/claude-sonnet-4.6", ev.REQUEST_STATUS_SUCCEEDED),
        ]
    ):
        ms = int((start + timedelta(minutes=i)).timestamp() * 1000)
        events.append(
            ev.UsageEvent(
                request_id=new_request_id(),
                account_id=account,
                key_id="key_cli",
                key_name="cli",
                model=model,
                status=status,
                http_status=200 if status == ev.REQUEST_STATUS_SUCCEEDED else 502,
                input_tokens=10,
                output_tokens=5,
                cost_micros=1_500,
                started_at_unix_ms=ms,
                finished_at_unix_ms=ms + 250,
                latency_ms=250,
            )
        )
    for e in events:
        assert await edge.usage.record(normalize(record_from_event(e)))

    r = await cli("usage", account)
    assert r.code == 0, r.err
    assert r.out.splitlines()[0].split() == ["requests", "3"]
    assert "0.004500" in r.out
    daily = r.out.split("\n\n")[1].splitlines()
    assert daily[0].split() == ["DAY", "KEY", "MODEL", "REQUESTS", "INPUT", "OUTPUT", "COST", "ERRORS"]
    assert len(daily) == 3
    r = await cli(
        "usage", account, "--model", "openai/gpt-4o-mini", "--from", "2026-11-20", "--to", "2026-11-20"
    )
    assert (
        as_json((await cli("usage", account, "--model", "openai/gpt-4o-mini", "--json")).out)["totals"][
            "errors"
        ]
        == 1
    )
    assert r.out.splitlines()[0].split() == ["requests", "2"]

    r = await cli("requests", account)
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["STARTED", "REQUEST", "ID"]
    assert [line.split()[2] for line in lines[1:]] == [e.request_id for e in reversed(events)]
    r = await cli("requests", account, "--request-id", events[1].request_id, "--json")
    found = as_json(r.out)["data"]
    assert [x["request_id"] for x in found] == [events[1].request_id]
    assert found[0]["status"] == "failed"
    r = await cli("requests", account, "--status", "failed", "--model", "openai/gpt-4o-mini", "--json")
    assert [x["request_id"] for x in as_json(r.out)["data"]] == [events[1].request_id]
    r = await cli("requests", account, "--limit", "2")
    assert "More: add --page-token" in r.out

    target = tmp_path / "usage.csv"
    r = await cli("export", account, "-o", str(target))
    assert r.code == 0, r.err
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [row["request_id"] for row in rows] == [e.request_id for e in reversed(events)]
    assert rows[1]["status"] == "failed"
    assert rows[1]["cost"] == "0.001500"


async def test_as_a_process_with_the_environment(edge: Edge, tmp_path: Path) -> None:
    """The installed entry point, configured only by CROSSMODEL_ADMIN_URL/_TOKEN."""

    async def run(*argv: str) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "crossmodel_cli",
            *argv,
            env=edge.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode is not None
        return proc.returncode, out, err

    code, out, err = await run("accounts", "create", "process", "--json")
    assert code == 0, err
    account = json.loads(out)["id"]
    code, out, err = await run("credit", account, "3.00", "--json")
    assert code == 0, err
    assert json.loads(out)["balance"] == "3.000000"
    code, out, err = await run("keys", "create", account, "proc", "--rpm", "7", "--json")
    assert code == 0, err
    assert json.loads(out)["limits"]["rpm"] == 7
    code, out, _ = await run("export", account)
    assert code == 0
    assert out.decode().splitlines()[0].startswith("request_id,started_at,")
    code, out, err = await run("balance", "acct_nope")
    assert code == 1
    assert out == b""
    assert b"HTTP 404" in err
