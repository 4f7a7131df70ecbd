"""Business rules of the message families (`check`), one table row per rule."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import pytest

from gateway.messages import (beps121, beps122, beps123, beps125, beps127, beps128,
                              beps720, ccms307, ccms314, ccms801, codec, examples, hvps111,
                              hvps112, hvps712, nets617)
from gateway.messages.common import Node, OriginalRef, Partition, amount_from_xml
from gateway.messages.package import Package, ReturnInfo, ReturnLimit
from routing.limits import BepsLimits

PKG = "/Document/CstmrCdtTrf"
TX = "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf"


def _tx(pkg: Package, index: int, **changes: Any) -> Package:
    """The package with transaction `index` (1-based) changed."""
    rows = list(pkg.transfers)
    rows[index - 1] = replace(rows[index - 1], **changes)
    return replace(pkg, transfers=tuple(rows))


def _rebalanced(pkg: Package) -> Package:
    return replace(pkg, header=replace(pkg.header, count=len(pkg.transfers),
                                       total_fen=pkg.sum_fen))


def _credit(**changes: Any) -> hvps111.CreditTransfer:
    return replace(examples.credit_transfer(), **changes)


CASES: list[tuple[str, Callable[[], Any], Callable[[Any], list], str, str]] = [
    # hvps.111
    ("hvps111 currency", lambda: _credit(currency="USD"), hvps111.check,
     "currency_must_be_cny", f"{TX}/IntrBkSttlmAmt/@Ccy"),
    ("hvps111 same clearing banks", lambda: _credit(instd_direct="999100000019"),
     hvps111.check, "payer_and_payee_clearing_banks_must_differ",
     f"{TX}/InstdAgt/FinInstnId/ClrSysMmbId/MmbId"),
    ("hvps111 eleven-digit bank", lambda: _credit(instg_branch="99910000002"), hvps111.check,
     "bank_code_must_be_12_ascii_digits", f"{TX}/InstgAgt/BrnchId/Id"),
    ("hvps111 return names nothing", lambda: _credit(business_type="A105"), hvps111.check,
     "return_must_name_original", f"{TX}/RmtInf/Ustrd"),
    ("hvps111 blank payee", lambda: _credit(creditor_name=""), hvps111.check,
     "party_field_required", f"{TX}/Cdtr/Nm"),
    # hvps.112
    ("hvps112 currency", lambda: replace(examples.institution_transfer(), currency="HKD"),
     hvps112.check, "currency_must_be_cny",
     "/Document/FinInstnCdtTrf/CdtTrfTxInf/IntrBkSttlmAmt/@Ccy"),
    ("hvps112 kind tag", lambda: replace(examples.institution_transfer(),
                                         remittance=("/F25/2118",)), hvps112.check,
     "business_kind_malformed", "/Document/FinInstnCdtTrf/CdtTrfTxInf/RmtInf/Ustrd"),
    ("hvps112 nameless debtor", lambda: replace(examples.institution_transfer(),
                                                debtor=hvps112.Institution()),
     hvps112.check, "party_field_required",
     "/Document/FinInstnCdtTrf/CdtTrfTxInf/Dbtr/FinInstnId"),
    # beps.121 packages
    ("beps121 count", lambda: replace(examples.credit_package(), header=replace(
        examples.credit_package().header, count=9)), beps121.check, "package_count_mismatch",
     f"{PKG}/PKGGrpHdr/NbOfTxs"),
    ("beps121 control sum", lambda: replace(examples.credit_package(), header=replace(
        examples.credit_package().header, total_fen=1)), beps121.check,
     "package_control_sum_mismatch", f"{PKG}/PKGGrpHdr/CtrlSum"),
    ("beps121 header currency", lambda: replace(examples.credit_package(), header=replace(
        examples.credit_package().header, currency="USD")), beps121.check,
     "currency_must_be_cny", f"{PKG}/PKGGrpHdr/CtrlSum/@Ccy"),
    ("beps121 system", lambda: replace(examples.credit_package(), header=replace(
        examples.credit_package().header, system="HVPS")), beps121.check,
     "system_code_must_be_beps", f"{PKG}/PKGGrpHdr/SysCd"),
    ("beps121 to itself", lambda: replace(examples.credit_package(), header=replace(
        examples.credit_package().header, instd_direct="999100000019")), beps121.check,
     "payer_and_payee_clearing_banks_must_differ", f"{PKG}/PKGGrpHdr/InstdPty/InstdDrctPty"),
    ("beps121 second currency", lambda: _tx(examples.credit_package(), 2, currency="USD"),
     beps121.check, "currency_must_be_cny", f"{PKG}/CstmrCdtTrfInf[2]/Amt/@Ccy"),
    ("beps121 full-width bank", lambda: _tx(examples.credit_package(), 2,
                                            creditor_bank="８８８２０００００２３"),
     beps121.check, "bank_code_must_be_12_ascii_digits",
     f"{PKG}/CstmrCdtTrfInf[2]/CdtrAgt/BrnchId/Id"),
    ("beps121 missing issuer", lambda: _tx(examples.credit_package(), 1,
                                           debtor_account_bank=None),
     beps121.check, "bank_code_must_be_12_ascii_digits",
     f"{PKG}/CstmrCdtTrfInf[1]/DbtrAcct/Id/Othr/Issr"),
    ("beps121 blank payer", lambda: _tx(examples.credit_package(), 1, debtor_name=" "),
     beps121.check, "party_field_required", f"{PKG}/CstmrCdtTrfInf[1]/Dbtr/Nm"),
    ("beps121 debit type", lambda: _tx(examples.credit_package(), 1, business_type="B100"),
     beps121.check, "business_type_not_allowed_for_message",
     f"{PKG}/CstmrCdtTrfInf[1]/PmtTpInf/CtgyPurp/Prtry"),
    ("beps121 type shape", lambda: _tx(examples.credit_package(), 1, business_type="a100"),
     beps121.check, "business_type_malformed",
     f"{PKG}/CstmrCdtTrfInf[1]/PmtTpInf/CtgyPurp/Prtry"),
    ("beps121 kind shape", lambda: _tx(examples.credit_package(), 1, business_kind="0210"),
     beps121.check, "business_kind_malformed", f"{PKG}/CstmrCdtTrfInf[1]/Purp/Prtry"),
    ("beps121 return without RtrInf", lambda: _tx(examples.credit_package(), 3, extra=None),
     beps121.check, "return_must_name_original", f"{PKG}/CstmrCdtTrfInf[3]/CstmrCdtTrfAddtlInf"),
    ("beps121 RtrInf on a credit", lambda: _tx(examples.credit_package(), 3,
                                               business_type="A100"),
     beps121.check, "return_info_only_for_returns",
     f"{PKG}/CstmrCdtTrfInf[3]/PmtTpInf/CtgyPurp/Prtry"),
    ("beps121 duplicate TxId", lambda: _tx(examples.credit_package(), 2,
                                           tx_id=examples.credit_package().transfers[0].tx_id),
     beps121.check, "transaction_id_duplicate", f"{PKG}/CstmrCdtTrfInf[2]/TxId"),
    ("beps121 over the cap", lambda: _rebalanced(_tx(examples.credit_package(), 2,
                                                     amount_fen=5_000_001)),
     beps121.check, "amount_over_beps_limit", f"{PKG}/CstmrCdtTrfInf[2]/Amt"),
    # beps.122, 123, 125, 127, 128
    ("beps122 return without reason", lambda: _rebalanced(replace(
        examples.institution_package(), transfers=(replace(
            examples.institution_package().transfers[0], business_type="A105",
            extra=ReturnInfo(examples._original("beps.122.001.01"),
                             examples.credit_package().transfers[2].extra.original_tx)),))),
     beps122.check, "return_reason_required",
     "/Document/FinCdtTrf/FinCdtTrfInf[1]/FinCdtTrfAddtlInf/RtrInf/Cntt"),
    ("beps123 not real-time", lambda: replace(examples.realtime_credit(), transfer=replace(
        examples.realtime_credit().transfer, business_type="A100")), beps123.check,
     "business_type_not_allowed_for_message",
     "/Document/RealTmCdtTrf/RealTmCdtTrfInf/PmtTpInf/CtgyPurp/Prtry"),
    ("beps124 refusal without code", lambda: replace(examples.realtime_receipt(),
                                                     status="PR09"),
     beps123.check, "refusal_needs_reason_code",
     "/Document/RealTmCdtTrfRct/RealTmCdtTrfRctInf/RjctCd"),
    ("beps125 no agreement", lambda: _tx(examples.periodic_package(), 1, agreement=None),
     beps125.check, "agreement_number_required", "/Document/PrdcCdtTrf/PrdcCdtTrfInf[1]/AgrmtNb"),
    ("beps127 deadline zero", lambda: replace(examples.debit_package(),
                                              return_limit=ReturnLimit("00")),
     beps127.check, "return_deadline_out_of_range",
     "/Document/CstmrDrctDbt/PKGRtrLtdInf/PKGRtrLtd"),
    ("beps127 credit type", lambda: _tx(examples.debit_package(), 2, business_type="A100"),
     beps127.check, "business_type_not_allowed_for_message",
     "/Document/CstmrDrctDbt/CstmrDrctDbtInf[2]/PmtTpInf/CtgyPurp/Prtry"),
    ("beps128 paid count", lambda: replace(examples.debit_receipt(), paid_count=2),
     beps128.check, "paid_count_mismatch", "/Document/CstmrDrctDbtRct/RctSumry/SucNbOfTxs"),
    ("beps128 paid sum", lambda: replace(examples.debit_receipt(), paid_fen=1),
     beps128.check, "paid_sum_mismatch", "/Document/CstmrDrctDbtRct/RctSumry/SucCtrlSum"),
    ("beps128 odd status", lambda: replace(examples.debit_receipt(), lines=(
        replace(examples.debit_receipt().lines[0], status="PR05"),
        examples.debit_receipt().lines[1]), paid_count=0, paid_fen=0),
     beps128.check, "receipt_status_unknown",
     "/Document/CstmrDrctDbtRct/CstmrDrctDbtRctInf[1]/RctSts"),
    ("beps128 answers a credit", lambda: replace(examples.debit_receipt(), original=OriginalRef(
        "1", "999100000019", "beps.121.001.01")), beps128.check, "receipt_must_answer_a_debit",
     "/Document/CstmrDrctDbtRct/OrgnlGrpHdr/OrgnlMT"),
    # Others
    ("ccms307 debit package", lambda: replace(examples.EXAMPLES["ccms.307.001.02"](),
                                              payment=examples._original("beps.127.001.01")),
     ccms307.check, "cancel_not_allowed_for_type", "/Document/BizCxlReq/OrgnlGrpHdr/OrgnlMT"),
    ("ccms307 package without its transaction", lambda: replace(
        examples.EXAMPLES["ccms.307.001.02"](), payment=examples._original("beps.121.001.01")),
     ccms307.check, "cancel_of_package_item_needs_transaction", "/Document/BizCxlReq/OrgnlTx"),
    ("ccms308 odd status", lambda: replace(examples.EXAMPLES["ccms.308.001.02"](),
                                           status="PR04"),
     ccms307.check, "cancel_status_unknown", "/Document/BizCxlRspn/BizCxlRspnInf/PrcSts"),
    ("ccms315 answers a payment", lambda: replace(examples.EXAMPLES["ccms.315.001.01"](),
                                                  query=examples._original()),
     ccms314.check, "reply_must_answer_a_query", "/Document/BizRspn/OrgnlGrpHdr/OrgnlMT"),
    ("ccms314 group party", lambda: replace(examples.EXAMPLES["ccms.314.001.01"](), header=replace(
        examples.group_header(), instd_party="88820000002")), ccms314.check,
     "bank_code_must_be_12_ascii_digits", "/Document/BizQry/GrpHdr/InstdPty/InstdPty"),
    ("ccms801 status", lambda: replace(examples.EXAMPLES["ccms.801.001.02"](), cur_status="99"),
     ccms801.check, "system_status_unknown", "/Document/SysStsNtfctn/SysStsInf/CurSysSts"),
    ("hvps712 count", lambda: replace(examples.EXAMPLES["hvps.712.001.01"](), count=3),
     hvps712.check, "detail_count_mismatch", "/Document/DtlReq/DtlReqInf/TtlCnt"),
    ("beps721 row count", lambda: replace(examples.EXAMPLES["beps.721.001.01"](),
                                          payment_count=4),
     beps720.check, "row_count_mismatch", "/Document/TtlChck/TtlChckInf/ChckPmtInf/NbOfChckInf"),
    ("nets618 partition", lambda: replace(examples.EXAMPLES["nets.618.001.01"](),
                                          partition=Partition(1, 2, 1)),
     nets617.check, "partition_out_of_range", "/Document/BEPSNetgRspn/Prttn"),
]


@pytest.mark.parametrize("name, make, check, code, path", CASES, ids=[c[0] for c in CASES])
def test_rule_is_reported_by_code_and_path(name: str, make: Callable[[], Any],
                                           check: Callable[[Any], list], code: str,
                                           path: str) -> None:
    """Breaking one rule of a valid example yields that rule's code at its path."""
    problems = check(make())

    assert (code, path) in [(p.code, p.path) for p in problems], problems


