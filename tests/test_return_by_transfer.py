"""A return (A105) is made only by POST /v1/transfers/{id}/return. Sent as a plain transfer
it used to be taken: without the original named, refused later by the NPC or before
packing; with it named, never linked to it, so one incoming payment could be returned
twice. It is refused at intake now, pointing at the return route."""

from __future__ import annotations

import pytest

from gateway import intake
from gateway.errors import ValidationFailed

OURS = frozenset({"999100000027", "999100000019"})
BODY = {"payer_account": "20000000001410300000013", "payer_name": "示例一号公司",
        "payer_bank": "999100000027", "payee_account": "6222000000000001",
        "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "100.00",
        "business_type": "A105", "business_kind": "02108"}


@pytest.mark.parametrize("extra", [{}, {"urgency": "urgent"},
                                   {"remittance_info": ["a note of the return"]}])
def test_a_return_naming_nothing_is_refused_at_its_business_type(extra) -> None:
    with pytest.raises(ValidationFailed) as refused:
        intake.parse_transfer(BODY | extra, OURS)
    problems = [(p.code, p.path) for p in refused.value.problems]
    assert ("return_must_name_original", "/business_type") in problems
    expected = next(p.expected for p in refused.value.problems
                    if p.code == "return_must_name_original")
    assert "/v1/transfers/{id}/return" in expected


@pytest.mark.parametrize("line", ["/F40/hvps.111.001.01", "/E50/2026120700000001"])
def test_a_return_naming_its_original_is_refused_too(line) -> None:
    """Only the return route links a return to what it returns and returns it once."""
    with pytest.raises(ValidationFailed) as refused:
        intake.parse_transfer(BODY | {"remittance_info": [line]}, OURS)
    assert ("return_must_name_original", "/business_type") in [
        (p.code, p.path) for p in refused.value.problems]


def test_other_types_are_untouched() -> None:
    assert intake.parse_transfer(BODY | {"business_type": "A100", "business_kind": "02102"},
                                 OURS).business_type == "A100"
