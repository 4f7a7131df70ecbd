"""The operators' page in a real headless Chromium: dual control across two browsers.

Debian's chromium is driven through playwright's own protocol client, pointed at the
installed executable (no browser is downloaded). The test skips only when no chromium
binary exists.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.ops.testing import LoopThread, OpsRig

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
SCREENSHOT_DIR = Path("/tmp")
LIVE_WITHIN_MS = 2_000   # the brief: the other operator's page shows a change within 2 s
STEP_TIMEOUT_MS = 15_000  # any one step of the page (sign-in, first snapshot)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    loop = LoopThread()
    ops_rig = loop.run(OpsRig(tmp_path_factory.mktemp("ops-browser")).start())
    yield loop, ops_rig
    loop.run(ops_rig.stop())
    loop.close()


@pytest.fixture(scope="module")
def browser() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium binary at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def sign_in(browser: Any, url: str, user: str, locale: str) -> Any:
    page = browser.new_context(locale=locale).new_page()
    page.goto(url + "/ops/")
    page.fill("#login-user", user)
    page.fill("#login-password", f"{user}-demo")
    page.click("#login-submit")
    page.wait_for_selector("#live.on", timeout=STEP_TIMEOUT_MS)
    return page


def test_a_supervisors_approval_reaches_the_operators_page_live(rig: Any,
                                                                browser: Any) -> None:
    """op1 asks to cancel, sup1 approves, op1's page shows it cancelled without a reload."""
    loop, ops_rig = rig
    pid = loop.run(ops_rig.submit("browser-1", amount="88888.00"))["id"]
    operator = sign_in(browser, ops_rig.url, "op1", "zh-CN")
    supervisor = sign_in(browser, ops_rig.url, "sup1", "en-US")
    operator.evaluate("window.__noReload = true")

    operator.click(f'#t-payments button[data-action="cancel"][data-target="{pid}"]')
    operator.fill("#action-note", "客户要求撤销")
    operator.click("#action-send")
    operator.wait_for_selector("#action-text:has-text('#1')", timeout=STEP_TIMEOUT_MS)
    approve = supervisor.wait_for_selector('#t-pending button[data-decide="approve"]',
                                           timeout=STEP_TIMEOUT_MS)
    own_buttons = operator.locator('#t-pending button[data-decide="approve"]').count()
    approve.click()
    operator.wait_for_selector(f'#t-payments tr[data-id="{pid}"][data-state="cancelled"]',
                               timeout=LIVE_WITHIN_MS)
    operator.wait_for_selector('#t-requests tr[data-id="1"][data-state="executed"]',
                               timeout=LIVE_WITHIN_MS)
    operator.screenshot(path=str(SCREENSHOT_DIR / "paygate-ops-operator.png"), full_page=True)
    supervisor.screenshot(path=str(SCREENSHOT_DIR / "paygate-ops-supervisor.png"),
                          full_page=True)

    assert operator.evaluate("window.__noReload") is True
    assert own_buttons == 0
    assert operator.text_content("h1 [data-i18n=title]") == "运营台"
    assert supervisor.text_content("h1 [data-i18n=title]") == "Operations console"
    assert "sup1" in operator.text_content("#t-audit")


def test_the_language_switch_and_sign_out(rig: Any, browser: Any) -> None:
    """The page switches between Chinese and English in place; sign-out shows the form."""
    _, ops_rig = rig
    page = sign_in(browser, ops_rig.url, "dir1", "en-US")
    english = page.text_content("#c-window")
    page.click("#lang")
    chinese = page.text_content("#c-window")
    page.click("#signout")
    page.wait_for_selector("#login-form", state="visible", timeout=STEP_TIMEOUT_MS)

    assert "business preparation" in english and "营业准备" in chinese
    assert page.is_hidden("#main")
