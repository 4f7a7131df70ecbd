"""One POST to the core system's webhook carries a list of status changes: a package's
changes are written as a few outbox rows, rows ready at the same moment share a POST up
to `webhook_events_max` events, a failed POST is retried with the same events, and rows
left claimed by a process that died are pushed after restart, once each.

The gateway's own parts run here (its store on a SQLite file, the pusher, the sends
after commit, start-up recovery) against a core system's endpoint on loopback, on a
manual clock; Redis streams are replaced by a list of the entries added."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import ledger
from aiohttp import web

from gateway import direct, logs, payments, recovery, webhook
from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.store import Store, log_after_commit
from gateway.webhook import BACKOFF_MAX_S
from gateway.worker import StreamWorker

SECRET = "batch-secret"
AT = datetime(2026, 12, 7, 9, 30, tzinfo=timezone.utc)
FIELDS = {"id", "state", "previous", "event", "at"}


class Rig:
    """The gateway's webhook path on a SQLite file, and a core system on loopback that
    answers each POST with the next of `answers` (then 204)."""

    def __init__(self, tmp_path: Path, events_max: int = 500,
                 answers: tuple[int, ...] = (), retries_max: int = 8) -> None:
        self.db_url = f"sqlite:///{tmp_path / 'gateway.db'}"
        self.answers = list(answers)
        self.posts: list[tuple[bytes, str, int]] = []  # body, signature, status answered
        self.streamed: list[tuple[str, dict[str, str]]] = []
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self.clock = ManualClock(AT)
        self.settings = SimpleNamespace(
            webhook_url="", webhook_secret=SECRET, webhook_retries_max=retries_max,
            webhook_events_max=events_max, send_backoff_s=0.2)
        self.notifier = payments.Notifier(webhook=True, events_max=events_max)

    async def __aenter__(self) -> "Rig":
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.settings.webhook_url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        await self.open()
        return self

    async def open(self) -> None:
        """The gateway's parts, started (again) on the same database."""
        self.store = Store(self.db_url, ledger.Ledger())
        await self.store.open()
        self.http = aiohttp.ClientSession()
        self.gw = SimpleNamespace(settings=self.settings, clock=self.clock, store=self.store,
                                  http=self.http, alert=self._alert,
                                  streams=SimpleNamespace(xadd=self._xadd,
                                                          xadd_many=self._xadd_many))
        self.gw.webhooks = webhook.Pusher(self.gw)
        self.gw.direct = direct.Direct(self.gw)
        # As the gateway does: rows the committed work claimed are pushed at once.
        self.store.on_commit = lambda entries: Gateway._add_entries(self.gw, entries)

    async def close(self) -> None:
        await self.gw.direct.drain()
        await self.http.close()
        await self.store.close()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
        await self.runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        status = self.answers.pop(0) if self.answers else 204
        self.posts.append((await request.read(), request.headers["X-Paygate-Signature"],
                           status))
        return web.Response(status=status)

    def _alert(self, tx: Any, code: str, **detail: Any) -> None:
        self.alerts.append((code, detail))

    async def _xadd(self, stream: str, fields: dict[str, str]) -> None:
        self.streamed.append((stream, fields))

    async def _xadd_many(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        self.streamed.extend(entries)

    async def change(self, ids: list[str], new_state: str = "netted",
                     old_state: str = "sent", one_by_one: bool = False) -> None:
        """One piece of work telling of a change of each payment: for all at once (a
        package sent), or by one call each (a package's items netted one by one)."""
        at = self.clock.now().isoformat()

        def work(tx: Any) -> None:
            groups = [[pid] for pid in ids] if one_by_one else [ids]
            for group in groups:
                payments._told(tx, [(pid, old_state) for pid in group], new_state,
                               f"test_{new_state}", at, self.notifier, {})
        await self.store.run(work)

    async def settled(self) -> None:
        """Until the sends after commit are over."""
        for _ in range(3):
            await asyncio.sleep(0.01)
            await self.gw.direct.drain()

    def events_posted(self) -> list[list[dict[str, Any]]]:
        """The events of each POST answered 2xx, in order."""
        return [json.loads(body)["events"] for body, _, status in self.posts if status < 300]

    async def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return await self.store.run(lambda tx: tx.query(sql, params))


def test_one_change_is_posted_as_a_list_of_one_signed_over_the_body(tmp_path):
    """A lone change goes in the list shape, every field as before, signed over the
    exact body; the row is done once the core system answers 2xx."""
    async def scenario():
        async with Rig(tmp_path) as rig:
            await rig.change(["P1"], "settled", "sent")
            await rig.settled()
            return (rig.posts, await rig.query("SELECT payment_id, state, attempts FROM outbox"),
                    rig.clock.now().isoformat())

    posts, rows, at = asyncio.run(scenario())

    (body, sig, _), = posts
    assert sig == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    document = json.loads(body)
    assert list(document) == ["events"]
    assert document["events"] == [{"id": "P1", "state": "settled", "previous": "sent",
                                   "event": "test_settled", "at": at}]
    assert rows == [("P1", "done", 1)]


def test_a_package_change_is_written_as_few_rows_and_told_per_payment(tmp_path):
    """Seven payments netted in one piece of work, whether in one call or one by one,
    make rows of at most three changes each (three rows, not seven), each pushed; each
    payment's change is found as told, on a row that is done."""
    ids = [f"P{n}" for n in range(7)]

    async def scenario(one_by_one: bool, where: Path):
        where.mkdir()
        async with Rig(where, events_max=3) as rig:
            await rig.change(ids, one_by_one=one_by_one)
            await rig.settled()
            rows = await rig.query("SELECT id, payment_id, state FROM outbox ORDER BY id")
            told = await rig.store.run(lambda tx: payments.told(tx, "P4"))
            return rows, rig.events_posted(), told

    for one_by_one in (False, True):
        rows, posted, told = asyncio.run(scenario(one_by_one, tmp_path / str(one_by_one)))

        assert [(pid, state) for _, pid, state in rows] == [(None, "done")] * 2 + \
            [("P6", "done")]
        assert all(len(events) <= 3 for events in posted)
        assert sorted(e["id"] for events in posted for e in events) == ids
        assert all(set(e) == FIELDS for events in posted for e in events)
        assert [(t["state"], t["delivery"]) for t in told] == [("netted", "done")]
        assert told[0]["outbox"] == rows[1][0]


def test_changes_committed_together_share_one_post_and_a_lone_one_goes_at_once(tmp_path):
    """Five single changes made by concurrent work commit together and go in one POST;
    a lone change is handed to a send at once, with no wait for others."""
    async def scenario():
        async with Rig(tmp_path) as rig:
            await asyncio.gather(*(rig.change([f"H{n}"], "sent", "accepted")
                                   for n in range(5)))
            await rig.settled()
            together = rig.events_posted()
            lone = webhook.Hook(999, b'[{"id":"L"}]', 1)
            rig.gw.direct.push_claimed_webhooks([lone])
            started_at_once = rig.gw.direct.taken
            await rig.gw.direct.drain()
            return together, started_at_once

    together, started_at_once = asyncio.run(scenario())

    assert [sorted(e["id"] for e in events) for events in together] == \
        [["H0", "H1", "H2", "H3", "H4"]]
    assert started_at_once == 1


def test_rows_ready_together_are_cut_at_the_bound_per_post(tmp_path):
    """Five single changes committed together, with at most two events in a POST: they
    are written as three rows of two, two and one (one row per POST), pushed as three
    POSTs, and every row done."""
    async def scenario():
        async with Rig(tmp_path, events_max=2) as rig:
            await asyncio.gather(*(rig.change([f"H{n}"], "sent", "accepted")
                                   for n in range(5)))
            await rig.settled()
            return rig.events_posted(), await rig.query("SELECT state FROM outbox")

    posted, rows = asyncio.run(scenario())

    assert sorted(len(events) for events in posted) == [1, 2, 2]
    assert sorted(e["id"] for events in posted for e in events) == [f"H{n}" for n in range(5)]
    assert rows == [("done",)] * 3


def test_a_post_answered_500_is_retried_with_the_same_events(tmp_path):
    """The core system answers 500: every row of the POST waits out its backoff, then
    the same events are POSTed again and, answered 204, the rows are done."""
    async def scenario():
        async with Rig(tmp_path, events_max=4, answers=(500,)) as rig:
            await rig.change([f"P{n}" for n in range(6)])
            await rig.settled()
            after_failure = await rig.query("SELECT state, attempts FROM outbox ORDER BY id")
            ids = [i for (i,) in await rig.query("SELECT id FROM outbox ORDER BY id")]
            early = [await rig.gw.webhooks.push(i) for i in ids]  # still in backoff
            posts_early = len(rig.posts)
            rig.clock.advance(1.0)
            await asyncio.gather(*(rig.gw.webhooks.push(i) for i in ids))
            return (rig.posts, after_failure, early, posts_early,
                    await rig.query("SELECT state, attempts FROM outbox ORDER BY id"))

    posts, after_failure, early, posts_early, rows = asyncio.run(scenario())

    failed = [json.loads(body)["events"] for body, _, status in posts if status == 500]
    retried = [json.loads(body)["events"] for body, _, status in posts[2:]]
    assert [status for _, _, status in posts[:2]] in ([500, 204], [204, 500])
    assert after_failure.count(("pending", 1)) == 1 and after_failure.count(("done", 1)) == 1
    assert early == [None, None] and posts_early == 2
    assert len(failed) == 1 and retried == failed  # the same events, in one POST again
    assert rows == [("done", 1), ("done", 2)] or rows == [("done", 2), ("done", 1)]


def test_a_row_past_its_retries_is_failed_with_an_alert(tmp_path):
    """With one attempt allowed, a POST answered 503 fails its row and raises
    `webhook_delivery_failed` naming the row and how many changes it held."""
    async def scenario():
        async with Rig(tmp_path, answers=(503,), retries_max=1) as rig:
            await rig.change(["P1", "P2"])
            await rig.settled()
            return rig.alerts, await rig.query("SELECT id, state FROM outbox")

    alerts, rows = asyncio.run(scenario())

    (outbox_id, state), = rows
    assert state == "failed"
    assert alerts == [("webhook_delivery_failed", {"outbox": outbox_id, "events": 2,
                                                   "attempts": 1, "last_answer": 503})]


def test_rows_left_claimed_by_a_crash_are_pushed_after_restart_once(tmp_path):
    """A process commits a package's changes and a single change, then dies before
    pushing them (their rows claimed, never sent). After restart, recovery puts them
    back and the webhook stage pushes them: every change told once, no row added."""
    async def scenario():
        async with Rig(tmp_path, events_max=3) as rig:
            rig.store.on_commit = None  # dies between commit and push
            await rig.change([f"P{n}" for n in range(5)])
            await rig.change(["H1"], "sent", "accepted")
            before = await rig.query("SELECT id, state FROM outbox ORDER BY id")
            await rig.close()

            await rig.open()  # the restart
            await recovery.recover(rig.gw)
            entries = [int(f["outbox"]) for s, f in rig.streamed]
            await asyncio.gather(*(rig.gw.webhooks.push(i) for i in entries))
            after = await rig.query("SELECT id, state FROM outbox ORDER BY id")
            return before, entries, after, rig.events_posted()

    before, entries, after, posted = asyncio.run(scenario())

    assert [state for _, state in before] == ["sending"] * 3
    assert sorted(entries) == [i for i, _ in before]
    assert after == [(i, "done") for i, _ in before]
    assert sorted(e["id"] for events in posted for e in events) == \
        ["H1", "P0", "P1", "P2", "P3", "P4"]
    assert all(len(events) <= 3 for events in posted)


def test_a_row_stored_as_one_event_is_pushed_as_a_list_of_one():
    """A row written before POSTs carried lists holds one event object: it is read as
    a list of one; a row of today holds its list."""
    assert webhook.stored_events(b'{"id":"P1"}') == (b'[{"id":"P1"}]', 1)
    assert webhook.stored_events(b'[{"id":"P1"},{"id":"P2"}]') == \
        (b'[{"id":"P1"},{"id":"P2"}]', 2)
    hooks = [webhook.Hook(1, b'[{"id":"P1"},{"id":"P2"}]', 2),
             webhook.Hook(2, b'[{"id":"P3"}]', 1)]
    assert json.loads(webhook.body_of(hooks)) == {"events": [{"id": "P1"}, {"id": "P2"},
                                                             {"id": "P3"}]}
    assert webhook.bundles(hooks * 2, 3) == [hooks, hooks]
    assert webhook.bundles(hooks, 2) == [hooks[:1], hooks[1:]]


def test_changes_of_a_part_undone_are_not_told(tmp_path):
    """A part of a piece of work that fails alone (gateway.store.scope) takes its
    changes' events with it; the changes of the rest of the work are told."""
    from gateway.store import scope

    async def scenario():
        async with Rig(tmp_path) as rig:
            at = rig.clock.now().isoformat()

            def work(tx: Any) -> None:
                payments._told(tx, [("KEPT", "sent")], "netted", "kept", at, rig.notifier, {})
                try:
                    with scope(tx):
                        payments._told(tx, [("UNDONE", "sent")], "netted", "undone", at,
                                       rig.notifier, {})
                        raise ValueError("this part fails alone")
                except ValueError:
                    pass
            await rig.store.run(work)
            await rig.settled()
            return rig.events_posted(), await rig.query(
                "SELECT payment_id FROM webhook_events")

    posted, named = asyncio.run(scenario())

    assert [[e["id"] for e in events] for events in posted] == [["KEPT"]]
    assert named == [("KEPT",)]


def test_the_log_tells_each_row_its_fate_in_order(tmp_path, caplog):
    """Three attempts allowed, the core system answering 503 each time, the row pushed
    by the webhook stage as after a restart: each retry is logged as scheduled, then as
    `retry_later`; the last attempt fails the row with its alert and no `retry_later`
    follows it."""
    async def scenario() -> list[str]:
        async with Rig(tmp_path, answers=(503, 503, 503), retries_max=3) as rig:
            rig.gw.alert = lambda tx, code, **detail: log_after_commit(
                logging.getLogger("paygate.gateway"), logging.WARNING,
                [f"event=alert code={code} outbox={detail['outbox']}"])
            await rig.change(["P1"], "settled", "sent")
            await rig.settled()  # the first attempt, sent after commit
            (outbox_id,), = await rig.query("SELECT id FROM outbox")
            acks: list[str] = []

            async def xack(stream: str, group: str, entry: str) -> None:
                acks.append(entry)
            stage = StreamWorker(SimpleNamespace(xack=xack), "webhook", ("webhook",),
                                 lambda s, e, f: rig.gw.webhooks.push(int(f["outbox"])))
            for entry in ("1-0", "2-0"):
                rig.clock.advance(BACKOFF_MAX_S)
                await stage._handle_once("webhook", entry, {"outbox": str(outbox_id)})
            stage.retries.flush()
            logs.write_now()
            state = await rig.query("SELECT state, attempts FROM outbox")
            return [r.getMessage() for r in caplog.records], acks, state, outbox_id

    with caplog.at_level(logging.INFO):
        lines, acks, state, outbox_id = asyncio.run(scenario())

    told = [line.split()[0] for line in lines
            if line.startswith(("event=webhook_retry_scheduled", "event=retry_later",
                                "event=alert"))]
    assert told == ["event=webhook_retry_scheduled",  # attempt 1, sent after commit
                    "event=webhook_retry_scheduled", "event=retry_later",  # attempt 2
                    "event=alert"]  # attempt 3: failed, nothing said of a retry
    assert all(f"outbox={outbox_id}" in line for line in lines
               if line.startswith(("event=webhook_retry_scheduled", "event=alert")))
    assert acks == ["1-0", "2-0"]
    assert state == [("failed", 3)]


def test_an_event_written_from_its_cut_text_is_what_dumping_it_writes():
    """A package's events are written from one text cut around the payment id: byte for
    byte what dumping each event writes; an id JSON would escape is dumped instead."""
    class Tx:  # what _queue_webhook hands to the store's gathering, kept here
        dialect = "sqlite"
    gathered: list[Any] = []
    at = "2026-12-07T10:00:00.123456+08:00"
    ids = ["P2026120700000001", "P2026120700000002", 'q"uote', "客户", "a b", "x\\y"]
    changed = [(pid, "netted", "settled", "beps_settled") for pid in ids] + [
        ("P2026120700000003", "sent", "netted", "beps_netted"),
        ("P2026120700000004", "sent", "sent", "beps_packed")]  # no change: not told
    original = payments.gather
    payments.gather = lambda tx, key, items, write: gathered.extend(items)
    try:
        payments._queue_webhook(Tx(), changed, at, payments.Notifier(webhook=True))
    finally:
        payments.gather = original
    expected = [(pid, new, json.dumps({"id": pid, "state": new, "previous": old,
                                       "event": event, "at": at}, ensure_ascii=False,
                                      separators=(",", ":")).encode(), at, pid)
                for pid, old, new, event in changed if new != old]
    assert gathered == expected
