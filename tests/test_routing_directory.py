"""The participant directory: loading, dated lookups, refusals and updates."""

from __future__ import annotations

import logging
from datetime import date, datetime

import pytest

from gateway.clock import SHANGHAI, ManualClock
from gateway.errors import PaygateError
from routing import Directory
from routing.defaults import PARTICIPANTS_PATH

TODAY = date(2026, 12, 7)
TOMORROW = date(2026, 12, 8)
NOON_TODAY = datetime(2026, 12, 7, 12, 0, tzinfo=SHANGHAI)


def row(code: str, direct: str | None = None, **changes: object) -> dict[str, object]:
    """A directory row as the CSV has it; `direct` None makes a direct participant."""
    out: dict[str, object] = {
        "bank_code": code, "name": f"Bank {code}", "direct_participant": direct or code,
        "city_node": "1000", "kind": "indirect" if direct else "direct", "status": "active",
        "effective_from": "2024-01-01", "effective_to": "", "version": "1",
    }
    out.update(changes)
    return out


def base_rows() -> list[dict[str, object]]:
    return [
        row("999100000019"), row("999100000027", "999100000019"),
        row("888200000015"), row("777300000011"),
        row("888200000023", "888200000015", effective_to="2026-12-07"),
        row("888200000023", "777300000011", effective_from="2026-12-08", version="2"),
        row("666600000010", status="inactive"),
        row("555500000013", effective_from="2026-12-08"),
    ]


def codes(error: pytest.ExceptionInfo[PaygateError]) -> list[str]:
    return [problem.code for problem in error.value.problems]


def test_shipped_directory_loads_and_answers_for_our_bank_and_the_peers() -> None:
    """The shipped CSV has our bank, its two branches and two peers with branches."""
    directory = Directory.load(PARTICIPANTS_PATH)

    found = {code: directory.lookup(code, TODAY) for code in (
        "999100000019", "999100000027", "999100000035", "888200000015", "888200000023",
        "777300000011", "777300000029")}

    assert {code: p.direct_participant for code, p in found.items()} == {
        "999100000019": "999100000019", "999100000027": "999100000019",
        "999100000035": "999100000019", "888200000015": "888200000015",
        "888200000023": "888200000015", "777300000011": "777300000011",
        "777300000029": "777300000011",
    }
    assert found["999100000027"].kind == "indirect"
    assert found["999100000019"].kind == "direct"


@pytest.mark.parametrize("on_date, direct, version", [
    (TODAY, "888200000015", 1),
    (TOMORROW, "777300000011", 2),
    (date(2030, 1, 1), "777300000011", 2),
])
def test_lookup_picks_the_row_in_force_on_the_day(on_date: date, direct: str,
                                                  version: int) -> None:
    """An entry that changes tomorrow answers with today's row today."""
    directory = Directory.load(base_rows())

    found = directory.lookup("888200000023", on_date)

    assert (found.direct_participant, found.version) == (direct, version)


@pytest.mark.parametrize("code, on_date, expected", [
    ("９99100000019", TODAY, "bank_code_must_be_12_ascii_digits"),
    ("99910000001９", TODAY, "bank_code_must_be_12_ascii_digits"),
    ("99910000001", TODAY, "bank_code_must_be_12_ascii_digits"),
    ("9991000000190", TODAY, "bank_code_must_be_12_ascii_digits"),
    ("99910000001a", TODAY, "bank_code_must_be_12_ascii_digits"),
    (" 99910000001", TODAY, "bank_code_must_be_12_ascii_digits"),
    ("", TODAY, "bank_code_must_be_12_ascii_digits"),
    (None, TODAY, "bank_code_must_be_12_ascii_digits"),
    (999100000019, TODAY, "bank_code_must_be_12_ascii_digits"),
    ("123456789012", TODAY, "bank_code_unknown"),
    ("555500000013", TODAY, "bank_code_unknown"),
    ("999100000019", date(2023, 12, 31), "bank_code_unknown"),
    ("666600000010", TODAY, "bank_code_inactive"),
])
def test_lookup_refuses_malformed_unknown_and_inactive_codes(code: object, on_date: date,
                                                             expected: str) -> None:
    """Full-width digits, unknown, not-yet-effective and inactive codes are refused."""
    directory = Directory.load(base_rows())

    with pytest.raises(PaygateError) as error:
        directory.lookup(code, on_date, "payee_bank")

    assert codes(error) == [expected]
    assert error.value.problems[0].path == "payee_bank"


