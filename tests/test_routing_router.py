"""The router: channel, action, message type, priority and the explanation of each decision."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from gateway.errors import PaygateError
from routing import Directory, Institutions, RouteRequest, Router, load_default
from routing.defaults import INSTITUTIONS_PATH, PARTICIPANTS_PATH
from routing.kinds import KINDS_OF_TYPE

DAY = date(2026, 12, 7)
NEXT_OPENING = datetime.fromisoformat("2026-12-08T08:30:00+08:00")
OURS, OURS_2, HQ = "999100000027", "999100000035", "999100000019"
PEER, PEER_HQ, PEER_2, PEER_2_HQ = "888200000023", "888200000015", "777300000029", "777300000011"


@pytest.fixture(scope="module")
def router() -> Router:
    return load_default()


def req(payer: str = OURS, payee: str = PEER, amount_fen: int = 10_000,
        business_type: str = "A100", urgency: str = "normal", when_closed: str | None = None,
        customer: bool = True, business_kind: str | None = "") -> RouteRequest:
    """A request; its business kind by default 02102 (普通汇兑), or the first kind SPEC.md
    d.5 allows with a type that does not take 02102."""
    allowed = KINDS_OF_TYPE.get(business_type, ("02102",))
    if business_kind == "":
        business_kind = "02102" if "02102" in allowed else allowed[0]
    return RouteRequest(payer, payee, amount_fen, business_type, business_kind, urgency,
                        when_closed, customer)


# payer, payee, amount_fen, type, urgency, customer ->
#   channel, rule, message_type, priority, sender_direct, receiver_direct
TRANSFERS = [
    (OURS, PEER, 5_000_000, "A100", "normal", True,
     "beps", "beps_default", "beps.121.001.01", 3, HQ, PEER_HQ),
    (OURS, PEER, 5_000_001, "A100", "normal", True,
     "hvps", "hvps_over_beps_limit", "hvps.111.001.01", 3, HQ, PEER_HQ),
    (OURS, PEER, 1, "A100", "normal", True,
     "beps", "beps_default", "beps.121.001.01", 3, HQ, PEER_HQ),
    (OURS, OURS_2, 900_000_000, "A100", "urgent", True,
     "internal", "internal", None, 2, HQ, HQ),
    (OURS_2, OURS, 100, "A100", "normal", True,
     "internal", "internal", None, 3, HQ, HQ),
    (OURS, PEER_2, 100, "A100", "urgent", True,
     "hvps", "hvps_urgency", "hvps.111.001.01", 2, HQ, PEER_2_HQ),
    (HQ, PEER_HQ, 100, "A100", "extra_urgent", True,
     "hvps", "hvps_urgency", "hvps.111.001.01", 1, HQ, PEER_HQ),
    (OURS, PEER, 100, "A200", "normal", False,
     "hvps", "hvps_only_kind", "hvps.112.001.01", 3, HQ, PEER_HQ),
    (OURS, PEER, 100, "A101", "normal", True,
     "hvps", "hvps_only_kind", "hvps.111.001.01", 3, HQ, PEER_HQ),
    (OURS, PEER, 100, "A103", "normal", True,
     "hvps", "hvps_only_kind", "hvps.112.001.01", 3, HQ, PEER_HQ),
    (OURS, PEER, 100, "A104", "normal", False,
     "beps", "beps_default", "beps.122.001.01", 3, HQ, PEER_HQ),
    (OURS, PEER, 100, "A100", "normal", False,
     "beps", "beps_default", "beps.122.001.01", 3, HQ, PEER_HQ),
    (OURS, PEER, 9_000_000, "A100", "normal", False,
     "hvps", "hvps_over_beps_limit", "hvps.112.001.01", 3, HQ, PEER_HQ),
    (OURS_2, PEER_2_HQ, 100, "A105", "normal", True,
     "beps", "beps_default", "beps.121.001.01", 3, HQ, PEER_2_HQ),
]


@pytest.mark.parametrize(
    "payer, payee, amount_fen, business_type, urgency, customer, channel, rule, "
    "message_type, priority, sender_direct, receiver_direct", TRANSFERS)
def test_transfers_take_the_expected_route(router: Router, payer: str, payee: str,
                                           amount_fen: int, business_type: str, urgency: str,
                                           customer: bool, channel: str, rule: str,
                                           message_type: str | None, priority: int,
                                           sender_direct: str, receiver_direct: str) -> None:
    """Each transfer's channel, rule, message type, priority and direct participants."""
    decision = router.decide(req(payer, payee, amount_fen, business_type, urgency,
                                 customer=customer), DAY)

    assert (decision.channel, decision.rule, decision.message_type, decision.priority,
            decision.sender_direct, decision.receiver_direct, decision.action) == (
        channel, rule, message_type, priority, sender_direct, receiver_direct, "send")


