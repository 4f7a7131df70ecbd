"""Cancelling a BEPS item before netting, in the gateway without processes: taken out of
a sealed package that was not sent, or asked of the NPC (ccms.307) once it has the
package, with the NPC's answer and the netting notice arriving in either order."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import keys, outbound, payments
from gateway.beps import items, packer
from gateway.beps.api import package_view
from gateway.errors import PaygateError
from gateway.exceptions import cancels, ops, schema
from gateway.exceptions.extension import Exceptions
from gateway.messages import ccms307, ccms900, codec, package
from gateway.messages.common import GroupHeader, OriginalRef, OriginalTx
from gateway.messages.package import Package, PackageHeader

# The bytes of outgoing messages, kept in the archive (gateway.outbound.stored_bytes)
SENT_BYTES = "SELECT " + outbound.stored_bytes("outbox") + " FROM outbox"
from tests.beps_support import NOW, ResultGateway, answer, credit_row, held_package, transfers_of
from tests.e2e_support import BANK, PEER

P0, P1, P2 = (credit_row(n, NOW)["id"] for n in range(3))


def cancel(db: Any, gw: ResultGateway, payment_id: str,
           by: str = "core:test") -> tuple[dict[str, Any], list[Any]]:
    with db.transaction() as tx:
        return cancels.request_tx(gw, tx, payment_id, "客户撤销", by, NOW)


def ledger_view(db: Any, gw: ResultGateway) -> dict[str, Any]:
    internal = gw.ledger.internal_accounts
    with db.transaction() as tx:
        return {"states": [s for (s,) in tx.query("SELECT state FROM payments ORDER BY id",
                                                  ())],
                "held": gw.ledger.balance(tx, internal["4001"]),
                "netted": gw.ledger.balance(tx, internal["4002"]),
                "package": tx.query_one("SELECT state FROM beps_packages", ())[0],
                "balanced": gw.ledger.trial_balance(tx).balanced}


def events(db: Any, payment_id: str) -> list[dict[str, Any]]:
    with db.transaction() as tx:
        return payments.history(tx, payment_id)


def taken_by_npc(db: Any, package_id: str) -> None:
    """The package's POST was answered 2xx, as the sender records it."""
    with db.transaction() as tx:
        tx.execute("UPDATE outbox SET state = 'sent' WHERE id = (SELECT outbox_id FROM "
                   "beps_packages WHERE id = ?)", (package_id,))


def outbox_envelope(db: Any, package_id: str) -> tuple[str, bytes | None]:
    """The package's outbox state and the bytes its sender would post (None: none left)."""
    with db.transaction() as tx:
        outbox_id, state = tx.query_one("SELECT o.id, o.state FROM outbox o JOIN "
                                        "beps_packages p ON p.outbox_id = o.id WHERE p.id = ?",
                                        (package_id,))
        if state == "done":
            return state, None
        return state, packer.stored_envelope(tx, outbox_id)


# Taken out of a sealed package nobody has sent

def test_an_item_is_taken_out_of_a_sealed_unsent_package(tmp_path: Path) -> None:
    """The package is rebuilt under the same ids, without the item, with the count and
    control sum of the rest, signed; the item's hold is released; sending it then
    carries the other two only."""
    db, gw, package_id = held_package(tmp_path, [100, 200, 300], send=False)
    _, before = outbox_envelope(db, package_id)

    result, entries = cancel(db, gw, P1)
    state, after = outbox_envelope(db, package_id)
    sent = codec.decode(after, gw.keyring)
    with db.transaction() as tx:
        archived = bytes(tx.query_one("SELECT envelope FROM archive WHERE mesg_id = ?",
                                      (sent.header.mesg_id,))[0])
        row = tx.query_one("SELECT count, total_fen, state FROM beps_packages", ())
        item_package = tx.query_one("SELECT package_id FROM beps_items WHERE payment_id = ?",
                                    (P1,))[0]
        claimed = packer.claim(tx, gw, tx.query_one("SELECT outbox_id FROM beps_packages",
                                                    ())[0], NOW)
        shown = {pid: items.view_of(tx, pid) for pid in (P0, P1)}
    books = ledger_view(db, gw)

    assert (result["cancelled"], result["state"], result["package"]) == (
        "from_package", "cancelled", package_id)
    # The view names the package the item was taken out of, as its history does.
    assert (shown[P1]["package"], shown[P1]["taken_out_of"]) == (None, package_id)
    assert (shown[P0]["package"], shown[P0]["taken_out_of"]) == (package_id, None)
    assert entries == []
    assert sent.ok and sent.signature == "verified"
    assert sent.header.mesg_id == codec.decode(before).header.mesg_id
    assert sent.obj.header.msg_id == package_id[12:]
    assert [t.amount_fen for t in sent.obj.transfers] == [100, 300]
    assert (sent.obj.header.count, sent.obj.header.total_fen) == (2, 400)
    assert archived == after and claimed == after and state == "pending"
    assert row == (2, 400, "sealed")
    assert item_package == packer.VOID
    assert books["states"] == ["sent", "cancelled", "sent"]
    assert books["held"] == 400 and books["balanced"]
    # The item keeps the package's packing in its own history, and is not told of the
    # package being sent without it; the others are.
    assert [e["event"] for e in events(db, P1)] == ["created", "beps_packed",
                                                    "cancelled_from_package"]
    assert [e["event"] for e in events(db, P0)] == ["created", "beps_packed", "beps_sent"]


