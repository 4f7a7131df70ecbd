"""Messages written as text are the bytes the element-by-element lxml build wrote.

The oracle (tests/lxml_build_support.py) is the lxml build the product had: the same
calls on an lxml tree, serialised by lxml's pretty printer. Packages are generated with
names full of XML's special characters and Chinese, with every optional part present or
absent, with the NPC's block, return deadlines and additional information, and with 1
to 1,000 transactions; the text must equal the oracle's bytes, refuse what lxml
refuses, and pass our schemas and the published ones."""

from __future__ import annotations

import dataclasses
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.messages import (beps121, beps122, beps123, beps125, beps127, ccms990, codec,
                              hvps111, xml)
from gateway.messages.common import (GroupHeader, Node, NpcProcessing, OriginalRef,
                                     OriginalTx)
from gateway.messages.package import (Layout, Package, PackageHeader, ReturnInfo,
                                      ReturnLimit, Transfer)
from message_schemas import catalogue
from tests import test_messages_roundtrip as roundtrip
from tests.lxml_build_support import (LxmlBuilder, build_comm_conf, build_credit_transfer,
                                      build_package, build_real_time_credit)

FAMILIES = {m.MESSAGE_TYPE: m for m in (beps121, beps122, beps125, beps127)}
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Text as a sender may hand it to us: XML's special characters, Chinese, the white space
# XML keeps (TAB, LF) and the one it would not read back as written (CR), quotes, and
# anything else printable, surrounding white space included.
SPECIAL = st.sampled_from(list("&<>\"'\r\n\t ") + ["&amp;", "]]>", "<!--", "中文", "示例&<>"])
_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co"))
_HAN = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
WIDE = st.lists(SPECIAL | st.text(_HAN | _CHARS, max_size=6), max_size=8).map("".join)
# Characters XML 1.0 cannot carry, which lxml refuses to hold.
NOT_XML = st.sampled_from(["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1f", "\ud800",
                           "\udfff", "\ufffe", "\uffff"])


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


# Additional information carried through as it came: nested elements, some with a
# currency, some with text and children at once (written on one line by lxml).
TAGS = st.sampled_from(["ColltnInf", "Tp", "Dt", "Nb", "Amt", "TrsrInf", "X_1", "a.b-c"])
NODES = st.recursive(
    st.builds(Node, TAGS, opt(WIDE), opt(WIDE)),
    lambda kids: st.builds(Node, TAGS, opt(WIDE), opt(WIDE),
                           st.lists(kids, max_size=3).map(tuple)),
    max_leaves=8)
RETURN = st.builds(ReturnInfo, st.builds(OriginalRef, WIDE, WIDE, WIDE),
                   st.builds(OriginalTx, WIDE, WIDE, WIDE, WIDE), opt(WIDE))
NPC = st.builds(NpcProcessing, WIDE, WIDE, opt(WIDE), opt(WIDE), opt(WIDE), opt(WIDE),
                opt(WIDE), opt(WIDE))


def transfers(layout: Layout, text: st.SearchStrategy[str]) -> st.SearchStrategy[Transfer]:
    """Transactions with each optional part present or not, where the family has it."""
    return st.builds(
        Transfer, tx_id=text, debtor_name=text, debtor_account=text,
        debtor_account_bank=opt(text), debtor_bank=text, creditor_bank=text,
        creditor_name=text, creditor_account=text, creditor_account_bank=opt(text),
        amount_fen=st.sampled_from([1, 99, 100, 5_000_000]) | st.integers(0, 10**16),
        business_type=text, business_kind=text, remark=opt(text),
        extra=opt(RETURN | NODES) if layout.extra else st.none(),
        debtor_address=opt(text), creditor_address=opt(text),
        agreement=opt(text) if layout.agreement else st.none(),
        currency=st.just("CNY") | text)


def packages(layout: Layout, text: st.SearchStrategy[str] = WIDE,
             count: st.SearchStrategy[int] = st.integers(1, 1_000)
             ) -> st.SearchStrategy[Package]:
    """Packages of `count` transactions, cycling through up to eight generated ones
    (so that a thousand transactions cost eight to generate)."""
    def assemble(distinct: list[Transfer], n: int, head: tuple[Any, ...], npc: Any,
                 limit: Any) -> Package:
        rows = tuple(distinct[i % len(distinct)] for i in range(n))
        header = PackageHeader(*head[:4], n, sum(t.amount_fen for t in rows), head[4],
                               head[5], head[6])
        return Package(header, rows, npc, limit)

    return st.builds(
        assemble, st.lists(transfers(layout, text), min_size=1, max_size=8), count,
        st.tuples(text, text, text, text, text, opt(text), st.just("CNY") | text),
        opt(NPC) if layout.npc_block else st.none(),
        st.builds(ReturnLimit, text, opt(text)) if layout.return_limit else st.none())


