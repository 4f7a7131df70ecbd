"""Day end from stored figures: a close reads only the lines since the last one, refuses
tampered books all the same, gives the daily statement the whole book gives, and the
audit re-checks every stored figure against the history."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ledger_cli import ledger_command
from ledger import Ledger, LedgerError, connect
from ledger.chart import HOLDS_IN_TRANSIT
from ledger.dayend import day_rows_from_lines, day_trial_balance
from ledger.reports import book_lines, digest, digest_line
from ledger.testing import WORK_DATE, customer_account, fresh_books, open_funded

DAYS = [(WORK_DATE + timedelta(days=n)).isoformat() for n in range(6)]


@pytest.fixture
def books(database_url):
    db, led = fresh_books(database_url, clearing_fen=10_000_000)
    payer = open_funded(db, led, 1, "张三", 1_000_000)
    payee = open_funded(db, led, 2, "李四", 50_000)
    yield db, led, payer, payee
    db.close()


def _post_day(db, led, payer, day, count=3, later=None):
    """A few holds on `day`, one settled and one released; a hold dated `later` too."""
    with db.transaction() as tx:
        holds = [led.hold(tx, f"h-{day}-{n}", payer, 100 + n, day, f"p{n}")
                 for n in range(count)]
        led.settle(tx, f"s-{day}", holds[0], day)
        led.release(tx, f"r-{day}", holds[1], day)
        if later:
            led.hold(tx, f"h-{day}-later", payer, 7, later, "pl")


def _close(db, led, day):
    with db.transaction() as tx:
        return led.close_day(tx, day)


def _full_figures(db, led, day):
    with db.transaction() as tx:
        return (led.day_rows(tx, day), day_rows_from_lines(tx, day),
                day_trial_balance(tx, day), led.trial_balance(tx, day))


def test_each_close_chains_its_digest_on_the_previous_one(books):
    """A day's digest is the previous closed day's digest, a newline and the lines dated
    after it up to the day, in posting order; the first day hashes its lines alone."""
    db, led, payer, _ = books
    closes = []
    for n, day in enumerate(DAYS[:3]):
        _post_day(db, led, payer, day, later=DAYS[n + 1])
        closes.append(_close(db, led, day))
    with db.transaction() as tx:
        lines = list(book_lines(tx))
    expected, previous = [], ""
    for day in DAYS[:3]:
        hasher = hashlib.sha256(previous.encode() + b"\n" if previous else b"")
        after = expected[-1][0] if expected else ""
        for line in lines:
            if after < line[2] <= day:
                hasher.update(digest_line(line))
        previous = "sha256:" + hasher.hexdigest()
        expected.append((day, previous))

    assert [(c.work_date, c.digest) for c in closes] == expected
    assert [c.entries for c in closes] == [3 + 5, 6, 6]  # 3 opening, 5 a day, 1 dated early


def test_closes_give_the_statement_and_trial_balance_the_whole_book_gives(books):
    db, led, payer, _ = books
    for n, day in enumerate(DAYS[:4]):
        _post_day(db, led, payer, day, count=2 + n, later=DAYS[n + 2])
        _close(db, led, day)
    for day in DAYS[:4]:
        stored_rows, full_rows, stored_balance, full_balance = _full_figures(db, led, day)
        assert stored_rows == full_rows
        assert stored_balance == full_balance
    with db.transaction() as tx:
        assert led.audit(tx).findings == ()


def _refused_close(db, led, payer, account_no, new_balance_sql):
    """With DAYS[0] closed and DAYS[1] posted, set `account_no`'s running balance to
    `new_balance_sql` and close DAYS[1]: the refusal's code and value, and the balance
    the account had before."""
    _close(db, led, DAYS[0])
    _post_day(db, led, payer, DAYS[1])
    with db.transaction() as tx:
        before = led.balance(tx, account_no)
        tx.execute(f"UPDATE ledger_account SET balance_fen = {new_balance_sql}"
                   " WHERE account_no = ?", (account_no,))
        with pytest.raises(LedgerError) as refused:
            led.close_day(tx, DAYS[1])
    return refused.value.code, refused.value.problems[0].value, before


def test_a_tampered_balance_of_an_account_that_did_not_move_stops_the_close(books):
    """An account without lines since the last close is checked against its balance at
    that close."""
    db, led, payer, payee = books
    code, value, _ = _refused_close(db, led, payer, payee, "balance_fen - 5")

    assert code == "detail_ledgers_disagree"
    assert value == [(payee, 49_995, 50_000)]


def test_a_tampered_balance_of_an_account_that_moved_stops_the_close(books):
    db, led, payer, _ = books
    code, value, moved = _refused_close(db, led, payer, payer, "balance_fen + 1")

    assert code == "detail_ledgers_disagree"
    assert value == [(payer, moved + 1, moved)]


def test_a_moved_account_set_back_to_its_last_closing_balance_stops_the_close(books):
    """Lines that change a balance which then reads as it did at the last close."""
    db, led, payer, _ = books
    code, value, moved = _refused_close(db, led, payer, payer, "day_end_balance_fen")

    assert code == "detail_ledgers_disagree"
    assert value == [(payer, 1_000_000, moved)]


def test_a_tampered_line_of_the_day_stops_the_close(books):
    db, led, payer, _ = books
    _close(db, led, DAYS[0])
    _post_day(db, led, payer, DAYS[1])
    with db.transaction() as tx:
        [entry_id] = tx.query_one("SELECT MAX(entry_id) FROM ledger_entry WHERE work_date = ?",
                                  (DAYS[1],))
        tx.execute("UPDATE ledger_line SET amount_fen = amount_fen + 3"
                   " WHERE entry_id = ? AND line_no = 1", (entry_id,))
        with pytest.raises(LedgerError) as refused:
            led.close_day(tx, DAYS[1])

    assert refused.value.code in ("detail_ledgers_disagree", "books_do_not_balance")


def test_a_line_tampered_in_closed_history_is_found_by_the_audit(books, tmp_path):
    """The close reads only the lines since the last one; the audit reads them all."""
    db, led, payer, _ = books
    for day in DAYS[:3]:
        _post_day(db, led, payer, day)
        _close(db, led, day)
    with db.transaction() as tx:
        assert led.audit(tx).clean
        [entry_id] = tx.query_one("SELECT MIN(entry_id) FROM ledger_entry WHERE work_date = ?",
                                  (DAYS[1],))
        tx.execute("UPDATE ledger_line SET amount_fen = amount_fen + 3"
                   " WHERE entry_id = ? AND line_no = 1", (entry_id,))
    _post_day(db, led, payer, DAYS[3])
    _close(db, led, DAYS[3])
    with db.transaction() as tx:
        findings = led.audit(tx).findings

    checks = {(f.check, f.item.split()[0]) for f in findings}
    assert ("books_balance", "all") in checks
    assert ("day_digest", DAYS[1]) in checks and ("day_totals", DAYS[1]) in checks
    assert ("day_digest", DAYS[0]) not in checks
    assert any(check == "running_balance" for check, _ in checks)


def test_the_audit_finds_a_tampered_stored_figure(books):
    db, led, payer, payee = books
    _post_day(db, led, payer, DAYS[0])
    _close(db, led, DAYS[0])
    with db.transaction() as tx:
        tx.execute("UPDATE ledger_day_subject SET day_debit_fen = day_debit_fen + 1"
                   " WHERE work_date = ? AND subject = ?", (DAYS[0], HOLDS_IN_TRANSIT))
        tx.execute("UPDATE ledger_account SET day_end_balance_fen = 1, balance_fen = 1"
                   " WHERE account_no = ?", (payee,))
        tx.execute("UPDATE ledger_day SET entries = entries + 1, digest = 'sha256:0'")
        found = {(f.check, f.item) for f in led.audit(tx).findings}

    assert found == {("day_totals", f"{DAYS[0]} {HOLDS_IN_TRANSIT}"),
                     ("day_end_balance", payee), ("running_balance", payee),
                     ("day_entries", DAYS[0]), ("day_digest", DAYS[0])}


def test_the_day_sheets_of_a_closed_day_read_only_its_entries(books, tmp_path):
    db, led, payer, _ = books
    for n, day in enumerate(DAYS[:3]):
        _post_day(db, led, payer, day, later=DAYS[n + 1])
        _close(db, led, day)
    with db.transaction() as tx:
        [path_statement, path_sheets] = led.write_day_reports(tx, DAYS[1], tmp_path)
        tx.execute("DELETE FROM ledger_day_subject WHERE work_date = ?", (DAYS[1],))
        tx.execute("UPDATE ledger_day SET first_entry_id = NULL WHERE work_date = ?",
                   (DAYS[1],))
        again = led.write_day_reports(tx, DAYS[1], tmp_path / "from-lines")

    assert path_statement.read_text() == again[0].read_text()
    assert path_sheets.read_text() == again[1].read_text()
    assert f"h-{DAYS[0]}-later" not in path_sheets.read_text()  # vouchers, not event ids
    assert path_sheets.read_text().count("debit vouchers") >= 3


def _downgrade_to_version_2(db, led):
    """What a book made before the stored figures holds: no figures table or columns,
    and each closed day's digest over the whole book (here: the book as it is)."""
    with db.transaction() as tx:
        whole = digest(tx)
        tx.execute("DROP TABLE ledger_day_subject")
        for table, column in (("ledger_day", "first_entry_id"),
                              ("ledger_day", "last_entry_id"),
                              ("ledger_day", "next_entry_id"), ("ledger_day", "chained"),
                              ("ledger_account", "day_end_balance_fen")):
            tx.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        tx.execute("UPDATE ledger_day SET digest = ?", (whole,))
        tx.execute("UPDATE ledger_meta SET value = '2' WHERE key = 'schema_version'")