def test_a_code_not_yet_in_force_says_when_it_takes_effect() -> None:
    """The refusal of a not-yet-effective code names the day its entry starts."""
    directory = Directory.load(base_rows())

    with pytest.raises(PaygateError) as error:
        directory.lookup("555500000013", TODAY)

    assert "takes effect on 2026-12-08" in error.value.problems[0].message


@pytest.mark.parametrize("rows, expected", [
    ([row("99910000001９")],
     ["bank_code_must_be_12_ascii_digits", "direct_participant_must_be_12_ascii_digits"]),
    ([row("999100000019", city_node="10")], ["city_node_must_be_4_ascii_digits"]),
    ([row("999100000019", kind="both")], ["participant_kind_unknown"]),
    ([row("999100000019", status="closed")], ["participant_status_unknown"]),
    ([row("999100000019", name="")], ["participant_name_must_have_1_to_140_characters"]),
    ([row("999100000019", version="v1")], ["participant_version_must_be_an_integer"]),
    ([row("999100000019", effective_from="2024/01/01")],
     ["effective_from_must_be_an_iso_date"]),
    ([row("999100000019", effective_to="someday")], ["effective_to_must_be_an_iso_date"]),
    ([row("999100000019", effective_to="2023-01-01")],
     ["effective_to_must_not_precede_effective_from"]),
    ([row("999100000019", direct_participant="888200000015")],
     ["direct_participant_must_settle_through_itself"]),
    ([row("999100000019"), row("999100000027", "999100000027")],
     ["indirect_participant_must_settle_through_a_direct_one"]),
    ([row("999100000027", "999100000019")], ["direct_participant_unknown"]),
    ([row("999100000019"), row("999100000019", effective_from="2025-01-01")],
     ["participant_ranges_must_not_overlap"]),
    ([row("999100000019", city_node="x", kind="y", status="z")],
     ["city_node_must_be_4_ascii_digits", "participant_kind_unknown",
      "participant_status_unknown"]),
])
def test_loading_reports_every_broken_row(rows: list[dict[str, object]],
                                          expected: list[str]) -> None:
    """Each broken rule of the directory file is named, all of them at once."""
    with pytest.raises(PaygateError) as error:
        Directory.load(rows)

    assert codes(error) == expected


def test_a_csv_without_the_documented_columns_is_refused(tmp_path) -> None:
    """A file missing columns is refused before any row is read."""
    path = tmp_path / "participants.csv"
    path.write_text("bank_code,name\n999100000019,x\n", encoding="utf-8")

    with pytest.raises(PaygateError) as error:
        Directory.load(path)

    assert codes(error) == ["participants_csv_columns_missing"]


def test_an_update_takes_effect_from_its_day_and_cuts_the_old_row() -> None:
    """A row for tomorrow leaves today's answer alone and closes the old row tonight."""
    directory = Directory.load(base_rows())
    change = row("999100000027", "999100000019", name="Renamed", effective_from="2026-12-08",
                 version="7")

    directory.apply_update([change], logged_by="ops-alice", now=NOON_TODAY)

    assert directory.lookup("999100000027", TODAY).name == "Bank 999100000027"
    assert directory.lookup("999100000027", TODAY).effective_to == TODAY
    assert directory.lookup("999100000027", TOMORROW).name == "Renamed"
    assert directory.lookup("999100000027", TOMORROW).version == 7


def test_an_update_replaces_later_rows_of_the_same_code() -> None:
    """A new row supersedes every row of its code that would have started on or after it."""
    directory = Directory.load(base_rows())
    change = row("888200000023", "888200000015", effective_from="2026-12-08", version="3")

    directory.apply_update([change], logged_by="ops-alice", now=NOON_TODAY)

    assert directory.lookup("888200000023", date(2027, 1, 1)).version == 3
    assert directory.lookup("888200000023", TODAY).version == 1


@pytest.mark.parametrize("effective_from", ["2026-12-06", "2026-12-07"])
def test_a_retroactive_update_is_refused_and_changes_nothing(effective_from: str) -> None:
    """A row starting on a day already begun is refused, and so is the rest of the update."""
    directory = Directory.load(base_rows())
    before = directory.rows()
    rows = [row("777300000029", "777300000011", effective_from="2026-12-09"),
            row("999100000027", "999100000019", effective_from=effective_from)]

    with pytest.raises(PaygateError) as error:
        directory.apply_update(rows, logged_by="ops-alice", now=NOON_TODAY)

    assert codes(error) == ["directory_update_retroactive"]
    assert directory.rows() == before