# amount_fen, type, urgency, request when_closed, default ->
#   channel, action, fallback, or the refusal code
CLOSED = [
    (9_000_000, "A100", "normal", None, "queue", "hvps", "queue", None),
    (9_000_000, "A100", "normal", "queue", "refuse", "hvps", "queue", None),
    (100, "A100", "urgent", "beps", "queue", "beps", "send", "beps"),
    (5_000_000, "A100", "extra_urgent", None, "beps", "beps", "send", "beps"),
    (100, "A100", "urgent", "refuse", "queue", "hvps_closed", None, None),
    (100, "A100", "urgent", None, "refuse", "hvps_closed", None, None),
    (5_000_001, "A100", "normal", "beps", "queue",
     "amount_over_beps_limit_and_hvps_closed", None, None),
    (100, "A200", "normal", "beps", "queue",
     "business_type_hvps_only_and_hvps_closed", None, None),
    (100, "A100", "normal", "refuse", "refuse", "beps", "send", None),
]


@pytest.mark.parametrize("amount_fen, business_type, urgency, when_closed, default, "
                         "outcome, action, fallback", CLOSED)
def test_when_hvps_is_closed_the_request_or_the_default_decides(
        amount_fen: int, business_type: str, urgency: str, when_closed: str | None,
        default: str, outcome: str, action: str | None, fallback: str | None) -> None:
    """Queue, refuse or fall back to BEPS; the request's choice wins over the default."""
    router = load_default({"when_closed_default": default})
    request = req(amount_fen=amount_fen, business_type=business_type, urgency=urgency,
                  when_closed=when_closed)

    if action is None:
        with pytest.raises(PaygateError) as error:
            router.decide(request, DAY, hvps_open=False, next_hvps_opening=NEXT_OPENING)
        told = error.value.problems[0].to_dict()
        assert error.value.code == outcome
        assert "a time inside the HVPS business window, 08:30–17:00 Beijing time on " \
               "working days" in told["expected"]
        assert told["next_opening"] == "2026-12-08T08:30:00+08:00"
        assert "opens next at 2026-12-08T08:30:00+08:00" in told["message"]
        assert error.value.status == 409
        return
    decision = router.decide(request, DAY, hvps_open=False, next_hvps_opening=NEXT_OPENING)

    assert (decision.channel, decision.action, decision.fallback) == (outcome, action, fallback)


def test_a_beps_fallback_keeps_the_urgency_priority_and_uses_the_beps_message(
        router: Router) -> None:
    """Falling back to BEPS changes the message type, not the priority or the rule."""
    decision = router.decide(req(urgency="urgent", when_closed="beps"), DAY, hvps_open=False)

    assert (decision.message_type, decision.priority, decision.rule) == (
        "beps.121.001.01", 2, "hvps_urgency")
    assert decision.explain()["facts"]["when_closed_applied"] == "beps"


def test_internal_transfers_ignore_the_hvps_window(router: Router) -> None:
    """Book transfers between branches on one clearing account do not wait for HVPS."""
    decision = router.decide(req(OURS, OURS_2, 900_000_000, urgency="urgent",
                                 when_closed="refuse"), DAY, hvps_open=False)

    assert (decision.channel, decision.action) == ("internal", "send")


