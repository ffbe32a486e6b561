"""The dashboard in a real headless browser (Debian's chromium and chromium-driver, driven
by selenium): it opens while an outage is scripted through the simulator and shows the
breaker state change; a screenshot of it is saved to ``out/dashboard.png``.

Selenium is blocking and the gateway runs on this test's event loop, so every browser call
runs in a thread (``asyncio.to_thread``)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hedgerow.sim.mock import RunningMock
from tests.observe.conftest import ROOT, FakeClock, config_for, running_app

SONNET = "anth/claude-sonnet-4-6"
ROUTES = {
    "support-chat": {
        "tiers": [[SONNET], ["oai/gpt-5.5"]],
        "retry": {"max_retries": 0},
        "minimal": {"kind": "template", "text": "Back soon."},
    },
    "classify": {
        "tiers": [[{"target": "gem/gemini-3-5-flash", "rpm": 600}], ["oai/gpt-4.1-mini"]],
        "retry": {"max_retries": 0},
    },
}


@pytest.fixture(scope="module")
def browser(browser_tools: None) -> Iterator[Any]:
    """One headless chromium for the module."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root (CI)
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1440,1200",
    ):
        options.add_argument(argument)
    service = Service(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def _text(driver: Any, css: str) -> str | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return None


async def shows(driver: Any, css: str, expected: str, timeout: float = 10.0) -> None:
    """Wait until the element at ``css`` reads ``expected`` (polling the real page)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = await asyncio.to_thread(_text, driver, css)
        if seen == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{css}: expected {expected!r}, the page shows {seen!r}")


def state_cell(deployment: str) -> str:
    return f'tr[data-deployment="{deployment}"] td[data-field="state"]'


async def test_dashboard_shows_the_breaker_open_and_close_live(
    mock: RunningMock, tmp_path: Path, browser: Any
) -> None:
    clock = FakeClock()
    config = config_for(
        mock,
        tmp_path,
        ROUTES,
        observe={"alerts": {"evaluate_every": 3600.0, "defaults": {"overload_burst": 3}}},
    )
    async with running_app(config, clock) as app:
        for _ in range(4):
            await app.chat("support-chat")
            await app.chat("classify")
        await asyncio.to_thread(browser.get, app.url + "/dashboard?refresh=0.2")
        await shows(browser, state_cell(SONNET), "closed")
        await shows(browser, "#overall", "OK")

        # Anthropic starts answering 529: three failovers and the breaker opens.
        mock.set_faults("claude-sonnet-4-6", {"kind": "error", "status": 529})
        for _ in range(3):
            assert (await app.chat("support-chat")).headers["x-hedgerow-tier"] == "1"
        app.observe.alerts.evaluate()
        await shows(browser, state_cell(SONNET), "open")
        await shows(browser, state_cell("oai/gpt-5.5"), "closed")
        await shows(browser, "#overall", "DEGRADED")
        await shows(browser, "#alert-count", "1")
        alert = await asyncio.to_thread(_text, browser, "#alerts li")
        assert alert is not None and alert.startswith("overload")
        error_rate = await asyncio.to_thread(
            _text, browser, f'tr[data-deployment="{SONNET}"] td[data-field="error-rate"]'
        )
        assert error_rate == "43%"  # 3 of 7 attempts in the window
        limit = await asyncio.to_thread(
            _text, browser, 'tr[data-deployment="gem/gemini-3-5-flash"] td[data-field="rate-limit"]'
        )
        assert limit is not None and limit.endswith("/600 rpm")
        # An operator pins `classify` to its secondary; the page says so.
        async with app.session.post(
            app.url + "/admin/routes/classify/pin", json={"tier": 1}
        ) as response:
            assert response.status == 200
        await shows(browser, "#operator-flags .flag", "classify pinned to tier 1")
        markers = await asyncio.to_thread(browser.find_elements, "css selector", "#timeline circle")
        assert len(markers) >= 6  # failovers, the breaker, the alert, the pin
        kinds = await asyncio.to_thread(
            lambda: [
                e.get_attribute("data-kind")
                for e in browser.find_elements("css selector", "#events li")
            ]
        )
        assert {"failover", "breaker", "alert", "operator"} <= set(kinds)

        out = ROOT / "out"
        out.mkdir(exist_ok=True)
        assert await asyncio.to_thread(browser.save_screenshot, str(out / "dashboard.png"))

        # The open period passes on the gateway's clock: half-open, then one probe closes it.
        mock.state.faults.clear()
        clock.advance(11.0)
        await shows(browser, state_cell(SONNET), "half-open")
        assert (await app.chat("support-chat")).headers["x-hedgerow-tier"] == "0"
        await shows(browser, state_cell(SONNET), "closed")
        assert (out / "dashboard.png").stat().st_size > 10_000


async def test_dashboard_assets_are_self_contained(mock: RunningMock, tmp_path: Path) -> None:
    async with running_app(config_for(mock, tmp_path, ROUTES), FakeClock()) as app:
        for path in ("/dashboard", "/dashboard/", "/dashboard/app.js", "/dashboard/app.css"):
            async with app.session.get(app.url + path) as response:
                assert response.status == 200, path
                body = await response.text()
                csp = response.headers["content-security-policy"]
                assert "default-src 'self'" in csp
                # Nothing fetched from the internet.
                assert "http://" not in body.replace("http://www.w3.org/2000/svg", "")
                assert "https://" not in body
        async with app.session.get(app.url + "/dashboard/secrets.txt") as response:
            assert response.status == 404
