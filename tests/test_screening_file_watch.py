"""The screening list file edited while the gateway runs (docs/operations.md, "Review and
screening at intake"): a change that cannot be read (not TOML, deleted, an entry that is
not text) keeps the last good list in force, so a listed party is still held and no
payment is refused for the bank's own file; a critical alert names the file and its
problem, /health and `paygate ops status` show it, and a good file read again closes the
alert. A real gateway (embedded Redis, SQLite) with its console."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from gateway import api, critical
from gateway.ops import cli_render, snapshot
from gateway.ops.screening_watch import (ALERT_SCREENING_EMPTIED, ALERT_SCREENING_FILE,
                                         ScreeningWatch)
from gateway.ops.testing import LoopThread, OpsRig
from tests.test_ops_review import settled

LISTED = "示例受限贸易有限公司"
GOOD = f'names = ["{LISTED}"]\naccounts = []\n'


class Rig:
    def __init__(self, loop: LoopThread, rig: OpsRig, path: Path) -> None:
        self.loop, self.rig, self.gw, self.path = loop, rig, rig.gw, path
        self.keys = iter(range(1, 10_000))

    def write(self, text: str | None) -> None:
        """The file as an operator leaves it (None: deleted), then the watch's look."""
        if text is None:
            self.path.unlink()
        else:
            self.path.write_text(text, encoding="utf-8")
            settled(self.path)
        self.loop.run(self.gw.screening_watch.check())

    def submit(self, payee_name: str) -> dict[str, Any]:
        return self.loop.run(self.rig.submit(f"screen-file-{next(self.keys)}",
                                             payee_name=payee_name))

    def health(self) -> dict[str, Any]:
        request = types.SimpleNamespace(app={api.GATEWAY_KEY: self.gw})
        return json.loads(self.loop.run(api.health(request)).body)

    def alerts(self) -> list[tuple[int, dict[str, Any], str | None]]:
        rows = self.loop.run(self.gw.store.run(lambda tx: tx.query(
            "SELECT a.id, a.detail, k.by FROM alerts a LEFT JOIN alert_acks k "
            "ON k.alert_id = a.id WHERE a.code = ? ORDER BY a.id", (ALERT_SCREENING_FILE,))))
        return [(int(i), json.loads(detail), by) for i, detail, by in rows]

    def status_text(self) -> str:
        """`paygate ops status` as shown, its wrapped lines joined."""
        return " ".join(cli_render.status(self.loop.run(snapshot.status(self.gw))).split())


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("screen-file")
    path = folder / "screen.toml"
    path.write_text(GOOD, encoding="utf-8")
    loop = LoopThread()
    ops_rig = loop.run(OpsRig(folder / "data", {"screening_file": str(path)}).start())
    yield Rig(loop, ops_rig, path)
    loop.run(ops_rig.stop())
    loop.close()


@pytest.fixture
def mended(rig: Rig) -> Any:
    """The good list back after the test, and its alerts closed."""
    yield
    rig.write(GOOD)


# What breaks the file: (its text, None for deleted; the problem's code and a fragment of
# its words, which name the file and where in it).
BROKEN = [
    ('names = [ "x", ', "screening_file_unreadable", "is not TOML: "),
    (None, "screening_file_unreadable", "does not exist"),
    ("names = [1]\n", "screening_list_malformed", "entry 0 of `names` is not text but int"),
]


@pytest.mark.parametrize("text, code, words", BROKEN)
def test_a_broken_file_keeps_the_last_good_list_and_raises_a_critical_alert(
        rig: Rig, mended: None, text: str | None, code: str, words: str) -> None:
    """A listed payee is still held and a clear one is taken (201, never 500 nor 422);
    one critical alert names the file and its problem, and /health and `ops status`
    show the screening degraded."""
    alerts_before = len(rig.alerts())
    rig.write(text)
    held = rig.submit(LISTED)
    clear = rig.submit("收款单位乙")
    rig.loop.run(rig.gw.screening_watch.check())  # looked at again: no second alert
    raised = rig.alerts()[alerts_before:]
    health = rig.health()
    status = rig.status_text()

    assert held["state"] == "held" and held["reason"] == "screening_match_payee_name"
    assert clear["reason"] != "screening_match_payee_name"
    assert len(raised) == 1 and raised[0][2] is None
    detail = raised[0][1]
    assert detail["file"] == str(rig.path) and words in detail["problem"]
    assert [p["code"] for p in detail["problems"]] == [code]
    # /health asks no credentials: the state and since when, never the file or its
    # problems (those are the operators', in the alert and their status).
    assert health["attention"] is True
    assert sorted(health["screening"]) == ["since", "state"]
    assert health["screening"]["state"] == "degraded"
    assert health["critical_alerts"]["codes"].get(ALERT_SCREENING_FILE) == 1
    assert "screening list" in status and "screening file" in status and "CHANGE REFUSED" in status and words in status


