"""The operators' page in a real headless Chromium: dual control across two browsers.

Debian's chromium is driven through playwright's own protocol client, pointed at the
installed executable (no browser is downloaded). The test skips only when no chromium
binary exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.ops.live import PUSH_EVERY_S
from gateway.ops.snapshot import FRESH_S
from gateway.ops.testing import LoopThread, OpsRig, console_call, hvps_sending_held, serving

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
SCREENSHOT_DIR = Path("/tmp")
LIVE_WITHIN_MS = 2_000   # the brief: the other operator's page shows a change within 2 s
# A change no action made (the pipeline's, the window's) wakes no page: the page sees it
# at its next push, which may still carry the shared snapshot built up to FRESH_S before
# the change, so only the push after that one is sure to show it. Beyond those waits, the
# same 2 s an action's change has to be built, sent and drawn.
REFRESHED_WITHIN_MS = round((PUSH_EVERY_S + FRESH_S) * 1000) + LIVE_WITHIN_MS
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


def sign_in(browser: Any, url: str, user: str, locale: str, width_px: int | None = None) -> Any:
    viewport = {"width": width_px, "height": 900} if width_px else None
    page = browser.new_context(locale=locale, viewport=viewport).new_page()
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
    supervisor.wait_for_selector('#action-bar[data-mode="approve"]', timeout=STEP_TIMEOUT_MS)
    asked = supervisor.text_content("#action-text")
    still_pending = loop.run(ops_rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT state FROM ops_requests WHERE id = 1", ())))[0]
    supervisor.click("#action-send")
    operator.wait_for_selector(f'#t-payments tr[data-id="{pid}"][data-state="cancelled"]',
                               timeout=LIVE_WITHIN_MS)
    operator.wait_for_selector('#t-requests tr[data-id="1"][data-state="executed"]',
                               timeout=LIVE_WITHIN_MS)
    operator.screenshot(path=str(SCREENSHOT_DIR / "paygate-ops-operator.png"), full_page=True)
    supervisor.screenshot(path=str(SCREENSHOT_DIR / "paygate-ops-supervisor.png"),
                          full_page=True)

    assert operator.evaluate("window.__noReload") is True
    assert own_buttons == 0
    assert still_pending == "pending"  # the click on Approve only asked to confirm
    assert "Approve request #1" in asked and "Cancel" in asked
    assert pid in asked and "88,888.00" in asked
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


def test_failed_webhook_rows_are_sent_again_from_the_page(rig: Any, browser: Any) -> None:
    """A webhook row failed past its attempts is listed with its changes; op1 resends it
    (no second person needed): the request is executed at once and the row leaves the
    list, pending again on the webhook stream. The page's icon is the gateway's own."""
    loop, ops_rig = rig
    row = loop.run(ops_rig.gw.store.run(lambda tx: tx.query_one(
        "INSERT INTO outbox (kind, stream, state, envelope, attempts, created_at, "
        "updated_at) VALUES ('webhook', 'webhook', 'failed', ?, 24, ?, ?) RETURNING id",
        (b'[{"id":"P-hook-1","state":"settled"},{"id":"P-hook-2","state":"settled"}]',
         "2026-12-07T09:00:00+08:00", "2026-12-07T10:10:00+08:00"))))[0]
    asked: list[str] = []
    page = browser.new_context(locale="en-US").new_page()
    page.on("request", lambda request: asked.append(request.url))
    page.goto(ops_rig.url + "/ops/")
    page.fill("#login-user", "op1")
    page.fill("#login-password", "op1-demo")
    page.click("#login-submit")
    listed = page.wait_for_selector(f'#t-webhooks tr[data-id="{row}"]',
                                    timeout=STEP_TIMEOUT_MS).text_content()
    resend_all = page.text_content("#webhooks-all")

    page.click(f'#t-webhooks button[data-action="webhook_resend"][data-target="{row}"]')
    page.fill("#action-note", "core system back")
    page.click("#action-send")
    page.wait_for_selector("#action-text:has-text('executed')", timeout=STEP_TIMEOUT_MS)
    page.wait_for_selector(f'#t-webhooks tr[data-id="{row}"]', state="detached",
                           timeout=LIVE_WITHIN_MS)
    state = loop.run(ops_rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT state, attempts FROM outbox WHERE id = ?", (row,))))
    icon = page.evaluate("""async () => {
        const link = document.querySelector("link[rel=icon]");
        const answer = await fetch(link.href);
        const usual = await fetch("/favicon.ico");
        return [link.getAttribute("href"), answer.status,
                answer.headers.get("content-type"), (await answer.text()).slice(0, 4),
                new URL(usual.url).pathname, usual.status];
    }""")

    assert "P-hook-1" in listed and "P-hook-2" in listed
    assert "Resend all (1)" in resend_all
    assert tuple(state) == ("pending", 0)
    assert icon[:2] == ["/ops/static/favicon.svg", 200]
    assert icon[2].startswith("image/svg+xml") and icon[3] == "<svg"
    assert icon[4:] == ["/ops/static/favicon.svg", 200]  # /favicon.ico leads to it
    assert asked and all(url.startswith(ops_rig.url) for url in asked), asked


def test_a_suspense_payment_is_returned_from_its_detail_view(rig: Any, browser: Any) -> None:
    """A suspense item's detail view offers Return and Keep; op1 asks for the return
    with a reason, the Requests tables name the action (退汇, Return to sender), and
    sup1's Reject asks first, naming the action, the payment and its amount."""
    loop, ops_rig = rig
    pid = loop.run(ops_rig.receive(1, 65_432_10))
    operator = sign_in(browser, ops_rig.url, "op1", "zh-CN")
    supervisor = sign_in(browser, ops_rig.url, "sup1", "en-US")

    operator.fill('#search-form input[name="id"]', pid)
    operator.click('#search-form button[type="submit"]')
    operator.click(f'#t-payments tr[data-id="{pid}"] a.link')
    operator.wait_for_selector(
        f'#detail-actions button[data-action="return"][data-target="{pid}"]',
        timeout=STEP_TIMEOUT_MS)
    offered = operator.eval_on_selector_all("#detail-actions button",
                                            "nodes => nodes.map(n => n.dataset.action)")
    operator.click('#detail-actions button[data-action="return"]')
    operator.fill("#action-note", "查无此户")
    operator.click("#action-send")
    operator.wait_for_selector("#action-text:has-text('#')", timeout=STEP_TIMEOUT_MS)
    reject = supervisor.wait_for_selector(
        f'#t-pending tr:has-text("{pid}") button[data-decide="reject"]', timeout=STEP_TIMEOUT_MS)
    pending_row = supervisor.text_content(f'#t-pending tr:has-text("{pid}")')
    reject.click()
    supervisor.wait_for_selector('#action-bar[data-mode="reject"]', timeout=STEP_TIMEOUT_MS)
    asked = supervisor.text_content("#action-text")
    supervisor.fill("#action-note", "reason unclear")
    supervisor.click("#action-send")
    operator.wait_for_selector(f'#t-requests tr:has-text("{pid}")[data-state="rejected"]',
                               timeout=STEP_TIMEOUT_MS)
    operator_row = operator.text_content(f'#t-requests tr:has-text("{pid}")')
    decided = loop.run(ops_rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT action, note, state, decision_note FROM ops_requests WHERE target = ?",
        (pid,))))

    assert offered == ["return", "suspense_keep", "suspense_apply"]
    assert "Return to sender" in pending_row and "65,432.10" in pending_row
    assert "Reject request" in asked and "Return to sender" in asked
    assert pid in asked and "65,432.10" in asked
    assert "退汇" in operator_row and "a_return" not in operator_row
    assert tuple(decided) == ("return", "查无此户", "rejected", "reason unclear")