@pytest.mark.parametrize("code", sorted(examples.EXAMPLES))
def test_every_example_passes_its_checks(code: str) -> None:
    """The examples are valid, so each rule test above breaks exactly what it names."""
    decoded = codec.decode(codec.build_body(code, examples.EXAMPLES[code]()), bare_ok=True)

    assert decoded.problems == []


@pytest.mark.parametrize("value, code", [
    ("150000.001", "amount_must_have_at_most_two_decimals"),
    ("0.00", "amount_must_be_positive"),
    ("0", "amount_must_be_positive"),
    ("1e5", "amount_must_be_a_decimal_number"),
    ("-1.00", "amount_must_be_a_decimal_number"),
    ("+1.00", "amount_must_be_a_decimal_number"),
    (".50", "amount_must_be_a_decimal_number"),
    ("１.00", "amount_must_be_a_decimal_number"),
    ("12345678901234567.00", "amount_too_large"),
    ("0012345678901234567.00", "amount_too_large"),
    ("0" * 5_000 + "150000.00", "amount_too_long"),
    ("0" * 56 + "150000.00", "amount_too_long"),
    ("0" * 5_000 + "12345678901234567.00", "amount_too_large"),
    ("1" * 5_000, "amount_too_large"),
    (None, "amount_must_be_a_decimal_number"),
])
def test_amounts_refused_never_rounded(value: str | None, code: str) -> None:
    """An amount that is not above 0 with at most two decimals is refused, not rounded."""
    problems: list = []

    fen = amount_from_xml(value, "/x", problems)

    assert [p.code for p in problems] == [code]
    assert fen == 0


