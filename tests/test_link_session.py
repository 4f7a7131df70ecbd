"""The link session: login at start, probes answered, forced logout raised to
operators, logout at stop; and signing-key rotation with an overlap period."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from gateway.errors import PaygateError
from gateway.messages.envelope import Envelope, Header
from gateway.messages.signing import KeyRing, write_keypair
from tests.e2e_support import BANK, started, until

pytestmark = pytest.mark.e2e


def session_of(gw):
    return next(e for e in gw.extensions if type(e).__name__ == "LinkSession")


def test_login_probe_forced_logout(tmp_path):
    """The gateway logs in at start, its probe is answered, a forced logout is seen."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            await until(lambda: gw.link_state == "logged_in", "login answered")
            session = session_of(gw)
            await session.probe()
            await until(lambda: session.last_probe_answered is not None, "probe answered")

            await h.sim("POST", "/sim/force-logout", {"participant": BANK,
                                                      "remark": "维护"})
            await until(lambda: gw.link_state == "forced_out", "forced logout seen")
            alerts = await gw.store.run(lambda tx: [c for (c,) in tx.query(
                "SELECT code FROM alerts", ())])
            assert "link_forced_logout" in alerts
    asyncio.run(scenario())


def _header(sender: str) -> Header:
    return Header(orig_sender=sender, orig_sender_sid="HVPS", orig_receiver="0000",
                  orig_receiver_sid="HVPS", send_date="20261207", send_time="090000",
                  mesg_type="hvps.710.001.01", mesg_id="20261207000000000001",
                  mesg_ref_id="20261207000000000001")


def test_rotation_overlap_and_expiry(tmp_path):
    """During the overlap both keys verify; outside its period a key does not; our key
    nearing its end is reported."""
    write_keypair(tmp_path, "888200000015")
    old_private = (tmp_path / "888200000015.key.pem").read_bytes()
    new_dir = tmp_path / "new"
    write_keypair(new_dir, "888200000015")
    (tmp_path / "888200000015.2027.key.pem").write_bytes(
        (new_dir / "888200000015.key.pem").read_bytes())
    (tmp_path / "888200000015.2027.pub.pem").write_bytes(
        (new_dir / "888200000015.pub.pem").read_bytes())
    (tmp_path / "keys.toml").write_text(
        '[[key]]\nfile = "888200000015.pub.pem"\nnot_after = 2026-12-31\n'
        '[[key]]\nfile = "888200000015.key.pem"\nnot_after = 2026-12-31\n'
        '[[key]]\nfile = "888200000015.2027.pub.pem"\nnot_before = 2026-12-20\n'
        '[[key]]\nfile = "888200000015.2027.key.pem"\nnot_before = 2026-12-20\n')
    body = b"<Document/>"
    day = {"today": date(2026, 12, 10)}
    signer = KeyRing.load(tmp_path, ["888200000015"])
    verifier = KeyRing.load(tmp_path, [])
    for ring in (signer, verifier):
        ring.today = lambda: day["today"]

    def signed_on(d: date) -> Envelope:
        day["today"] = d
        return Envelope(_header("888200000015"), signer.sign(_header("888200000015"), body),
                        body)

    before, overlap = signed_on(date(2026, 12, 10)), signed_on(date(2026, 12, 25))
    expiring = [p.file for p in signer.expiring("888200000015", 30)]
    day["today"] = date(2026, 12, 25)
    assert verifier.verify(before) == "verified"      # old key, still in its period
    assert verifier.verify(overlap) == "verified"     # new key, newest valid one signs
    day["today"] = date(2027, 1, 5)
    assert verifier.verify(overlap) == "verified"
    with pytest.raises(PaygateError) as expired:
        verifier.verify(before)
    assert expired.value.code == "signature_invalid"
    assert "888200000015.key.pem" in expiring
    assert old_private != (tmp_path / "888200000015.2027.key.pem").read_bytes()


def test_a_login_left_unanswered_is_sent_again(tmp_path):
    """A ccms.805 login the NPC never answered (discarded: our key not yet installed
    there) is sent again at a probe pass two intervals on, with an alert, until the
    session is logged in; a session logged in sends none."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            await until(lambda: gw.link_state == "logged_in", "login answered")
            session = session_of(gw)

            def logins() -> int:
                return gw.store.run(lambda tx: tx.query_one(
                    "SELECT COUNT(*) FROM outbox WHERE mesg_type = 'ccms.805.001.02'",
                    ())[0])
            before = await logins()
            await session._probe_once(1.0)
            assert await logins() == before  # logged in: nothing sent again

            gw.link_state = "logging_in"  # as if the NPC had discarded the login
            session._login_sent = asyncio.get_running_loop().time() - 10.0
            await session._probe_once(1.0)
            assert await logins() == before + 1
            await until(lambda: gw.link_state == "logged_in", "second login answered")
            alerts = await gw.store.run(lambda tx: [c for (c,) in tx.query(
                "SELECT code FROM alerts", ())])
            assert alerts.count("link_login_unanswered") == 1
    asyncio.run(scenario())


def test_an_unanswered_probe_alert_closes_once_a_probe_is_answered_again(tmp_path):
    """A probe left unanswered for two intervals raises `link_probe_unanswered`; the
    next pass after a probe is answered again closes it, by the gateway, and a pass
    while the alert is open and probes still go unanswered leaves it open."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            await until(lambda: gw.link_state == "logged_in", "login answered")
            session = session_of(gw)
            loop = asyncio.get_running_loop()

            def closed() -> list[tuple[str | None, str | None]]:
                return gw.store.run(lambda tx: [tuple(r) for r in tx.query(
                    "SELECT k.by, k.note FROM alerts a LEFT JOIN alert_acks k "
                    "ON k.alert_id = a.id WHERE a.code = 'link_probe_unanswered'", ())])

            # As if the NPC had stopped answering: our last probe long unanswered.
            session.last_probe_answered = None
            session.last_probe_sent = loop.time() - 10.0
            await session._probe_once(1.0)  # raises it, and probes again
            raised = await closed()
            await until(lambda: (session.last_probe_answered or 0.0) >=
                        session.last_probe_sent, "the new probe answered")
            await session._probe_once(1.0)
            after = await closed()

        assert raised == [(None, None)]
        [(by, note)] = after
        assert by == "gateway" and "answered" in note
    asyncio.run(scenario())
