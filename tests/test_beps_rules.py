"""BEPS rules in the gateway without processes: packing by size and age, package
bodies against the schemas, debit and batch requests refused by named rules."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lxml import etree

from gateway import critical, payments, store
from gateway.beps import build, cancels, debits_out, items, packer, periodic, schema
from gateway.beps.api import submit_batch
from gateway.beps.settings import BepsSettings
from gateway.errors import PaygateError, Problem, ValidationFailed
from gateway.messages import codec
from gateway.messages.signing import KeyRing, write_keypair
from ledger.testing import fresh_books
from message_schemas import catalogue
from tests.beps_support import (NOW, ResultGateway, StubGateway, answer, answer_in,
                                credit_row, held_package, transfers_of)
from tests.e2e_support import BANK, BRANCH, PEER, PEER_BRANCH, SHARED

OWN = frozenset({BANK, BRANCH})


@pytest.fixture()
def books(tmp_path: Path) -> tuple[Any, StubGateway]:
    db, _ = fresh_books()
    with db.transaction() as tx:
        for statement in store.SCHEMA:
            tx.execute(statement, ())
        critical.install(tx)  # alerts the gateway closes itself
        schema.install(tx)
    write_keypair(tmp_path, BANK)
    yield db, StubGateway(KeyRing.load(tmp_path, [BANK]))
    db.close()


def accept(db: Any, rows: list[dict[str, Any]]) -> None:
    with db.transaction() as tx:
        for row in rows:
            payments.insert(tx, row)
            items.add(tx, row["id"], items.CREDIT_OUT, PEER, row["msg_type"],
                      row["amount_fen"], datetime.fromisoformat(row["created_at"]))


def seal(db: Any, gw: StubGateway, now: datetime, force: bool = False,
         **settings: Any) -> list[int]:
    with db.transaction() as tx:
        return packer.seal_due(tx, gw, BepsSettings(**settings), "stream", now, force)


def package_sizes(db: Any) -> list[int]:
    with db.transaction() as tx:
        return [n for (n,) in tx.query("SELECT count FROM beps_packages ORDER BY id", ())]


def test_packages_seal_at_the_size_limit_and_the_rest_at_its_age(books):
    """Seven waiting items with room for three: two full packages at once, the last one
    when its oldest item has waited the age limit, and no item in two packages."""
    db, gw = books
    accept(db, [credit_row(n, NOW) for n in range(7)])

    at_once = seal(db, gw, NOW, package_size_max=3, package_age_max_s=5)
    too_young = seal(db, gw, NOW + timedelta(seconds=4), package_size_max=3,
                     package_age_max_s=5)
    aged = seal(db, gw, NOW + timedelta(seconds=5), package_size_max=3, package_age_max_s=5)

    assert (len(at_once), len(too_young), len(aged)) == (2, 0, 1)
    assert package_sizes(db) == [3, 3, 1]
    with db.transaction() as tx:
        assert tx.query_one("SELECT COUNT(*), COUNT(DISTINCT payment_id) FROM beps_items "
                            "WHERE package_id IS NOT NULL", ()) == (7, 7)


def test_packages_are_per_receiver_and_message_type(books):
    """Customer and institution credits travel in different packages."""
    db, gw = books
    accept(db, [credit_row(1, NOW), credit_row(2, NOW, "beps.122.001.01"), credit_row(3, NOW)])

    seal(db, gw, NOW, force=True)

    with db.transaction() as tx:
        rows = tx.query("SELECT msg_type, count FROM beps_packages ORDER BY msg_type", ())
    assert rows == [("beps.121.001.01", 2), ("beps.122.001.01", 1)]


def test_a_cancelled_payment_is_never_packed(books):
    """An item whose payment left `accepted` before packing stays out of every package."""
    db, gw = books
    accept(db, [credit_row(1, NOW), credit_row(2, NOW, state="cancelled")])

    seal(db, gw, NOW, force=True)

    assert package_sizes(db) == [1]
    with db.transaction() as tx:
        assert tx.query_one("SELECT package_id FROM beps_items WHERE payment_id = ?",
                            ("P2026121200000002",))[0] == packer.VOID


def test_sealing_and_sending_leave_each_payment_its_state_and_history(books):
    """Sealing keeps each packed payment `accepted` and adds `beps_packed` naming the
    package to its history; the first claim makes exactly those payments `sent` with
    `beps_sent`; a payment cancelled before packing gets neither."""
    db, gw = books
    accept(db, [credit_row(1, NOW), credit_row(2, NOW, state="cancelled"), credit_row(3, NOW)])
    outbox_id, = seal(db, gw, NOW, force=True)
    sealed = history_of(db, ["P2026121200000001", "P2026121200000002", "P2026121200000003"])

    with db.transaction() as tx:
        envelope = packer.claim(tx, gw, outbox_id, NOW + timedelta(seconds=1))
        again = packer.claim(tx, gw, outbox_id, NOW + timedelta(seconds=2))
        package_id = tx.query_one("SELECT id FROM beps_packages", ())[0]
    sent = history_of(db, ["P2026121200000001", "P2026121200000002", "P2026121200000003"])

    packed = ("accepted", "beps_packed", {"package": package_id}, NOW.isoformat())
    assert sealed == {"P2026121200000001": ("accepted", [packed]),
                      "P2026121200000002": ("cancelled", []),
                      "P2026121200000003": ("accepted", [packed])}
    assert codec.decode(envelope).obj.header.count == 2 and again is None
    sending = ("sent", "beps_sent", {"package": package_id},
               (NOW + timedelta(seconds=1)).isoformat())
    assert sent == {"P2026121200000001": ("sent", [packed, sending]),
                    "P2026121200000002": ("cancelled", []),
                    "P2026121200000003": ("sent", [packed, sending])}


def test_a_package_records_packing_and_sending_once_for_all_its_payments(books):
    """A package of three: one `beps_packed` row and one `beps_sent` row under the
    package, none per payment; each payment's history and the summary count still tell
    every step (the payments' history shares one numbering, so the order holds)."""
    db, gw = books
    accept(db, [credit_row(n, NOW) for n in range(1, 4)])
    outbox_id, = seal(db, gw, NOW, force=True)

    with db.transaction() as tx:
        packer.claim(tx, gw, outbox_id, NOW + timedelta(seconds=1))
        package_id = tx.query_one("SELECT id FROM beps_packages", ())[0]
        rows = tx.query("SELECT payment_id, event FROM payment_events WHERE event <> "
                        "'created' ORDER BY id", ())
        sent = payments.ever_count(tx, "beps", "out", "sent")
    histories = history_of(db, [f"P202612120000000{n}" for n in range(1, 4)])

    subject = items.package_subject(package_id)
    assert rows == [(subject, "beps_packed"), (subject, "beps_sent")]
    assert sent == 3
    assert {events[-1][1] for _, events in histories.values()} == {"beps_sent"}
    assert all([e[1] for e in events] == ["beps_packed", "beps_sent"]
               for _, events in histories.values())


def test_a_payment_that_left_accepted_before_the_claim_is_not_sent(books):
    """When one of a package's payments is no longer accepted as the package is claimed,
    the others become `sent` with a history row each, and it keeps its state; all three
    still show the package's `beps_packed`."""
    db, gw = books
    accept(db, [credit_row(n, NOW) for n in range(1, 4)])
    outbox_id, = seal(db, gw, NOW, force=True)
    with db.transaction() as tx:
        tx.execute("UPDATE payments SET state = 'rejected' WHERE id = ?",
                   ("P2026121200000002",))
        packer.claim(tx, gw, outbox_id, NOW + timedelta(seconds=1))

    histories = history_of(db, [f"P202612120000000{n}" for n in range(1, 4)])

    assert {pid: (state, [e[1] for e in events])
            for pid, (state, events) in histories.items()} == {
        "P2026121200000001": ("sent", ["beps_packed", "beps_sent"]),
        "P2026121200000002": ("rejected", ["beps_packed"]),
        "P2026121200000003": ("sent", ["beps_packed", "beps_sent"])}


def test_a_package_claimed_as_it_is_sealed_is_packed_and_sent_in_one_write(books):
    """Sealing that claims the package too (a link slot free) leaves what sealing and
    then claiming leave: each packed payment `sent` with `beps_packed` then `beps_sent`
    under the package, the package `sent`, its outbox row taken for its first attempt and
    its bytes those archived; a cancelled payment gets neither; a package beyond the
    slots is sealed only."""
    db, gw = books
    accept(db, [credit_row(1, NOW), credit_row(2, NOW, state="cancelled"), credit_row(3, NOW),
                credit_row(4, NOW, msg_type="beps.122.001.01")])
    ids = ["P2026121200000001", "P2026121200000002", "P2026121200000003"]
    with db.transaction() as tx:
        sealed, claimed = packer.seal_and_claim(tx, gw, BepsSettings(), "stream", NOW,
                                                True, 1)
        (outbox_id, envelope), = claimed
        package_id, state = tx.query_one("SELECT id, state FROM beps_packages WHERE "
                                         "outbox_id = ?", (outbox_id,))
        row = tx.query_one("SELECT state, attempts FROM outbox WHERE id = ?", (outbox_id,))
        others = tx.query("SELECT state FROM beps_packages WHERE outbox_id <> ?",
                          (outbox_id,))
        stored = packer.stored_envelope(tx, outbox_id)
        again = packer.claim(tx, gw, outbox_id, NOW + timedelta(seconds=1))
    histories = history_of(db, ids)

    detail = {"package": package_id}
    steps = [("accepted", "beps_packed", detail, NOW.isoformat()),
             ("sent", "beps_sent", detail, NOW.isoformat())]
    assert sealed[0] == outbox_id and len(sealed) == 2 and others == [("sealed",)]
    assert histories == {ids[0]: ("sent", steps), ids[1]: ("cancelled", []),
                         ids[2]: ("sent", steps)}
    assert (state, row) == ("sent", ("sending", 1))
    assert envelope == stored and again is None
    assert codec.decode(envelope).obj.header.count == 2


def test_a_package_whose_payment_left_accepted_meanwhile_is_sealed_again(books,
                                                                          monkeypatch):
    """Claimed as it is sealed, a package whose payment another process moved between
    reading and sending (PostgreSQL) is contended, as packing alone is: the work is
    run again, not sent short."""
    db, gw = books
    accept(db, [credit_row(n, NOW) for n in range(1, 4)])
    moved = payments.transition_group

    def meanwhile(tx, group, old_state, new_state, *args, **kwargs):
        if new_state == "sent":
            tx.execute("UPDATE payments SET state = 'cancelled' WHERE id = ?",
                       ("P2026121200000002",))
        return moved(tx, group, old_state, new_state, *args, **kwargs)
    monkeypatch.setattr(payments, "transition_group", meanwhile)

    with pytest.raises(store.Contended):
        with db.transaction() as tx:
            packer.seal_and_claim(tx, gw, BepsSettings(), "stream", NOW, True, 1)


def test_a_package_state_change_looks_its_payments_up_by_id(books):
    """The one statement that moves a package's payments reads each by its id, never
    the whole index of payments in a state (SQLite's planner would, without `+state`)."""
    db, gw = books
    accept(db, [credit_row(1, NOW)])
    outbox_id, = seal(db, gw, NOW, force=True)
    with db.transaction() as tx:
        recording = NotedQueries(tx)
        packer.claim(recording, gw, outbox_id, NOW)
        update, params = next((sql, params) for sql, params in recording.statements
                              if sql.startswith("UPDATE payments"))
        plan = [row[-1] for row in tx.query(f"EXPLAIN QUERY PLAN {update}", params)]

    assert any("payments USING INDEX sqlite_autoindex_payments_1 (id=?)" in step
               for step in plan)
    assert not any("payments_state" in step for step in plan)


class NotedQueries:
    """A transaction that notes each query it runs (the statement and its parameters)."""

    def __init__(self, tx: Any) -> None:
        self.tx, self.statements = tx, []

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self.statements.append((sql, params))
        return self.tx.query(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tx, name)


def history_of(db: Any, ids: list[str]) -> dict[str, tuple[str, list[tuple[Any, ...]]]]:
    """Each payment's state and the history after its creation: (state, event, detail,
    at) each, and its updated_at as the last event's time."""
    out = {}
    with db.transaction() as tx:
        for pid in ids:
            payment = payments.get(tx, pid)
            events = [(e["state"], e["event"], e["detail"], e["at"])
                      for e in payments.history(tx, pid)[1:]]
            if events:
                assert payment["updated_at"] == events[-1][3]
            out[pid] = (payment["state"], events)
    return out


def test_a_beps_121_item_has_no_place_for_the_agents_names():
    """Why a ready hvps.111 gone by BEPS leaves its agents' names behind (docs/messages.md):
    a beps.121 item names DbtrAgt and CdtrAgt by BrnchId alone, in our schema and in the
    published one; the same package with a name in an agent is invalid in both. Should a
    schema give the agents a name, this fails, and the names are to be carried."""
    body = build.package_body("beps.121.001.01", "2026121200000099", BANK, PEER,
                              transfers_of([credit_row(0, NOW)]), NOW)
    named = body.replace(b"</DbtrAgt>", b"<FinInstnId><Nm>\xe7\x94\xb2</Nm></FinInstnId>"
                         b"</DbtrAgt>", 1)
    assert named != body
    schemas = [catalogue.schema("beps.121.001.01")]
    reference = SHARED / "cnaps" / "reference-xsd" / "beps.121.001.01.xsd"
    if reference.exists():
        schemas.append(etree.XMLSchema(etree.parse(str(reference))))

    assert [x.validate(etree.fromstring(body)) for x in schemas] == [True] * len(schemas)
    assert [x.validate(etree.fromstring(named)) for x in schemas] == [False] * len(schemas)


@pytest.mark.parametrize("msg_type", ["beps.121.001.01", "beps.122.001.01",
                                      "beps.125.001.01", "beps.127.001.01"])
def test_package_bodies_pass_our_schema_and_the_published_one(msg_type):
    """A package built from payments validates, and reads back with the same amounts."""
    rows = [credit_row(n, NOW, msg_type) for n in range(3)]
    for row in rows:
        row["agreement"] = "XY-0001"
        row["business_type"] = {"beps.127.001.01": "B100",
                                "beps.125.001.01": "E100"}.get(msg_type, "A100")
    body = build.package_body(msg_type, "2026121200000099", BANK, PEER, transfers_of(rows),
                              NOW, 3 if msg_type == build.DEBIT_TYPE else None)
    root = etree.fromstring(body)
    reference = SHARED / "cnaps" / "reference-xsd" / f"{msg_type}.xsd"
    decoded = codec.decode(body, bare_ok=True)

    assert catalogue.schema(msg_type).validate(root)
    if reference.exists():
        assert etree.XMLSchema(etree.parse(str(reference))).validate(root)
    assert decoded.problems == []
    assert [t.amount_fen for t in decoded.obj.transfers] == [100, 101, 102]
    assert decoded.obj.transfers[0].remark == "货款"


REMARKS = [
    (["/H01/货款"], "货款"),
    (["/H01/货款", "/H02/第二行"], "货款; 第二行"),
    ([], None),
    (["x" * 300], "x" * 256),
]


@pytest.mark.parametrize("lines, remark", REMARKS)
def test_remittance_lines_become_one_remark(lines, remark):
    """Tagged remittance lines travel untagged in AddtlInf, within its 256 characters."""
    assert build.remark_of(lines) == remark


GOOD_DEBIT = {"creditor_account": "11000000000000000801", "creditor_name": "示例燃气公司",
              "creditor_bank": BRANCH, "debtor_account": "6222000000001234",
              "debtor_name": "对手客户", "debtor_bank": PEER_BRANCH, "amount": "120.00",
              "agreement": "XY-0001"}
BROKEN_DEBITS = [
    ("creditor_bank_not_ours", {"creditor_bank": PEER_BRANCH}),
    ("field_required", {"agreement": ""}),
    ("amount_must_have_at_most_two_decimals", {"amount": "1.001"}),
    ("name_too_long_for_beps", {"debtor_name": "名" * 61}),  # as for every BEPS name
    ("field_must_be_text", {"debtor_name": 61}),
    ("field_must_be_text", {"debtor_bank": 888200000023}),
    ("field_must_be_text", {"agreement": ["XY-0001"]}),
    ("account_malformed", {"debtor_account": "６２２２"}),
    ("bank_code_must_be_12_ascii_digits", {"debtor_bank": "8882000000"}),
    ("business_kind_malformed", {"business_kind": "3"}),
    ("field_unknown", {"urgency": "urgent"}),
    ("agreement_malformed", {"agreement": "A" * 61}),
    # What a transfer's names may not hold, a debit's may not either.
    ("text_has_control_or_invisible_characters", {"debtor_name": "对手\ufe0f客户"}),
    ("text_has_control_or_invisible_characters", {"creditor_name": "示例\u3164燃气公司"}),
    ("text_has_control_or_invisible_characters", {"debtor_name": "对手\u0000客户"}),
    ("text_has_control_or_invisible_characters", {"agreement": "XY\u200b-0001"}),
    ("text_has_control_or_invisible_characters", {"remittance_info": "燃气费\u202e"}),
]


@pytest.mark.parametrize("code, change", BROKEN_DEBITS, ids=[c for c, _ in BROKEN_DEBITS])
def test_debit_requests_are_refused_by_named_rules(code, change):
    """Each broken collection request is refused with the code of the rule it breaks."""
    with pytest.raises(PaygateError) as refused:
        debits_out.parse_debit({**GOOD_DEBIT, **change}, OWN)

    assert code in [p.code for p in refused.value.problems]


def test_a_good_debit_request_parses():
    """A complete request gives the debit with the default business kind."""
    debit = debits_out.parse_debit(GOOD_DEBIT, OWN)

    assert (debit.amount_fen, debit.business_kind, debit.agreement) == (12_000, "01400",
                                                                        "XY-0001")


class _Tx:
    """The idempotency table of gateway.store on an in-memory SQLite database."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute("CREATE TABLE idempotency (client TEXT NOT NULL, key TEXT NOT NULL, "
                          "body_sha256 TEXT NOT NULL, status INTEGER NOT NULL, response TEXT "
                          "NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (client, key))")

    def execute(self, sql: str, params: tuple = ()) -> None:
        self.conn.execute(sql, params)

    def query_one(self, sql: str, params: tuple = ()) -> Any:
        return self.conn.execute(sql, params).fetchone()


class _Store:
    def __init__(self) -> None:
        self.tx = _Tx()

    async def run(self, work: Any) -> Any:
        return work(self.tx)


class _Clock:
    def now(self) -> datetime:
        return datetime(2026, 12, 7, 10, 0, tzinfo=timezone(timedelta(hours=8)))


class Recording:
    """A gateway whose submit_transfers records the key of every item it is given."""

    def __init__(self) -> None:
        self.keys: list[str | None] = []
        self.store = _Store()
        self.clock = _Clock()
        # No client scopes (api_balance_accounts empty): every client pays from any account.
        self.settings = SimpleNamespace(api_balance_accounts={})

    async def submit_transfers(self, client: str, requests: list[tuple[str | None, Any]],
                               hashes: list[str] | None = None) -> list[Any]:
        out: list[Any] = []
        for key, _ in requests:
            self.keys.append(key)
            out.append(PaygateError(Problem("idempotency_key_required"), 400) if key is None
                       else (201, {"id": key}))
        return out


BATCHES = [
    ("not a list", {"a": 1}, "batch_must_be_a_list_of_transfers"),
    ("empty", [], "batch_must_be_a_list_of_transfers"),
    ("too long", [{}] * 4, "batch_must_be_a_list_of_transfers"),
]


@pytest.mark.parametrize("name, body, code", BATCHES, ids=[b[0] for b in BATCHES])
def test_a_batch_must_be_a_bounded_list(name, body, code):
    """A batch is a JSON list of 1 to batch_items_max transfers."""
    with pytest.raises(PaygateError) as refused:
        asyncio.run(submit_batch(Recording(), 3, "core", "b", body))

    assert refused.value.code == code


def test_batch_items_get_their_own_key_or_the_batchs():
    """Item i uses its idempotency_key, else '<batch key>:i'; a bad item is refused alone."""
    gw = Recording()
    answer = asyncio.run(submit_batch(gw, 10, "core", "B7", [
        {"idempotency_key": "own"}, {}, "not an object", {"idempotency_key": 5}]))

    assert gw.keys == ["own", "B7:1"]
    assert [r["status"] for r in answer["results"]] == [201, 201, 422, 422]
    assert answer["results"][3]["errors"][0]["code"] == "field_must_be_text"
    assert (answer["accepted"], answer["refused"]) == (2, 2)


def test_a_batch_key_sent_again_with_another_list_is_refused_whole():
    """Items keyed by position: the list first sent under a key is kept, the same list
    again is answered item by item, and a list with refused items taken out (which would
    move later items onto earlier keys and pay them twice) is refused whole, before any
    item reaches the gateway. Items that all name their own keys are not held to it."""
    gw = Recording()
    first = [{"amount": "1.00"}, {"amount": "abc"}, {"amount": "3.00"}]
    asyncio.run(submit_batch(gw, 10, "core", "B1", first))
    again = asyncio.run(submit_batch(gw, 10, "core", "B1", [dict(t) for t in first]))
    with pytest.raises(PaygateError) as refused:
        asyncio.run(submit_batch(gw, 10, "core", "B1", [first[0], first[2]]))
    own = [{"idempotency_key": "k1", "amount": "1.00"}]
    asyncio.run(submit_batch(gw, 10, "core", "B2", own))
    asyncio.run(submit_batch(gw, 10, "core", "B2", own + [{"idempotency_key": "k3"}]))

    assert gw.keys == ["B1:0", "B1:1", "B1:2", "B1:0", "B1:1", "B1:2", "k1", "k1", "k3"]
    assert again["accepted"] == 3
    assert (refused.value.code, refused.value.status) == ("batch_key_reused_with_other_items",
                                                          409)
    assert "new key" in refused.value.problems[0].message


class Routed(Recording):
    """A gateway accepting every transfer with one shared route record, as the router
    gives transfers routed alike, and recording the bodies it is given."""

    ROUTE = {"rule": "small_to_beps", "channel": "beps", "action": "send",
             "message_type": "beps.121.001.01", "facts": {"amount_fen_over": False}}

    async def submit_transfers(self, client: str, requests: list[tuple[str | None, Any]],
                               hashes: list[str] | None = None) -> list[Any]:
        self.bodies = [body for _, body in requests]
        return [(201, {"id": key, "route": self.ROUTE}) for key, _ in requests]


def test_batch_items_reach_the_gateway_without_their_key_and_share_a_summed_up_route():
    """An item's own key is taken out of the transfer (the batch body is left as it came);
    each answer sums up its route record, however many items share it."""
    batch = [{"idempotency_key": "own", "amount": "1.00"}, {"amount": "2.00"},
             {"amount": "3.00"}]
    gw = Routed()
    answer = asyncio.run(submit_batch(gw, 10, "core", "B9", batch))

    assert gw.bodies == [{"amount": "1.00"}, {"amount": "2.00"}, {"amount": "3.00"}]
    assert batch[0] == {"idempotency_key": "own", "amount": "1.00"}
    summary = {"rule": "small_to_beps", "channel": "beps", "action": "send",
               "message_type": "beps.121.001.01"}
    assert [r["transfer"] for r in answer["results"]] == [
        {"id": key, "route": summary} for key in ("own", "B9:1", "B9:2")]
    assert Routed.ROUTE["facts"] == {"amount_fen_over": False}


class Refusing(Recording):
    """A gateway that refuses every transfer over its amount, as the intake does."""

    async def submit_transfers(self, client: str, requests: list[tuple[str | None, Any]],
                               hashes: list[str] | None = None) -> list[Any]:
        await super().submit_transfers(client, requests, hashes)
        return [ValidationFailed([Problem("amount_must_have_at_most_two_decimals", "/amount",
                                          "1.001"),
                                  Problem("idempotency_key_required", "Idempotency-Key")])
                for _ in requests]


def test_batch_item_errors_point_into_the_batch():
    """An item's error paths are JSON pointers into the batch body: the field of item i
    is /i/field, the item itself /i; a header's name stays as it is."""
    answer = asyncio.run(submit_batch(Refusing(), 10, "core", "B8", [
        {}, "not an object", {"idempotency_key": ""}, {}]))
    paths = [[e["path"] for e in r["errors"]] for r in answer["results"]]

    assert paths == [["/0/amount", "Idempotency-Key"], ["/1"], ["/2/idempotency_key"],
                     ["/3/amount", "Idempotency-Key"]]
    assert "at /3/amount" in answer["results"][3]["errors"][0]["message"]


def test_without_any_key_each_item_is_refused():
    """With no batch key and no item key, every item needs its own key."""
    answer = asyncio.run(submit_batch(Recording(), 10, "core", None, [{}]))

    assert answer["results"][0]["errors"][0]["code"] == "idempotency_key_required"


def states_and_books(db: Any, gw: ResultGateway) -> tuple[list[str], int, int, str]:
    internal = gw.ledger.internal_accounts
    with db.transaction() as tx:
        states = [s for (s,) in tx.query("SELECT state FROM payments ORDER BY id", ())]
        pkg = tx.query_one("SELECT state FROM beps_packages", ())[0]
        return (states, gw.ledger.balance(tx, internal["4001"]),
                gw.ledger.balance(tx, internal["4002"]), pkg)


ANSWERS = [
    ("netted", ["PR03"], (["netted", "netted"], 0, 300, "netted"), []),
    ("waits, then netted", ["PR11", "PR03"], (["netted", "netted"], 0, 300, "netted"),
     ["beps_package_waiting_for_netting"]),
    ("waits, then rejected", ["PR11", "PR09"], (["rejected", "rejected"], 0, 0, "rejected"),
     ["beps_package_waiting_for_netting", "beps_package_rejected"]),
    ("a late answer after netting changes nothing", ["PR03", "PR09"],
     (["netted", "netted"], 0, 300, "netted"), ["beps_result_after_netting"]),
    ("netted twice posts once", ["PR03", "PR03"], (["netted", "netted"], 0, 300, "netted"),
     []),
]


@pytest.mark.parametrize("name, statuses, expected, alerts", ANSWERS,
                         ids=[a[0] for a in ANSWERS])
def test_npc_answers_move_holds_and_states(tmp_path, name, statuses, expected, alerts):
    """PR03 turns holds into netted obligations, PR11 waits, PR09 releases the holds;
    netted payments are final whatever comes after."""
    db, gw, package_id = held_package(tmp_path, [100, 200])
    for status in statuses:
        answer(db, gw, package_id, status)

    assert states_and_books(db, gw) == expected
    assert gw.alerts == alerts


class CountedStatements:
    """A transaction that counts the statements run through it."""

    def __init__(self, tx: Any) -> None:
        self.tx, self.count = tx, 0

    def _counted(self, name: str) -> Any:
        def run(*args: Any) -> Any:
            self.count += 1
            return getattr(self.tx, name)(*args)
        return run

    def __getattr__(self, name: str) -> Any:
        if name in ("execute", "executemany", "query", "query_one"):
            return self._counted(name)
        return getattr(self.tx, name)


def netted_package(tmp_path: Path, size: int) -> dict[str, Any]:
    """A package of `size` credits netted (PR03), then told again: what it took and left."""
    db, gw, package_id = held_package(tmp_path / str(size), [100 + n for n in range(size)])
    with db.transaction() as tx:
        entries_before = gw.ledger.entry_count(tx)
        counted = CountedStatements(tx)
        answer_in(counted, gw, package_id, "PR03")
        entries = gw.ledger.entry_count(tx)
        net_entries = tx.query("SELECT op, ref FROM ledger_entry WHERE entry_id > ?",
                               (entries_before,))
    answer(db, gw, package_id, "PR03")
    with db.transaction() as tx:
        rows = tx.query("SELECT payment_id, state, detail FROM payment_events WHERE "
                        "event = 'beps_netted'", ())
        histories = [[e["event"] for e in payments.history(tx, pid)]
                     for (pid,) in tx.query("SELECT id FROM payments", ())]
        rounds = set(tx.query("SELECT netting_date, netting_round FROM beps_items", ()))
        out = {"statements": counted.count, "rows": rows, "histories": histories,
               "rounds": rounds, "entries_again": gw.ledger.entry_count(tx) - entries,
               "net_entries": net_entries, "package": package_id,
               "holds_netted": tx.query_one(
                   "SELECT COUNT(*) FROM ledger_hold_end WHERE state = 'netted'", ())[0],
               "subject": items.package_subject(package_id)}
    out["books"] = states_and_books(db, gw)[1:]
    db.close()
    return out


def test_a_netted_package_is_told_in_as_many_statements_whatever_its_size(tmp_path):
    """Netting 3 items or 40 runs the same statements: the payments change in one, one
    history row under the package tells each of them, the items take their round in
    one; the holds are netted with one ledger entry for the package, each of them ended
    by it. Told twice, nothing is posted again."""
    small, large = netted_package(tmp_path, 3), netted_package(tmp_path, 40)

    assert small["statements"] == large["statements"]
    for netted, size in ((small, 3), (large, 40)):
        assert netted["rows"] == [(netted["subject"], "netted", '{"package":"'
                                   + netted["subject"].removeprefix("package:")
                                   + '","netting_date":"2026-12-12","netting_round":"03"}')]
        assert netted["histories"] == [["created", "beps_packed", "beps_sent",
                                        "beps_netted"]] * size
        assert netted["rounds"] == {("2026-12-12", "03")}
        assert netted["entries_again"] == 0
        assert netted["net_entries"] == [("net_together", netted["package"])]
        assert netted["holds_netted"] == size
        assert netted["books"] == (0, sum(100 + n for n in range(size)), "netted")


def test_an_item_waiting_for_the_cancel_answer_is_left_out_and_nets_on_a_refusal(tmp_path):
    """The netting notice nets the others, each with a history row of its own (not all of
    the package moved); the NPC's refusal of our ccms.307 then nets the item alone."""
    db, gw, package_id = held_package(tmp_path, [100, 200, 300])
    with db.transaction() as tx:
        pids = [pid for (pid,) in tx.query("SELECT id FROM payments ORDER BY id", ())]
        cancels.asked(tx, pids[1], package_id, "20261212000000099", NOW)
    answer(db, gw, package_id, "PR03")
    before = states_and_books(db, gw)
    with db.transaction() as tx:
        cancels.answered(gw, tx, payments.get(tx, pids[1]), False, "netted", "npc", NOW)
        netted_rows = tx.query("SELECT payment_id FROM payment_events WHERE "
                               "event = 'beps_netted' ORDER BY id", ())
        rounds = tx.query("SELECT netting_round FROM beps_items ORDER BY payment_id", ())

    assert before == (["netted", "sent", "netted"], 200, 400, "netted")
    assert states_and_books(db, gw) == (["netted"] * 3, 0, 600, "netted")
    assert netted_rows == [(pids[0],), (pids[2],), (pids[1],)]
    assert rounds == [("03",)] * 3


def settled_rows(db: Any, gw: ResultGateway, package_id: str, cancel_one: bool
                 ) -> tuple[list[str], list[tuple[str, str]], list[list[str]]]:
    """A package of three netted (one left waiting for our ccms.307's answer when
    `cancel_one`) and its round settled: the ids, the `beps_settled` history rows
    (subject, detail's package) and each payment's events."""
    with db.transaction() as tx:
        pids = [pid for (pid,) in tx.query("SELECT id FROM payments ORDER BY id", ())]
        if cancel_one:
            cancels.asked(tx, pids[1], package_id, "20261212000000099", NOW)
    answer(db, gw, package_id, "PR03")
    with db.transaction() as tx:
        items.settle(tx, gw, "2026-12-12", "03", "2026-12-12", NOW)
        rows = [(pid, json.loads(detail).get("package")) for pid, detail in tx.query(
            "SELECT payment_id, detail FROM payment_events WHERE event = 'beps_settled' "
            "ORDER BY id", ())]
        events = [[e["event"] for e in payments.history(tx, pid)] for pid in pids]
    return pids, rows, events


def test_a_package_settled_whole_is_told_in_one_history_row_under_the_package(tmp_path):
    """Settlement, like packing, sending and netting, files one row under the package
    when all its items settle together; each payment's history still ends with it."""
    db, gw, package_id = held_package(tmp_path, [100, 200, 300])
    pids, rows, events = settled_rows(db, gw, package_id, cancel_one=False)

    assert rows == [(items.package_subject(package_id), package_id)]
    assert events == [["created", "beps_packed", "beps_sent", "beps_netted",
                       "beps_settled"]] * 3
    assert states_and_books(db, gw)[0] == ["settled"] * 3


def test_items_of_a_package_settling_apart_each_get_their_own_history_row(tmp_path):
    """One item waits for the cancel answer: the other two settle with a row each, and
    the third, netted once the NPC refuses the cancel, settles alone in that round."""
    db, gw, package_id = held_package(tmp_path, [100, 200, 300])
    pids, rows, _ = settled_rows(db, gw, package_id, cancel_one=True)
    with db.transaction() as tx:
        cancels.answered(gw, tx, payments.get(tx, pids[1]), False, "netted", "npc", NOW)
        items.settle(tx, gw, "2026-12-12", "03", "2026-12-12", NOW)
        late = tx.query("SELECT payment_id FROM payment_events WHERE event = "
                        "'beps_settled' ORDER BY id", ())[len(rows):]

    assert rows == [(pids[0], None), (pids[2], None)]
    assert late == [(pids[1],)]
    assert states_and_books(db, gw)[0] == ["settled"] * 3


GOOD_PERIODIC = {"payer_account": "11000000000000000801", "payer_name": "示例单位",
                 "payer_bank": BRANCH, "payee_account": "6222000000001234",
                 "payee_name": "员工甲", "payee_bank": PEER_BRANCH, "amount": "8000.00",
                 "agreement": "PAYROLL-2026"}
BROKEN_PERIODIC = [
    ("agreement_malformed", {"agreement": "A" * 61}),
    ("field_required", {"agreement": ""}),
    ("field_required", {"agreement": "  "}),
    ("field_required", {"agreement": None}),
    ("business_type_not_allowed_for_message", {"business_type": "A100"}),
    ("field_unknown", {"urgency": "urgent"}),
    ("name_too_long_for_beps", {"payee_name": "名" * 61}),
    ("payer_bank_not_ours", {"payer_bank": PEER_BRANCH}),
    ("amount_must_be_a_decimal_number", {"amount": "abc"}),
]


@pytest.mark.parametrize("code, change", BROKEN_PERIODIC, ids=[c for c, _ in BROKEN_PERIODIC])
def test_periodic_credit_requests_are_refused_by_named_rules(code, change):
    """Each broken periodic credit request is refused with the rule it breaks."""
    with pytest.raises(PaygateError) as refused:
        periodic.parse({**GOOD_PERIODIC, **change}, OWN)

    assert code in [p.code for p in refused.value.problems]


def test_a_good_periodic_credit_parses_as_e100():
    """A periodic credit is an E100 transfer with its agreement; salaries by default."""
    transfer, agreement = periodic.parse(GOOD_PERIODIC, OWN)

    assert (transfer.business_type, transfer.business_kind, transfer.amount_fen,
            agreement) == ("E100", "01200", 800_000, "PAYROLL-2026")
