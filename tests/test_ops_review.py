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
    # Marks, variation selectors, Hangul fillers and other characters a screen does not
    # show are compared without (an incoming payment's names cannot be refused for them).
    ("payee_name", "Blo\u0307cked Demo Trading Co", "screening_match_payee_name"),
    ("payee_name", "Bl\u00f6cked D\u00e9mo Trading Co", "screening_match_payee_name"),
    ("payee_name", "示\u0301例受限贸易有限公司", "screening_match_payee_name"),
    ("payee_name", "示例受限\ufe0f贸易有限公司", "screening_match_payee_name"),
    ("payee_name", "示例受限\U000e0100贸易有限公司", "screening_match_payee_name"),
    ("payer_name", "示例\u3164受限贸易有限公司", "screening_match_payer_name"),
    ("payer_name", "示例\uffa0受限贸易有限公司", "screening_match_payer_name"),
    ("payer_name", "示例\u115f受限\u1160贸易有限公司", "screening_match_payer_name"),
    ("payee_name", "Blocked\u034fDemo Trading Co", "screening_match_payee_name"),
    ("payee_name", "示例受限贸易\ue000有限公司", "screening_match_payee_name"),
    # Marks are taken off before case folding, which turns the combining ypogegrammeni
    # U+0345 into a letter (ι); the Arabic tatweel only stretches a line.
    ("payee_name", "Blocked\u0345 Demo Trading Co", "screening_match_payee_name"),
    ("payee_name", "示例受限\u0345贸易有限公司", "screening_match_payee_name"),
    ("payee_name", "Blocked Demo\u0640 Trading Co", "screening_match_payee_name"),
    ("payer_name", "示例受限\u0640贸易有限公司", "screening_match_payer_name"),
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


def settled(path: Path) -> None:
    """The file's modification time put SETTLE_S and more in the past: a change left
    alone since, which the next look reads."""
    past_ns = path.stat().st_mtime_ns - int((review.SETTLE_S + 5) * 1e9)
    os.utime(path, ns=(past_ns, past_ns))


def test_a_configured_list_replaces_the_demo_list(tmp_path: Path) -> None:
    """The file named in screening_file is the list, and edits to it take effect once
    the file has been left alone for SETTLE_S; not before, while it may be half written."""
    path = tmp_path / "blocked.toml"
    path.write_text('names = ["收款单位乙"]\naccounts = []\n', encoding="utf-8")
    settings = Settings(screening_file=str(path))
    first = review.screen(Transfer(), settings)
    path.write_text('names = ["someone else"]\naccounts = []\n', encoding="utf-8")
    while_written = review.screen(Transfer(), settings)
    settled(path)
    second = review.screen(Transfer(), settings)

    assert first == while_written == "screening_match_payee_name" and second is None


def test_a_malformed_list_is_refused(tmp_path: Path) -> None:
    """A list that is not lists of text, read with no list in force before, is an error
    (503: the bank's file, not the request), never an empty list."""
    path = tmp_path / "blocked.toml"
    path.write_text('names = "just one"\naccounts = [1]\n', encoding="utf-8")

    with pytest.raises(PaygateError) as exc:
        review.screen(Transfer(), Settings(screening_file=str(path)))

    assert [p.code for p in exc.value.problems] == ["screening_list_malformed"] * 2
    assert exc.value.status == 503


# A change of a good list that cannot be read: (file name, its text or None for the file
# deleted, the problems' codes and paths, a fragment of the first problem's words).
BROKEN = [
    ("not_toml.toml", 'names = [ "x", ', [("screening_file_unreadable", "{path}")],
     "is not TOML: "),
    ("deleted.toml", None, [("screening_file_unreadable", "{path}")], "does not exist"),
    ("bad_entries.toml", "names = [1]\n",
     [("screening_list_malformed", "bad_entries.toml/names")],
     "entry 0 of `names` is not text but int"),
    ("empty.toml", "", [("screening_list_malformed", "empty.toml")],
     "neither `names` nor `accounts`"),
    ("not_utf8.toml", b'names = ["\xff"]\n', [("screening_file_unreadable", "{path}")],
     "cannot be read: "),
]