def test_a_suspense_item_is_applied_to_an_account_from_its_detail_view(rig: Any,
                                                                      browser: Any) -> None:
    """op1 applies a suspense item from its detail view, typing the account and why; sup1
    is asked to confirm naming the item's pending number and the account, approves, and
    the payment is credited to that account."""
    loop, ops_rig = rig
    pid = loop.run(ops_rig.receive(2, 12_345_00))
    pending_no = loop.run(ops_rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT pending_no FROM payments WHERE id = ?", (pid,))))[0]
    operator = sign_in(browser, ops_rig.url, "op1", "zh-CN")
    supervisor = sign_in(browser, ops_rig.url, "sup1", "en-US")

    operator.fill('#search-form input[name="id"]', pid)
    operator.click('#search-form button[type="submit"]')
    operator.click(f'#t-payments tr[data-id="{pid}"] a.link')
    operator.click(f'#detail-actions button[data-action="suspense_apply"][data-target="{pid}"]',
                   timeout=STEP_TIMEOUT_MS)
    account_shown = operator.is_visible("#action-account")
    operator.fill("#action-account", ops_rig.payer_account)
    operator.fill("#action-note", "客户来电确认")
    operator.click("#action-send")
    operator.wait_for_selector("#action-text:has-text('#')", timeout=STEP_TIMEOUT_MS)
    approve = supervisor.wait_for_selector(
        f'#t-pending tr:has-text("{pid}") button[data-decide="approve"]',
        timeout=STEP_TIMEOUT_MS)
    approve.click()
    supervisor.wait_for_selector('#action-bar[data-mode="approve"]', timeout=STEP_TIMEOUT_MS)
    asked = supervisor.text_content("#action-text")
    account_hidden = not supervisor.is_visible("#action-account")
    supervisor.click("#action-send")
    operator.wait_for_selector(f'#t-requests tr:has-text("{pid}")[data-state="executed"]',
                               timeout=STEP_TIMEOUT_MS)
    state = loop.run(ops_rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT state FROM payments WHERE id = ?", (pid,))))[0]

    assert account_shown and account_hidden
    assert "Apply to an account" in asked and pending_no in asked
    assert ops_rig.payer_account in asked and "12,345.00" in asked
    assert state == "credited"


def test_the_approver_sees_the_priority_a_request_asks_for(rig: Any, browser: Any) -> None:
    """A priority change is decided on the lane it asks for: the pending row and the
    confirmation bar both name it, not only the payment."""
    loop, ops_rig = rig
    pid = loop.run(ops_rig.submit("browser-priority-1", amount="100.00"))["id"]
    asked, _ = loop.run(console_call(ops_rig.url, "POST", "/ops/api/requests", "op1", {
        "action": "priority", "target": pid, "params": {"priority": 1}, "note": ""}))
    supervisor = sign_in(browser, ops_rig.url, "sup1", "en-US")
    approve = supervisor.wait_for_selector(
        f'#t-pending tr:has-text("{pid}") button[data-decide="approve"]',
        timeout=STEP_TIMEOUT_MS)
    pending_row = supervisor.text_content(f'#t-pending tr:has-text("{pid}")')
    approve.click()
    supervisor.wait_for_selector('#action-bar[data-mode="approve"]', timeout=STEP_TIMEOUT_MS)
    confirming = supervisor.text_content("#action-text")

    assert asked == 201
    assert "priority 1 URGT" in pending_row
    assert pid in confirming and "priority 1 URGT" in confirming


# Where each button of the "Held for review" table is, seen from the page: its box, the
# visible box of its panel, and whether a click at its centre reaches it.
REVIEW_BUTTONS_JS = """() => {
    const panel = document.querySelector("#t-review").closest(".panel");
    window.scrollTo(0, window.scrollY + panel.getBoundingClientRect().top - 10);
    const box = panel.getBoundingClientRect();
    return [panel.scrollLeft, [...document.querySelectorAll("#t-review button")].map((b) => {
        const r = b.getBoundingClientRect();
        const hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
        return {action: b.dataset.action, text: b.textContent,
                inside: r.left >= box.left && r.right <= box.right - 1,
                reachable: hit !== null && b.contains(hit)};
    })];
}"""
# A payment held for review takes a cancel, a new priority (which decides nothing about
# its money) and, from a supervisor, the review's pass and fail.
REVIEW_ACTIONS = ["cancel", "priority", "review_approve", "review_reject"]


@pytest.fixture(scope="module")
def review_rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("ops-review"),
                 {"review_threshold_fen": 10_000_00}) as (loop, ops_rig):
        loop.run(ops_rig.submit("review-1", amount="50000.00",
                                payee_name="某某市某某区某某有限责任公司第二分公司"))
        yield loop, ops_rig


@pytest.mark.parametrize("width_px", [1400, 600])
def test_a_held_for_review_rows_buttons_are_all_in_view(review_rig: Any, browser: Any,
                                                        width_px: int) -> None:
    """A supervisor sees and can click every button of a payment held for review,
    "Pass review" included, without scrolling the table sideways: at 1400 px the
    buttons wrap within their cell; in a narrow window that cell stays at the row's end
    while the other columns scroll beneath it."""
    _, ops_rig = review_rig
    page = sign_in(browser, ops_rig.url, "sup1", "en-US", width_px)
    page.wait_for_selector('#t-review button[data-action="review_approve"]',
                           timeout=STEP_TIMEOUT_MS)
    scrolled, buttons = page.evaluate(REVIEW_BUTTONS_JS)

    assert scrolled == 0
    assert [b["action"] for b in buttons] == REVIEW_ACTIONS
    assert "Pass review" in [b["text"] for b in buttons]
    assert [b["action"] for b in buttons if not (b["inside"] and b["reachable"])] == []


def test_a_parked_credit_is_applied_from_the_held_for_review_list(rig: Any,
                                                                   browser: Any) -> None:
    """A credit whose payer the screening lists is parked in suspense and shown in the
    "Held for review" table, held for review beside its state, its row offering Return
    and Apply to an account (not the review's pass and fail); op1 applies it to the
    payee's account from the row, sup1 approves, and it leaves the table, credited. The
    row names the payer the list matched."""
    loop, ops_rig = rig
    pid = loop.run(ops_rig.receive(3, 4_321_00, ops_rig.payer_account, "示例客户甲",
                                   payer_name="示例受限贸易有限公司"))
    operator = sign_in(browser, ops_rig.url, "op1", "en-US")
    supervisor = sign_in(browser, ops_rig.url, "sup1", "en-US")
    operator.wait_for_selector(f'#t-review tr[data-id="{pid}"] button',
                               timeout=STEP_TIMEOUT_MS)
    row = operator.query_selector(f'#t-review tr[data-id="{pid}"]')
    badges = [b.get_attribute("data-state") for b in row.query_selector_all(".state")]
    cells = [c.inner_text() for c in row.query_selector_all("td")]
    buttons = row_buttons(operator, "t-review", pid)
    operator.click(f'#t-review tr[data-id="{pid}"] button[data-action="suspense_apply"]')
    operator.fill("#action-account", ops_rig.payer_account)
    operator.fill("#action-note", "合规部核查：非受限主体")
    operator.click("#action-send")
    operator.wait_for_selector("#action-text:has-text('#')", timeout=STEP_TIMEOUT_MS)
    supervisor.click(f'#t-pending tr:has-text("{pid}") button[data-decide="approve"]',
                     timeout=STEP_TIMEOUT_MS)
    supervisor.wait_for_selector('#action-bar[data-mode="approve"]', timeout=STEP_TIMEOUT_MS)
    supervisor.click("#action-send")
    operator.wait_for_selector(f'#t-review tr[data-id="{pid}"]', state="detached",
                               timeout=STEP_TIMEOUT_MS)
    state = loop.run(ops_rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT state FROM payments WHERE id = ?", (pid,))))[0]

    assert badges == ["suspense", "held_for_review"]
    assert "payer: 示例受限贸易有限公司" in cells  # the name the list matched, in its row
    assert buttons == ["return", "suspense_apply"]
    assert state == "credited"


@pytest.fixture(scope="module")
def debit_rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A gateway holding a debit another bank sent us whose creditor is listed."""
    from tests.test_beps_debit_screening import LISTED
    from tests.test_beps_debit_screening import Rig as DebitRig

    with serving(tmp_path_factory.mktemp("ops-debit-review")) as (loop, ops_rig):
        debits = DebitRig(loop, ops_rig)
        debit = debits.debit(LISTED)
        debits.receive(debit)
        yield loop, ops_rig, debits.payment_id(debit.tx_id)


def test_a_held_debit_is_shown_held_for_review_with_pass_and_fail(debit_rig: Any,
                                                                 browser: Any) -> None:
    """A debit another bank sent us that the screening holds is `received` and shown
    held for review beside it, in its row and its detail; a supervisor is offered the
    review's pass and fail (an incoming debit is not cancelled)."""
    _, ops_rig, pid = debit_rig
    page = sign_in(browser, ops_rig.url, "sup1", "en-US")
    row = page.wait_for_selector(f'#t-review tr[data-id="{pid}"]', timeout=STEP_TIMEOUT_MS)
    badges = [b.get_attribute("data-state") for b in row.query_selector_all(".state")]
    buttons = [b.get_attribute("data-action") for b in row.query_selector_all("button")]
    text = row.text_content()
    page.click(f'#t-review a:has-text("{pid}")')
    page.wait_for_selector("#detail:not(.hidden)", timeout=STEP_TIMEOUT_MS)
    title = page.text_content("#detail-title")

    assert badges == ["received", "held_for_review"]
    assert "held for review" in text and "screening_match_payee_name" in text
    assert buttons == ["review_approve", "review_reject"]
    assert "held for review" in title


def row_buttons(page: Any, table: str, pid: str) -> list[str]:
    selector = f'#{table} tr[data-id="{pid}"] button'
    return page.eval_on_selector_all(selector, "(bs) => bs.map((b) => b.dataset.action)")


def test_a_rows_buttons_are_what_a_request_would_be_taken_for(review_rig: Any,
                                                              browser: Any) -> None:
    """A cancel of a payment waits for approval: its row offers Hold and Priority, not
    Cancel again (request_already_pending); an operator's page shows a payment held
    for review its cancel and priority, without the review's pass and fail, which are a
    supervisor's."""
    loop, ops_rig = review_rig
    pid = loop.run(ops_rig.submit("pending-1", amount="100.00"))["id"]
    held = loop.run(ops_rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT id FROM payments WHERE reason LIKE 'review_%'", ())))[0]
    asked, _ = loop.run(console_call(ops_rig.url, "POST", "/ops/api/requests", "op2", {
        "action": "cancel", "target": pid, "params": {}, "note": ""}))
    page = sign_in(browser, ops_rig.url, "op1", "en-US")
    page.wait_for_selector(f'#t-payments tr[data-id="{pid}"] button[data-action="hold"]',
                           timeout=STEP_TIMEOUT_MS)
    page.wait_for_selector(f'#t-review tr[data-id="{held}"] button',
                           timeout=STEP_TIMEOUT_MS)

    assert asked == 201
    assert row_buttons(page, "t-payments", pid) == ["hold", "priority"]
    assert row_buttons(page, "t-review", held) == ["cancel", "priority"]


def test_a_payment_held_since_an_earlier_work_date_shows_its_date(review_rig: Any,
                                                                  browser: Any) -> None:
    """The "Held for review" table shows a payment's time alone when it is of today's
    work date, and its date too when it is of an earlier one."""
    from datetime import timedelta

    loop, ops_rig = review_rig
    earlier = (ops_rig.gw.work_date - timedelta(days=1)).isoformat()

    def backdate(tx: Any) -> tuple[str, str]:
        pid, at = tx.query_one("SELECT id, updated_at FROM payments WHERE state = 'held' "
                               "AND reason LIKE 'review_%'")
        tx.execute("UPDATE payments SET updated_at = ? WHERE id = ?", (earlier + at[10:], pid))
        return pid, at

    pid, was = loop.run(ops_rig.gw.store.run(backdate))
    try:
        page = sign_in(browser, ops_rig.url, "sup1", "en-US")
        page.wait_for_selector("#t-review tbody tr", timeout=STEP_TIMEOUT_MS)
        cells = page.eval_on_selector("#t-review tbody tr",
                                      "(row) => [...row.cells].map((c) => c.textContent)")
    finally:
        loop.run(ops_rig.gw.store.run(lambda tx: tx.execute(
            "UPDATE payments SET updated_at = ? WHERE id = ?", (was, pid))))

    assert pid in cells
    assert f"{earlier} {was[11:19]}" in cells


def test_the_link_card_says_the_session_as_last_known_while_the_link_is_down(
        rig: Any, browser: Any) -> None:
    """Link down, session logged in when the NPC last answered: the card does not read
    "DOWN · logged_in" as if both held now, in either language."""
    loop, ops_rig = rig
    gw = ops_rig.gw

    async def put(state: str, since: Any, cause: str, session: str) -> tuple:
        was = (gw.link.state, gw.link.since, gw.link.cause, gw.link_state)
        gw.link.state, gw.link.since, gw.link.cause, gw.link_state = \
            state, since, cause, session
        return was
    was = loop.run(put("down", gw.clock.now(), "link answered 503", "logged_in"))
    try:
        english = sign_in(browser, ops_rig.url, "op1", "en-US")
        chinese = sign_in(browser, ops_rig.url, "op1", "zh-CN")
        shown = [page.text_content("#c-link") for page in (english, chinese)]
    finally:
        loop.run(put(*was))

    assert shown == ["DOWN · session when the NPC last answered: logged in",
                     "中断 · NPC 最后应答时的会话状态: 已登录"]


def test_the_window_card_says_hvps_sending_is_held_since_when_and_why(
        rig: Any, browser: Any) -> None:
    """A refused ccms.801 holds HVPS sending: the window card says so in red, since when,
    the notice refused and the status the gateway kept, in either language; once the two
    are in step again the line goes, live."""
    loop, ops_rig = rig
    with hvps_sending_held(loop, ops_rig) as was:
        english = sign_in(browser, ops_rig.url, "op1", "en-US")
        chinese = sign_in(browser, ops_rig.url, "op1", "zh-CN")
        shown = [page.text_content("#c-sending") for page in (english, chinese)]
        red = english.get_attribute("#c-window", "class")
    english.wait_for_selector("#c-sending:empty", state="attached",
                              timeout=REFRESHED_WITHIN_MS)

    assert was is None
    assert shown == [
        ("HVPS sending HELD since 2026-12-07 07:00:00 · status notice refused: 10 → 00 "
         "(2026-12-07, illegal) · the gateway is on 10 (2026-12-07)"),
        ("大额发送已暂停 自 2026-12-07 07:00:00 · 已拒绝的状态通知： 10 → 00 "
         "(2026-12-07, illegal) · 网关状态 10 (2026-12-07)")]
    assert "error" in red
    assert "error" not in english.get_attribute("#c-window", "class")


def test_the_page_shows_the_last_hvps_reconciliation_and_asks_nothing_that_fails(
        rig: Any, browser: Any) -> None:
    """Before sign-in the page asks whether it is signed in without a 401 (no console
    error); signed in, its HVPS card shows the last reconciliation's work date, that it
    differed and each differing total in yuan, beside BEPS's; the clearing account card
    says it is our books' figure."""
    loop, ops_rig = rig
    differences = [{"mt": "hvps.111.001.01", "business_type": "A100", "field": "sent_fen",
                    "ours": 150_000_00, "npc": 150_001_00}]
    loop.run(ops_rig.gw.store.run(lambda tx: tx.execute(
        "INSERT INTO recon (work_date, system, at, reconciled, differences, totals) "
        "VALUES (?, 'HVPS', ?, 0, ?, ?)",
        ("2026-12-04", "2026-12-04T17:31:00+08:00", json.dumps(differences),
         json.dumps({"hvps.111.001.01/A100": [1, 150_000_00, 0, 0]})))))
    failed: list[str] = []
    errors: list[str] = []
    page = browser.new_context(locale="en-US").new_page()
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400
            else None)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(ops_rig.url + "/ops/")
    page.wait_for_selector("#login-form", state="visible", timeout=STEP_TIMEOUT_MS)
    before_sign_in = list(failed) + list(errors)
    page.fill("#login-user", "op1")
    page.fill("#login-password", "op1-demo")
    page.click("#login-submit")
    page.wait_for_selector("#live.on", timeout=STEP_TIMEOUT_MS)
    page.wait_for_selector("#c-hvps-recon:has-text('2026-12-04')", timeout=STEP_TIMEOUT_MS)
    card = page.text_content("#c-hvps-recon")
    detail = page.text_content("#c-hvps-recon-detail")
    differs = page.get_attribute("#c-hvps-recon", "class")
    clearing = page.text_content("#cards .card:has(#c-balance)")
    alerts_card = page.text_content("#cards .card:has(#c-alerts)")

    assert before_sign_in == []
    assert "DIFFERS" in card and "error" in differs
    assert "hvps.111.001.01/A100 sent_fen" in detail
    assert "150,000.00" in detail and "150,001.00" in detail
    assert "our books" in clearing and "not the NPC's balance" in clearing
    assert "Alerts open" in alerts_card and "in history" in alerts_card


def test_the_hvps_card_says_which_closed_dates_still_owe_their_reconciliation(
        rig: Any, browser: Any) -> None:
    """A closed date still owed its HVPS reconciliation (`hvps_reconciliation_owed`, as
    `ops status` says OWED) is said on the HVPS card, in red, before the last result (not
    its own), in English and in Chinese; it leaves the card once reconciled."""
    loop, ops_rig = rig
    day, since = "2026-12-03", "2026-12-03T20:30:05+08:00"
    loop.run(ops_rig.gw.store.run(lambda tx: tx.execute(
        "INSERT INTO recon_owed (work_date, owed_at) VALUES (?, ?)", (day, since))))
    try:
        english = sign_in(browser, ops_rig.url, "op1", "en-US")
        chinese = sign_in(browser, ops_rig.url, "sup1", "zh-CN")
        for page in (english, chinese):
            page.wait_for_selector(f"#c-hvps-recon:has-text('{day}')",
                                   timeout=REFRESHED_WITHIN_MS + STEP_TIMEOUT_MS)
        card_en = english.text_content("#c-hvps-recon")
        card_zh = chinese.text_content("#c-hvps-recon")
        red = english.get_attribute("#c-hvps-recon", "class")
    finally:
        loop.run(ops_rig.gw.store.run(lambda tx: tx.execute(
            "UPDATE recon_owed SET done_at = ? WHERE work_date = ?", (since, day))))
    english.wait_for_selector(f"#c-hvps-recon:not(:has-text('{day}'))",
                              timeout=REFRESHED_WITHIN_MS + STEP_TIMEOUT_MS)

    assert card_en == f"OWED: HVPS {day} (ledger day closed) since 2026-12-03 20:30:05"
    assert card_zh == f"待对账：大额 {day} （账务日已关闭） 自 2026-12-03 20:30:05"
    assert "error" in red


def test_the_live_badge_says_nothing_untrue_before_sign_in(rig: Any, browser: Any) -> None:
    """Before sign-in the page knows nothing of the live feed: no red `offline` badge
    while the gateway is up. Signed in, the first snapshot shows it `live`, and a switch
    of language keeps it so (in the other language); signed out, it is hidden again."""
    _, ops_rig = rig
    page = browser.new_context(locale="en-US").new_page()
    page.goto(ops_rig.url + "/ops/")
    page.wait_for_selector("#login-form", state="visible", timeout=STEP_TIMEOUT_MS)
    page.click("#lang")  # the page's language applied again: the badge stays hidden
    page.click("#lang")
    before = (page.is_visible("#live"), page.text_content("#live"))
    page.fill("#login-user", "op1")
    page.fill("#login-password", "op1-demo")
    page.click("#login-submit")
    page.wait_for_selector("#live.on", timeout=STEP_TIMEOUT_MS)
    signed_in = (page.is_visible("#live"), page.text_content("#live"))
    page.click("#lang")
    switched = (page.get_attribute("#live", "class"), page.text_content("#live"))
    page.click("#signout")
    page.wait_for_selector("#login-form", state="visible", timeout=STEP_TIMEOUT_MS)
    page.screenshot(path=str(SCREENSHOT_DIR / "paygate-ops-signed-out.png"))
    after = (page.is_visible("#live"), page.text_content("#live"))
    page.context.close()

    assert before == (False, "")
    assert signed_in == (True, "live")
    assert switched == ("live on", "实时")
    assert after == (False, "")


@pytest.fixture(scope="module")
def stuck_rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A gateway whose two payments have been `sent` for hours without a result."""
    with serving(tmp_path_factory.mktemp("ops-stuck")) as (loop, ops_rig):
        for n in range(2):
            pid = loop.run(ops_rig.submit(f"stuck-{n}", amount="100.00"))["id"]
            loop.run(ops_rig.gw.store.run(lambda tx, pid=pid: tx.execute(
                "UPDATE payments SET state = 'sent', updated_at = "
                "'2026-12-07T05:00:00+08:00' WHERE id = ?", (pid,))))
        yield loop, ops_rig


def test_a_cut_stuck_list_says_how_many_there_are_in_all(
        stuck_rig: Any, browser: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The "Stuck payments" table lists the oldest its lists hold and says so under its
    heading, "the oldest 1 of 2 shown", as the "Held for review" table does; in Chinese
    too. With room for all, it says how many there are."""
    from gateway.ops import snapshot, views

    loop, ops_rig = stuck_rig
    now = ops_rig.gw.clock.now()
    total, _ = loop.run(ops_rig.gw.store.run(lambda tx: views.stuck_total(tx, now)))
    monkeypatch.setattr(snapshot, "SNAPSHOT_LIST_MAX", 1)
    english = sign_in(browser, ops_rig.url, "op1", "en-US")
    chinese = sign_in(browser, ops_rig.url, "op1", "zh-CN")
    for page in (english, chinese):
        page.wait_for_selector("#t-stuck tbody tr", timeout=STEP_TIMEOUT_MS)
    cut = (english.text_content("#stuck-note"), chinese.text_content("#stuck-note"),
           english.locator("#t-stuck tbody tr").count())
    monkeypatch.setattr(snapshot, "SNAPSHOT_LIST_MAX", 50)
    whole = sign_in(browser, ops_rig.url, "op1", "en-US")
    whole.wait_for_selector(f"#stuck-note:has-text('{total} in all')",
                            timeout=REFRESHED_WITHIN_MS + STEP_TIMEOUT_MS)

    assert total >= 2
    assert cut == (f"the oldest 1 of {total} shown", f"显示最早的 1 笔，共 {total} 笔", 1)
    assert whole.locator("#t-stuck tbody tr").count() == total
