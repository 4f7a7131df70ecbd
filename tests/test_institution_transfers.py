"""Institution transfers and discarded messages end to end: a transfer of an institution
business type (A103, A104, A106, A107, A200) goes out as a real hvps.112 and settles; a
ccms.911 discard ends its payment once, with the NPC's reason; an inbound message whose
processing fails every time is dead-lettered once, with an alert, and left alone."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from lxml import etree

from gateway import keys, outbound
from gateway.handlers import Handlers
from gateway.messages import envelope as env_mod
from gateway.messages import hvps111
from routing.router import INSTITUTION_TYPES
from tests.e2e_support import (PEER_BRANCH, SHARED, YUAN, balance, open_account,
                               started, transfer, until, wait_state)
from tests.test_ready_message_checks import example, open_payer, post

pytestmark = pytest.mark.e2e

# The business kind each institution type goes with (SPEC.md d.5, HVPS 112).
KINDS = {"A103": "03101", "A104": "02201", "A106": "03201", "A107": "02111",
         "A200": "02105"}


def run(coro):
    return asyncio.run(coro)


def institution_transfer(payer: str, business_type: str) -> dict:
    return transfer(payer, "60000.00", business_type=business_type,
                    business_kind=KINDS[business_type], payee_bank=PEER_BRANCH)


def old_body(p, created_at):
    """The body the gateway used to send for every HVPS credit: an hvps.111 (pacs.008),
    whatever type its header named."""
    return hvps111.build(outbound.credit_transfer_of(p, created_at))


async def alerts(h, code: str) -> list[dict]:
    rows = await h.gateway.store.run(lambda tx: tx.query(
        "SELECT detail FROM alerts WHERE code = ?", (code,)))
    return [json.loads(detail) for (detail,) in rows]


def test_institution_types_go_as_hvps112_and_settle(tmp_path):
    """Each institution business type is sent as an hvps.112 whose body is a pacs.009
    (the published XSD, a test oracle, when ../shared is present) carrying the type, the kind as /F25/, and the
    payer's and payee's names and accounts; the NPC settles every one."""
    published = SHARED / "cnaps" / "reference-xsd" / "pacs.009.001.02.xsd"
    # The oracle is beside the checkout in CI; without it the rest is still checked.
    reference = etree.XMLSchema(etree.parse(str(published))) if published.exists() else None

    async def scenario():
        async with started(tmp_path) as h:
            payer = await open_account(h, 1, 1_000_000 * YUAN)
            ids = {}
            for business_type in INSTITUTION_TYPES:
                status, answer = await h.gateway.submit_transfer(
                    "core", f"fi-{business_type}", institution_transfer(payer,
                                                                        business_type))
                assert status == 201, answer
                ids[business_type] = answer["id"]
            views = {}
            for business_type, payment_id in ids.items():
                await wait_state(h, payment_id, "settled")
                views[business_type] = await h.gateway.get_transfer(payment_id)
            rows = await h.gateway.store.run(lambda tx: tx.query(
                "SELECT p.business_type, a.mesg_type, a.envelope FROM archive a JOIN "
                "payments p ON p.id = a.payment_id WHERE a.direction = 'out'", ()))
            return rows, await alerts(h, "message_discarded_by_npc"), views

    rows, discarded, views = run(scenario())

    assert sorted(t for t, _, _ in rows) == sorted(INSTITUTION_TYPES)
    assert discarded == []
    for business_type, mesg_type, raw in rows:
        body = etree.fromstring(env_mod.decode(bytes(raw)).body)
        ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pacs.009.001.02"}
        tx = "p:FinInstnCdtTrf/p:CdtTrfTxInf"

        assert mesg_type == "hvps.112.001.01"
        assert reference is None or reference.validate(body), reference.error_log
        assert body.xpath(f"{tx}/p:PmtTpInf/p:LclInstrm/p:Prtry/text()", namespaces=ns) == \
            [business_type]
        assert body.xpath(f"{tx}/p:RmtInf/p:Ustrd/text()", namespaces=ns)[0] == \
            f"/F25/{KINDS[business_type]}"
        # The payment's view shows the lines as sent, the /F25/ line first.
        assert views[business_type]["remittance_info"] == \
            body.xpath(f"{tx}/p:RmtInf/p:Ustrd/text()", namespaces=ns)
        assert body.xpath(f"{tx}/p:Dbtr/p:FinInstnId/p:Nm/text()", namespaces=ns) == \
            ["示例客户"]


def test_a_ready_hvps111_of_an_institution_type_is_refused_by_name(tmp_path):
    """A ready hvps.111 carrying A200 is refused at its CtgyPurp, naming the types that
    are institution transfers; nothing is sent."""
    async def scenario():
        async with started(tmp_path) as h:
            await open_payer(h, 1_000_000 * YUAN)
            raw = example().replace(b"<Prtry>A100</Prtry>", b"<Prtry>A200</Prtry>") \
                .replace(b"<Prtry>02102</Prtry>", b"<Prtry>02105</Prtry>")
            return await post(h, raw)

    status, answer = run(scenario())

    assert status == 422, answer
    assert [(e["code"], e["path"].rsplit("/", 2)[-2:], e["value"])
            for e in answer["errors"]] == \
        [("business_type_not_allowed_for_message", ["CtgyPurp", "Prtry"], "A200")]
    assert "hvps.112" in answer["errors"][0]["expected"]


def test_a_discarded_payment_ends_rejected_once_with_the_npcs_reason(tmp_path, monkeypatch):
    """A message the NPC discards (its header says hvps.112, its body is a pacs.008, as
    the gateway used to send) gets one ccms.911; it is processed once, raises one alert,
    and its payment ends `rejected` with the NPC's code and reason, its hold released;
    nothing is dead-lettered."""
    monkeypatch.setattr(outbound, "credit_body", old_body, raising=False)

    async def scenario():
        async with started(tmp_path) as h:
            payer = await open_account(h, 1, 1_000_000 * YUAN)
            _, answer = await h.gateway.submit_transfer(
                "core", "fi-911", institution_transfer(payer, "A200"))
            await wait_state(h, answer["id"], "rejected")
            # Long enough for the sweeper's passes (every few seconds) to have put a
            # failed message back, had it been left unprocessed.
            await asyncio.sleep(6)
            view = await h.gateway.get_transfer(answer["id"])
            inbox = await h.gateway.store.run(lambda tx: tx.query(
                "SELECT state FROM inbox WHERE mesg_type = 'ccms.911.001.02'", ()))
            return (view, inbox, await alerts(h, "message_discarded_by_npc"),
                    await balance(h, payer), await h.gateway.redis.xlen(keys.DEAD))

    view, inbox, discarded, left_fen, dead = run(scenario())

    assert "header_type_disagrees_with_body" in view["reason"]
    assert view["reason"].startswith("discarded by the NPC: ")
    assert inbox == [("processed",)]
    assert len(discarded) == 1 and discarded[0]["mt"] == "hvps.112.001.01"
    assert left_fen == 1_000_000 * YUAN
    assert dead == 0


def test_a_message_failing_every_time_is_dead_lettered_once(tmp_path, monkeypatch):
    """An inbound message whose handler fails on every delivery reaches the dead-letter
    stream once, its inbox row marked failed with the error, one alert raised; neither
    the sweeper nor a restart's recovery puts it back."""
    def broken(self, tx, d, now):
        raise RuntimeError("the handler fails the same way every time")
    monkeypatch.setattr(outbound, "credit_body", old_body, raising=False)
    monkeypatch.setattr(Handlers, "on_discarded", broken)

    async def scenario():
        async with started(tmp_path, send_retries_max=2) as h:
            payer = await open_account(h, 1, 1_000_000 * YUAN)
            await h.gateway.submit_transfer("core", "fi-dead",
                                            institution_transfer(payer, "A200"))
            await until(lambda: h.gateway.redis.xlen(keys.DEAD), "a dead letter",
                        timeout_s=30)
            settled_at = time.monotonic()
            while time.monotonic() - settled_at < 8:  # several sweeps (every 5 s of age)
                await asyncio.sleep(0.5)
            await h.gateway.recover()
            await asyncio.sleep(3)
            inbox = await h.gateway.store.run(lambda tx: tx.query(
                "SELECT state, outcome FROM inbox WHERE mesg_type = 'ccms.911.001.02'", ()))
            return (inbox, await alerts(h, "inbound_processing_failed"),
                    await h.gateway.redis.xlen(keys.DEAD))

    inbox, failed, dead = run(scenario())

    assert [state for state, _ in inbox] == ["failed"]
    assert "the handler fails the same way every time" in inbox[0][1]
    assert len(failed) == 1 and failed[0]["mesg_type"] == "ccms.911.001.02"
    assert dead == 1
