"""The fast reading of uniform BEPS packages (package_fast) gives exactly what reading
element by element gives: the same transactions and the same problems, in the same
order, for the shared samples, for generated packages of every family and for the
corner cases of the wire; and it is really taken where a package is uniform."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.errors import Problem
from gateway.messages import (beps121, beps122, beps125, beps127, envelope, package,
                              package_fast, xml)
from gateway.messages.common import (OriginalRef, OriginalTx, amount_from_xml,
                                     amounts_from_xml)
from gateway.messages.package import (Package, PackageHeader, ReturnInfo, ReturnLimit,
                                      Transfer)
from message_schemas import catalogue

SHARED = Path(__file__).resolve().parents[2] / "shared" / "cnaps" / "samples"
FAMILIES = {m.MESSAGE_TYPE: m for m in (beps121, beps122, beps125, beps127)}
SAMPLES = sorted(p for p in SHARED.glob("beps.12*.xml")
                 if p.name[:15] in FAMILIES) if SHARED.is_dir() else []
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def readings(layout: package.Layout, root: etree._Element) -> dict[str, Any]:
    """Both readings of the transactions of a parsed package, with their problems."""
    head, txs = package.elements(layout, root)
    fast_problems: list[Problem] = []
    slow_problems: list[Problem] = []
    fast = package_fast.read_uniform(layout, root, head, txs, fast_problems,
                                     package.transfers_from_rows)
    slow = package.read_by_element(layout, txs, slow_problems)
    return {"fast": None if fast is None else tuple(fast), "fast_problems": fast_problems,
            "slow": slow, "slow_problems": slow_problems}


def valid_root(code: str, body: bytes, parser: etree.XMLParser | None = None) -> Any:
    root = xml.parse(body) if parser is None else etree.fromstring(body, parser)
    schema = catalogue.schema(code)
    assert schema.validate(root), schema.error_log.last_error
    return root


def assert_alike(code: str, root: etree._Element, fast_taken: bool | None) -> dict[str, Any]:
    read = readings(FAMILIES[code].LAYOUT, root)

    if fast_taken is not None:
        assert (read["fast"] is not None) == fast_taken
    if read["fast"] is not None:
        assert read["fast"] == read["slow"]
        assert read["fast_problems"] == read["slow_problems"]
    return read


# The shared samples

@pytest.mark.skipif(not SAMPLES, reason="../shared is not present")
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_read_alike(path: Path) -> None:
    """Every shared package sample is uniform and both readings give the same."""
    code = path.name[:15]
    root = valid_root(code, envelope.decode(path.read_bytes()).body)

    read = assert_alike(code, root, fast_taken=True)

    assert FAMILIES[code].parse(root)[0].transfers == read["slow"]


# Generated packages

# Text as the schemas allow it, without the surrounding white space that reading
# strips; Chinese in good measure, since names and remarks are mostly Chinese.
_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co"))
_HAN = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)


def text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_HAN | _CHARS, min_size=1, max_size=max_size).map(str.strip).filter(bool)


DIGITS16 = st.text("0123456789", min_size=1, max_size=16)
BANK = st.text("0123456789", min_size=12, max_size=12)
# One fen, the usual amounts, 50,000.00 yuan (the ordinary credit cap) and huge ones.
FEN = st.sampled_from([1, 9, 10, 99, 100, 5_000_000]) | st.integers(1, 10**15)
OPTIONAL = ("agreement", "debtor_address", "creditor_address", "debtor_issuer",
            "creditor_issuer", "remark")
RETURN = st.builds(ReturnInfo, st.builds(OriginalRef, text(35), BANK, st.just(
    "beps.121.001.01")), st.builds(OriginalTx, BANK, BANK, DIGITS16, st.just("A100")),
    text(256))


def transfer(layout: package.Layout, present: dict[str, bool]) -> st.SearchStrategy[Transfer]:
    """A transaction with exactly the optional parts `present` says, where the family
    has them."""
    def part(key: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return strategy if present[key] else st.none()

    issuer = {key: BANK if layout.issuer_required else part(key, BANK)
              for key in ("debtor_issuer", "creditor_issuer")}
    return st.builds(
        Transfer, tx_id=DIGITS16, debtor_name=text(60), debtor_account=text(32),
        debtor_account_bank=issuer["debtor_issuer"], debtor_bank=BANK, creditor_bank=BANK,
        creditor_name=text(60), creditor_account=text(32),
        creditor_account_bank=issuer["creditor_issuer"], amount_fen=FEN,
        business_type=st.sampled_from(["A100", "A105", "B100", "E100"]),
        business_kind=st.sampled_from(["02102", "00300"]), remark=part("remark", text(256)),
        debtor_address=part("debtor_address", text(70)),
        creditor_address=part("creditor_address", text(70)),
        agreement=part("agreement", text(60)) if layout.agreement else st.none())


def package_of(layout: package.Layout, items: list[Transfer]) -> Package:
    header = PackageHeader("2024052000100000", "2024-05-20T09:30:00", "999100000019",
                           "888200000015", len(items), sum(t.amount_fen for t in items))
    limit = ReturnLimit("03") if layout.return_limit else None
    return Package(header, tuple(items), None, limit)


def uniform(layout: package.Layout) -> st.SearchStrategy[Package]:
    """Packages whose transactions all have the same optional parts."""
    flags = st.fixed_dictionaries({key: st.booleans() for key in OPTIONAL})
    return flags.flatmap(lambda present: st.lists(
        transfer(layout, present), min_size=1, max_size=40).map(
        lambda items: package_of(layout, items)))


def mixed(layout: package.Layout) -> st.SearchStrategy[Package]:
    """Packages whose transactions each have their own optional parts."""
    flags = st.fixed_dictionaries({key: st.booleans() for key in OPTIONAL})
    one = flags.flatmap(lambda present: transfer(layout, present))
    return st.lists(one, min_size=2, max_size=12).map(lambda items: package_of(layout, items))


@pytest.mark.parametrize("code", sorted(FAMILIES))
def test_generated_uniform_packages_read_alike(code: str) -> None:
    """A uniform package takes the fast path, which gives back what was built, as
    reading element by element does."""
    family = FAMILIES[code]

    @SETTINGS
    @given(uniform(family.LAYOUT))
    def check(pkg: Package) -> None:
        root = valid_root(code, family.build(pkg))

        read = assert_alike(code, root, fast_taken=True)

        assert read["fast"] == pkg.transfers and read["fast_problems"] == []
        assert family.parse(root) == (pkg, [])

    check()


@pytest.mark.parametrize("code", sorted(FAMILIES))
def test_generated_mixed_packages_map_back(code: str) -> None:
    """A package whose transactions differ maps back to what was built, whichever way
    it is read."""
    family = FAMILIES[code]

    @SETTINGS
    @given(mixed(family.LAYOUT))
    def check(pkg: Package) -> None:
        root = valid_root(code, family.build(pkg))

        assert_alike(code, root, fast_taken=None)

        assert family.parse(root) == (pkg, [])

    check()


# Corner cases of the wire: a package built, then its bytes changed as another sender
# might write them. Each case stays valid against the schema.

def base(layout: package.Layout, count: int = 3, **fields: Any) -> Package:
    items = [dataclasses.replace(Transfer(
        f"202405200010000{i}", f"示例商贸有限公司{i}", f"1100000000000000050{i}",
        "999100000027", "999100000027", "888200000023", f"测试收款人{i}",
        f"620000000000000060{i}", "888200000023", 120_000 + i, "A100", "02102", "货款"),
        **fields) for i in range(1, count + 1)]
    return package_of(layout, items)


def varied(layout: package.Layout, **per_index: dict[str, Any]) -> Package:
    """The base package with some transactions changed (keyed "t1", "t2"...)."""
    pkg = base(layout)
    items = [dataclasses.replace(t, **per_index.get(f"t{i}", {}))
             for i, t in enumerate(pkg.transfers, start=1)]
    return package_of(layout, items)


def sub(pattern: str, replacement: str, count: int = 0) -> Any:
    def change(body: bytes) -> bytes:
        return re.sub(pattern.encode(), replacement.encode(), body, count=count)
    return change


RETURNED = ReturnInfo(OriginalRef("2024051900100000", "888200000015", "beps.121.001.01"),
                      OriginalTx("888200000023", "999100000027", "2024051900100001", "A100"),
                      "账户不存在")
L121, L122, L125, L127 = (FAMILIES[c].LAYOUT for c in sorted(FAMILIES))
WIRE_CASES = [
    # name, family, package, change of the bytes, fast path taken
    ("as built", L121, base(L121), None, True),
    ("amounts of one fen", L121, base(L121, amount_fen=1), None, True),
    ("amounts of 50,000.00", L121, base(L121, amount_fen=5_000_000), None, True),
    ("amounts without decimals", L121, base(L121), sub(r"\.0[0-9]<", "<"), True),
    ("one amount with one decimal", L121, base(L121), sub(r"(1200)\.01<", r"\1.1<"), True),
    ("amounts inside white space", L121, base(L121), sub(r"(Ccy=\"CNY\">)([0-9.]+)<",
                                                         "\\1\n  \\2 \t<"), True),
    ("amounts with leading zeros", L121, base(L121), sub(r"(Ccy=\"CNY\">)1", r"\g<1>001"),
     True),
    ("amounts with three decimals", L121, base(L121), sub(r"(1200\.0[0-9])<", r"\g<1>0<"),
     True),
    ("an amount with a third decimal", L121, base(L121), sub(r"1200\.02<", "1200.025<"),
     True),
    ("an amount of zero", L121, base(L121), sub(r"1200\.03<", "0.00<"), True),
    ("an amount with a plus sign", L121, base(L121), sub(r">1200\.01<", ">+1200.01<"), True),
    ("remarks in white space over lines", L121, base(L121),
     sub("<AddtlInf>货款</AddtlInf>", "<AddtlInf>\n   货款\n  第二行附言\t\n</AddtlInf>"), True),
    ("entities and character references", L121, base(L121),
     sub("货款", "A&amp;B &lt;&#x4E2D;&#25991;&gt;"), True),
    ("a CDATA section", L121, base(L121), sub("<AddtlInf>货款", "<AddtlInf><![CDATA[货<款>]]>"),
     True),
    ("a comment inside a name", L121, base(L121), sub("示例商贸", "示例<!-- x -->商贸"), True),
    ("names of sixty characters", L121, base(L121, debtor_name="示" * 60,
                                             creditor_name="测" * 60), None, True),
    ("payers' addresses only", L121, base(L121, debtor_address="测试市示例街2号"), None, True),
    ("payees' addresses only", L121, base(L121, creditor_address="某市某路1号"), None, True),
    ("addresses on both sides", L121, base(L121, debtor_address="甲地", creditor_address="乙地"),
     None, True),
    ("empty postal addresses", L121, base(L121),
     sub("</Nm>", "</Nm><PstlAdr></PstlAdr>"), True),
    ("white space in one empty postal address", L121, base(L121),
     sub("</Nm>", "</Nm><PstlAdr>  </PstlAdr>", count=1), False),
    ("one payer's address", L121, varied(L121, t2={"debtor_address": "甲地"}), None, False),
    ("payer's and payee's address in turn", L121,
     varied(L121, t1={"debtor_address": "甲地"}, t2={"creditor_address": "乙地"},
            t3={"debtor_address": "丙地"}), None, False),
    ("a remark missing", L121, varied(L121, t3={"remark": None}), None, False),
    ("no remarks", L121, base(L121, remark=None), None, True),
    ("a return among credits", L121, varied(L121, t2={"business_type": "A105",
                                                      "extra": RETURNED}), None, False),
    ("a count the header gets wrong", L121, base(L121), sub("<NbOfTxs>3<", "<NbOfTxs>4<"),
     True),
    ("one transaction", L121, base(L121, count=1), None, True),
    ("payers' banks only", L122, base(L122, creditor_account_bank=None), None, True),
    ("payees' banks only", L122, base(L122, debtor_account_bank=None), None, True),
    ("no account banks", L122, base(L122, debtor_account_bank=None,
                                    creditor_account_bank=None), None, True),
    ("one payer's bank", L122, varied(L122, t1={"debtor_account_bank": None}), None, False),
    ("payer's and payee's bank in turn", L122,
     varied(L122, t1={"creditor_account_bank": None}, t2={"debtor_account_bank": None},
            t3={"creditor_account_bank": None}), None, False),
    ("agreements", L125, base(L125, agreement="AG-2024-001"), None, True),
    ("no agreements", L125, base(L125), None, True),
    ("one agreement", L125, varied(L125, t2={"agreement": "AG-2024-001"}), None, False),
    ("debits under agreements", L127, base(L127, agreement="协议0001"), None, True),
    ("debits with and without agreement", L127, varied(L127, t1={"agreement": "协议0001"}),
     None, False),
]


@pytest.mark.parametrize("name, layout, pkg, change, fast_taken", WIRE_CASES,
                         ids=[case[0] for case in WIRE_CASES])
def test_wire_corner_cases_read_alike(name: str, layout: package.Layout, pkg: Package,
                                      change: Any, fast_taken: bool) -> None:
    """Each reading gives the same transactions and problems; the fast one is taken
    exactly where every transaction has the same parts."""
    body = FAMILIES[layout.code].build(pkg)
    if change is not None:
        changed = change(body)
        assert changed != body, "the change applies"
        body = changed
    root = valid_root(layout.code, body)

    read = assert_alike(layout.code, root, fast_taken)

    assert FAMILIES[layout.code].parse(root)[0].transfers == read["slow"]


def test_problems_name_the_same_transactions() -> None:
    """Odd amounts are judged as one by one, under each transaction's own path."""
    body = sub(r"1200\.02<", "1200.025<")(sub(r"1200\.03<", "0.00<")(
        FAMILIES["beps.121.001.01"].build(base(L121))))

    read = assert_alike("beps.121.001.01", valid_root("beps.121.001.01", body), True)

    assert [(p.code, p.path, p.value) for p in read["fast_problems"]] == [
        ("amount_must_have_at_most_two_decimals",
         "/Document/CstmrCdtTrf/CstmrCdtTrfInf[2]/Amt", "1200.025"),
        ("amount_must_be_positive", "/Document/CstmrCdtTrf/CstmrCdtTrfInf[3]/Amt", "0.00")]


