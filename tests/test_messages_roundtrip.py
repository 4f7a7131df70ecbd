"""Property tests: for generated valid objects, parse(build(x)) == x, and what build
writes is valid against our schema (and the published one, where it exists)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.messages import (beps128, beps720, ccms314, ccms900, ccms990, codec, hvps111,
                              hvps112, hvps710, nets617, saps606, xml)
from gateway.messages.common import (GroupHeader, Node, NpcProcessing, OriginalRef,
                                     OriginalTx, Partition)
from gateway.messages.package import (Package, PackageHeader, ReturnInfo, ReturnLimit,
                                      Transfer)
from message_schemas import catalogue

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "cnaps" / "reference-xsd"
ISO_SCHEMA = {"hvps.111.001.01": "pacs.008.001.02", "hvps.112.001.01": "pacs.009.001.02"}
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Text as the schemas allow it: any printable character (the parser would turn CR into
# LF and controls are not XML), without the surrounding white space that parsing strips.
_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co"))


def text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_CHARS, min_size=1, max_size=max_size).map(str.strip).filter(bool)


def digits(max_size: int, min_size: int = 1) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=min_size, max_size=max_size)


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


BANK = digits(12, 12)
PARTY = BANK | st.just("0000")
DATE = st.dates().map(lambda d: d.isoformat()).filter(lambda d: len(d) == 10)
TIME = st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S")).filter(
    lambda d: len(d) == 19)
FEN = st.integers(1, 10**15)
CODE4 = st.sampled_from(["PR02", "PR03", "PR04", "PR09", "PR12"])
SYSTEM = st.sampled_from(["HVPS", "BEPS", "CCMS", "SAPS", "NETS"])
MT = st.sampled_from(["hvps.111.001.01", "beps.121.001.01", "ccms.314.001.01"])

GROUP = st.builds(GroupHeader, text(35), TIME, PARTY, PARTY, PARTY, PARTY, SYSTEM,
                  opt(text(256)))
ORIGINAL = st.builds(OriginalRef, text(35), PARTY, MT)
ORIGINAL_TX = st.builds(OriginalTx, BANK, BANK, digits(16), st.just("A100"))
NPC = st.builds(NpcProcessing, CODE4, text(8), opt(text(105)), opt(DATE), opt(digits(2)),
                opt(DATE), opt(TIME), opt(TIME))
PARTITION = st.integers(1, 99).flatmap(
    lambda total: st.integers(1, total).flatmap(
        lambda start: st.integers(start, total).map(lambda end: Partition(total, start, end))))

CREDIT = st.builds(
    hvps111.CreditTransfer, msg_id=text(35), created_at=TIME, end_to_end_id=text(35),
    tx_id=text(35), business_type=text(35), business_kind=text(35), amount_fen=FEN,
    priority=st.sampled_from(hvps111.PRIORITIES), instg_direct=text(35),
    instg_branch=text(35), instd_direct=text(35), instd_branch=text(35),
    debtor_name=text(140), debtor_account=text(34), debtor_agent=text(35),
    creditor_agent=text(35), creditor_name=text(140), creditor_account=text(34),
    remittance=st.lists(text(140), max_size=5).map(tuple),
    debtor_agent_name=opt(text(140)), creditor_agent_name=opt(text(140)),
    debtor_address=opt(text(70)), creditor_address=opt(text(70)),
    charge_bearer=st.sampled_from(["DEBT", "CRED", "SHAR", "SLEV"]))

INSTITUTION = st.builds(hvps112.Institution, opt(text(35)), opt(text(140)), opt(text(70)))
INSTITUTION_CREDIT = st.builds(
    hvps112.InstitutionTransfer, msg_id=text(35), created_at=TIME, end_to_end_id=text(35),
    tx_id=text(35), business_type=text(35), amount_fen=FEN,
    priority=st.sampled_from(hvps112.PRIORITIES), instg_direct=text(35),
    instg_branch=text(35), instd_direct=text(35), instd_branch=text(35),
    debtor=INSTITUTION, creditor=INSTITUTION, debtor_account=opt(text(34)),
    creditor_account=opt(text(34)), debtor_agent=opt(INSTITUTION),
    creditor_agent=opt(INSTITUTION), intermediary1=opt(INSTITUTION),
    intermediary2=opt(INSTITUTION), remittance=st.lists(text(140), max_size=4).map(tuple))

COLLECTION = st.builds(lambda kind, day, number: Node("ColltnInf", children=(
    Node("Tp", kind), Node("Dt", day), Node("Nb", number))), digits(2), DATE, text(32))
RETURN = st.builds(ReturnInfo, ORIGINAL, ORIGINAL_TX, opt(text(256)))


def transfers(*, issuer: bool, agreement: bool, extras: bool) -> st.SearchStrategy[Transfer]:
    return st.builds(
        Transfer, tx_id=digits(16), debtor_name=text(60), debtor_account=text(32),
        debtor_account_bank=text(14) if issuer else opt(text(14)), debtor_bank=text(14),
        creditor_bank=text(14), creditor_name=text(60), creditor_account=text(32),
        creditor_account_bank=text(14) if issuer else opt(text(14)), amount_fen=FEN,
        business_type=text(4), business_kind=text(5), remark=opt(text(256)),
        extra=opt(RETURN | COLLECTION) if extras else st.none(),
        debtor_address=opt(text(70)), creditor_address=opt(text(70)),
        agreement=opt(text(60)) if agreement else st.none())


def packages(items: st.SearchStrategy[Transfer], return_limit: bool = False,
             npc: bool = True) -> st.SearchStrategy[Package]:
    def assemble(rows: list[Transfer], head: tuple[Any, ...], npc_block: Any,
                 limit: Any) -> Package:
        header = PackageHeader(*head[:4], len(rows), sum(t.amount_fen for t in rows),
                               "BEPS", head[4])
        return Package(header, tuple(rows), npc_block, limit)

    return st.builds(assemble, st.lists(items, min_size=1, max_size=6),
                     st.tuples(text(35), TIME, text(14), text(14), opt(text(256))),
                     opt(NPC) if npc else st.none(),
                     st.builds(ReturnLimit, digits(2), opt(DATE)) if return_limit
                     else st.none())


RECEIPT_LINE = st.builds(beps128.ReceiptLine, digits(16), text(14), text(14), FEN, CODE4,
                         opt(text(8)), opt(text(105)))
RECEIPT = st.builds(
    lambda head, original, paid, paid_fen, lines, npc: beps128.DebitReceipt(
        PackageHeader(*head, len(lines), sum(x.amount_fen for x in lines)), original, paid,
        paid_fen, tuple(lines), npc),
    st.tuples(text(35), TIME, text(14), text(14)), ORIGINAL, st.integers(0, 10**6),
    st.integers(0, 10**15), st.lists(RECEIPT_LINE, min_size=1, max_size=4), opt(NPC))

CASES: dict[str, st.SearchStrategy[Any]] = {
    "hvps.111.001.01": CREDIT,
    "hvps.112.001.01": INSTITUTION_CREDIT,
    "beps.121.001.01": packages(transfers(issuer=True, agreement=False, extras=True)),
    "beps.122.001.01": packages(transfers(issuer=False, agreement=False, extras=False)),
    "beps.125.001.01": packages(transfers(issuer=True, agreement=True, extras=False)),
    "beps.127.001.01": packages(transfers(issuer=True, agreement=True, extras=False),
                                return_limit=True, npc=False),
    "beps.128.001.01": RECEIPT,
    "ccms.990.001.02": st.builds(ccms990.CommConf, text(14), digits(8, 8), text(20),
                                 text(20), opt(text(20)), text(8)),
    "ccms.900.001.02": st.builds(ccms900.CommonConf, GROUP, ORIGINAL, text(4), opt(text(8)),
                                 opt(text(14)), opt(text(4)), opt(text(105)), opt(DATE),
                                 opt(text(2))),
    "ccms.314.001.01": st.builds(ccms314.Query, GROUP, ORIGINAL, FEN, text(256),
                                 opt(ORIGINAL_TX), opt(st.sampled_from(["QT00", "QT01"]))),
    "ccms.315.001.01": st.builds(ccms314.Reply, GROUP, ORIGINAL, ORIGINAL, FEN, text(256),
                                 opt(ORIGINAL_TX), opt(st.sampled_from(["QT00", "QT01"]))),
    "hvps.711.001.01": st.builds(
        hvps710.ReconSummary, GROUP, opt(ORIGINAL), DATE,
        st.lists(st.builds(hvps710.PaymentTotals, text(35), text(6), st.integers(0, 10**7),
                           st.integers(-10**15, 10**15), st.integers(0, 10**7),
                           st.integers(-10**15, 10**15), text(4)), max_size=3).map(tuple),
        st.lists(st.builds(hvps710.MessageTotals, text(35), text(6), st.integers(0, 10**7),
                           st.integers(0, 10**7), text(4)), max_size=3).map(tuple)),
    "beps.721.001.01": st.lists(st.builds(
        beps720.RoundTotals, DATE, digits(2), text(35), st.integers(0, 10**7),
        st.integers(-10**15, 10**15), st.integers(0, 10**7), st.integers(-10**15, 10**15),
        text(4)), max_size=3).flatmap(lambda rows: st.builds(
            beps720.TotalCheck, GROUP, opt(ORIGINAL), DATE, st.just(tuple(rows)),
            st.lists(st.builds(beps720.MessageCounts, text(35), st.integers(0, 10**7),
                               st.integers(0, 10**7), DATE), max_size=2).map(tuple),
            st.just(len(rows)), st.integers(0, 99))),
    "saps.606.001.01": st.builds(saps606.Booking, GROUP, ORIGINAL, NPC, text(4), text(5),
                                 st.sampled_from(["CRDT", "DBIT"]),
                                 st.integers(-10**15, 10**15), opt(text(14)),
                                 opt(digits(10)), opt(st.integers(-10**15, 10**15)),
                                 opt(text(9))),
    "nets.618.001.01": st.builds(
        nets617.NettingResponse, GROUP, PARTITION, ORIGINAL, NPC, opt(st.builds(
            nets617.NettingResults, DATE, st.integers(0, 10**6), st.lists(st.builds(
                nets617.NettingRow, digits(2), st.sampled_from(["NT01", "NT02"]), text(14),
                st.sampled_from(["CRDT", "DBIT"]), st.integers(0, 10**15), text(4),
                opt(DATE)), max_size=3).map(tuple)))),
}


@lru_cache(maxsize=None)
def reference(code: str) -> etree.XMLSchema | None:
    path = REFERENCE / f"{ISO_SCHEMA.get(code, code)}.xsd"
    return etree.XMLSchema(etree.parse(str(path))) if path.is_file() else None


@pytest.mark.parametrize("code", sorted(CASES))
def test_parse_of_build_is_identity(code: str) -> None:
    """For generated objects, building and parsing gives the object back, schema-valid."""
    build, parse = codec._verbs(code)
    ours = catalogue.schema(code)

    @SETTINGS
    @given(CASES[code])
    def check(obj: Any) -> None:
        root = xml.parse(build(obj))
        assert ours.validate(root), ours.error_log.last_error
        published = reference(code)
        if published is not None:
            assert published.validate(root), published.error_log.last_error
        parsed, problems = parse(root)
        assert problems == []
        assert parsed == obj

    check()