@pytest.mark.parametrize("code", sorted(FAMILIES))
def test_package_text_equals_the_lxml_build(code: str) -> None:
    """Every package, whatever its text and parts, is written as lxml wrote it."""
    family = FAMILIES[code]

    @SETTINGS
    @given(packages(family.LAYOUT))
    def check(pkg: Package) -> None:
        assert family.build(pkg) == build_package(family.LAYOUT, pkg)

    check()


@pytest.mark.parametrize("code", sorted(FAMILIES))
def test_text_refuses_what_lxml_refuses(code: str) -> None:
    """A character XML cannot carry, in any field, is refused as lxml refuses it."""
    family = FAMILIES[code]

    @SETTINGS
    @given(packages(family.LAYOUT, count=st.integers(1, 3)), NOT_XML, st.data())
    def check(pkg: Package, bad: str, data: st.DataObject) -> None:
        field = data.draw(st.sampled_from(["tx_id", "debtor_name", "creditor_account",
                                           "business_kind", "currency"]))
        last = pkg.transfers[-1]
        broken = dataclasses.replace(pkg, transfers=(*pkg.transfers[:-1], dataclasses.replace(
            last, **{field: getattr(last, field) + bad})))

        with pytest.raises(ValueError) as lxml_error:
            build_package(family.LAYOUT, broken)
        with pytest.raises(ValueError) as text_error:
            family.build(broken)
        assert str(text_error.value) == str(lxml_error.value)

    check()


# Schema-valid packages: the text passes our schema and the published one (where it
# exists), and reads back as the package that was written.

_PLAIN = st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co"))
_VALID_TEXT_PARTS = st.sampled_from(list("&<>\"'") + ["中文", "示例&<>", "]]>"]) \
    | st.text(_HAN | _PLAIN, min_size=1, max_size=4)


def valid_text(max_size: int) -> st.SearchStrategy[str]:
    """Text within `max_size` characters, without the surrounding white space that
    reading strips."""
    return st.lists(_VALID_TEXT_PARTS, min_size=1, max_size=6).map(
        lambda parts: "".join(parts).strip()[:max_size].strip()).filter(bool)


DIGITS16 = st.text("0123456789", min_size=1, max_size=16)
BANK = st.text("0123456789", min_size=12, max_size=12)
VALID_RETURN = st.builds(ReturnInfo, st.builds(OriginalRef, DIGITS16, BANK,
                                               st.just("beps.121.001.01")),
                         st.builds(OriginalTx, BANK, BANK, DIGITS16, st.just("A100")),
                         valid_text(256))


def valid_transfers(layout: Layout) -> st.SearchStrategy[Transfer]:
    issuer = BANK if layout.issuer_required else opt(BANK)
    return st.builds(
        Transfer, tx_id=DIGITS16, debtor_name=valid_text(60), debtor_account=valid_text(32),
        debtor_account_bank=issuer, debtor_bank=BANK, creditor_bank=BANK,
        creditor_name=valid_text(60), creditor_account=valid_text(32),
        creditor_account_bank=issuer, amount_fen=st.integers(1, 10**15),
        business_type=st.sampled_from(["A100", "B100", "E100"]),
        business_kind=st.sampled_from(["02102", "00300"]), remark=opt(valid_text(256)),
        extra=opt(VALID_RETURN) if layout.extra and layout.code != beps127.MESSAGE_TYPE
        else st.none(),
        debtor_address=opt(valid_text(70)), creditor_address=opt(valid_text(70)),
        agreement=opt(valid_text(60)) if layout.agreement else st.none())


def valid_packages(layout: Layout) -> st.SearchStrategy[Package]:
    def assemble(distinct: list[Transfer], n: int, remark: str | None,
                 npc: NpcProcessing | None) -> Package:
        rows = tuple(distinct[i % len(distinct)] for i in range(n))
        header = PackageHeader("2024052000100000", "2024-05-20T09:30:00", "999100000019",
                               "888200000015", n, sum(t.amount_fen for t in rows),
                               remark=remark)
        limit = ReturnLimit("03", "2024-05-20") if layout.return_limit else None
        return Package(header, rows, npc, limit)

    npc = st.builds(NpcProcessing, st.just("PR03"), st.just("NEZI0000"), opt(valid_text(105)),
                    st.just("2024-05-20"), st.just("01"))
    return st.builds(assemble, st.lists(valid_transfers(layout), min_size=1, max_size=8),
                     st.integers(1, 1_000), opt(valid_text(256)),
                     opt(npc) if layout.npc_block else st.none())


