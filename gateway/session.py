"""The link session with the NPC: login at start, logout at stop, probes, forced logout,
and our signing keys' expiry.

At start the gateway sends a ccms.805 login (OT00) and at a clean stop a logout (OT01);
the NPC answers each with a ccms.806. A ccms.991 probe goes out every
`probe_interval_s`; a probe unanswered for two intervals, a refused login and a forced
logout (ccms.807) are raised to operators, and so is any of our keys that expires within
`key_expiry_alert_days`. The link's state is shown to operators as `gw.link_state`.
`link_probe_unanswered` is closed by the gateway at the first probe pass that finds the
last probe answered (the link back), including one left open by an earlier run.

With several gateway processes behind one bank code the session is the leader's
(gateway.cluster), but the NPC delivers to the bank's inbound URLs in turn, so its
answers (ccms.806, ccms.992, ccms.807) reach whichever process's turn it is. The process
that takes one tells the others over the cluster channel: the leader learns that its
probe was answered wherever the ccms.992 landed, and every process shows the same
session state; the state is also kept in Redis (`keys.LINK_SESSION`) for a process
that starts later. (Without it, a ccms.990 and a ccms.992 per probe alternated between two
processes, so every answer reached the follower and the leader raised
`link_probe_unanswered` at each probe while the link was well.)
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from gateway import critical, keys, outbound, payments
from gateway.inbound import Processed
from gateway.messages import ccms805, ccms991, codec
from gateway.messages.common import GroupHeader

log = logging.getLogger("paygate.session")

PROBE_INTERVAL_S = 30.0
KEY_EXPIRY_ALERT_DAYS = 30
LOGOUT_WAIT_S = 2.0
ALERT_PROBE_UNANSWERED = "link_probe_unanswered"


class LinkSession:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.last_probe_sent: float | None = None
        self.last_probe_answered: float | None = None
        self._login_sent: float | None = None  # loop time of our last ccms.805 login
        # Whether a `link_probe_unanswered` may be open: one raised by this process, or
        # one left by an earlier run (so true at start); closed once probes are answered.
        self._unanswered_raised = True
        self._task: asyncio.Task | None = None
        gw.link_state = "logged_out"
        gw.keyring_today = None
        gw.cluster.listeners.update(
            link_probe_answered=lambda event: self._probe_answered(),
            link_state=lambda event: self._set_state(event["state"]))

    # Extension interface

    def handlers(self) -> dict[str, Any]:
        return {ccms805.RESPONSE_TYPE: self.on_login_response,
                ccms805.LOGOUT_TYPE: self.on_forced_logout,
                ccms991.RESPONSE_TYPE: self.on_probe_response}

    async def start(self) -> None:
        """The link session is the leader's (gateway.cluster): another gateway process
        logs in when it takes the lead."""
        self.gw.keyring.today = lambda: self.gw.clock.now().date()
        if self.gw.leading:
            await self._lead()
        else:
            self.gw.cluster.on_lead.append(self._lead)
            await self._learn_state()
        self._task = asyncio.create_task(self._probe_forever(), name="link-probe")

    async def _lead(self) -> None:
        await self._check_keys()
        await self._send_login(ccms805.LOGIN)
        self._login_sent = asyncio.get_running_loop().time()
        self.gw.link_state = "logging_in"

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.gw.link_state == "logged_in" and self.gw.leading:
            try:
                await self._send_login(ccms805.LOGOUT)
                self.gw.link_state = "logging_out"
                await self._wait_sent(ccms805.MESSAGE_TYPE)
            except (RedisError, OSError) as exc:
                # Stopping goes on: the NPC logs a silent participant out by itself.
                log.warning("event=logout_not_sent error=%r", exc)

    # Outbound

    def _group_header(self, tx: Any, now: datetime, system: str) -> GroupHeader:
        day = now.strftime("%Y%m%d")
        msg_id = f"{day}{payments.next_seq(tx, f'msg:{day}'):08d}"
        bank = self.gw.settings.bank_code
        return GroupHeader(msg_id, now.strftime("%Y-%m-%dT%H:%M:%S"), bank, bank,
                           outbound.NPC, outbound.NPC, system)

    async def _send_login(self, operation: str) -> None:
        gw = self.gw
        now = gw.clock.now()

        def work(tx: Any) -> int:
            header = outbound.new_header(tx, now, gw.settings.bank_code, outbound.NPC,
                                         ccms805.MESSAGE_TYPE, "CCMS", 1)
            body = ccms805.build(ccms805.LoginRequest(self._group_header(tx, now, "HVPS"),
                                                      operation))
            return outbound.queue_message(tx, header, body, gw.keyring, now)
        outbox_id = await gw.store.run(work)
        await gw.redis.xadd(keys.OUT_LINK, {"outbox": str(outbox_id)})
        log.info("event=%s bank=%s", "login_sent" if operation == ccms805.LOGIN
                 else "logout_sent", gw.settings.bank_code)

    async def _wait_sent(self, mesg_type: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOGOUT_WAIT_S
        while loop.time() < deadline:
            left = await self.gw.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM outbox WHERE mesg_type = ? AND state IN ('pending', "
                "'sending')", (mesg_type,))[0])
            if left == 0:
                return
            await asyncio.sleep(0.05)
        log.warning("event=logout_not_sent_in_time wait_s=%s", LOGOUT_WAIT_S)

    async def probe(self) -> None:
        gw = self.gw
        now = gw.clock.now()
        node = gw.settings.bank_code

        def work(tx: Any) -> int:
            header = outbound.new_header(tx, now, node, outbound.NPC, ccms991.MESSAGE_TYPE,
                                         "CCMS", 1)
            body = ccms991.build(ccms991.Probe(
                sender_node=node, sender_server="paygate", sender_line_manager="paygate",
                sender_route="link", sent_at=now.strftime("%Y-%m-%dT%H:%M:%S"),
                receiver_node=outbound.NPC, receiver_server="npc",
                receiver_line_manager="npc", response_line="link"))
            return outbound.queue_message(tx, header, body, gw.keyring, now)
        outbox_id = await gw.store.run(work)
        await gw.redis.xadd(keys.OUT_LINK, {"outbox": str(outbox_id)})
        self.last_probe_sent = asyncio.get_running_loop().time()

    async def _probe_forever(self) -> None:
        interval_s = float(getattr(self.gw.settings, "probe_interval_s", PROBE_INTERVAL_S))
        while True:
            await asyncio.sleep(interval_s)
            if not self.gw.leading:
                continue
            try:
                await self._probe_once(interval_s)
            except Exception as exc:  # the timer outlives one failed pass; logged in full
                log.exception("event=link_probe_failed error=%r", exc)

    async def _probe_once(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        answered = self.last_probe_answered or 0.0
        if self.last_probe_sent is not None and \
                loop.time() - answered > 2 * interval_s and answered < self.last_probe_sent:
            await self.gw.store.run(lambda tx: self.gw.alert(
                tx, ALERT_PROBE_UNANSWERED, interval_s=interval_s))
            self._unanswered_raised = True
        elif self._unanswered_raised and self.last_probe_answered is not None and \
                answered >= (self.last_probe_sent or 0.0):
            await self.gw.store.run(self._close_unanswered)
            self._unanswered_raised = False
        await self._check_keys()
        await self._login_again(interval_s)
        await self.probe()

    def _close_unanswered(self, tx: Any) -> None:
        """Our probes are answered again: the link is back, and every open
        `link_probe_unanswered` is closed by the gateway."""
        now = self.gw.clock.now()
        ids = [alert_id for alert_id, _ in critical.unclosed(tx, (ALERT_PROBE_UNANSWERED,))]
        if ids:
            critical.close_by_gateway(tx, ids, "the NPC answered our ccms.991 probe again "
                                               f"(seen at {now.isoformat()})", now)

    async def _login_again(self, interval_s: float) -> None:
        """A login with no ccms.806 for two intervals is sent again, at each probe pass
        until one comes (the NPC may have discarded it: our key not yet installed there,
        or it was down), with an operator alert: without this the session stayed
        `logging_in` for ever while probes and payments went through."""
        loop = asyncio.get_running_loop()
        if self.gw.link_state != "logging_in" or self._login_sent is None \
                or loop.time() - self._login_sent <= 2 * interval_s:
            return
        log.warning("event=login_resent waited_s=%.0f", loop.time() - self._login_sent)
        await self.gw.store.run(lambda tx: self.gw.alert(
            tx, "link_login_unanswered", interval_s=interval_s))
        await self._send_login(ccms805.LOGIN)
        self._login_sent = loop.time()

    async def _check_keys(self) -> None:
        gw = self.gw
        days = int(getattr(gw.settings, "key_expiry_alert_days", KEY_EXPIRY_ALERT_DAYS))
        for period in gw.keyring.expiring(gw.settings.bank_code, days):
            await gw.store.run(lambda tx, p=period: gw.alert(
                tx, "signing_key_expires_soon", file=p.file, not_after=p.not_after))

    # Inbound

    def on_login_response(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        r: ccms805.LoginResponse = d.obj
        accepted = r.status not in ("PR09", "PR24")
        if r.operation == ccms805.LOGIN:
            state = "logged_in" if accepted else "login_refused"
        else:
            state = "logged_out"
        if not accepted:
            self.gw.alert(tx, "link_login_refused", operation=r.operation, code=r.code,
                          reason=r.reject_info)
        log.info("event=login_response operation=%s status=%s link=%s", r.operation,
                 r.status, state)
        return Processed({"operation": r.operation, "status": r.status},
                         [lambda: self._set_state(state), lambda: self._tell_state(state)])

    def on_forced_logout(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        self.gw.alert(tx, "link_forced_logout", remark=d.obj.header.remark)
        return Processed({"forced_logout": True},
                         [lambda: self._set_state("forced_out"),
                          lambda: self._tell_state("forced_out")])

    def on_probe_response(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        return Processed({"probe": "answered"},
                         [self._probe_answered,
                          lambda: self.gw.cluster.publish("link_probe_answered")])

    def _probe_answered(self) -> None:
        self.last_probe_answered = asyncio.get_running_loop().time()

    def _set_state(self, state: str) -> None:
        self.gw.link_state = state

    def _tell_state(self, state: str) -> None:
        """Tell the other gateway processes (none on SQLite) the session's new state."""
        if self.gw.cluster.single:
            return
        self.gw.cluster.publish("link_state", state=state)
        self.gw.spawn(self._keep_state(state))

    async def _keep_state(self, state: str) -> None:
        try:
            await self.gw.redis.set(keys.LINK_SESSION, state)
        except (RedisError, OSError) as exc:
            # The processes running heard it on the cluster channel; only one starting
            # before the next answer would show the session's state it started with.
            log.warning("event=link_state_not_kept state=%s error=%r", state, exc)

    async def _learn_state(self) -> None:
        """A follower joining: the session's state as the NPC last answered it."""
        if self.gw.cluster.single:
            return
        state = await self.gw.redis.get(keys.LINK_SESSION)
        if state is not None:
            self._set_state(state)


def install(gw: Any) -> LinkSession:
    return LinkSession(gw)