def test_a_refusal_without_a_known_opening_says_so(router: Router) -> None:
    """With no forecast of the next opening, the refusal says HVPS is closed and its
    next opening is null; it still expects a time inside the window."""
    with pytest.raises(PaygateError) as error:
        router.decide(req(urgency="urgent", when_closed="refuse"), DAY, hvps_open=False)
    told = error.value.problems[0].to_dict()

    assert (told["next_opening"], told["message"]) == (
        None, "the payment needs HVPS and HVPS is closed")
    assert told["expected"].startswith("a time inside the HVPS business window, 08:30–17:00")


@pytest.mark.parametrize("request_, expected", [
    (req(payee="888200000024"), [("bank_code_unknown", "payee_bank")]),
    (req(payer="９99100000027"), [("bank_code_must_be_12_ascii_digits", "payer_bank")]),
    (req(payee="88820000002３"), [("bank_code_must_be_12_ascii_digits", "payee_bank")]),
    (req(payer=PEER, payee=OURS), [("payer_bank_not_ours", "payer_bank")]),
    (req(payer="1", payee="2"), [("bank_code_must_be_12_ascii_digits", "payer_bank"),
                                 ("bank_code_must_be_12_ascii_digits", "payee_bank")]),
    (req(business_type="a100"), [("business_type_must_be_a_letter_and_3_digits",
                                   "business_type")]),
    (req(business_type="Ａ100"), [("business_type_must_be_a_letter_and_3_digits",
                                   "business_type")]),
    (req(business_type="B100"), [("business_type_not_routable", "business_type")]),
    # Well formed, but no credit type SPEC.md d.4 lists: the NPC would refuse it.
    (req(business_type="A999"), [("business_type_not_routable", "business_type")]),
    (req(business_type="A118"), [("business_type_not_routable", "business_type")]),
    (req(business_kind="0210"), [("business_kind_must_be_5_ascii_digits", "business_kind")]),
    (req(urgency="high"), [("urgency_unknown", "urgency")]),
    (req(when_closed="later"), [("when_closed_unknown", "when_closed")]),
    (req(amount_fen=0), [("amount_must_be_positive", "amount_fen")]),
    (req(amount_fen="100"), [("amount_fen_must_be_an_integer", "amount_fen")]),
    (req(amount_fen=0, urgency="x", payee="0000"),
     [("amount_must_be_positive", "amount_fen"), ("urgency_unknown", "urgency"),
      ("bank_code_must_be_12_ascii_digits", "payee_bank")]),
])
def test_broken_requests_are_refused_with_every_problem(router: Router,
                                                        request_: RouteRequest,
                                                        expected: list[tuple[str, str]]) -> None:
    """Malformed, unknown and foreign codes and bad fields are all reported together."""
    with pytest.raises(PaygateError) as error:
        router.decide(request_, DAY)

    assert [(p.code, p.path) for p in error.value.problems] == expected
    assert router.problems(request_, DAY) == error.value.problems


def directory_rows() -> list[dict[str, str]]:
    base = {"city_node": "1000", "status": "active", "effective_from": "2024-01-01",
            "effective_to": "", "version": "1"}
    return [
        base | {"bank_code": HQ, "name": "HQ", "direct_participant": HQ, "kind": "direct"},
        base | {"bank_code": OURS, "name": "East", "direct_participant": HQ,
                "kind": "indirect"},
        base | {"bank_code": PEER_HQ, "name": "Peer", "direct_participant": PEER_HQ,
                "kind": "direct"},
        base | {"bank_code": PEER_2_HQ, "name": "Peer 2", "direct_participant": PEER_2_HQ,
                "kind": "direct"},
        base | {"bank_code": PEER, "name": "Peer branch", "direct_participant": PEER_HQ,
                "kind": "indirect", "effective_to": "2026-12-07"},
        base | {"bank_code": PEER, "name": "Peer branch", "direct_participant": PEER_2_HQ,
                "kind": "indirect", "effective_from": "2026-12-08", "version": "2"},
        base | {"bank_code": PEER_2, "name": "Closed", "direct_participant": PEER_2_HQ,
                "kind": "indirect", "status": "inactive"},
    ]


