"""Fixtures for the staff console in a real browser: Debian's Chromium driven by Playwright, against the app
served over HTTP on a free port. One server and one browser per test module; each module names its own
xdist_group, so the modules run side by side. Every page visited is checked with axe-core (no serious or
critical violations) and laid out at tablet and desktop size without the page scrolling sideways. With
``KARTKA_CONSOLE_SCREENSHOTS`` set, each is also photographed at
both sizes into ``screenshots/console/`` (git-ignored) for a reviewer to look at: a second apiece, so
not on every run."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe  # type: ignore[import-untyped]
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright, expect

from boot.web import create_app
from kartka.clock import FakeClock
from kartka.db import Pool
from kartka.settings import Settings
from kartka.staff import Role, create_staff
from tests.helpers import PASSWORDS
from tests.served import Served

#: Debian's headless build of Chromium (``chromium-headless-shell``, what Playwright runs headless), else the
#: full browser: the same engine, a third of the CPU.
CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[3] / "screenshots" / "console"
PASSWORD = "correct horse battery staple"
SIZES: dict[str, ViewportSize] = {"tablet": {"width": 820, "height": 1180}, "desktop": {"width": 1440, "height": 900}}


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if CHROMIUM is None and not os.environ.get("CI"):  # scripts/test installs it where it can (root, apt-get)
        pytest.skip("neither chromium-headless-shell nor chromium is installed (scripts/test installs one as root)")


@pytest.fixture(scope="module")
def served(settings: Settings, clock: FakeClock) -> Iterator[Served]:
    with Served(create_app(settings, clock=clock)) as server:
        yield server


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        await chromium.close()


@pytest.fixture
async def context(browser: Browser, served: Served) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(base_url=served.base, viewport=SIZES["desktop"], locale="en-GB")
    context.set_default_timeout(20_000)
    yield context
    await context.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


_AXE = Axe()
# A loaded CI machine answers slowly; a wrong page fails on its content, not on a timeout.
expect.set_options(timeout=20_000)


async def look(page: Page, name: str) -> None:
    """Check the page with axe-core, and that it fits both sizes' width (a wide table scrolls in its own
    box, never the page); photograph it at both when asked (``KARTKA_CONSOLE_SCREENSHOTS``)."""
    results = await _AXE.run(page)
    bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: " + "; ".join(f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in bad)
    photograph = bool(os.environ.get("KARTKA_CONSOLE_SCREENSHOTS"))
    if photograph:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for size, viewport in SIZES.items():
        await page.set_viewport_size(viewport)
        overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} at {size} size scrolls sideways by {overflow} px"
        if photograph:
            await page.screenshot(path=SCREENSHOTS / f"{name}-{size}.png", full_page=True)
    await page.set_viewport_size(SIZES["desktop"])


async def htmx_ready(page: Page, selector: str) -> None:
    """Wait until htmx has taken up ``selector``: typing into a page that is still loading its deferred
    htmx would be typing into a plain form, and the preview the test waits for would never come."""
    await expect(page.locator(selector)).to_have_count(1)  # a wrong selector fails here, by name
    await page.wait_for_function(
        "(selector) => document.querySelector(selector)['htmx-internal-data'] !== undefined", arg=selector
    )


async def staff(pool: Pool, username: str, role: Role) -> str:
    async with pool.acquire() as conn:
        await create_staff(conn, PASSWORDS, username=username, role=role, password=PASSWORD)
    return username


async def sign_in_as(page: Page, username: str, target: str = "/console") -> None:
    await page.goto(target)
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()