def test_a_package_whose_outbox_row_carries_its_bytes_is_rebuilt_and_sent(
        tmp_path: Path) -> None:
    """A package sealed when the outbox row held the bytes too: taking an item out
    rebuilds both copies, and the claim posts the outbox row's."""
    db, gw, package_id = held_package(tmp_path, [100, 200, 300], send=False)
    with db.transaction() as tx:
        tx.execute("UPDATE outbox SET envelope = (SELECT envelope FROM archive) WHERE id = "
                   "(SELECT outbox_id FROM beps_packages)", ())

    cancel(db, gw, P1)
    with db.transaction() as tx:
        kept, archived = (bytes(v) for v in tx.query_one(
            "SELECT o.envelope, a.envelope FROM outbox o JOIN archive a ON a.mesg_id = "
            "o.mesg_id", ()))
        claimed = packer.claim(tx, gw, tx.query_one("SELECT outbox_id FROM beps_packages",
                                                    ())[0], NOW)

    assert kept == archived == claimed
    assert [t.amount_fen for t in codec.decode(claimed, gw.keyring).obj.transfers] == \
        [100, 300]


def test_the_last_item_of_a_sealed_package_leaves_nothing_to_send(tmp_path: Path) -> None:
    """A package emptied before sending is cancelled: its outbox row is closed and it
    leaves the archive, since it never goes on the wire."""
    db, gw, package_id = held_package(tmp_path, [500], send=False)

    cancel(db, gw, P0)
    state, _ = outbox_envelope(db, package_id)
    with db.transaction() as tx:
        archived = tx.query_one("SELECT COUNT(*) FROM archive", ())[0]
        claimed = packer.claim(tx, gw, tx.query_one("SELECT outbox_id FROM beps_packages",
                                                    ())[0], NOW)
    books = ledger_view(db, gw)

    assert state == "done" and archived == 0 and claimed is None
    assert books == {"states": ["cancelled"], "held": 0, "netted": 0,
                     "package": "cancelled", "balanced": True}


# Asked of the NPC

def test_a_package_the_npc_holds_gets_a_ccms307_naming_package_and_item(
        tmp_path: Path) -> None:
    """The request names the package (MsgId, our bank, beps.121) and the transaction,
    goes under the BEPS system, and changes nothing until the NPC answers; a second
    request meanwhile is refused."""
    db, gw, package_id = held_package(tmp_path, [100, 200])
    taken_by_npc(db, package_id)
    answer(db, gw, package_id, "PR11")

    result, entries = cancel(db, gw, P0)
    with pytest.raises(PaygateError) as again:
        cancel(db, gw, P0)
    with db.transaction() as tx:
        raw = bytes(tx.query_one(SENT_BYTES + " WHERE id = ?",
                                 (int(entries[0][1]["outbox"]),))[0])
        waiting = tx.query_one("SELECT request_msg_id FROM beps_cancel_waits", ())
    request = codec.decode(raw, gw.keyring)

    assert (result["cancelled"], result["state"], result["package"]) == (
        "requested", "queued", package_id)
    assert entries[0][0] == keys.OUT_LINK
    assert request.ok and request.header.orig_sender_sid == "BEPS"
    assert request.obj.payment == OriginalRef(package_id[12:], BANK, "beps.121.001.01")
    assert request.obj.payment_tx.tx_id == credit_row(0, NOW)["tx_id"]
    assert request.obj.reason == "客户撤销"
    assert waiting == (result["msg_id"],)
    assert again.value.code == "cancel_already_requested"
    assert ledger_view(db, gw)["states"] == ["queued", "queued"]