@pytest.fixture(scope="module")
def dated_router() -> Router:
    return Router(Directory.load(directory_rows()), Institutions.load(INSTITUTIONS_PATH))


@pytest.mark.parametrize("on_date, receiver_direct, version", [
    (DAY, PEER_HQ, 1),
    (date(2026, 12, 8), PEER_2_HQ, 2),
])
def test_an_entry_that_changes_tomorrow_routes_by_the_day(dated_router: Router,
                                                          on_date: date,
                                                          receiver_direct: str,
                                                          version: int) -> None:
    """The payee's direct participant is the one in force on the business date."""
    decision = dated_router.decide(req(), on_date)

    payee = [e for e in decision.explain()["directory"] if e["role"] == "payee_bank"]
    assert decision.receiver_direct == receiver_direct
    assert payee[0]["version"] == version


def test_an_inactive_payee_is_refused(dated_router: Router) -> None:
    """A payee bank whose row in force is inactive is refused."""
    with pytest.raises(PaygateError) as error:
        dated_router.decide(req(payee=PEER_2), DAY)

    assert [(p.code, p.path) for p in error.value.problems] == [
        ("bank_code_inactive", "payee_bank")]


def test_an_indirect_participant_settles_through_its_direct_one(router: Router) -> None:
    """The decision names the direct participants that settle for both indirect banks."""
    decision = router.decide(req(OURS, PEER), DAY)

    roles = {e["role"]: (e["bank_code"], e["kind"]) for e in decision.explain()["directory"]}
    assert roles == {
        "payer_bank": (OURS, "indirect"), "sender_direct": (HQ, "direct"),
        "payee_bank": (PEER, "indirect"), "receiver_direct": (PEER_HQ, "direct"),
    }


def test_the_explanation_is_json_and_names_rule_inputs_and_versions(router: Router) -> None:
    """The explanation carries the rule, what it saw, and the directory rows with versions."""
    decision = router.decide(req(amount_fen=5_000_001, when_closed="queue"), DAY,
                             hvps_open=False, next_hvps_opening=NEXT_OPENING)

    explained = json.loads(json.dumps(decision.explain()))
    assert explained["rule"] == "hvps_over_beps_limit"
    assert explained["rules_tried"] == ["internal", "hvps_urgency", "hvps_over_beps_limit"]
    assert explained["inputs"] == {
        "payer_bank": OURS, "payee_bank": PEER, "amount_fen": 5_000_001,
        "business_type": "A100", "business_kind": "02102", "urgency": "normal",
        "when_closed": "queue", "customer": True, "on_date": "2026-12-07",
        "hvps_open": False, "next_hvps_opening": "2026-12-08T08:30:00+08:00"}
    assert explained["facts"]["beps_limit"]["cap_fen"] == 5_000_000
    assert explained["facts"]["over_beps_limit"] is True
    assert [(e["role"], e["version"]) for e in explained["directory"]] == [
        ("payer_bank", 1), ("sender_direct", 1), ("payee_bank", 1), ("receiver_direct", 1)]


def test_an_internal_decision_explains_the_shared_clearing_account(router: Router) -> None:
    """An internal decision names the clearing account both branches share."""
    decision = router.decide(req(OURS, OURS_2), DAY)

    assert decision.explain()["facts"]["clearing_account"] == "1101010001011003000000010"


