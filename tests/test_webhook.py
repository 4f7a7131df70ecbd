"""Status changes are pushed to the core system's webhook with a signed body, retried
when the core system fails, and can be polled as well."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest
from aiohttp import web

from gateway import payments
from gateway.redisproc import free_port
from tests.e2e_support import YUAN, open_account, started, transfer, until, wait_state

pytestmark = pytest.mark.e2e
SECRET = "hook-secret"


async def hook_server(hook) -> tuple[web.AppRunner, str]:
    """A core system's webhook endpoint on loopback: its runner and its URL."""
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook"


def test_webhook_pushes_signed_changes_and_retries(tmp_path):
    """Each change arrives signed; a 500 from the core system is retried, not lost."""
    received: list[dict] = []
    failures = {"left": 2}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert request.headers["X-Paygate-Signature"] == expected
        if failures["left"] > 0:
            failures["left"] -= 1
            return web.Response(status=500)
        received.extend(json.loads(body)["events"])
        return web.Response(status=204)

    async def scenario():
        runner, url = await hook_server(hook)
        try:
            async with started(tmp_path, webhook_url=url, webhook_secret=SECRET) as h:
                payer = await open_account(h, 1, 1_000_000 * YUAN)
                _, answer = await h.gateway.submit_transfer("core", "w",
                                                            transfer(payer, "70000.00"))
                await wait_state(h, answer["id"], "settled")
                await until(lambda: any(e["state"] == "settled" for e in received),
                            "settled pushed", timeout_s=30)
                # A row is marked done once the POST that carried it was answered, in a
                # commit of its own: it may follow the hook's receipt by a moment.
                told: list[dict] = []

                async def marked_done() -> bool:
                    told[:] = await h.gateway.store.run(
                        lambda tx: payments.told(tx, answer["id"]))
                    return {t["state"] for t in told if t["delivery"] == "done"} >= {
                        "sent", "settled"}
                await until(marked_done, "both changes marked delivered", timeout_s=30)
                return answer["id"], told
        finally:
            await runner.cleanup()

    pid, told = asyncio.run(scenario())
    mine = [e for e in received if e["id"] == pid]
    # Each change told is found for the payment, with the row that told it, delivered.
    assert {t["state"] for t in told if t["delivery"] == "done"} >= {"sent", "settled"}
    # Retries may deliver changes out of order; each carries its time and the previous
    # state, so the core system can order them.
    assert {e["state"] for e in mine} >= {"sent", "settled"}
    assert all(e["at"] and e["previous"] for e in mine)
    assert failures["left"] == 0


def test_status_changes_wait_their_turn_in_the_process_when_slots_are_taken(tmp_path):
    """With a single slot for sends after commit, every status change still reaches the
    webhook, each in turn: none goes by the webhook stream, every row ends done."""
    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.extend(json.loads(await request.read())["events"])
        return web.Response(status=204)

    async def scenario():
        runner, url = await hook_server(hook)
        try:
            async with started(tmp_path, webhook_url=url, webhook_secret=SECRET) as h:
                gw = h.gateway
                gw.direct.limit = 1
                payer = await open_account(h, 1, 1_000_000 * YUAN)
                answers = await asyncio.gather(*(
                    gw.submit_transfer("core", f"turn-{n}", transfer(payer, "100.00"))
                    for n in range(6)))
                ids = {answer["id"] for _, answer in answers}
                for payment_id in ids:
                    await wait_state(h, payment_id, "settled")
                await until(lambda: {e["id"] for e in received
                                     if e["state"] == "settled"} >= ids, "settled pushed")
                rows = await gw.store.run(lambda tx: tx.query(
                    "SELECT state FROM outbox WHERE kind = 'webhook'", ()))
                webhook_worker = next(w for w in gw.workers if w.name == "webhook")
                return ids, rows, webhook_worker.processed, gw.direct.webhooks_to_stream
        finally:
            await runner.cleanup()

    ids, rows, by_stream, left = asyncio.run(scenario())

    assert {(e["id"], e["state"]) for e in received} >= {(i, s) for i in ids
                                                        for s in ("sent", "settled")}
    assert rows and all(state == "done" for (state,) in rows)
    assert by_stream == 0
    assert left == 0
