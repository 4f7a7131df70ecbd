"""Which new payments wait for a second person: the amount review and the screening."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from gateway.errors import PaygateError
from gateway.ops import review


@dataclass(frozen=True)
class Transfer:
    amount_fen: int = 100_00
    payer_name: str = "示例客户甲"
    payer_account: str = "20000000001410300000013"
    payee_name: str = "收款单位乙"
    payee_account: str = "6222000011112222"


@dataclass
class Settings:
    review_threshold_fen: int = 0
    screening_file: str = ""


THRESHOLDS = [
    # threshold in fen, amount in fen, reason
    (0, 10**12, None),
    (1_000_000_00, 1_000_000_00, None),
    (1_000_000_00, 1_000_000_01, "review_amount_above_threshold"),
    (1, 2, "review_amount_above_threshold"),
]


@pytest.mark.parametrize("threshold_fen, amount_fen, reason", THRESHOLDS)
def test_review_above_the_threshold_only(threshold_fen: int, amount_fen: int,
                                         reason: str | None) -> None:
    """Amounts above a non-zero threshold need review; at the threshold they do not."""
    got = review.review_reason(Transfer(amount_fen=amount_fen), Settings(threshold_fen))

    assert got == reason


SCREENED = [
    # field changed, value, reason
    ("payee_name", "Blocked Demo Trading Co", "screening_match_payee_name"),
    ("payee_name", "  blocked demo TRADING co. ", "screening_match_payee_name"),
    ("payee_name", "ＢＬＯＣＫＥＤ　ＤＥＭＯ　ＴＲＡＤＩＮＧ　ＣＯ", "screening_match_payee_name"),
    ("payee_name", "示例受限贸易有限公司北京分公司", "screening_match_payee_name"),
    ("payer_name", "示例受限贸易有限公司", "screening_match_payer_name"),
    ("payee_account", "BLOCKED-DEMO-0001", "screening_match_payee_account"),
    ("payee_account", "BLOCKED-DEMO-00011", None),
    ("payee_name", "Blocked Demo", None),
    ("payee_name", "收款单位乙", None),
    # Look-alike letters of other scripts fold to the letter they imitate (TR39 skeleton):
    # a Cyrillic В, Greek Ο and Cyrillic а and о in the Latin name.
    ("payee_name", "\u0412locked Demo Trading Co", "screening_match_payee_name"),
    ("payee_name", "Blocked Dem\u039f Tr\u0430ding C\u043e", "screening_match_payee_name"),
    ("payee_name", "BLOCKED DEMO TRADING CO", "screening_match_payee_name"),
    ("payee_name", "Blocked Derno Trading Co", "screening_match_payee_name"),  # rn for m
    ("payee_name", "Unblocked Memo Trading", None),
    # Traditional characters count as the simplified ones (貿 for 贸), inside a longer
    # name too; and the list's own entries are folded the same way (below).
    ("payee_name", "示例受限貿易有限公司", "screening_match_payee_name"),
    ("payer_name", "示例受限貿易有限公司上海分公司", "screening_match_payer_name"),
    # Accounts: case, width, spaces and separators folded as for names.
    ("payee_account", "blocked-demo-0001", "screening_match_payee_account"),
    ("payer_account", "Blocked Demo 0001", "screening_match_payer_account"),
    ("payee_account", "ＢＬＯＣＫＥＤ－ＤＥＭＯ－０００１", "screening_match_payee_account"),
    ("payee_account", "blocked-demo-0002", None),
]


@pytest.mark.parametrize("field, value, reason", SCREENED)
def test_screening_against_the_demo_list(field: str, value: str, reason: str | None) -> None:
    """Names match after folding width, traditional characters, case, spaces,
    punctuation and look-alike letters; accounts after folding width, case, spaces and
    separators."""
    got = review.screen(replace(Transfer(), **{field: value}), Settings())

    assert got == reason


def test_a_configured_list_replaces_the_demo_list(tmp_path: Path) -> None:
    """The file named in screening_file is the list, and edits to it take effect."""
    path = tmp_path / "blocked.toml"
    path.write_text('names = ["收款单位乙"]\naccounts = []\n', encoding="utf-8")
    settings = Settings(screening_file=str(path))
    first = review.screen(Transfer(), settings)
    path.write_text('names = ["someone else"]\naccounts = []\n', encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    second = review.screen(Transfer(), settings)

    assert first == "screening_match_payee_name" and second is None


def test_a_malformed_list_is_refused(tmp_path: Path) -> None:
    """A list that is not lists of text is an error, never an empty list."""
    path = tmp_path / "blocked.toml"
    path.write_text('names = "just one"\naccounts = [1]\n', encoding="utf-8")

    with pytest.raises(PaygateError) as exc:
        review.screen(Transfer(), Settings(screening_file=str(path)))

    assert [p.code for p in exc.value.problems] == ["screening_list_malformed"] * 2


def test_hold_reason_puts_screening_first() -> None:
    """A blocked payee is reported as such even when the amount also needs review."""
    transfer = Transfer(amount_fen=10**10, payee_account="BLOCKED-DEMO-0001")

    assert review.hold_reason(transfer, Settings(1)) == "screening_match_payee_account"
    assert review.hold_reason(Transfer(amount_fen=10**10), Settings(1)) == \
        "review_amount_above_threshold"
    assert review.hold_reason(Transfer(), Settings()) is None


def test_a_name_is_normalised_once_per_list_and_the_answers_are_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A name screened again is answered from the list's answers (the same answer); more
    names than NAMES_KEPT_MAX drop them, and a name is then normalised anew."""
    normalised: list[str] = []
    real = review.normalise
    monkeypatch.setattr(review, "normalise", lambda name: normalised.append(name) or real(name))
    monkeypatch.setattr(review, "NAMES_KEPT_MAX", 3)
    blocked = review.BlockedList(frozenset({real("示例受限贸易有限公司")}), frozenset())
    answers = [blocked.matches_name(name) for name in
               ("示例受限贸易有限公司", "收款单位乙", "示例受限贸易有限公司", "收款单位乙")]
    kept = list(normalised)
    for name in ("甲", "乙", "丙"):
        blocked.matches_name(name)

    assert answers == [True, False, True, False]
    assert kept == ["示例受限贸易有限公司", "收款单位乙"]
    assert blocked.matches_name("示例受限贸易有限公司") is True
    assert normalised[-1] == "示例受限贸易有限公司"