def test_a_custom_rule_table_and_a_festival_cap_change_the_route() -> None:
    """Rules and limits come from settings; a raised cap keeps large amounts on BEPS."""
    settings = {"routing": {
        "rules": [
            {"name": "internal", "when": {"same_clearing_account": True},
             "channel": "internal"},
            {"name": "peer_2_by_hvps", "when": {"payee_bank_in": [PEER_2]}, "channel": "hvps"},
            {"name": "big_by_hvps", "when": {"over_beps_limit": True}, "channel": "hvps"},
            {"name": "beps_default", "when": {}, "channel": "beps"},
        ],
        "limits": [
            {"name": "festival", "types": ["A*"], "cap_fen": 50_000_000_000,
             "effective_from": "2027-01-28", "effective_to": "2027-02-20"},
            {"name": "beps_single_item", "types": ["*"], "cap_fen": 5_000_000},
        ],
        "participants_path": str(PARTICIPANTS_PATH),
    }}
    router = load_default(settings)

    during = router.decide(req(amount_fen=100_000_000), date(2027, 2, 1))
    after = router.decide(req(amount_fen=100_000_000), date(2027, 2, 21))
    peer_2 = router.decide(req(payee=PEER_2), DAY)

    assert (during.channel, after.channel, peer_2.channel) == ("beps", "hvps", "hvps")
    assert peer_2.rule == "peer_2_by_hvps"


@pytest.mark.parametrize("settings, expected", [
    ({"when_closed_default": "wait"}, "routing_when_closed_default_unknown"),
    ({"colour": "red"}, "routing_setting_unknown"),
])
def test_broken_settings_are_refused_at_start(settings: dict[str, str], expected: str) -> None:
    """Settings the router cannot use are refused when it is built."""
    with pytest.raises(PaygateError) as error:
        load_default(settings)

    assert error.value.code == expected


def test_remembered_decisions_keep_each_amount_and_each_side_of_every_threshold() -> None:
    rules = [{"name": "big", "when": {"amount_fen_over": 1_000_000}, "channel": "hvps"},
             {"name": "rest", "when": {}, "channel": "beps"}]
    base = load_default()
    router = Router(base.directory, base.institutions, rules=rules)
    small = router.decide(req(amount_fen=999_999), DAY)
    again = router.decide(req(amount_fen=1_000_000), DAY)  # same side: remembered
    big = router.decide(req(amount_fen=1_000_001), DAY)
    assert (small.channel, again.channel, big.channel) == ("beps", "beps", "hvps")
    assert again.explain()["inputs"]["amount_fen"] == 1_000_000
    assert small.explain()["inputs"]["amount_fen"] == 999_999
    # Above the BEPS cap of the day is another side too, even with no rule on amounts.
    assert router.decide(req(amount_fen=5_000_001), DAY).channel == "hvps"
    # An amount the request itself gets wrong is refused, whatever was remembered.
    with pytest.raises(PaygateError):
        router.decide(req(amount_fen=0), DAY)
    # The window is part of what is remembered.
    closed = router.decide(req(amount_fen=2_000_000, when_closed="queue"), DAY,
                           hvps_open=False, next_hvps_opening=NEXT_OPENING)
    opened = router.decide(req(amount_fen=2_000_000, when_closed="queue"), DAY)
    assert (closed.action, opened.action) == ("queue", "send")


def test_a_closed_refusal_says_the_window_it_expected_and_the_next_opening_apart() -> None:
    """hvps_closed expects a time inside the business window with its hours and days
    (the router's own, set from the gateway's timetable), and tells the next opening as
    a field of its own, null when the caller does not know it."""
    router = load_default()
    router.hvps_window = "from 20:30 the evening before a working day until 17:00"
    refused = []
    for opening in (NEXT_OPENING, None):
        with pytest.raises(PaygateError) as error:
            router.decide(req(urgency="urgent", when_closed="refuse"), DAY, hvps_open=False,
                          next_hvps_opening=opening)
        refused.append(error.value.to_dict()["errors"])

    assert [[(e["code"], e["path"], e["value"]) for e in errors] for errors in refused] == [
        [("hvps_closed", "when_closed", "refuse")]] * 2
    assert {errors[0]["expected"] for errors in refused} == {
        "a time inside the HVPS business window, from 20:30 the evening before a working "
        "day until 17:00"}
    assert [errors[0]["next_opening"] for errors in refused] == [
        "2026-12-08T08:30:00+08:00", None]
    assert refused[1][0]["message"] == "the payment needs HVPS and HVPS is closed"