def test_a_version_2_book_upgrades_in_place_and_its_first_close_is_right(database_url):
    db, led = fresh_books(database_url, clearing_fen=10_000_000)
    payer = open_funded(db, led, 1, "张三", 1_000_000)
    payee = open_funded(db, led, 2, "李四", 50_000)
    for n, day in enumerate(DAYS[:2]):
        _post_day(db, led, payer, day, later=DAYS[n + 2])
        _close(db, led, day)
    _downgrade_to_version_2(db, led)
    db.close()

    db = connect(database_url)
    with db.transaction() as tx:
        led.install(tx)
        version = tx.query_one("SELECT value FROM ledger_meta WHERE key = 'schema_version'")
        old_digest = tx.query_one("SELECT digest FROM ledger_day WHERE work_date = ?",
                                  (DAYS[1],))[0]
    # The first close computes the figures from the whole book: a tampered balance is
    # refused (and the transaction rolled back).
    with pytest.raises(LedgerError) as refused, db.transaction() as tx:
        tx.execute("UPDATE ledger_account SET balance_fen = balance_fen + 1"
                   " WHERE account_no = ?", (payee,))
        led.close_day(tx, DAYS[2])
    _post_day(db, led, payer, DAYS[2])
    first = _close(db, led, DAYS[2])
    _post_day(db, led, payer, DAYS[3])
    _close(db, led, DAYS[3])
    with db.transaction() as tx:
        lines = [line for line in book_lines(tx) if DAYS[1] < line[2] <= DAYS[2]]
        findings = led.audit(tx).findings
    figures = [_full_figures(db, led, day) for day in DAYS[:4]]
    db.close()

    assert version == ("3",) and refused.value.code == "detail_ledgers_disagree"
    chained = hashlib.sha256(old_digest.encode() + b"\n")
    for line in lines:
        chained.update(digest_line(line))
    assert first.digest == "sha256:" + chained.hexdigest()
    assert first.entries == 6 and findings == ()
    for stored_rows, full_rows, stored_balance, full_balance in figures:
        assert stored_rows == full_rows and stored_balance == full_balance