def test_a_good_file_read_again_closes_the_alert(rig: Rig, mended: None) -> None:
    """The gateway closes its alert once the file is mended, and the new list is in force
    (the name the mended file lists is held, the one it no longer lists is not)."""
    rig.write('names = [ "x", ')
    rig.write('names = ["收款单位乙"]\n')
    newly_listed = rig.submit("收款单位乙")
    no_longer = rig.submit(LISTED)
    _, _, closed_by = rig.alerts()[-1]
    health = rig.health()
    still_open = rig.loop.run(rig.gw.store.run(critical.open_alerts))

    assert closed_by == critical.GATEWAY
    assert newly_listed["reason"] == "screening_match_payee_name"
    assert no_longer["reason"] != "screening_match_payee_name"
    assert health["screening"] == {"state": "ok"}
    assert ALERT_SCREENING_FILE not in still_open["codes"]


def test_a_process_whose_copy_is_good_leaves_the_alert_of_a_broken_copy(
        rig: Rig, mended: None) -> None:
    """Processes on two hosts read their own copies of the file: the alert raised by
    the one whose copy is broken names its host, and the other, whose copy reads well,
    neither closes it nor raises its own; it is closed once the copy that raised it is
    read well."""
    other = ScreeningWatch(rig.gw, host="another-host")
    before = len(rig.alerts())
    rig.write('names = [ "x", ')  # this host's copy broken: its watch raises
    rig.path.write_text(GOOD, encoding="utf-8")  # the other host's copy reads well
    settled(rig.path)
    rig.loop.run(other.check())
    after_other = rig.alerts()[before:]
    rig.loop.run(rig.gw.screening_watch.check())  # this host's copy mended
    after_own = rig.alerts()[before:]

    assert [(d["host"], by) for _, d, by in after_other] == [
        (rig.gw.screening_watch.host, None)]
    assert [(d["host"], by) for _, d, by in after_own] == [
        (rig.gw.screening_watch.host, critical.GATEWAY)]


def test_another_fault_replaces_the_alert_of_the_first(rig: Rig, mended: None) -> None:
    """A second broken change with another problem raises its own alert and closes the
    first's: one alert open, telling the problem of the file as it is now."""
    before = len(rig.alerts())
    rig.write('names = [ "x", ')
    rig.write("names = [1]\n")
    raised = rig.alerts()[before:]

    assert [by for _, _, by in raised] == [critical.GATEWAY, None]
    assert "entry 0 of `names` is not text but int" in raised[1][1]["problem"]


