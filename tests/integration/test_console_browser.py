"""The console in a real browser (Debian's Chromium driven by Playwright) against the whole
system: sign up, sign in, top up, create a key, call the API with it through the OpenAI SDK, find
the request in the log and the chart, revoke the key and see the API refuse it. Each page is
saved as a screenshot under test-artifacts/console/."""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from crossmodel_common.ids import new_ulid
from crossmodel_devstack.harness import Harness, eventually

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "console"
PASSWORD = "browser test password"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Chromium is not installed: `make test` installs it (Debian package `chromium`)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def balance_text(page: Page) -> str:
    await page.goto(page.url.split("/console/")[0] + "/console/balance")
    return (await page.locator("#balance").inner_text()).strip()


async def test_console_end_to_end(harness: Harness, browser: Browser, model: str) -> None:
    base = harness.edge_url
    email = f"browser-{new_ulid()}@example.com"
    # The edge trusts X-Forwarded-For from loopback (uvicorn's default): a fresh address per run
    # keeps the per-address sign-up limit in a shared Redis this run's own.
    address = {"x-forwarded-for": "2001:db8::" + ":".join(secrets.token_hex(2) for _ in range(4))}
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, extra_http_headers=address)
    page = await context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())

    # Not signed in: the console sends us to sign-in.
    await page.goto(f"{base}/console/")
    await expect(page).to_have_url(re.compile(r"/console/signin$"))
    await shot(page, "01-signin")

    # Sign up.
    await page.get_by_role("link", name="Create one").click()
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Account name").fill("Browser Test Co")
    await page.get_by_label("Password", exact=False).first.fill(PASSWORD)
    await page.get_by_label("Password again").fill(PASSWORD)
    await shot(page, "02-signup")
    await page.get_by_role("button", name="Create account").click()
    await expect(page).to_have_url(re.compile(r"/console/keys\?done=welcome$"))
    await expect(page.get_by_role("status")).to_contain_text("Your account is ready")

    # Sign out, then sign in again.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/console/signin"))
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    await shot(page, "03-signin-error")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/console/keys$"))

    # Top up through the development provider and see the balance change.
    await page.get_by_role("link", name="Balance").click()
    await expect(page.locator("#balance")).to_have_text("0.00 USD")
    await page.get_by_label("Amount").fill("10")
    await page.get_by_role("button", name="Add credit").click()
    await expect(page.get_by_role("status")).to_contain_text("balance is topped up")
    await expect(page.locator("#balance")).to_have_text("10.00 USD")

    # Create a key: the secret is shown once, with a copy button.
    await page.get_by_role("link", name="Keys").click()
    await page.get_by_label("Name").fill("browser key")
    await page.get_by_role("button", name="Create key").click()
    secret = (await page.locator("#new-secret").inner_text()).strip()
    assert secret.startswith("cm-")
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_role("button", name="Copied")).to_be_visible()
    await shot(page, "04-keys-created")
    await page.reload()
    assert secret not in await page.content()

    # Call the API with it through the OpenAI SDK.
    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=secret, max_retries=0, timeout=30) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Hello from the console test"}]
        )
        request_id = raw.headers["x-request-id"]
        completion = raw.parse()
        assert completion.usage is not None
        tokens_in, tokens_out = completion.usage.prompt_tokens, completion.usage.completion_tokens

        # The request appears in the log (after the usage service consumed its event).
        async def in_log() -> bool:
            await page.goto(f"{base}/console/requests")
            return await page.locator(f'a[href="/console/requests/{request_id}"]').count() > 0

        await eventually(in_log, timeout=60, interval=0.5, what="the request in the console's log")
        await page.get_by_label("Request id").fill(request_id)
        await page.get_by_role("button", name="Search").click()
        await expect(page.locator("#request-log tbody tr")).to_have_count(1)
        await shot(page, "05-requests")
        await page.get_by_role("link", name=request_id).click()
        await expect(page.locator("h1")).to_contain_text(request_id)
        await expect(page.locator("main")).to_contain_text(model)
        await expect(page.locator("main")).to_contain_text(f"{tokens_in:,}")
        await shot(page, "06-request-detail")

        # ... and in the usage chart.
        await page.get_by_role("link", name="Usage").click()
        await expect(page.locator("#total-requests")).to_have_text("1")
        bars = page.locator("#tokens-chart rect.s-in, #tokens-chart rect.s-out")
        assert await bars.count() >= 1
        await expect(page.locator("#per-model")).to_contain_text(model)
        tooltip = await page.locator("#tokens-chart g title").evaluate_all(
            "els => els.map(e => e.textContent)"
        )
        assert any(
            f"Input tokens: {tokens_in:,}" in t and f"Output tokens: {tokens_out:,}" in t for t in tooltip
        )
        await shot(page, "07-usage")

        # The charge reached the balance.
        async def charged() -> bool:
            return await balance_text(page) != "10.00 USD"

        await eventually(charged, timeout=60, interval=0.5, what="the charge on the balance page")
        await expect(page.locator("main")).to_contain_text(request_id)
        await shot(page, "08-balance")

        await page.get_by_role("link", name="Models").click()
        await page.locator(f"details[id='{model.replace('/', '--')}'] summary").click()
        await expect(page.locator("main")).to_contain_text("from openai import OpenAI")
        await shot(page, "09-models")

        # Revoke the key: the API refuses it at once.
        await page.get_by_role("link", name="Keys").click()
        await page.get_by_role("link", name="browser key").click()
        await shot(page, "10-key")
        await page.get_by_role("button", name="Revoke key").click()
        await expect(page.get_by_role("status")).to_contain_text("Key revoked")
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "again"}])
        assert refused.value.status_code == 401

    # A narrow screen (a phone): the same pages stay usable.
    phone = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    await phone.add_cookies(await context.cookies())
    small = await phone.new_page()
    for path, name in (("/console/usage", "11-usage-phone"), ("/console/requests", "12-requests-phone")):
        await small.goto(f"{base}{path}")
        width = await small.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"
        await shot(small, name)
    await phone.close()
    await context.close()
