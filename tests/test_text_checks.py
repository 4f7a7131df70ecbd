"""Names and remarks carry no invisible characters: control characters, noncharacters
and format characters (Unicode category Cf: zero-width spaces and joiners, soft hyphens,
direction marks and overrides) are refused by name in payer and payee names and in
remittance_info, on the fast path and the checked path alike."""

from __future__ import annotations

import sys
import unicodedata

import icu
import pytest

from gateway import intake
from gateway.errors import PaygateError

OWN = frozenset(("999100000027",))
BODY = {"payer_account": "20000000001410300000013", "payer_name": "示例客户",
        "payer_bank": "999100000027", "payee_account": "6222000000000001",
        "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "1.00"}


def refused_at(body: dict) -> list[tuple[str, str]]:
    with pytest.raises(PaygateError) as refused:
        intake.parse_transfer(body, OWN)
    return [(p.code, p.path) for p in refused.value.problems]


@pytest.mark.parametrize("field, value", [
    ("payee_name", "Blocked\u200bDemo Trading Co"),   # zero-width space
    ("payee_name", "对\u200d手客户"),                  # zero-width joiner
    ("payer_name", "示例\u2060客户"),                  # word joiner
    ("payer_name", "\ufeff示例客户"),                  # byte-order mark
    ("payee_name", "对手\u00ad客户"),                  # soft hyphen
    ("payee_name", "对手\u200e客户"),                  # left-to-right mark
    ("payee_name", "对手\u202e户客"),                  # right-to-left override
    ("remittance_info", "货\u200b款"),
    ("payee_name", "对手\u2028客户"),                 # line separator
    ("payer_name", "示例\u2029客户"),                 # paragraph separator
])
def test_an_invisible_character_is_refused(field, value):
    assert refused_at(dict(BODY, **{field: value})) == [
        ("text_has_control_or_invisible_characters", f"/{field}")]


def test_a_plain_body_is_taken():
    assert intake.parse_transfer(dict(BODY), OWN).payee_name == "对手客户"


def test_every_format_character_of_this_python_is_refused():
    """The gateway's list of format characters covers the running Python's Unicode
    data (so a newer Unicode adding one fails here until the list has it)."""
    missing = [f"U+{c:04X}" for c in range(sys.maxunicode + 1)
               if unicodedata.category(chr(c)) == "Cf"
               and not intake._UNSAFE_TEXT.search(chr(c))]

    assert missing == []


# Characters a screen shows as nothing that are not format characters: a blocked name
# carrying one read as the name and passed screening. And noncharacters, which Unicode
# keeps out of interchange.
@pytest.mark.parametrize("field, value, character", [
    ("payee_name", "示例受限贸易有限公司\ufe0f", "U+FE0F"),        # variation selector-16
    ("payee_name", "示例受限\U000e0100贸易有限公司", "U+E0100"),   # variation selector-17
    ("payee_name", "示例\u3164受限贸易有限公司", "U+3164"),        # Hangul filler
    ("payer_name", "示例\uffa0受限贸易有限公司", "U+FFA0"),        # half-width filler
    ("payer_name", "示例\u115f受限贸易有限公司", "U+115F"),        # choseong filler
    ("payee_name", "Blocked\u034fDemo Trading Co", "U+034F"),      # grapheme joiner
    ("remittance_info", "货\ufe0e款", "U+FE0E"),
    ("payee_name", "示例\ufdd0客户", "U+FDD0"),                    # noncharacters
    ("payer_name", "示例\U0001fffe客户", "U+1FFFE"),
    ("payee_name", "示例\U0010ffff客户", "U+10FFFF"),
])
def test_an_ignorable_character_or_noncharacter_is_refused_by_its_code_point(
        field, value, character):
    """Refused as invisible characters are, the message naming the character."""
    with pytest.raises(PaygateError) as refused:
        intake.parse_transfer(dict(BODY, **{field: value}), OWN)
    problems = refused.value.problems

    assert [(p.code, p.path) for p in problems] == [
        ("text_has_control_or_invisible_characters", f"/{field}")]
    assert f"; it holds {character} (" in problems[0].to_dict()["message"]


@pytest.mark.parametrize("name", [
    "Blo\u0307cked Demo Trading Co",   # a combining dot above
    "Societe Ge\u0301ne\u0301rale",    # accents written as combining marks
    "Soci\u00e9t\u00e9 G\u00e9n\u00e9rale",
    "김민준",                           # Hangul syllables
])
def test_a_name_with_accents_is_taken(name):
    """Combining marks are part of names (screening folds them away,
    gateway.ops.review.normalise): intake takes them."""
    assert intake.parse_transfer(dict(BODY, payee_name=name), OWN).payee_name == name


@pytest.mark.parametrize("payee_name", [
    "王\ue816",             # 王𠂇 as GB18030 decodes FE51, in a user-defined area
    "李\ue000",             # GBK's user-defined area AAA1
    "示例\U000f0001客户",    # private use, plane 15
])
def test_a_private_use_character_is_taken(payee_name):
    """Chinese core systems keep a name's rare characters (生僻字) in GBK's user-defined
    areas, which decode to private-use characters the bank's fonts show: taken, in a
    remark too, and screening compares names without them (tests/test_ops_review.py)."""
    taken = intake.parse_transfer(dict(BODY, payee_name=payee_name, payer_name=payee_name,
                                       remittance_info=f"付{payee_name}货款"), OWN)

    assert (taken.payee_name, taken.payer_name) == (payee_name, payee_name)
    assert taken.remittance == (f"/H01/付{payee_name}货款",)


def test_every_noncharacter_is_refused():
    missing = [f"U+{c:04X}" for c in range(sys.maxunicode + 1)
               if (0xfdd0 <= c <= 0xfdef or c & 0xfffe == 0xfffe)
               and not intake._UNSAFE_TEXT.search(chr(c))]

    assert missing == []


def test_every_default_ignorable_character_is_refused():
    """Every character Unicode calls default-ignorable (ICU's data) is refused, the
    variation selectors and Hangul fillers among them."""
    missing = [f"U+{ord(c):04X}" for c in icu.UnicodeSet("[:Default_Ignorable_Code_Point:]")
               if not intake._UNSAFE_TEXT.search(c)]

    assert missing == []
