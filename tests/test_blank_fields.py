"""Required text that holds only spaces is missing: refused at intake with the field's
path, and a BEPS item the NPC would refuse is kept out of its package and refused on its
own, so the other payers' payments in the package are not refused for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from gateway import intake, payments
from gateway.beps import build, debits_out, packer
from gateway.beps.settings import BepsSettings
from gateway.errors import PaygateError
from gateway.messages import beps121, codec
from tests.beps_support import NOW, held_items
from tests.e2e_support import BANK, BRANCH, PEER, PEER_BRANCH

OWN = frozenset({"999100000019", BRANCH})
TRANSFER = {"payer_account": "6222000000000001", "payer_name": "示例客户",
            "payer_bank": BRANCH, "payee_account": "6228000000000000001",
            "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "12.30"}
DEBIT = {"creditor_account": "11000000000000000801", "creditor_name": "示例燃气公司",
         "creditor_bank": BRANCH, "debtor_account": "6222000000001234",
         "debtor_name": "对手客户", "debtor_bank": PEER_BRANCH, "amount": "120.00",
         "agreement": "XY-0001"}
# Spaces printable text may carry: ideographic (full-width), ASCII, no-break, em, alone
# or mixed (a tab or a line break is refused as a control character besides).
BLANKS = ["\u3000", "  ", "\u00a0", "\u2003", " \u3000\u00a0"]


def problems_of(parse, body):
    with pytest.raises(PaygateError) as refused:
        parse(body, OWN)
    return [(p.code, p.path) for p in refused.value.problems]


@pytest.mark.parametrize("blank", BLANKS, ids=[repr(b) for b in BLANKS])
@pytest.mark.parametrize("field", sorted(n for n, required in intake.FIELDS.items()
                                         if required))
def test_a_required_transfer_field_of_spaces_alone_is_missing(field, blank):
    """Every required field of a transfer that holds only spaces is field_required at
    its path, and nothing else is said about it."""
    problems = problems_of(intake.parse_transfer, {**TRANSFER, field: blank})

    assert [code for code, path in problems if path == f"/{field}"] == ["field_required"]


@pytest.mark.parametrize("blank", BLANKS, ids=[repr(b) for b in BLANKS])
@pytest.mark.parametrize("field", sorted(n for n, required in debits_out.FIELDS.items()
                                         if required))
def test_a_required_debit_field_of_spaces_alone_is_missing(field, blank):
    """The same holds for a collection request (beps.127)."""
    problems = problems_of(debits_out.parse_debit, {**DEBIT, field: blank})

    assert [code for code, path in problems if path == f"/{field}"] == ["field_required"]


def test_a_name_with_spaces_around_text_is_taken():
    """Spaces around a name are not a blank name: the transfer is taken as given."""
    transfer = intake.parse_transfer({**TRANSFER, "payee_name": "\u3000对手客户 "}, OWN)

    assert transfer.payee_name == "\u3000对手客户 "


def waiting_with_one_blank_name(tmp_path: Path):
    """Three credits waiting to be packed, the second with a payee name of spaces (as
    one accepted before intake refused such names would be)."""
    db, gw = held_items(tmp_path, [100, 200, 300])
    with db.transaction() as tx:
        ids = [r[0] for r in tx.query("SELECT id FROM payments ORDER BY id", ())]
        tx.execute("UPDATE payments SET payee_name = ? WHERE id = ?", ("\u3000", ids[1]))
        payer = tx.query_one("SELECT payer_account FROM payments", ())[0]
        before = gw.ledger.balance(tx, payer)
    return db, gw, ids, payer, before


def test_an_item_the_npc_would_refuse_is_kept_out_and_refused_alone(tmp_path):
    """The package carries the two good credits only and passes the NPC's checks; the
    bad one is rejected with the rule it broke, its payer's hold released and an alert
    raised."""
    db, gw, ids, payer, before = waiting_with_one_blank_name(tmp_path)

    with db.transaction() as tx:
        outbox = packer.seal_due(tx, gw, BepsSettings(), "stream", NOW, force=True)
        envelope = packer.claim(tx, gw, outbox[0], NOW)
        states = [payments.get(tx, i)["state"] for i in ids]
        refused = payments.get(tx, ids[1])
        after = gw.ledger.balance(tx, payer)
    package = codec.decode(envelope)

    assert states == ["sent", "rejected", "sent"]
    assert "party_field_required" in refused["reason"]
    assert after == before + 200
    assert [t.amount_fen for t in package.obj.transfers] == [100, 300]
    assert beps121.check(package.obj) == []
    assert gw.alerts == ["beps_item_refused_before_packing"]


def test_the_packer_keeps_out_exactly_what_the_npc_refuses_a_package_for(tmp_path):
    """Built together, the three transactions make a package the NPC refuses whole for
    the second one's name (party_field_required); the packer finds that one, and only
    it, with the same rule at the same element."""
    db, _, ids, _, _ = waiting_with_one_blank_name(tmp_path)
    with db.transaction() as tx:
        rows = tx.query(packer._WAITING, (PEER, beps121.MESSAGE_TYPE, 10))
    body = build.package_body(beps121.MESSAGE_TYPE, "2026121200000001", BANK, PEER,
                              build.transfers_of(row[2:] for row in rows), NOW)
    whole = beps121.check(beps121.parse(etree.fromstring(body))[0])
    found = packer.refusals(beps121.MESSAGE_TYPE, rows, NOW)

    assert [(p.code, p.path.endswith("CstmrCdtTrfInf[2]/Cdtr/Nm")) for p in whole] == \
        [("party_field_required", True)]
    assert list(found) == [ids[1]]
    assert [(p.code, p.path.endswith("CstmrCdtTrfInf/Cdtr/Nm")) for p in found[ids[1]]] == \
        [("party_field_required", True)]