@pytest.mark.parametrize("code", sorted(FAMILIES))
def test_package_text_passes_the_schemas_and_reads_back(code: str) -> None:
    """A package written as text is valid against our schema and the published one,
    and parsing it gives back the package."""
    family = FAMILIES[code]
    published = roundtrip.reference(code)

    @settings(SETTINGS, max_examples=15)
    @given(valid_packages(family.LAYOUT))
    def check(pkg: Package) -> None:
        root = xml.parse(family.build(pkg))

        assert catalogue.schema(code).validate(root), catalogue.schema(code).error_log
        if published is not None:
            assert published.validate(root), published.error_log.last_error
        assert family.parse(root) == (pkg, [])

    if code != beps125.MESSAGE_TYPE and roundtrip.REFERENCE.is_dir():
        assert published is not None, f"the published schema of {code} is in ../shared"
    check()


# beps.123 writes its one transaction from the package template.

GROUP = st.builds(GroupHeader, WIDE, WIDE, WIDE, WIDE, WIDE, WIDE, WIDE, opt(WIDE))


@SETTINGS
@given(st.builds(beps123.RealTimeCredit, GROUP, transfers(beps123.LAYOUT, WIDE), opt(NPC)))
def test_real_time_credit_text_equals_the_lxml_build(credit: beps123.RealTimeCredit) -> None:
    """A beps.123's transaction is written as lxml wrote it."""
    assert beps123.build(credit) == build_real_time_credit(credit)


# hvps.111, written for every HVPS payment sent, is one template.

CREDIT = st.builds(
    hvps111.CreditTransfer, msg_id=WIDE, created_at=WIDE, end_to_end_id=WIDE, tx_id=WIDE,
    business_type=WIDE, business_kind=WIDE, amount_fen=st.integers(0, 10**17),
    priority=WIDE, instg_direct=WIDE, instg_branch=WIDE, instd_direct=WIDE,
    instd_branch=WIDE, debtor_name=WIDE, debtor_account=WIDE, debtor_agent=WIDE,
    creditor_agent=WIDE, creditor_name=WIDE, creditor_account=WIDE,
    remittance=st.lists(WIDE, max_size=4).map(tuple), debtor_agent_name=opt(WIDE),
    creditor_agent_name=opt(WIDE), debtor_address=opt(WIDE), creditor_address=opt(WIDE),
    currency=WIDE, charge_bearer=WIDE)


@SETTINGS
@given(CREDIT)
def test_credit_transfer_text_equals_the_lxml_build(ct: hvps111.CreditTransfer) -> None:
    """An hvps.111 is written as lxml wrote it, whatever its text holds and whichever
    optional parts it has."""
    assert hvps111.build(ct) == build_credit_transfer(ct)


@SETTINGS
@given(roundtrip.CASES[hvps111.MESSAGE_TYPE])
def test_credit_transfer_text_passes_the_schemas_and_reads_back(
        ct: hvps111.CreditTransfer) -> None:
    """The text of a valid hvps.111 passes our schema and reads back as it was."""
    body = hvps111.build(ct)
    root = xml.parse(body)

    assert catalogue.schema(hvps111.MESSAGE_TYPE).validate(root)
    assert hvps111.parse(root) == (ct, [])


@SETTINGS
@given(CREDIT, NOT_XML, st.sampled_from(["msg_id", "debtor_name", "creditor_account",
                                        "instd_branch", "currency", "remittance"]))
def test_credit_transfer_text_refuses_what_lxml_refuses(ct: hvps111.CreditTransfer, bad: str,
                                                        field: str) -> None:
    """A character XML cannot carry, in any field, is refused as lxml refuses it."""
    value = getattr(ct, field)
    broken = dataclasses.replace(ct, **{field: (*value, bad) if field == "remittance"
                                        else value + bad})

    with pytest.raises(ValueError) as lxml_error:
        build_credit_transfer(broken)
    with pytest.raises(ValueError) as text_error:
        hvps111.build(broken)
    assert str(text_error.value) == str(lxml_error.value)


# ccms.990, written for every message received, is one template too.

COMM_CONF = st.builds(ccms990.CommConf, opt(WIDE), opt(WIDE), opt(WIDE), opt(WIDE), opt(WIDE),
                      opt(WIDE))

@SETTINGS
@given(COMM_CONF)
def test_comm_conf_text_equals_the_lxml_build(c: ccms990.CommConf) -> None:
    """A ccms.990 is written as lxml wrote it, with or without its MsgRefId, any field
    empty."""
    assert ccms990.build(c) == build_comm_conf(c)


