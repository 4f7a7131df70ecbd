"""Operators of the console: the file, the levels and the password hashes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import PaygateError
from gateway.ops.operators import DEMO_FILE, Directory, hash_password, load, verify_password

GOOD = hash_password("right password")


def test_demo_operators_have_the_documented_levels_and_passwords() -> None:
    """op1 is an operator, sup1 a supervisor, dir1 a director; passwords are user-demo."""
    directory = Directory()
    levels = {o.user: o.level for o in directory.all()}

    assert directory.is_demo and directory.path == DEMO_FILE
    assert {"op1": "00", "sup1": "20", "dir1": "30"}.items() <= levels.items()
    assert all(verify_password(f"{user}-demo", directory.get(user).password_hash)
               for user in ("op1", "sup1", "dir1"))


PASSWORDS = [
    ("right password", True),
    ("right password ", False),
    ("Right password", False),
    ("", False),
    ("x" * 10_000, False),
]


@pytest.mark.parametrize("password, ok", PASSWORDS)
def test_only_the_exact_password_verifies(password: str, ok: bool) -> None:
    """The hash accepts its password and nothing else, however long."""
    assert verify_password(password, GOOD) is ok


def test_hashes_are_salted() -> None:
    """The same password hashes differently each time, so hashes reveal no reuse."""
    assert hash_password("same") != hash_password("same")


BROKEN = [
    # entry text, codes
    ('user = "Op1"\nlevel = "00"\npassword = "GOOD"', ["operator_user_malformed"]),
    ('user = "op1"\nlevel = "40"\npassword = "GOOD"', ["operator_level_unknown"]),
    ('user = "op1"\nlevel = "00"\npassword = "op1-demo"', ["operator_password_hash_malformed"]),
    ('user = "op1"\nlevel = "00"\npassword = "GOOD"\nrole = "admin"', ["operator_field_unknown"]),
    ('level = 20\npassword = "x"',
     ["operator_user_malformed", "operator_level_unknown", "operator_password_hash_malformed"]),
]


@pytest.mark.parametrize("entry, expected", BROKEN)
def test_a_broken_operators_file_names_every_fault(tmp_path: Path, entry: str,
                                                   expected: list[str]) -> None:
    """Each broken entry is reported with the rule it breaks, all at once."""
    path = tmp_path / "operators.toml"
    path.write_text("[[operator]]\n" + entry.replace("GOOD", GOOD) + "\n", encoding="utf-8")

    with pytest.raises(PaygateError) as exc:
        load(path)

    assert [p.code for p in exc.value.problems] == expected


def test_duplicate_users_are_refused(tmp_path: Path) -> None:
    """Two entries for one user would make the level ambiguous."""
    entry = f'[[operator]]\nuser = "op1"\nlevel = "00"\npassword = "{GOOD}"\n'
    path = tmp_path / "operators.toml"
    path.write_text(entry * 2, encoding="utf-8")

    with pytest.raises(PaygateError) as exc:
        load(path)

    assert [p.code for p in exc.value.problems] == ["operator_user_duplicate"]


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    """A demoted or removed operator loses the rights at the next request."""
    path = tmp_path / "operators.toml"
    path.write_text(f'[[operator]]\nuser = "sup9"\nlevel = "20"\npassword = "{GOOD}"\n',
                    encoding="utf-8")
    directory = Directory(path)
    before = directory.get("sup9").may_approve
    stat = path.stat()
    path.write_text(f'[[operator]]\nuser = "sup9"\nlevel = "00"\npassword = "{GOOD}"\n',
                    encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    assert before is True and directory.get("sup9").may_approve is False
