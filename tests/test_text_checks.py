"""Names and remarks carry no invisible characters: control characters, noncharacters
and format characters (Unicode category Cf: zero-width spaces and joiners, soft hyphens,
direction marks and overrides) are refused by name in payer and payee names and in
remittance_info, on the fast path and the checked path alike."""

from __future__ import annotations

import sys
import unicodedata

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
