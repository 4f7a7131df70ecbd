"""Peer banks' side of query and reply (查询查复) and free text, for chasing to be tested.

A simulated peer that receives a ccms.314 answers it with a ccms.315 after
`reply_delay_s` of simulated time, or never, with probability `never_reply` (drawn from
the simulator's seeded generator, so a seed gives the same story). Answers waiting for
their time are kept in the simulator's database and sent by a ticker, so a restart
delays them but loses none; the behaviour itself is set by control calls and starts at
"answer at once" after a restart. The reply says what the NPC's records say about the
payment: settled on which date, or not found.

Peers also ask: `POST /sim/peer/query` has a peer send a ccms.314 about a payment (one it
sent to a bank, or one it received from it), and `POST /sim/peer/free-format` a ccms.303.

    POST /sim/peer/query        {"sender", "receiver"?, "orig_msg_id", "orig_sender"?,
                                 "orig_mt"?, "orig_tx_id"?, "amount_fen", "content",
                                 "query_type"?}
    POST /sim/peer/free-format  {"sender", "receiver"?, "content"}
    GET|POST /sim/queries       the reply behaviour {"reply_delay_s", "never_reply",
                                 "reply_text"} and counters
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.clock import Clock
from gateway.errors import PaygateError, Problem, ProblemList, ValidationFailed
from gateway.messages import ccms303, ccms314, codec
from gateway.messages.common import GroupHeader, OriginalRef, OriginalTx, iso_datetime
from simulators.beps_store import NETTED
from simulators.logfmt import event
from simulators.settings import OUR_BANK
from simulators.store import SETTLED, Store

log = logging.getLogger("npc.queries")

SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_queries (
    id INTEGER PRIMARY KEY, peer TEXT NOT NULL, asker TEXT NOT NULL,
    msg_id TEXT NOT NULL, raw BLOB NOT NULL, received_at TEXT NOT NULL,
    reply_at TEXT, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS peer_queries_due ON peer_queries (state, reply_at);
"""
WAITING, REPLIED, IGNORED = "waiting", "replied", "ignored"
NOT_FOUND = "经查未发现该笔款项，请核实后再查。"
TICK_S = 0.1             # how often waiting answers are looked at (real seconds)
DUE_PER_TICK_MAX = 100   # answers sent per tick; more wait for the next one
_BANK = re.compile(r"[0-9]{12}")
_MSG_ID = re.compile(r"[0-9A-Za-z]{1,35}")


@dataclass(frozen=True)
class Behaviour:
    reply_delay_s: float = 0.0   # simulated seconds between a query and its answer
    never_reply: float = 0.0     # probability that a query is never answered
    reply_text: str = ""         # a fixed answer; empty: answer from the NPC's records