def test_a_list_written_in_traditional_characters_or_small_letters_matches(
        tmp_path: Path) -> None:
    """The list's entries are folded as payments' names and accounts are: an entry in
    traditional characters stops the simplified spelling, an account listed in small
    letters with spaces stops the one written in capitals with dashes."""
    path = tmp_path / "blocked.toml"
    path.write_text('names = ["測試貿易公司"]\naccounts = ["acct 77-01"]\n',
                    encoding="utf-8")
    settings = Settings(screening_file=str(path))

    assert review.screen(replace(Transfer(), payee_name="测试贸易公司"), settings) \
        == "screening_match_payee_name"
    assert review.screen(replace(Transfer(), payee_account="ACCT-7701"), settings) \
        == "screening_match_payee_account"
    assert review.screen(Transfer(), settings) is None


def test_the_batch_form_reads_the_list_once(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`hold_reason.for_batch` looks the list up once for all of a batch's transfers and
    answers as `hold_reason` does for each."""
    looked_up = []
    real = review.BlockedList.for_path
    monkeypatch.setattr(review.BlockedList, "for_path",
                        classmethod(lambda cls, path: looked_up.append(path) or real(path)))
    settings = Settings(review_threshold_fen=500_00)
    transfers = [Transfer(), replace(Transfer(), payee_name="示例受限貿易有限公司"),
                 replace(Transfer(), amount_fen=500_01),
                 replace(Transfer(), payee_account="blocked-demo-0001")]

    batch = review.hold_reason.for_batch(settings)
    got = [batch(t) for t in transfers]

    assert looked_up == [str(review.DEMO_LIST)]
    assert got == [None, "screening_match_payee_name", "review_amount_above_threshold",
                   "screening_match_payee_account"]
    assert got == [review.hold_reason(t, settings) for t in transfers]