@pytest.mark.parametrize("name, text, problems, words", BROKEN)
def test_a_change_that_cannot_be_read_keeps_the_last_good_list(
        tmp_path: Path, name: str, text: str | bytes | None,
        problems: list[tuple[str, str]], words: str) -> None:
    """The listed payee is still held while the broken file is in place; the problem is
    kept for the operators (`looked_at`), and cleared when a good file is read again."""
    path = tmp_path / name
    path.write_text('names = ["收款单位乙"]\n', encoding="utf-8")
    settings = Settings(screening_file=str(path))
    before = review.screen(Transfer(), settings)
    if text is None:
        path.unlink()
    else:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        settled(path)
    during = review.screen(Transfer(), settings)
    looked = review.looked_at(str(path))
    refused = [(p.code, p.path) for p in looked.problems]
    told = looked.problems[0].to_dict()["message"]
    path.write_text('names = ["someone else"]\n', encoding="utf-8")
    settled(path)
    after = review.screen(Transfer(), settings)

    assert before == during == "screening_match_payee_name"
    assert refused == [(code, where.format(path=path)) for code, where in problems]
    assert words in told and str(path.name) in told
    assert after is None and review.looked_at(str(path)).problems == []


def changed(tmp_path: Path, text: str) -> tuple[Path, Settings]:
    """A list file read well, then changed to `text` and left alone since: the next
    payment screened reads the change."""
    path = tmp_path / "screen.toml"
    path.write_text('names = ["x"]\n', encoding="utf-8")
    settings = Settings(screening_file=str(path))
    review.screen(Transfer(), settings)
    path.write_text(text, encoding="utf-8")
    settled(path)
    return path, settings


def test_a_toml_error_names_its_line_and_column(tmp_path: Path) -> None:
    """The problem kept for the operators carries the parser's line and column."""
    path, settings = changed(tmp_path, 'names = ["x"]\naccounts = ["y" "z"]\n')
    review.screen(Transfer(), settings)

    assert "(at line 2, column 17)" in review.looked_at(str(path)).problems[0].message