@SETTINGS
@given(roundtrip.CASES[ccms990.MESSAGE_TYPE])
def test_comm_conf_text_passes_the_schema_and_reads_back(c: ccms990.CommConf) -> None:
    """The text of a valid ccms.990 passes our schema and reads back as it was."""
    root = xml.parse(ccms990.build(c))

    assert catalogue.schema(ccms990.MESSAGE_TYPE).validate(root)
    assert ccms990.parse(root) == (c, [])


@SETTINGS
@given(COMM_CONF, NOT_XML)
def test_comm_conf_text_refuses_what_lxml_refuses(c: ccms990.CommConf, bad: str) -> None:
    """A character XML cannot carry is refused as lxml refuses it."""
    broken = dataclasses.replace(c, msg_id=(c.msg_id or "") + bad)

    with pytest.raises(ValueError) as lxml_error:
        build_comm_conf(broken)
    with pytest.raises(ValueError) as text_error:
        ccms990.build(broken)
    assert str(text_error.value) == str(lxml_error.value)


# Every other family builds through xml.Builder; with lxml's builder in its place, the
# same calls give the same bytes.

WRITTEN_FROM_TEMPLATES = (hvps111.MESSAGE_TYPE, ccms990.MESSAGE_TYPE)
OTHER_FAMILIES = sorted(code for code in roundtrip.CASES
                        if code not in FAMILIES and code not in WRITTEN_FROM_TEMPLATES)


@pytest.mark.parametrize("code", OTHER_FAMILIES)
def test_every_family_writes_what_lxml_wrote(code: str) -> None:
    """For generated messages of every family, the text equals the lxml build."""
    build, _ = codec._verbs(code)
    module = __import__(build.__module__, fromlist=["Builder"])

    @SETTINGS
    @given(roundtrip.CASES[code])
    def check(obj: Any) -> None:
        with mock.patch.object(module, "Builder", side_effect=LxmlBuilder) as lxml_builder:
            expected = build(obj)

        assert lxml_builder.called, f"{code} is built by {module.__name__}"
        assert build(obj) == expected

    assert module.Builder is xml.Builder
    check()


# xml.Builder itself, on trees of any shape.

TREES = st.recursive(
    st.tuples(TAGS, opt(WIDE), st.dictionaries(st.sampled_from(["Ccy", "a"]), WIDE,
                                               max_size=2), st.just(())),
    lambda kids: st.tuples(TAGS, opt(WIDE), st.just({}), st.lists(kids, max_size=4)),
    max_leaves=20)


def write(b: Any, parent: Any, tree: tuple[Any, ...]) -> None:
    tag, value, attrs, kids = tree
    node = b.el(parent, tag, value, **attrs)
    for kid in kids:
        write(b, node, kid)


def chain(depth: int) -> tuple[Any, ...]:
    tree: tuple[Any, ...] = ("Leaf", "深", {}, ())
    for level in range(depth):
        tree = (f"L{level}", None, {}, [tree])
    return tree


@SETTINGS
@given(st.lists(TREES, max_size=4), st.lists(st.tuples(
    st.sampled_from(["A", "A/B", "A/B/C"]), opt(WIDE)), max_size=3))
@example([chain(40)], []).via("deeper than the thirty levels libxml2 indents")
@example([("A", "", {}, [("B", None, {}, [("C", "1", {}, ()), ("E", None, {}, ())])]),
          ("Z", None, {}, ())], []).via("text and children: one line, as lxml writes it")
@example([], []).via("an empty document")
def test_builder_writes_what_lxml_writes(trees: list[Any], paths: list[Any]) -> None:
    """Any tree built through the same calls gives lxml's bytes."""
    built = []
    for builder in (xml.Builder, LxmlBuilder):
        b = builder("urn:cnaps:std:beps:2010:tech:xsd:test")
        top = b.el(None, "Top")
        for tree in trees:
            write(b, top, tree)
        for path, value in paths:
            b.path(top, path, value)
        built.append(b.tobytes())

    assert built[0] == built[1]


def test_builder_refuses_to_write_out_of_document_order() -> None:
    """A child for an element whose end is written already is a bug in the build."""
    b = xml.Builder("urn:x")
    first = b.el(None, "First")
    b.el(None, "Second")

    with pytest.raises(AssertionError, match="document order"):
        b.el(first, "Late")


def test_builder_refuses_a_tag_that_is_not_a_name() -> None:
    """A tag must be an XML name (CNAPS2's are ASCII)."""
    with pytest.raises(ValueError, match="Invalid tag name"):
        xml.Builder("urn:x").el(None, "not a tag")
    with pytest.raises(ValueError):
        LxmlBuilder("urn:x").el(None, "not a tag")