def test_an_incoming_credit_from_a_listed_payer_is_parked_while_the_file_is_broken(
        rig: Rig, mended: None) -> None:
    """Incoming credits are screened against the last good list too: the listed payer's
    credit is parked with the screening's reason, not failed in a loop."""
    rig.write('names = [ "x", ')
    pid = rig.loop.run(rig.rig.receive(1, 500_00, rig.rig.payer_account,
                                       payer_name=LISTED))
    state, reason = rig.loop.run(rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT state, reason FROM payments WHERE id = ?", (pid,))))

    assert (state, reason) == ("suspense", "screening_match_payer_name")


def test_the_list_in_force_is_shown_to_operators_not_on_health(rig: Rig, mended: None
                                                                ) -> None:
    """`ops status` shows the counts of the list in force and since when; /health (no
    credentials) shows neither."""
    rig.write(f'names = ["{LISTED}", "示例丁"]\naccounts = ["6200000000009999"]\n')
    status = rig.status_text()
    health = rig.health()

    assert "screening list 2 names, 1 accounts in force since" in status
    assert health["screening"] == {"state": "ok"}


def test_an_emptied_list_raises_a_critical_alert_closed_when_refilled(
        rig: Rig, mended: None) -> None:
    """A list emptied while running is taken (the bank's choice) but switches the
    screening off: one critical alert, /health `attention`; a list with entries again
    closes it."""
    def emptied() -> list[tuple[dict[str, Any], str | None]]:
        return [(json.loads(d), by) for d, by in rig.loop.run(rig.gw.store.run(
            lambda tx: tx.query(
                "SELECT a.detail, k.by FROM alerts a LEFT JOIN alert_acks k "
                "ON k.alert_id = a.id WHERE a.code = ? ORDER BY a.id",
                (ALERT_SCREENING_EMPTIED,))))]

    before = len(emptied())
    rig.write("names = []\naccounts = []\n")
    rig.loop.run(rig.gw.screening_watch.check())  # looked at again: no second alert
    clear = rig.submit(LISTED)
    health = rig.health()
    status = rig.status_text()
    raised = emptied()[before:]
    rig.write(GOOD)
    after = emptied()[before:]

    assert clear["reason"] != "screening_match_payee_name"
    assert len(raised) == 1 and raised[0][1] is None
    assert raised[0][0]["previous_names"] == 1 and raised[0][0]["file"] == str(rig.path)
    assert health["attention"] is True
    assert health["critical_alerts"]["codes"].get(ALERT_SCREENING_EMPTIED) == 1
    assert "0 names, 0 accounts" in status and "EMPTY" in status
    assert [by for _, by in after] == [critical.GATEWAY]


def _started_again(loop: LoopThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   text: str, died_once: bool = False) -> OpsRig:
    """A gateway that took GOOD from `tmp_path`/screen.toml (its copy kept in the data
    folder) and stopped, started again in a new process once the file holds `text`
    (`died_once`: after a start in another process that died once the list was taken,
    before its watch looked at it)."""
    from gateway.ops import review
    path = tmp_path / "screen.toml"
    path.write_text(GOOD, encoding="utf-8")
    first = loop.run(OpsRig(tmp_path / "data", {"screening_file": str(path)}).start())
    data = Path(first.gw.settings.data_path)
    loop.run(first.stop())
    path.write_text(text, encoding="utf-8")
    settled(path)
    if died_once:
        monkeypatch.setattr(review, "_FILES", {})
        review.keep_last_good(str(path), data)  # the first thing a start does
    monkeypatch.setattr(review, "_FILES", {})  # a new process
    return loop.run(OpsRig(tmp_path / "data", {"screening_file": str(path)}).start())


def test_a_gateway_started_on_a_broken_file_screens_with_the_copy_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway that took a list kept its copy in the data folder; started again (a new
    process) while the file is broken, it starts, holds the listed payee with the copy
    and raises the critical alert `screening_file_refused`."""
    loop = LoopThread()
    try:
        again = _started_again(loop, tmp_path, monkeypatch, 'names = [ "x", ')
        held = loop.run(again.submit("screen-restart-1", payee_name=LISTED))
        open_ = loop.run(again.gw.store.run(critical.open_alerts))
        loop.run(again.stop())
    finally:
        loop.close()

    assert held["reason"] == "screening_match_payee_name"
    assert open_["codes"].get(ALERT_SCREENING_FILE) == 1


def test_the_list_in_force_is_shown_since_the_gateways_time(rig: Rig, mended: None) -> None:
    """The time a list is taken is the gateway's clock's, as every other time operators
    see: on a simulated day, the day's time, never the machine's."""
    rig.rig.clock.advance(3 * 3600 + 7)
    taken_at = rig.gw.clock.now().isoformat(timespec="seconds")
    rig.write(f'names = ["{LISTED}", "示例戊"]\naccounts = []\n')
    shown = rig.loop.run(snapshot.status(rig.gw))["screening"]["list"]
    status = rig.status_text()

    assert shown["since"] == taken_at
    assert f"2 names, 0 accounts in force since {taken_at}" in status


def _emptied_alerts(loop: LoopThread, gw: Any) -> list[tuple[dict[str, Any], str | None]]:
    """The screening_list_emptied alerts: each one's detail and who closed it."""
    return [(json.loads(d), by) for d, by in loop.run(gw.store.run(lambda tx: tx.query(
        "SELECT a.detail, k.by FROM alerts a LEFT JOIN alert_acks k "
        "ON k.alert_id = a.id WHERE a.code = ? ORDER BY a.id", (ALERT_SCREENING_EMPTIED,))))]


def test_a_list_emptied_while_the_gateway_was_down_raises_the_alert_at_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway that took a list with entries kept its copy in the data folder; the file
    emptied while it was down, the next start takes the empty list as one emptied (the
    copy's counts as the list it replaces) and raises `screening_list_emptied`; a start
    after that, the file unchanged, raises no second one."""
    from gateway.ops import review
    path = tmp_path / "screen.toml"
    loop = LoopThread()
    try:
        again = _started_again(loop, tmp_path, monkeypatch, "names = []\naccounts = []\n")
        raised = _emptied_alerts(loop, again.gw)
        clear = loop.run(again.submit("screen-emptied-1", payee_name=LISTED))
        loop.run(again.stop())
        monkeypatch.setattr(review, "_FILES", {})  # and again
        third = loop.run(OpsRig(tmp_path / "data", {"screening_file": str(path)}).start())
        after = _emptied_alerts(loop, third.gw)
        loop.run(third.stop())
    finally:
        loop.close()

    assert len(raised) == 1 and raised[0][1] is None
    assert (raised[0][0]["file"], raised[0][0]["previous_names"],
            raised[0][0]["previous_accounts"]) == (str(path), 1, 0)
    assert clear["reason"] != "screening_match_payee_name"
    assert after == raised


def test_a_list_emptied_while_down_is_alerted_even_if_the_first_start_after_died(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first start after the file was emptied took the empty list and died before
    its watch committed the alert: the copy it kept says the list was emptied from one
    with entries, not yet alerted, so the next start raises `screening_list_emptied`
    (with the counts replaced); once raised, a start after raises no second one."""
    from gateway.ops import review
    path = tmp_path / "screen.toml"
    loop = LoopThread()
    try:
        again = _started_again(loop, tmp_path, monkeypatch, "names = []\naccounts = []\n",
                               died_once=True)
        raised = _emptied_alerts(loop, again.gw)
        loop.run(again.gw.store.run(lambda tx: critical.close_where(  # a supervisor's
            tx, (ALERT_SCREENING_EMPTIED,), "file", str(path), "清空已确认",
            again.gw.clock.now())))
        loop.run(again.stop())
        monkeypatch.setattr(review, "_FILES", {})  # and again, the alert handled
        third = loop.run(OpsRig(tmp_path / "data", {"screening_file": str(path)}).start())
        after = _emptied_alerts(loop, third.gw)
        loop.run(third.stop())
    finally:
        loop.close()

    assert len(raised) == 1, raised
    assert (raised[0][0]["previous_names"], raised[0][0]["previous_accounts"]) == (1, 0)
    assert len(after) == 1, after  # closed, and none raised again


def test_a_gateway_first_started_on_an_empty_list_raises_no_alert(tmp_path: Path) -> None:
    """No copy kept (the gateway never took a list of this file): an empty list at start
    switched nothing off, and raises nothing."""
    path = tmp_path / "screen.toml"
    path.write_text("names = []\naccounts = []\n", encoding="utf-8")
    loop = LoopThread()
    try:
        gw_rig = loop.run(OpsRig(tmp_path / "data", {"screening_file": str(path)}).start())
        raised = _emptied_alerts(loop, gw_rig.gw)
        loop.run(gw_rig.stop())
    finally:
        loop.close()

    assert raised == []


EMPTY = "names = []\naccounts = []\n"


def test_a_second_emptying_with_the_same_bytes_is_kept_as_not_yet_alerted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The list emptied, its alert committed, refilled, then emptied again with the very
    same bytes: until the second alert commits, the copy kept says the list was emptied
    from one with entries, so a start dying before it leaves the next start to raise
    it (the first alert does not count for the second emptying)."""
    from gateway.ops import review

    def write(text: str) -> review.Taken:
        path.write_text(text, encoding="utf-8")
        settled(path)
        review.BlockedList.for_path(str(path))
        return review.looked_at(str(path)).taken

    path, data = tmp_path / "screen.toml", tmp_path / "data"
    data.mkdir()
    monkeypatch.setattr(review, "_FILES", {})
    path.write_text(GOOD, encoding="utf-8")
    settled(path)
    review.keep_last_good(str(path), data)              # a start: GOOD in force
    first = write(EMPTY)
    review.emptied_alerted(str(path), first.sha256)     # its alert committed
    write(GOOD)                                         # refilled
    second = write(EMPTY)                               # emptied again, the same bytes
    monkeypatch.setattr(review, "_FILES", {})           # died before its alert
    review.keep_last_good(str(path), data)              # the next start
    again = review.looked_at(str(path)).taken

    assert first.emptied and second.emptied and second.sha256 == first.sha256
    assert again.emptied, again
    assert (again.previous_names, again.previous_accounts) == (1, 0)


def test_an_emptied_alert_left_open_by_a_restart_is_closed_once_the_list_is_refilled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Emptied while the gateway was down, alerted at the next start; started again, the
    file still empty (the list in force no longer told as emptied), then refilled: the
    gateway closes the open alert of this file and host, as one process would."""
    from gateway.ops import review
    path = tmp_path / "screen.toml"
    loop = LoopThread()
    try:
        again = _started_again(loop, tmp_path, monkeypatch, EMPTY)
        loop.run(again.stop())
        monkeypatch.setattr(review, "_FILES", {})  # a restart, the file still empty
        third = loop.run(OpsRig(tmp_path / "data", {"screening_file": str(path)}).start())
        loop.run(third.gw.screening_watch.check())
        still = _emptied_alerts(loop, third.gw)
        path.write_text(GOOD, encoding="utf-8")
        settled(path)
        loop.run(third.gw.screening_watch.check())
        alerts = _emptied_alerts(loop, third.gw)
        loop.run(third.stop())
    finally:
        loop.close()

    assert len(still) == 1 and still[0][1] is None
    assert len(alerts) == 1 and alerts[0][1] is not None, alerts