@pytest.mark.parametrize("value, fen", [
    ("0.01", 1), ("1", 100), ("1.5", 150), ("150000.00", 15_000_000), ("1.10000", 110),
    ("007.00", 700), ("9999999999999999.99", 999_999_999_999_999_999),
    ("00000000000000010.00", 1000), ("0009999999999999999.99", 999_999_999_999_999_999),
    ("0" * 55 + "150000.00", 15_000_000),
])
def test_amounts_accepted_exactly(value: str, fen: int) -> None:
    """Trailing zeros beyond the fen are not decimals that matter; the value is exact.
    Zeros before the first digit are none either: xs:decimal, the schema's type for an
    amount, reads 007.00 as 7.00, so the XML path has no leading-zero rule, and they do
    not count among the 16 digits before the point (17 characters of which zeros are
    not refused as if the amount were not a decimal number), up to 64 characters in all."""
    problems: list = []

    assert amount_from_xml(value, "/x", problems) == fen
    assert problems == []


def test_all_problems_of_a_package_are_reported() -> None:
    """Several broken rules in one package are all reported, each at its own path."""
    pkg = _tx(_tx(examples.credit_package(), 1, currency="USD"), 2, business_kind="x")
    pkg = replace(pkg, header=replace(pkg.header, count=7))

    problems = beps121.check(pkg)

    assert {p.code for p in problems} == {"currency_must_be_cny", "business_kind_malformed",
                                          "package_count_mismatch"}