@pytest.mark.parametrize("change", [sub(r"<Nm>(示例[^<]*)</Nm>", r"<Nm>\1<!--x-->尾</Nm>"),
                                    sub(r"<AddtlInf>货款", "<AddtlInf><![CDATA[货]]>款")],
                         ids=["comment kept inside names", "CDATA kept inside remarks"])
def test_text_split_by_another_parser_is_read_by_element(change: Any) -> None:
    """Parsed by a parser that keeps comments and CDATA, a leaf holds several text
    nodes: the fast path sees more texts than places and leaves the package alone."""
    body = change(FAMILIES["beps.121.001.01"].build(base(L121)))
    parser = etree.XMLParser(remove_comments=False, strip_cdata=False)

    assert_alike("beps.121.001.01", valid_root("beps.121.001.01", body, parser), False)


@pytest.mark.parametrize("code", sorted(FAMILIES))
def test_every_leaf_read_needs_a_character(code: str) -> None:
    """The fast path counts one text per leaf: the schema must refuse an empty one."""
    family = FAMILIES[code]
    full = base(family.LAYOUT, remark="货款", debtor_address="甲地", creditor_address="乙地",
                agreement="协议0001" if family.LAYOUT.agreement else None)
    root = valid_root(code, family.build(full))
    first = package.elements(family.LAYOUT, root)[1][0]
    leaves = [el for el in first.iter() if len(el) == 0]

    assert len(leaves) == len(first.xpath(".//text()")) == 15 + family.LAYOUT.agreement
    for leaf in leaves:
        saved, leaf.text = leaf.text, ""
        assert not catalogue.schema(code).validate(root), xml.element_path(leaf)
        leaf.text = saved