def npc_says(db: Any, gw: ResultGateway, package_id: str, request_msg_id: str,
             word: str) -> None:
    """One word of the NPC: a ccms.308 (PR08, PR09), a ccms.900 about the package
    (PR03 netted, PR11 waiting), or a ccms.900 refusing our ccms.307 itself."""
    kind, status = word.split(":")
    if kind == "900":
        answer(db, gw, package_id, status)
        return
    group = GroupHeader("2", "", "0000", "0000", BANK, BANK, "BEPS")
    request = OriginalRef(request_msg_id, BANK, ccms307.MESSAGE_TYPE)
    with db.transaction() as tx:
        if kind == "308":
            resp = ccms307.CancelResponse(group, request, OriginalRef(
                package_id[12:], BANK, "beps.121.001.01"), status, "NEZE0011",
                None if status == ccms307.CANCELLED else "cannot cancel: netted")
            cancels.on_response(gw, tx, SimpleNamespace(obj=resp), NOW, lambda e: None)
        else:
            conf = ccms900.CommonConf(group, request, status, code="NEZB0004",
                                      reject_info="request refused")
            Exceptions(gw).on_result(tx, SimpleNamespace(obj=conf), NOW)


def npc_asked_then(tmp_path: Path, words: list[str]) -> tuple[Any, ResultGateway, str]:
    """A package of credits of 100, 200 and 300 fen waiting at the NPC (PR11), our
    ccms.307 about the first, then these words of the NPC."""
    db, gw, package_id = held_package(tmp_path, [100, 200, 300])
    taken_by_npc(db, package_id)
    answer(db, gw, package_id, "PR11")
    result, _ = cancel(db, gw, P0)
    for word in words:
        npc_says(db, gw, package_id, result["msg_id"], word)
    return db, gw, package_id


# What the NPC says after our ccms.307 about the first of three credits (100, 200 and
# 300 fen), in the order the gateway hears it; then the states, what is still held and
# what is netted, and the package's state. Whatever the order, the cancelled item is
# either released or netted, never both.
ORDERS = [
    ("granted, then the rest netted", ["308:PR08", "900:PR03"],
     ["cancelled", "netted", "netted"], 0, 500, "netted"),
    ("the netting notice first, then granted", ["900:PR03", "308:PR08"],
     ["cancelled", "netted", "netted"], 0, 500, "netted"),
    ("refused (netted first), then the notice", ["308:PR09", "900:PR03"],
     ["netted", "netted", "netted"], 0, 600, "netted"),
    ("the notice first, then refused", ["900:PR03", "308:PR09"],
     ["netted", "netted", "netted"], 0, 600, "netted"),
    ("the notice first, then the request itself refused", ["900:PR03", "req:PR09"],
     ["netted", "netted", "netted"], 0, 600, "netted"),
    ("refused while the package waits", ["308:PR09"],
     ["queued", "queued", "queued"], 600, 0, "waiting"),
    ("granted while the package waits", ["308:PR08"],
     ["cancelled", "queued", "queued"], 500, 0, "waiting"),
]


@pytest.mark.parametrize("name, words, states, held, netted, package_state", ORDERS,
                         ids=[o[0] for o in ORDERS])
def test_the_gateway_posts_what_the_npc_says_in_any_order(
        tmp_path: Path, name: str, words: list[str], states: list[str], held: int,
        netted: int, package_state: str) -> None:
    """Finality wins at the NPC and the gateway follows its word: a netting notice
    leaves the item alone until the answer about it comes."""
    db, gw, package_id = npc_asked_then(tmp_path, words)
    books = ledger_view(db, gw)
    with db.transaction() as tx:
        waits = tx.query_one("SELECT COUNT(*) FROM beps_cancel_waits", ())[0]

    assert books == {"states": states, "held": held, "netted": netted,
                     "package": package_state, "balanced": True}
    assert waits == 0


