"""A transfer body that passes every check is made into its Transfer without collecting
problems (intake._plain_transfer); anything else goes through the full checks. The
short way must accept only what the full checks accept, and make the same Transfer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import intake
from gateway.api import JsonNumber
from gateway.errors import PaygateError

OWN = frozenset({"999100000019", "999100000027"})

BODY = {"payer_account": "6222000000000001", "payer_name": "示例客户",
        "payer_bank": "999100000027", "payee_account": "6228000000000000001",
        "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "12.30"}

# Values near each field's bounds, right and wrong, of every JSON type.
NEAR = st.sampled_from([
    "0.00", "1", "1.5", "01.00", "-1.00", "1.005", "12345678901234567.00", "CNY", "USD",
    "A100", "a100", "02102", "2102", "normal", "urgent", "extra_urgent", "queue", "refuse",
    "beps", "hvps", "999100000019", "999100000027", "888200000023", "８88200000023",
    "88820000002", "6222000000000001", "6228000000000000001", "A" * 32, "A" * 33,
    "名" * 140, "名" * 141, "a\u202eb", "a\x00b", "a\ud800b", "/H01/备注", "x" * 135,
    "x" * 136, "a b", "示例客户", "对手客户"])
ODD = st.one_of(
    NEAR, NEAR, NEAR, st.none(), st.booleans(), st.integers(-3, 10**20),
    st.just(JsonNumber("1.5")), st.just(""), st.just([]), st.just({}), st.just(["a", 1]),
    st.text(max_size=6),
    st.lists(st.sampled_from(["行1", "/ABC/x", "", "x" * 136, "a\x07"]), max_size=7),
)
# Per field, values that the field is likely to get right or just wrong.
CANDIDATES = {
    "payer_bank": ["999100000019", "888200000023", "99910000002", "９99100000027"],
    "payee_bank": ["999100000027", "888200000023", "88820000002"],
    "payer_account": ["6228000000000000001", "A" * 32, "A" * 33, "a b", "x-1"],
    "payee_account": ["6222000000000001", "A" * 32, "A" * 33, "a b", "x-1"],
    "payer_name": ["名" * 140, "名" * 141, "a\u202eb", "a\x00b", "a\ud800b", "x", "\u3000",
                   "  ", "\xa0", " 名 "],
    "payee_name": ["名" * 140, "名" * 141, "a\u2067b", "a\x9fb", "a\uffffb", "x", "\u3000",
                   "  ", "\xa0", " 名 "],
    "amount": ["0.00", "1", "1.5", "01.00", "-1.00", "1.005", "9999999999999999.99"],
    "currency": ["CNY", "USD", "cny"], "business_type": ["A100", "C210", "a100", "A10"],
    "business_kind": ["02102", "09001", "2102", "0210x"],
    "urgency": ["normal", "urgent", "extra_urgent", "Normal"],
    "when_closed": ["queue", "refuse", "beps", "hvps"],
    "remittance_info": ["货款", "/ABC/x", ["行1", "行2"], ["x" * 136], ["a\x07"], [""]],
}
FIELD_NAMES = sorted(intake.FIELDS) + ["idempotency", "Amount"]
CHANGE = st.sampled_from(FIELD_NAMES).flatmap(lambda name: st.tuples(
    st.just(name), st.one_of(st.sampled_from(CANDIDATES.get(name, ["x"])), ODD)))


def _outcome(fn, body):
    try:
        return fn(body, OWN)
    except PaygateError as exc:
        return exc


@pytest.mark.fuzz
@settings(max_examples=1500, deadline=None, derandomize=True)
@given(changes=st.lists(CHANGE, max_size=3),
       removed=st.sets(st.sampled_from(sorted(BODY)), max_size=1))
def test_the_short_way_accepts_only_what_the_checks_accept(changes, removed) -> None:
    body = {k: v for k, v in BODY.items() if k not in removed} | dict(changes)
    plain = intake._plain_transfer(body, OWN)
    checked = _outcome(intake._checked_transfer, body)
    if plain is not None:
        assert plain == checked
        assert [type(x) for x in plain] == [type(x) for x in checked]
    assert _outcome(intake.parse_transfer, body).__repr__() == checked.__repr__()


@pytest.mark.parametrize("change", [
    {"payer_bank": "888200000023"}, {"payee_bank": "999100000027",
                                     "payee_account": "6222000000000001"},
    {"payer_name": "名" * 141}, {"payee_name": "a\u202eb"}, {"amount": "0.00"},
    {"amount": JsonNumber("1.5")}, {"currency": "USD"}, {"urgency": ["normal"]},
    {"when_closed": ["beps"]}, {"remittance_info": ["x" * 136]}, {"Amount": "1.00"},
    {"payee_account": "A" * 33},
])
def test_an_unusual_body_is_checked_in_full(change) -> None:
    body = BODY | change
    assert intake._plain_transfer(body, OWN) is None
    with pytest.raises(PaygateError):
        intake.parse_transfer(body, OWN)


@pytest.mark.parametrize("extra", [
    {}, {"currency": "CNY", "business_type": "A100", "business_kind": "02102"},
    {"urgency": "urgent", "when_closed": "beps"}, {"remittance_info": "货款"},
    {"remittance_info": ["/H01/货款", "第二行"]}, {"remittance_info": ""},
])
def test_a_usual_body_takes_the_short_way(extra) -> None:
    body = BODY | extra
    assert intake._plain_transfer(body, OWN) == intake._checked_transfer(body, OWN)