class PeerQueries:
    def __init__(self, store: Store, peers: dict[str, Any], clock: Clock,
                 take: Callable[[bytes], str], seed: int) -> None:
        self.store = store
        self.peers = peers
        self.clock = clock
        self.take = take  # the NPC's inbound path
        self.rng = random.Random(seed)
        self.behaviour = Behaviour()
        self.store.conn.executescript(SCHEMA)
        self._ticker: asyncio.Task | None = None

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick(), name="peer-query-answers")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.send_due()
            except Exception as exc:  # the ticker outlives one failed pass; logged in full
                log.exception("event=peer_answers_failed error=%r", exc)

    # What a peer does with what the NPC delivers to it

    def receive(self, peer: Any, decoded: codec.Decoded, raw: bytes) -> list[bytes]:
        """Answers a peer gives to a delivered query now (usually none: they wait).
        `decoded` is the peer's own check of `raw` (PeerBank.receive)."""
        mesg_type = decoded.header.mesg_type
        if mesg_type == ccms314.RESPONSE_TYPE:
            self.store.add("peer_replies_received")
        if mesg_type != ccms314.MESSAGE_TYPE:
            return []
        if not decoded.ok:
            event(log, "peer_query_unreadable", logging.WARNING, peer=peer.code,
                  code=decoded.problems[0].code)
            return []
        return self._schedule(peer, decoded, raw)

    def _schedule(self, peer: Any, decoded: codec.Decoded, raw: bytes) -> list[bytes]:
        q: ccms314.Query = decoded.obj
        now = self.clock.now()
        self.store.add("peer_queries_received")
        never = self.rng.random() < self.behaviour.never_reply
        reply_at = None if never else now + timedelta(seconds=self.behaviour.reply_delay_s)
        with self.store.transaction():
            row_id = self.store.conn.execute(
                "INSERT INTO peer_queries (peer, asker, msg_id, raw, received_at, reply_at, "
                "state) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (peer.code, decoded.header.orig_sender, q.header.msg_id, raw,
                 now.isoformat(), reply_at.isoformat() if reply_at else None,
                 IGNORED if never else WAITING)).lastrowid
        event(log, "peer_query_received", peer=peer.code, msg_id=q.header.msg_id,
              reply_at=reply_at.isoformat() if reply_at else "never")
        if reply_at is not None and reply_at <= now:
            return [self._answer(row_id, peer, q)]
        return []

    def send_due(self) -> int:
        """Send every waiting answer whose time has come; how many were sent."""
        now = self.clock.now()
        rows = self.store.conn.execute(
            "SELECT id, peer, raw, reply_at FROM peer_queries WHERE state = ? "
            "ORDER BY reply_at, id LIMIT ?", (WAITING, DUE_PER_TICK_MAX)).fetchall()
        sent = 0
        for row_id, code, raw, reply_at in rows:
            if datetime.fromisoformat(reply_at) > now:
                break
            peer = self.peers[code]
            query = peer.keys.decode(bytes(raw), frozenset({code})).obj
            # Marked answered and taken by the NPC in one transaction: a crash between
            # the two can neither lose the answer nor send it twice.
            with self.store.transaction():
                self.take(self._answer(row_id, peer, query))
            sent += 1
        return sent

    def _answer(self, row_id: int, peer: Any, q: ccms314.Query) -> bytes:
        text = self.behaviour.reply_text or self._records_say(q)
        header = peer.header(q.header.instg_direct, ccms314.RESPONSE_TYPE,
                             system=q.header.system)
        body = ccms314.build_reply(ccms314.Reply(
            header=_group_header(peer, q.header.instg_direct, q.header.instg_party,
                                 q.header.system),
            query=OriginalRef(q.header.msg_id, q.header.instg_direct, ccms314.MESSAGE_TYPE),
            subject=q.subject, amount_fen=q.amount_fen, content=text,
            subject_tx=q.subject_tx, query_type=q.query_type))
        self.store.conn.execute("UPDATE peer_queries SET state = ? WHERE id = ?",
                                (REPLIED, row_id))
        self.store.add("peer_replies_sent")
        event(log, "peer_query_answered", peer=peer.code, msg_id=q.header.msg_id)
        return codec.encode(header, body, peer.keys.ring)

    def _records_say(self, q: ccms314.Query) -> str:
        if q.subject.mt.startswith("beps."):
            return self._package_records_say(q)
        row = self.store.conn.execute(
            "SELECT status, settled_on FROM payments WHERE msg_id = ? AND sender = ? "
            "ORDER BY id DESC LIMIT 1", (q.subject.msg_id, q.subject.instg_party)).fetchone()
        if row is not None and row[0] == SETTLED:
            return f"该笔款项已于{row[1]}清算，已入收款人账户。"
        return NOT_FOUND

    def _package_records_say(self, q: ccms314.Query) -> str:
        """A BEPS transaction is named by the package that carried it (its MsgId and
        sender) and its own TxId; one withdrawn from its package was never netted."""
        if q.subject_tx is None:
            return NOT_FOUND
        row = self.store.conn.execute(
            "SELECT k.netting_date, r.settled_on FROM beps_packages k JOIN beps_txs t "
            "ON t.package_id = k.id LEFT JOIN beps_rounds r ON r.netting_date = "
            "k.netting_date AND r.netting_round = k.netting_round WHERE k.msg_id = ? AND "
            "k.sender = ? AND k.mesg_type = ? AND k.status = ? AND t.tx_id = ? AND NOT "
            "EXISTS (SELECT 1 FROM beps_tx_cancels c WHERE c.package_id = k.id AND "
            "c.tx_id = t.tx_id)", (q.subject.msg_id, q.subject.instg_party, q.subject.mt,
                                   NETTED, q.subject_tx.tx_id)).fetchone()
        if row is None:
            return NOT_FOUND
        if row[1] is not None:
            return f"该笔款项已于{row[1]}清算，已入收款人账户。"
        return f"该笔款项已于{row[0]}轧差，待清算。"

    # What a peer sends on request

    def peer_query(self, body: Any) -> dict[str, str]:
        req = _checked(body, self.peers, _QUERY_FIELDS)
        peer = self.peers[req["sender"]]
        receiver = req.get("receiver", OUR_BANK)
        subject_tx = None
        if req.get("orig_tx_id"):
            subject_tx = OriginalTx(peer.spec.branch, peer.branches.get(receiver, receiver),
                                    req["orig_tx_id"], "A100")
        orig_mt = req.get("orig_mt", "hvps.111.001.01")
        system = "BEPS" if orig_mt.startswith("beps.") else "HVPS"
        header = peer.header(receiver, ccms314.MESSAGE_TYPE, system=system)
        query = ccms314.Query(
            header=_group_header(peer, receiver, peer.branches.get(receiver, receiver),
                                 system),
            subject=OriginalRef(req["orig_msg_id"], req.get("orig_sender", peer.code),
                                orig_mt),
            amount_fen=req["amount_fen"], content=req["content"], subject_tx=subject_tx,
            query_type=req.get("query_type", "QT00"))
        raw = codec.encode(header, ccms314.build(query), peer.keys.ring)
        outcome = self.take(raw)
        event(log, "peer_query_sent", peer=peer.code, receiver=receiver,
              msg_id=query.header.msg_id, outcome=outcome)
        return {"msg_id": query.header.msg_id, "mesg_id": header.mesg_id, "outcome": outcome}

    def peer_free_format(self, body: Any) -> dict[str, str]:
        req = _checked(body, self.peers, _FREE_FIELDS)
        peer = self.peers[req["sender"]]
        receiver = req.get("receiver", OUR_BANK)
        header = peer.header(receiver, ccms303.MESSAGE_TYPE)
        message = ccms303.FreeFormat(_group_header(peer, receiver, receiver, "HVPS"),
                                     req["content"])
        outcome = self.take(codec.encode(header, ccms303.build(message), peer.keys.ring))
        return {"msg_id": message.header.msg_id, "mesg_id": header.mesg_id,
                "outcome": outcome}

    def stats(self) -> dict[str, Any]:
        counts = dict(self.store.conn.execute(
            "SELECT state, count(*) FROM peer_queries GROUP BY state").fetchall())
        return {**asdict(self.behaviour), "waiting": counts.get(WAITING, 0),
                "replied": counts.get(REPLIED, 0), "ignored": counts.get(IGNORED, 0),
                "replies_received": self.store.counter("peer_replies_received")}

    def change(self, body: Any) -> dict[str, Any]:
        self.behaviour = _behaviour(self.behaviour, body)
        event(log, "peer_query_behaviour_changed", **asdict(self.behaviour))
        return self.stats()

    def add_routes(self, app: web.Application) -> None:
        def route(action: Callable[[Any], Any]) -> Callable[[web.Request], Any]:
            async def handle(request: web.Request) -> web.Response:
                return web.json_response(action(await _json(request)))
            return handle

        async def get_stats(request: web.Request) -> web.Response:
            return web.json_response(self.stats())

        app.router.add_post("/sim/peer/query", route(self.peer_query))
        app.router.add_post("/sim/peer/free-format", route(self.peer_free_format))
        app.router.add_get("/sim/queries", get_stats)
        app.router.add_post("/sim/queries", route(self.change))