@pytest.mark.parametrize("words, count, total_fen, withdrawn", [
    ([], 3, 600, []),
    (["308:PR08"], 2, 500, [P0]),
    (["308:PR09"], 3, 600, []),
    (["308:PR08", "900:PR03"], 2, 500, [P0]),
], ids=["asked", "granted", "refused", "granted, then netted"])
def test_the_package_shows_what_it_holds_after_the_npcs_answer(
        tmp_path: Path, words: list[str], count: int, total_fen: int,
        withdrawn: list[str]) -> None:
    """An item the NPC took out of its package leaves the package's count and sum (as
    the NPC's own do) and is shown as withdrawn; the rest are the transactions."""
    db, gw, package_id = npc_asked_then(tmp_path, words)
    with db.transaction() as tx:
        view = package_view(tx, package_id)
    held = [t["id"] for t in view["transactions"]]
    out = view["withdrawn"]

    assert (view["count"], view["total_fen"]) == (count, total_fen)
    assert view["amount"] == f"{total_fen // 100}.{total_fen % 100:02d}"
    assert held == [p for p in (P0, P1, P2) if p not in withdrawn]
    assert len(held) == count and sum(t["amount_fen"] for t in view["transactions"]) \
        == total_fen
    assert [t["id"] for t in out["transactions"]] == withdrawn
    assert (out["count"], out["total_fen"]) == (len(withdrawn), 600 - total_fen)


def test_a_refusal_is_kept_on_the_items_history_and_request(tmp_path: Path) -> None:
    """A refused cancel leaves the item queued, with the NPC's code and text visible."""
    db, gw, package_id = held_package(tmp_path, [100])
    taken_by_npc(db, package_id)
    answer(db, gw, package_id, "PR11")
    result, _ = cancel(db, gw, P0)

    npc_says(db, gw, package_id, result["msg_id"], "308:PR09")
    refused = events(db, P0)[-1]
    with db.transaction() as tx:
        request = schema.requests_of(tx, P0)[0]

    assert refused["event"] == "cancel_refused" and refused["state"] == "queued"
    assert refused["detail"]["code"] == "NEZE0011"
    assert refused["detail"]["info"] == "cannot cancel: netted"
    assert (request["state"], request["answer"]["code"]) == ("refused", "NEZE0011")


def test_a_package_whose_last_item_is_cancelled_nets_nothing(tmp_path: Path) -> None:
    """Its only item cancelled at the NPC, the package is cancelled; a wait announced
    earlier changes nothing, a netting notice for it is raised to the operators."""
    db, gw, package_id = held_package(tmp_path, [100])
    taken_by_npc(db, package_id)
    result, _ = cancel(db, gw, P0)

    npc_says(db, gw, package_id, result["msg_id"], "308:PR08")
    answer(db, gw, package_id, "PR11")
    quiet = list(gw.alerts)
    answer(db, gw, package_id, "PR03")

    assert ledger_view(db, gw) == {"states": ["cancelled"], "held": 0, "netted": 0,
                                   "package": "cancelled", "balanced": True}
    assert quiet == []
    assert gw.alerts == ["beps_result_for_cancelled_package"]


def test_an_operator_cancel_runs_the_same_path(tmp_path: Path) -> None:
    """The console's npc_cancel (dual control) asks the NPC for a BEPS item too, in the
    name of the operator who asked for it, the approver beside them in the history."""
    if not ops.console_present():
        pytest.skip("the operators' console is not part of this checkout")
    from gateway.ops.actions import Context

    db, gw, package_id = held_package(tmp_path, [100])
    taken_by_npc(db, package_id)
    context = Context(gw, NOW, 1, "sup1", "op1")

    with db.transaction() as tx:
        detail, entries = ops.EXECUTORS["npc_cancel"](context, tx, P0)
        request = schema.requests_of(tx, P0)[0]
        asked = json.loads(tx.query_one(
            "SELECT detail FROM payment_events WHERE payment_id = ? AND "
            "event = 'cancel_requested'", (P0,))[0])

    assert ops.ACTIONS["npc_cancel"] is True
    assert detail["cancelled"] == "requested" and len(entries) == 1
    assert request["requested_by"] == "op1"
    assert (asked["by"], asked["approved_by"]) == ("op1", "sup1")


def _netted(db: Any, gw: ResultGateway, package_id: str) -> None:
    taken_by_npc(db, package_id)
    answer(db, gw, package_id, "PR03")


def _debit_sent(db: Any, gw: ResultGateway, package_id: str) -> None:
    taken_by_npc(db, package_id)
    with db.transaction() as tx:
        tx.execute("UPDATE beps_items SET kind = 'debit_out'", ())


def _rejected(db: Any, gw: ResultGateway, package_id: str) -> None:
    taken_by_npc(db, package_id)
    answer(db, gw, package_id, "PR09")


# How the item and its package stand, and the rule that refuses the cancel.
REFUSALS = [
    ("netted with its package", _netted, "beps_item_final_after_netting"),
    ("its package rejected", _rejected, "payment_not_cancellable"),
    ("handed to the sender, not yet taken by the NPC", lambda *a: None, "payment_in_flight"),
    ("a debit whose package went to the payer bank", _debit_sent, "beps_item_already_packed"),
]


