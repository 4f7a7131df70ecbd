"""Operators of the console, their levels, and their password hashes.

Operators come from a TOML file (`settings.operators_file`; when it is empty, the demo
file beside this module with the users op1, sup1 and dir1). Each entry:

    [[operator]]
    user = "op1"
    name = "Operator One"
    level = "00"
    password = "scrypt$16384$8$1$<salt, base64>$<hash, base64>"

Levels follow the teller levels of DOMAIN.md §5: 00 operator (looks, requests actions,
retries), 10 vault teller (looks only: cash and voucher stock are not the gateway's
business), 20 supervisor and 30 director (also approve, reject and review). Passwords
are never stored: only salted scrypt hashes, compared in constant time. The file is
read again when it changes, so an operator can be added or locked out without a restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import PaygateError, Problem

DEMO_FILE = Path(__file__).with_name("operators.toml")

LEVELS = {"00": "operator", "10": "vault teller", "20": "supervisor", "30": "director"}
APPROVER_LEVEL_MIN = 20
LOOK_ONLY_LEVELS = frozenset({"10"})

# scrypt cost: n = 2^14, r = 8 takes 16 MiB and tens of milliseconds per sign-in, which
# is the interactive setting the scrypt paper recommends; p = 1.
SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_LEN = 16
HASH_LEN = 32
PASSWORD_LEN_MAX = 256  # longer input is refused before hashing, to bound the work

USER_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
_ENTRY_KEYS = {"user", "name", "level", "password"}


@dataclass(frozen=True)
class Operator:
    user: str
    name: str
    level: str
    password_hash: str = field(repr=False)

    @property
    def may_act(self) -> bool:
        """Whether this operator may request actions at all."""
        return self.level not in LOOK_ONLY_LEVELS

    @property
    def may_approve(self) -> bool:
        return int(self.level) >= APPROVER_LEVEL_MIN

    def public(self) -> dict[str, Any]:
        return {"user": self.user, "name": self.name, "level": self.level,
                "role": LEVELS[self.level], "may_act": self.may_act,
                "may_approve": self.may_approve}


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A storable scrypt hash of `password` with a fresh random salt."""
    salt = salt if salt is not None else os.urandom(SALT_LEN)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()))


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash (constant-time comparison)."""
    n, r, p, salt, expected = _parse_hash(stored)
    if len(password) > PASSWORD_LEN_MAX:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def check_unknown_user(password: str) -> bool:
    """Spend a password check's time on an unknown user, then refuse.

    A sign-in then takes as long for an unknown user as for a wrong password, so its
    timing does not reveal which users exist.
    """
    _scrypt(password[:PASSWORD_LEN_MAX], b"\x00" * SALT_LEN, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=SCRYPT_MAXMEM, dklen=HASH_LEN)


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("a password hash reads scrypt$n$r$p$salt$hash")
    n, r, p = (int(x) for x in parts[1:4])
    return n, r, p, base64.b64decode(parts[4]), base64.b64decode(parts[5])


class Directory:
    """The operators of one file, read again whenever the file changes."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else DEMO_FILE
        self._mtime_ns = -1
        self._operators: dict[str, Operator] = {}

    @property
    def is_demo(self) -> bool:
        return self.path.resolve() == DEMO_FILE.resolve()

    def get(self, user: str) -> Operator | None:
        self._refresh()
        return self._operators.get(user)

    def all(self) -> list[Operator]:
        self._refresh()
        return list(self._operators.values())

    def _refresh(self) -> None:
        mtime_ns = self.path.stat().st_mtime_ns
        if mtime_ns != self._mtime_ns:
            self._operators = load(self.path)
            self._mtime_ns = mtime_ns


def load(path: Path) -> dict[str, Operator]:
    """Every operator of the file; all problems of the file are reported together."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    entries = data.get("operator", [])
    problems: list[Problem] = []
    out: dict[str, Operator] = {}
    for i, entry in enumerate(entries):
        where = f"{path.name}/operator[{i}]"
        found = _entry_problems(entry, where)
        if entry.get("user") in out:
            found.append(Problem("operator_user_duplicate", f"{where}/user", entry["user"],
                                 "each user once"))
        if found:
            problems.extend(found)
            continue
        out[entry["user"]] = Operator(entry["user"], entry.get("name", entry["user"]),
                                      entry["level"], entry["password"])
    if problems:
        raise PaygateError(problems)
    return out


def _entry_problems(entry: Any, where: str) -> list[Problem]:
    if not isinstance(entry, dict):
        return [Problem("operator_entry_malformed", where, None, "a table")]
    problems = [Problem("operator_field_unknown", f"{where}/{k}", None,
                        "only: " + ", ".join(sorted(_ENTRY_KEYS)))
                for k in entry if k not in _ENTRY_KEYS]
    user = entry.get("user")
    if not isinstance(user, str) or not USER_PATTERN.fullmatch(user):
        problems.append(Problem("operator_user_malformed", f"{where}/user", user,
                                "1 to 32 lower-case letters, digits, '_', '.' or '-'"))
    if entry.get("level") not in LEVELS:
        problems.append(Problem("operator_level_unknown", f"{where}/level",
                                entry.get("level"), "one of " + ", ".join(LEVELS)))
    try:
        _parse_hash(str(entry.get("password", "")))
    except ValueError:
        problems.append(Problem("operator_password_hash_malformed", f"{where}/password",
                                None, "scrypt$n$r$p$salt$hash, from `paygate ops "
                                "hash-password`"))
    return problems