async def _json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise PaygateError(Problem("body_must_be_json", "/", str(exc)[:100],
                                   "a JSON document"), status=400) from None


def _group_header(peer: Any, receiver: str, receiver_party: str, system: str) -> GroupHeader:
    return GroupHeader(msg_id=peer.ids.xml_msg_id(peer.code),
                       created_at=iso_datetime(peer.clock.now()), instg_direct=peer.code,
                       instg_party=peer.spec.branch, instd_direct=receiver,
                       instd_party=receiver_party, system=system)


# name -> (required, check)
_QUERY_FIELDS: dict[str, tuple[bool, Callable[[Any], bool]]] = {
    "sender": (True, lambda v: isinstance(v, str)),
    "receiver": (False, lambda v: isinstance(v, str) and bool(_BANK.fullmatch(v))),
    "orig_msg_id": (True, lambda v: isinstance(v, str) and bool(_MSG_ID.fullmatch(v))),
    "orig_sender": (False, lambda v: isinstance(v, str) and bool(_BANK.fullmatch(v))),
    "orig_mt": (False, lambda v: isinstance(v, str) and len(v) <= 35),
    "orig_tx_id": (False, lambda v: isinstance(v, str) and v.isascii() and v.isdigit()
                   and len(v) <= 16),
    "amount_fen": (True, lambda v: isinstance(v, int) and not isinstance(v, bool)
                   and 0 < v < 10**17),
    "content": (True, lambda v: isinstance(v, str) and 0 < len(v) <= 256),
    "query_type": (False, lambda v: v in ("QT00", "QT01")),
}
_FREE_FIELDS = {name: _QUERY_FIELDS[name] for name in ("sender", "receiver")}
_FREE_FIELDS["content"] = (True, lambda v: isinstance(v, str) and 0 < len(v) <= 500)