@pytest.mark.parametrize("name, arrange, code", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_cancel_is_refused_by_rule(tmp_path: Path, name: str, arrange: Any,
                                     code: str) -> None:
    """Nothing is asked and nothing moves when the item cannot be cancelled."""
    db, gw, package_id = held_package(tmp_path, [100])
    arrange(db, gw, package_id)
    before = ledger_view(db, gw)

    with pytest.raises(PaygateError) as refused:
        cancel(db, gw, P0)

    assert refused.value.code == code
    assert ledger_view(db, gw) == before


# The message rules and the package helper

def _request(mt: str, with_tx: bool) -> ccms307.CancelRequest:
    group = GroupHeader("2026121200000009", "2026-12-12T23:00:00", BANK, BANK, "0000",
                        "0000", "BEPS")
    original_tx = OriginalTx(BANK, PEER, "2026121200000001", "A100")
    return ccms307.CancelRequest(group, OriginalRef("2026121200000003", BANK, mt),
                                 original_tx if with_tx else None)


@pytest.mark.parametrize("mt, with_tx, codes", [
    ("beps.121.001.01", True, []),
    ("beps.125.001.01", True, []),
    ("beps.121.001.01", False, ["cancel_of_package_item_needs_transaction"]),
    ("beps.127.001.01", True, ["cancel_not_allowed_for_type"]),
    ("hvps.111.001.01", False, []),
])
def test_a_cancel_of_a_package_item_names_the_transaction(mt: str, with_tx: bool,
                                                          codes: list[str]) -> None:
    """A ccms.307 about a credit package must say which transaction to take out."""
    problems = ccms307.check(_request(mt, with_tx))

    assert [p.code for p in problems] == codes


def test_without_keeps_count_and_sum_those_of_the_rest() -> None:
    """Taking transactions out of a package restates NbOfTxs and CtrlSum and keeps the
    rest as it was; naming nothing changes nothing."""
    rows = [credit_row(n, NOW) for n in range(3)]
    pkg = Package(PackageHeader("2026121200000003", "2026-12-12T23:00:00", BANK, PEER, 3,
                                sum(r["amount_fen"] for r in rows)),
                  tuple(transfers_of(rows)))

    smaller = package.without(pkg, frozenset({rows[0]["tx_id"], "0000"}))

    assert [t.tx_id for t in smaller.transfers] == [rows[1]["tx_id"], rows[2]["tx_id"]]
    assert (smaller.header.count, smaller.header.total_fen) == (2, 101 + 102)
    assert smaller.header.msg_id == pkg.header.msg_id
    assert package.without(pkg, frozenset()) == pkg


@pytest.mark.parametrize("words", [["308:PR08", "900:PR03"], ["900:PR03", "308:PR08"]],
                         ids=["granted, then netted", "netted, then granted"])
def test_an_item_the_npc_withdrew_gets_no_netting_or_settlement_in_its_history(
        tmp_path: Path, words: list[str]) -> None:
    """The package's other items net and settle; the withdrawn one stays cancelled and
    its history tells nothing of a round it was never in, whichever answer came first."""
    db, gw, package_id = npc_asked_then(tmp_path, words)
    with db.transaction() as tx:
        items.settle(tx, gw, "2026-12-12", "03", "2026-12-12", NOW)
    withdrawn = [(e["state"], e["event"]) for e in events(db, P0)]
    kept = [[(e["state"], e["event"]) for e in events(db, pid)][-2:] for pid in (P1, P2)]

    assert withdrawn[-1] == ("cancelled", "npc_cancel_cancelled")
    assert not {state for state, _ in withdrawn} & {"netted", "settled"}
    assert kept == [[("netted", "beps_netted"), ("settled", "beps_settled")]] * 2
    assert ledger_view(db, gw)["states"] == ["cancelled", "settled", "settled"]


def test_a_database_made_before_taken_out_of_gets_the_column() -> None:
    """beps_items of an older database lacks `taken_out_of`: start-up adds it."""
    from gateway import dialect
    from gateway.beps import schema as beps_schema
    from ledger.db import connect

    old = beps_schema.TABLES[0].replace(
        "        taken_out_of TEXT,                -- the package it was last taken out of\n", "")
    assert "taken_out_of" not in old
    db = connect("sqlite:///:memory:")
    with db.transaction() as tx:
        tx.execute(old, ())
        beps_schema.install(tx)
        columns = dialect.table_columns(tx, "beps_items")
    db.close()

    assert "taken_out_of" in columns