def test_an_update_at_midnight_may_start_that_same_day() -> None:
    """The start of a day is not in the past at the very instant the day begins."""
    directory = Directory.load(base_rows())
    midnight = datetime(2026, 12, 8, 0, 0, tzinfo=SHANGHAI)

    directory.apply_update([row("777300000029", "777300000011", effective_from="2026-12-08")],
                           logged_by="nightly-job", now=midnight)

    assert directory.lookup("777300000029", TOMORROW).direct_participant == "777300000011"


def test_an_update_uses_the_directory_clock_when_no_time_is_given() -> None:
    """The update time comes from the injected clock, never from the machine."""
    directory = Directory.load(base_rows(), clock=ManualClock(NOON_TODAY))

    with pytest.raises(PaygateError) as error:
        directory.apply_update([row("999100000027", "999100000019",
                                    effective_from="2026-12-07")], logged_by="ops-alice")

    assert codes(error) == ["directory_update_retroactive"]


def test_an_update_is_logged_as_key_value_pairs(caplog: pytest.LogCaptureFixture) -> None:
    """Each applied row gives one structured log line naming who applied it."""
    directory = Directory.load(base_rows())
    caplog.set_level(logging.INFO, logger="paygate.routing.directory")

    directory.apply_update([row("777300000029", "777300000011", effective_from="2026-12-09",
                                version="4")], logged_by="ops-alice", now=NOON_TODAY)

    assert [record.getMessage() for record in caplog.records] == [
        "event=directory_row_applied bank_code=777300000029 effective_from=2026-12-09 "
        "effective_to=open status=active direct_participant=777300000011 version=4 "
        "logged_by=ops-alice applied_at=2026-12-07T12:00:00+08:00"
    ]


def test_an_update_needs_someone_to_log_it() -> None:
    """An update without a name for who applied it is refused."""
    directory = Directory.load(base_rows())

    with pytest.raises(PaygateError) as error:
        directory.apply_update([row("777300000029", "777300000011",
                                    effective_from="2026-12-09")], logged_by=" ",
                               now=NOON_TODAY)

    assert codes(error) == ["directory_update_needs_logged_by"]


def test_an_update_that_leaves_an_orphan_indirect_participant_is_refused() -> None:
    """An indirect participant must settle through a code the directory knows as direct."""
    directory = Directory.load(base_rows())

    with pytest.raises(PaygateError) as error:
        directory.apply_update([row("777300000029", "444400000012",
                                    effective_from="2026-12-09")], logged_by="ops-alice",
                               now=NOON_TODAY)

    assert codes(error) == ["direct_participant_unknown"]


def test_loading_a_new_file_applies_only_the_changed_rows() -> None:
    """Unchanged rows may lie in the past; a changed row must start on a day ahead."""
    directory = Directory.load(base_rows())
    new_file = base_rows() + [row("777300000029", "777300000011",
                                  effective_from="2026-12-10", version="5")]

    applied = directory.apply_file(new_file, logged_by="ops-bob", now=NOON_TODAY)

    assert [(p.bank_code, p.version) for p in applied] == [("777300000029", 5)]
    assert directory.find("777300000029", date(2026, 12, 10)) is not None


def test_loading_a_new_file_with_a_past_change_is_refused() -> None:
    """A file that rewrites a row already in force is a retroactive update."""
    directory = Directory.load(base_rows())
    new_file = [dict(r) for r in base_rows()]
    new_file[1]["name"] = "Rewritten history"

    with pytest.raises(PaygateError) as error:
        directory.apply_file(new_file, logged_by="ops-bob", now=NOON_TODAY)

    assert codes(error) == ["directory_update_retroactive"]
    assert directory.lookup("999100000027", TODAY).name == "Bank 999100000027"


def test_loading_the_same_file_again_changes_nothing() -> None:
    """Reloading an unchanged file applies no row."""
    directory = Directory.load(PARTICIPANTS_PATH)

    applied = directory.apply_file(PARTICIPANTS_PATH, logged_by="ops-bob", now=NOON_TODAY)

    assert applied == []