# The pieces

AMOUNT_TEXT = (st.sampled_from(["0.01", "50000.00", "100", "100.5", "0100.00", "100.000",
                                "100.001", "0.00", "+1.00", "-1.00", "1e3", "", " ", "1.00\n2.00",
                                "１００.００", "1_000.00", "99999999999999999.00"])
               | st.integers(1, 10**16).map(lambda fen: f"{fen // 100}.{fen % 100:02d}"))


@SETTINGS
@given(st.lists(AMOUNT_TEXT, max_size=30))
@example(["1.00\n2.00"]).via("a line break inside a value")
@example(["12.00", "1.00\n2.00", "3.00"]).via("a line break among usual values")
@example(["0.01", "50000.00", "12.34"]).via("one fen, the cap and a usual amount")
def test_amounts_in_one_pass_equal_amounts_one_by_one(values: list[str]) -> None:
    """amounts_from_xml gives the fen and the problems amount_from_xml gives for each."""
    one_by_one: list[Problem] = []
    expected = [amount_from_xml(v, f"/Amt[{i}]", one_by_one) for i, v in enumerate(values)]
    in_one_pass: list[Problem] = []

    got = amounts_from_xml(values, lambda i: f"/Amt[{i}]", in_one_pass)

    assert got == expected and in_one_pass == one_by_one
    assert all(type(fen) is int for fen in got)