def test_a_book_of_an_unknown_version_is_still_refused(database_url):
    db, led = fresh_books(database_url)
    with db.transaction() as tx:
        tx.execute("UPDATE ledger_meta SET value = '1' WHERE key = 'schema_version'")
    with db.transaction() as tx, pytest.raises(LedgerError) as refused:
        led.install(tx)
    db.close()

    assert refused.value.code == "ledger_schema_version_differs"


def test_paygate_ledger_verify_says_whether_the_book_is_clean(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    db, led = fresh_books(url, clearing_fen=1_000_000)
    payer = open_funded(db, led, 1, "张三", 10_000)
    _post_day(db, led, payer, DAYS[0])
    _close(db, led, DAYS[0])
    db.close()
    clean = ledger_command(["verify", "--database", url])
    first = capsys.readouterr().out
    db = connect(url)
    with db.transaction() as tx:
        tx.execute("UPDATE ledger_day SET digest = 'sha256:0'")
    db.close()
    tampered = ledger_command(["verify", "--database", url])
    second = capsys.readouterr().out

    assert (clean, tampered) == (0, 1)
    assert '"clean": true' in first and '"findings": []' in first
    assert '"check": "day_digest"' in second and '"findings_count": 1' in second


def test_paygate_ledger_verify_refuses_a_database_without_the_books(tmp_path, capsys):
    missing = ledger_command(["verify", "--database", f"sqlite:///{tmp_path / 'none.db'}"])
    first = capsys.readouterr().out
    connect(f"sqlite:///{tmp_path / 'other.db'}").close()
    other = ledger_command(["verify", "--database", f"sqlite:///{tmp_path / 'other.db'}"])
    second = capsys.readouterr().out

    assert (missing, other) == (2, 2)
    assert '"database_not_found"' in first and '"database_not_found"' in second
    assert not (tmp_path / "none.db").exists()


def test_paygate_ledger_verify_takes_a_plain_path_and_refuses_other_urls(tmp_path, capsys,
                                                                        monkeypatch):
    """--database may name the SQLite file by its path; a URL the gateway cannot open is
    refused in one answer naming --database, exit status 2, and so is such a
    `database_url` in the settings."""
    db, _ = fresh_books(f"sqlite:///{tmp_path / 'gateway.db'}")
    db.close()
    monkeypatch.chdir(tmp_path)
    by_path = ledger_command(["verify", "--database", "gateway.db"])
    first = capsys.readouterr().out
    other = ledger_command(["verify", "--database", "mysql://127.0.0.1/paygate"])
    second = json.loads(capsys.readouterr().out)
    missing = ledger_command(["verify", "--database", str(tmp_path / "none.db")])
    third = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("PAYGATE_DATABASE_URL", "/srv/gateway.db")
    configured = ledger_command(["verify"])
    fourth = json.loads(capsys.readouterr().out)

    assert by_path == 0 and '"clean": true' in first
    assert other == 2 and second["errors"][0]["code"] == "database_url_unsupported"
    assert second["errors"][0]["path"] == "--database"
    assert missing == 2 and third["errors"][0]["code"] == "database_not_found"
    assert configured == 2 and fourth["errors"][0]["path"] == "PAYGATE_DATABASE_URL"


def test_paygate_ledger_verify_finds_the_database_of_a_simulated_run(tmp_path, capsys,
                                                                    monkeypatch):
    """A data folder of `paygate demo` or `serve --simulate` keeps the gateway's database
    in its `gateway/` folder: `ledger verify` on that folder finds it there; with neither
    file, the refusal names both places looked at."""
    for name in ("PAYGATE_CONFIG", "PAYGATE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "run" / "gateway").mkdir(parents=True)
    db, _ = fresh_books(f"sqlite:///{tmp_path / 'run' / 'gateway' / 'gateway.db'}")
    db.close()
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PAYGATE_DATA_DIR", str(tmp_path / "run"))
    found = ledger_command(["verify"])
    first = capsys.readouterr().out
    monkeypatch.setenv("PAYGATE_DATA_DIR", str(tmp_path / "empty"))
    missing = ledger_command(["verify"])
    second = json.loads(capsys.readouterr().out)

    assert found == 0 and '"clean": true' in first
    assert missing == 2 and second["errors"][0]["code"] == "database_not_found"
    assert str(tmp_path / "empty" / "gateway.db") in second["errors"][0]["message"]
    assert str(tmp_path / "empty" / "gateway" / "gateway.db") in \
        second["errors"][0]["message"]
    assert not (tmp_path / "empty" / "gateway.db").exists()


day_plans = st.lists(
    st.lists(st.tuples(st.sampled_from(["deposit", "hold", "settle", "release", "later"]),
                       st.integers(0, 2), st.integers(1, 40_000)), max_size=8),
    min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(day_plans, st.lists(st.booleans(), min_size=6, max_size=6))
def test_random_books_close_to_the_figures_the_whole_book_gives(plans, closing):
    """Random days of postings (some dated ahead), closed or left open: every closed day's
    statement and trial balance equal the full computation, and the audit is clean."""
    db, led = fresh_books(clearing_fen=1_000_000)
    accounts = [customer_account(n + 1) for n in range(3)]
    with db.transaction() as tx:
        for account_no in accounts:
            led.open_customer_account(tx, account_no, "张三", "personal", WORK_DATE)
    holds: list[int] = []
    closed: list[str] = []
    for number, plan in enumerate(plans):
        day = (WORK_DATE + timedelta(days=number)).isoformat()
        for serial, (kind, pick, amount_fen) in enumerate(plan):
            _random_posting(db, led, f"{day}-{serial}", kind, accounts[pick], amount_fen, day,
                            holds)
        if closing[number] or number == len(plans) - 1:
            _close(db, led, day)
            closed.append(day)
    with db.transaction() as tx:
        for day in closed:
            assert led.day_rows(tx, day) == day_rows_from_lines(tx, day)
            assert day_trial_balance(tx, day) == led.trial_balance(tx, day)
        assert led.audit(tx).findings == ()
    db.close()


def _random_posting(db, led: Ledger, event_id, kind, account_no, amount_fen, day, holds):
    try:
        with db.transaction() as tx:
            if kind == "deposit":
                led.deposit(tx, event_id, account_no, amount_fen, day)
            elif kind in ("hold", "later"):
                later = (date.fromisoformat(day) + timedelta(days=2)).isoformat()
                holds.append(led.hold(tx, event_id, account_no, amount_fen,
                                      later if kind == "later" else day, "p"))
            elif holds:
                method = led.settle if kind == "settle" else led.release
                method(tx, event_id, holds.pop(amount_fen % len(holds)), day)
    except LedgerError:
        pass  # refused (not enough money, a hold dated ahead): nothing was posted