@pytest.mark.parametrize("amount_fen, over", [(5_000_000, False), (5_000_001, True)])
def test_ordinary_credit_cap_is_inclusive(amount_fen: int, over: bool) -> None:
    """50,000.00 yuan passes BEPS; one fen more does not."""
    pkg = _rebalanced(_tx(examples.credit_package(), 1, amount_fen=amount_fen))

    codes = [p.code for p in beps121.check(pkg)]

    assert ("amount_over_beps_limit" in codes) is over


def test_real_time_types_have_no_cap_and_a_raised_cap_applies() -> None:
    """C-series credits are not capped; a dated raise of the cap lets a big A100 through."""
    big = _rebalanced(_tx(examples.credit_package(), 1, amount_fen=100_000_000))
    raised = BepsLimits([{"name": "festival", "types": ["A100"], "cap_fen": 10**10,
                          "effective_from": "2024-05-01", "effective_to": "2024-05-31"},
                         {"name": "default", "types": ["*"], "cap_fen": 5_000_000}])

    assert beps123.check(examples.realtime_credit()) == []
    assert "amount_over_beps_limit" in [p.code for p in beps121.check(big)]
    assert beps121.check(big, raised) == []


def test_additional_information_is_carried_as_it_came() -> None:
    """An additional-information block the product does not interpret survives intact."""
    pkg = examples.credit_package()
    block = pkg.transfers[3].extra

    parsed = codec.decode(beps121.build(pkg), bare_ok=True).obj

    assert isinstance(block, Node) and parsed.transfers[3].extra == block
    assert block.find("Nb") == Node("Nb", "WT-0001")