def test_transfers_from_rows_are_ordinary_frozen_transfers() -> None:
    """A record made from a row equals, hashes and behaves as Transfer(*row)."""
    row = ("2024052000100001", "示例", "11000000000000000501", "999100000027",
           "999100000027", "888200000023", "测试", "6200000000000000601", "888200000023",
           1, "A100", "02102", None, None, None, "乙地", None, "CNY")

    made, = package.transfers_from_rows([row])

    assert type(made) is Transfer and made == Transfer(*row)
    assert hash(made) == hash(Transfer(*row)) and repr(made) == repr(Transfer(*row))
    assert dataclasses.replace(made, amount_fen=2).amount_fen == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.amount_fen = 2  # type: ignore[misc]


def test_rules_name_every_broken_field_in_order() -> None:
    """The package rules, whose paths are built only for a broken rule, still report
    each problem of each transaction under its own path, in the order of the fields."""
    pkg = varied(L121, t2={"debtor_bank": "8882", "creditor_account_bank": "ABC",
                           "currency": "USD", "business_type": "B100", "amount_fen": 5_000_001,
                           "business_kind": "0210", "creditor_name": " "},
                 t3={"business_type": "A100", "amount_fen": 5_000_001})
    tx = "/Document/CstmrCdtTrf/CstmrCdtTrfInf"

    problems = beps121.check(dataclasses.replace(pkg, transfers=(
        *pkg.transfers, dataclasses.replace(pkg.transfers[0], amount_fen=5_000_000))))

    assert [(p.code, p.path) for p in problems] == [
        ("package_count_mismatch", "/Document/CstmrCdtTrf/PKGGrpHdr/NbOfTxs"),
        ("package_control_sum_mismatch", "/Document/CstmrCdtTrf/PKGGrpHdr/CtrlSum"),
        ("currency_must_be_cny", f"{tx}[2]/Amt/@Ccy"),
        ("bank_code_must_be_12_ascii_digits", f"{tx}[2]/DbtrAgt/BrnchId/Id"),
        ("bank_code_must_be_12_ascii_digits", f"{tx}[2]/CdtrAcct/Id/Othr/Issr"),
        ("party_field_required", f"{tx}[2]/Cdtr/Nm"),
        ("business_type_not_allowed_for_message", f"{tx}[2]/PmtTpInf/CtgyPurp/Prtry"),
        ("business_kind_malformed", f"{tx}[2]/Purp/Prtry"),
        ("amount_over_beps_limit", f"{tx}[2]/Amt"),
        ("amount_over_beps_limit", f"{tx}[3]/Amt"),
        ("transaction_id_duplicate", f"{tx}[4]/TxId")]