def test_a_refused_change_is_logged_once_not_once_a_payment(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Many payments screened against a broken file make one log line; a good file read
    again makes one more, the list taken into force."""
    path, settings = changed(tmp_path, 'names = [ "x", ')
    with caplog.at_level("INFO", logger="paygate.ops"):
        # The first list's own line (logged at INFO when an earlier test in the process
        # turned the gateway's logging on) is not this test's business.
        caplog.clear()
        for _ in range(5):
            review.screen(Transfer(), settings)
        path.write_text('names = ["x"]\n', encoding="utf-8")
        settled(path)
        for _ in range(5):
            review.screen(Transfer(), settings)
    events = [r.getMessage().split()[0] for r in caplog.records]

    assert events == ["event=screening_file_refused", "event=screening_list_in_force"]


def test_an_editor_saving_in_place_never_leaves_a_payment_unscreened(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An editor truncates the file, then writes it in pieces: payments screened between
    meet the list in force before (the file just changed is not read), and no refusal
    is told for a save under way; once the file is left alone the new list is read."""
    path = tmp_path / "screen.toml"
    path.write_text('names = ["收款单位乙"]\n', encoding="utf-8")
    settings = Settings(screening_file=str(path))
    answers = [review.screen(Transfer(), settings)]
    with caplog.at_level("INFO", logger="paygate.ops"):
        for piece in ("", 'names = ["收款单', 'names = ["收款单位乙", "另一家"]\n'):
            path.write_text(piece, encoding="utf-8")
            answers.append(review.screen(Transfer(), settings))
    settled(path)
    answers.append(review.screen(replace(Transfer(), payee_name="另一家"), settings))

    assert answers == ["screening_match_payee_name"] * 5
    # No refusal told (the lists taken into force are logged at INFO, which an earlier
    # test in the process may have turned on).
    told = [r.getMessage() for r in caplog.records
            if not r.getMessage().startswith("event=screening_list_in_force")]
    assert review.looked_at(str(path)).problems == [] and told == []


def test_a_file_written_while_it_is_read_is_not_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A settled file that changes while it is read (a writer started again) is judged
    at the next look; the list in force stays meanwhile."""
    path = tmp_path / "screen.toml"
    path.write_text('names = ["收款单位乙"]\n', encoding="utf-8")
    settings = Settings(screening_file=str(path))
    review.screen(Transfer(), settings)
    path.write_text('names = ["someone else"]\n', encoding="utf-8")
    settled(path)
    real = review.BlockedList.load

    def load_while_written(cls: type, p: str) -> review.BlockedList:
        loaded = real(p)
        path.write_text('names = ["someone else", "more"]\n', encoding="utf-8")
        return loaded
    monkeypatch.setattr(review.BlockedList, "load", classmethod(load_while_written))
    during = review.screen(Transfer(), settings)
    monkeypatch.setattr(review.BlockedList, "load", classmethod(lambda cls, p: real(p)))
    settled(path)
    after = review.screen(Transfer(), settings)

    assert during == "screening_match_payee_name" and after is None


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


# Names that differ by a mark of a script whose marks spell (a kana's dakuten, an
# Indic or Thai vowel sign, an Arabic vowel) are other names; the accents of Latin,
# Greek and Cyrillic letters, and any mark on a Han character, are decoration.
OTHER_NAMES = [
    ("バンダイ", "ハンタイ"),
    ("ヤマダ", "ヤマタ"),
    ("がく", "かく"),
    ("महेश", "महश"),
    ("มีนา", "มนา"),
    ("حَسَن", "حسن"),
    ("김민수", "김민숙"),
    ("张伟", "王伟"),
]
SAME_NAMES = [
    ("ｶﾞｸ", "ガク"),                     # half-width kana with its voiced mark
    ("Jos\u00e9 Nguy\u1ec5n", "Jose Nguyen"),
    ("\u0401\u043b\u043a\u0438\u043d", "\u0415\u043b\u043a\u0438\u043d"),  # Ёлкин, Елкин
    ("\u0301Blocked", "Blocked"),         # a mark on no letter
    ("示\u0301例", "示例"),
    ("張偉", "张伟"),
    ("김민수", "김민수"),
]


@pytest.mark.parametrize("name, other", OTHER_NAMES)
def test_names_that_differ_by_a_mark_that_spells_are_not_one_name(name: str, other: str
                                                                 ) -> None:
    assert review.normalise(name) != review.normalise(other)


@pytest.mark.parametrize("name, other", SAME_NAMES)
def test_names_that_differ_by_decoration_are_one_name(name: str, other: str) -> None:
    assert review.normalise(name) == review.normalise(other)


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


# A key other than `names` and `accounts`: (the file's text, fragments of the words).
UNKNOWN_KEYS = [
    ('names = ["坏人公司"]\nacounts = ["6200000000009999"]\n',
     ["an unknown key", "`acounts` besides `names`", "only the keys `names` and `accounts`"]),
    ('nams = ["坏人公司"]\n', ["neither `names` nor `accounts`", "it has `nams`"]),
    ("", ["neither `names` nor `accounts`", "the file holds no key"]),
]


@pytest.mark.parametrize("text, words", UNKNOWN_KEYS)
def test_a_misspelt_key_is_refused_naming_it(tmp_path: Path, text: str,
                                             words: list[str]) -> None:
    """A misspelt key would leave its entries unscreened without a word: the file is
    refused, naming the key found and the ones expected."""
    path = tmp_path / "screen.toml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(PaygateError) as exc:
        review.BlockedList.load(path)

    [problem] = exc.value.problems
    assert problem.code == "screening_list_malformed"
    assert all(w in problem.message for w in words), problem.message


def test_a_misspelt_key_in_a_change_keeps_the_last_good_list(tmp_path: Path) -> None:
    """The account under the misspelt key is not taken as "no accounts": the change is
    refused and the last good list (which holds the account) screens."""
    path, settings = changed(tmp_path, 'names = ["坏人公司"]\nacounts = ["6222000011112222"]\n')
    path.write_text('names = ["x"]\naccounts = ["6222000011112222"]\n', encoding="utf-8")
    settled(path)
    review.screen(Transfer(), settings)
    path.write_text('names = ["坏人公司"]\nacounts = ["6222000011112222"]\n',
                    encoding="utf-8")
    settled(path)

    assert review.screen(Transfer(), settings) == "screening_match_payee_account"
    assert "`acounts`" in review.looked_at(str(path)).problems[0].message


def test_every_bad_entry_is_told_with_the_ones_that_fold_to_nothing(tmp_path: Path) -> None:
    """Each bad entry is named by its index (never quoted): not text, blank, or only
    spaces and punctuation (it would match nothing); a blank one expects non-blank
    text."""
    path = tmp_path / "screen.toml"
    path.write_text('names = [1, "", "---", "。。", "- -", "示例丙"]\n'
                    'accounts = ["6222", "--"]\n', encoding="utf-8")

    with pytest.raises(PaygateError) as exc:
        review.BlockedList.load(path)

    names, accounts = exc.value.problems
    assert "5 bad entries of `names`" in names.message
    assert "entry 0 of `names` is not text but int" in names.message
    assert "entry 1 of `names` is blank" in names.message
    for i in (2, 3, 4):
        assert f"entry {i} of `names` is only spaces and punctuation" in names.message
    assert "entry 5" not in names.message and "non-blank text" in names.expected
    assert "entry 1 of `accounts` is only spaces" in accounts.message


def test_the_bad_entries_told_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "screen.toml"
    path.write_text("names = [" + ", ".join(['""'] * 25) + "]\n", encoding="utf-8")

    with pytest.raises(PaygateError) as exc:
        review.BlockedList.load(path)

    message = exc.value.problems[0].message
    assert "25 bad entries" in message and "(and 5 more)" in message
    assert "entry 19 " in message and "entry 20 " not in message


def test_each_list_taken_into_force_is_logged_with_its_digest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The first list and every change taken (an emptied one too) are logged with the
    counts, the sha256 of the file's bytes and the counts they replace."""
    import hashlib
    path = tmp_path / "screen.toml"
    first = 'names = ["a公司", "b公司"]\naccounts = ["1"]\n'
    path.write_text(first, encoding="utf-8")
    settings = Settings(screening_file=str(path))
    with caplog.at_level("INFO", logger="paygate.ops"):
        review.screen(Transfer(), settings)
        path.write_text("names = []\naccounts = []\n", encoding="utf-8")
        settled(path)
        review.screen(Transfer(), settings)
    lines = [r.getMessage() for r in caplog.records]
    taken = review.looked_at(str(path)).taken

    assert lines[0] == (f"event=screening_list_in_force file={path} names=2 accounts=1 "
                        f"sha256={hashlib.sha256(first.encode()).hexdigest()} "
                        "previous_names=none previous_accounts=none")
    assert lines[1].endswith("previous_names=2 previous_accounts=1")
    assert (taken.names, taken.accounts, taken.emptied) == (0, 0, True)


def test_a_restart_on_a_broken_file_screens_with_the_copy_of_the_last_good_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The list taken is copied to the data folder; a gateway started again (no list read
    in this process) while the file is broken screens with that copy, the file's problem
    kept for the alert. A copy of another file is not taken: nothing is in force then."""
    path, data = tmp_path / "screen.toml", tmp_path / "data"
    data.mkdir()
    path.write_text('names = ["收款单位乙"]\n', encoding="utf-8")
    settings = Settings(screening_file=str(path))
    review.keep_last_good(str(path), data)
    kept = (data / review.LAST_GOOD_FILE).exists()
    path.write_text('names = [ "x", ', encoding="utf-8")
    settled(path)
    monkeypatch.setattr(review, "_FILES", {})  # a new process
    review.keep_last_good(str(path), data)
    restarted = review.screen(Transfer(), settings)
    looked = review.looked_at(str(path))
    other = tmp_path / "other.toml"
    other.write_text('names = [ "x", ', encoding="utf-8")
    settled(other)
    review.keep_last_good(str(other), data)

    assert kept and restarted == "screening_match_payee_name"
    assert [p.code for p in looked.problems] == ["screening_file_unreadable"]
    assert looked.taken.names == 1
    with pytest.raises(PaygateError) as exc:
        review.screen(Transfer(), Settings(screening_file=str(other)))
    assert exc.value.status == 503