def _checked(body: Any, peers: dict[str, Any],
             spec: dict[str, tuple[bool, Callable[[Any], bool]]]) -> dict[str, Any]:
    problems = ProblemList()
    if not isinstance(body, dict):
        problems.add("body_must_be_a_json_object", "/", type(body).__name__, "an object")
        problems.raise_if_any(ValidationFailed)
    for name, value in body.items():
        if name not in spec:
            problems.add("field_unknown", f"/{name}", value, ", ".join(spec))
        elif not spec[name][1](value):
            problems.add("field_malformed", f"/{name}", value, f"a valid {name}")
    for name, (required, _) in spec.items():
        if required and name not in body:
            problems.required(f"/{name}", None, False, f"a {name}")
    if body.get("sender") not in peers:
        problems.add("sender_must_be_a_simulated_peer", "/sender", body.get("sender"),
                     "one of " + ", ".join(sorted(peers)))
    problems.raise_if_any(ValidationFailed)
    return body


def _behaviour(current: Behaviour, body: Any) -> Behaviour:
    problems = ProblemList()
    if not isinstance(body, dict):
        problems.add("body_must_be_a_json_object", "/", type(body).__name__, "an object")
        problems.raise_if_any(ValidationFailed)
    for name, value in body.items():
        if name == "reply_delay_s" and (isinstance(value, bool) or not isinstance(
                value, (int, float)) or value < 0):
            problems.add("field_malformed", "/reply_delay_s", value, "seconds, 0 or more")
        elif name == "never_reply" and (isinstance(value, bool) or not isinstance(
                value, (int, float)) or not 0 <= value <= 1):
            problems.add("field_malformed", "/never_reply", value, "a probability 0..1")
        elif name == "reply_text" and (not isinstance(value, str) or len(value) > 256):
            problems.add("field_malformed", "/reply_text", value, "at most 256 characters")
        elif name not in ("reply_delay_s", "never_reply", "reply_text"):
            problems.add("field_unknown", f"/{name}", value,
                         "reply_delay_s, never_reply, reply_text")
    problems.raise_if_any(ValidationFailed)
    return replace(current, **body)
