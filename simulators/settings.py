"""The simulator's settings: defaults, then the `[simulator]` table of the TOML file, then
the command line, checked once at start-up.

Balances given here seed a participant's clearing account only when the simulator's
database has no balance for it yet: after the first start the database is the truth, so a
restart neither loses nor resets money.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gateway import windows
from gateway.config import HTTP_URL_EXPECTED, is_http_url
from gateway.errors import ProblemList, ValidationFailed
from gateway.messages import framing

NPC_CODE = "0000"
OUR_BANK = "999100000019"
_BANK_CODE = re.compile(r"[0-9]{12}")
_ASCII_INT = re.compile(r"-?[0-9]+")
PHASES = ("00", "10", "15", "20", "30", "40")


@dataclass(frozen=True)
class PeerSpec:
    """A peer bank simulated inside the process: its clearing bank code and one branch."""

    code: str
    branch: str
    name: str


DEFAULT_PEERS = (
    PeerSpec("888200000015", "888200000023", "对手银行测试支行"),
    PeerSpec("777300000011", "777300000029", "第三银行测试支行"),
)

# Opening clearing-account balances in fen: ours 500 million yuan, the first peer one
# billion, the second 200 million, so that ordinary traffic settles at once and a test
# that wants a queue sets a small balance of its own.
DEFAULT_BALANCES_FEN = {
    OUR_BANK: 50_000_000_000,
    "888200000015": 100_000_000_000,
    "777300000011": 20_000_000_000,
}


@dataclass(frozen=True)
class Delivery:
    """How the NPC delivers to an external bank: retries with a doubling backoff, for
    `retry_for_s` seconds (a bank whose gateway answers 503 until our key is installed
    there, or that is restarting, gets its messages once it takes them)."""

    # Tries of one message at most; 0: no count, `retry_for_s` alone bounds them.
    attempts_max: int = 0
    backoff_s: float = 0.2
    backoff_max_s: float = 30.0
    # Real seconds from a message's first try during which it is tried again; then it
    # is marked undelivered and kept for POST /sim/redeliver.
    retry_for_s: float = 600.0
    timeout_s: float = 10.0
    # With the reorder fault on, up to this many waiting messages are shuffled together.
    reorder_window: int = 8
    # POSTs to one bank in flight at once. A bank's inbound commits what a POST carries
    # before answering, so one at a time caps the link at the bank's commit latency;
    # several in flight is what an MQ channel with many putters does. With `batch_max`
    # 1, one message per POST; 1 and 1 keep the order of first tries strict (later
    # messages overtake one waiting for its next try, except those of its chain,
    # simulators.link).
    parallel_max: int = 32
    # Envelopes in one POST to a bank at most, and their bytes (gateway.messages.framing):
    # the messages that wait while a round of POSTs is on its way go together in the next
    # round. 1: one envelope per POST, what a bank that reads only single envelopes needs.
    batch_max: int = 64
    batch_bytes_max: int = 1_048_576


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path = Path("var/npc")
    keys_dir: Path = Path("var/keys")
    banks: dict[str, str] = field(default_factory=dict)  # external participant -> inbound URL
    clock_spec: str | None = None
    seed: int = 0
    balances_fen: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BALANCES_FEN))
    peers: tuple[PeerSpec, ...] = DEFAULT_PEERS
    # The HVPS status and work date at the first start. Unset: with follow_clock, the
    # timetable's state for the clock's time (a real NPC has been running all along and
    # announces nothing until its next change); otherwise 10 on the clock's date.
    initial_phase: str | None = None
    initial_date: str | None = None  # ISO date
    follow_clock: bool = False
    tick_s: float = 1.0
    calendar_file: str | None = None
    timetable: dict[str, Any] = field(default_factory=dict)
    delivery: Delivery = Delivery()
    # Business seconds between BEPS netting rounds; no public schedule exists (SPEC.md
    # d.9), DOMAIN.md §7 suggests every 30 minutes.
    beps_netting_interval_s: float = 1800.0

    @property
    def participants(self) -> frozenset[str]:
        return frozenset(self.banks) | {p.code for p in self.peers}

    def database_path(self) -> Path:
        return self.data_dir / "npc.sqlite3"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paygate simulate npc",
                                description="The simulated CNAPS2 national node and peers.")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--data", default=None, help="directory for the simulator's database")
    p.add_argument("--keys", default=None, help="directory of PEM keys shared with the gateway")
    p.add_argument("--bank", action="append", default=[], metavar="CODE=URL",
                   help="an external participant and its inbound URL, or several separated "
                        "by commas (its gateway processes, taken in turn) (repeatable)")
    p.add_argument("--balance", action="append", default=[], metavar="CODE=FEN",
                   help="opening clearing-account balance in fen (repeatable)")
    p.add_argument("--clock", default=None, help="clock spec, see gateway.clock")
    p.add_argument("--config", default=None, help="TOML file with a [simulator] table")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault generator")
    p.add_argument("--phase", default=None, choices=PHASES, help="HVPS status at first start")
    p.add_argument("--date", default=None, help="work date at first start (ISO date)")
    p.add_argument("--follow-clock", action="store_true", default=None,
                   help="announce HVPS phase changes as the clock passes them")
    p.add_argument("--calendar", default=None, metavar="FILE",
                   help="business calendar TOML file (holidays, make-up days), as the "
                        "gateway's calendar_file")
    p.add_argument("--beps-netting-interval", type=float, default=None, metavar="SECONDS",
                   help="business seconds between BEPS netting rounds")
    p.add_argument("--timetable", action="append", default=[], metavar="KEY=VALUE",
                   help="one time of the HVPS day, as in the [simulator.timetable] table "
                        "(e.g. open_at=09:00, evening_open=true); repeatable")
    p.add_argument("--link-batch-max", type=int, default=None, metavar="N",
                   help="envelopes in one POST to a bank at most (1: one per POST)")
    return p


def _pairs(items: list[str], option: str, problems: ProblemList) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        code, sep, value = item.partition("=")
        if not sep or not value:
            problems.add("option_must_be_code_equals_value", option, item, "CODE=VALUE")
            continue
        out[code] = value
    return out


def _timetable(pairs: dict[str, str]) -> dict[str, Any]:
    """--timetable values as the TOML table gives them: a flag as true or false, the
    netting interval as a number, times as text (checked with the rest in `check`)."""
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        if key == "evening_open" and value in ("true", "false"):
            out[key] = value == "true"
        elif key == "netting_interval_min" and _ASCII_INT.fullmatch(value):
            out[key] = int(value)
        else:
            out[key] = value
    return out


def _check_codes(codes: dict[str, Any], path: str, problems: ProblemList) -> None:
    for code in codes:
        if not _BANK_CODE.fullmatch(code):
            problems.add("bank_code_must_be_12_ascii_digits", path, code, "12 ASCII digits")


def _balances(raw: dict[str, Any], path: str, problems: ProblemList) -> dict[str, int]:
    out: dict[str, int] = {}
    _check_codes(raw, path, problems)
    for code, value in raw.items():
        text = str(value)
        if isinstance(value, bool) or not _ASCII_INT.fullmatch(text) or int(text) < 0:
            problems.add("balance_must_be_whole_fen", f"{path}/{code}", value,
                         "a whole number of fen, 0 or more")
            continue
        out[code] = int(text)
    return out


# The type each key of the [simulator] table must have.
_TABLE_TYPES: dict[str, type | tuple[type, ...]] = {
    "host": str, "port": int, "data": str, "data_dir": str, "keys": str, "keys_dir": str,
    "banks": dict, "clock_spec": str, "seed": int, "balances_fen": dict, "peers": list,
    "initial_phase": str, "initial_date": str, "follow_clock": bool, "tick_s": (int, float),
    "calendar_file": str, "timetable": dict, "delivery": dict,
    "beps_netting_interval_s": (int, float),
}
_PATH_KEYS = {"data": "data_dir", "data_dir": "data_dir", "keys": "keys_dir",
              "keys_dir": "keys_dir"}


def _peers(value: list[Any], problems: ProblemList) -> tuple[PeerSpec, ...]:
    names = {f.name for f in fields(PeerSpec)}
    out = []
    for n, peer in enumerate(value):
        if not isinstance(peer, dict) or set(peer) != names:
            problems.add("peer_must_name_code_branch_and_name", f"simulator/peers/{n}", peer,
                         "a table with code, branch and name")
            continue
        out.append(PeerSpec(**{k: str(v) for k, v in peer.items()}))
    return tuple(out)


def _delivery(base: Delivery, value: dict[str, Any], problems: ProblemList) -> Delivery:
    names = {f.name for f in fields(Delivery)}
    changes = {}
    for key, item in value.items():
        if key not in names or isinstance(item, bool) or not isinstance(item, (int, float)):
            problems.add("delivery_setting_malformed", f"simulator/delivery/{key}", item,
                         "a number under one of " + ", ".join(sorted(names)))
        else:
            changes[key] = item
    return replace(base, **changes)


def _from_table(base: Settings, table: dict[str, Any], problems: ProblemList) -> Settings:
    """Apply the `[simulator]` table of the configuration file."""
    changes: dict[str, Any] = {}
    for key, value in table.items():
        expected = _TABLE_TYPES.get(key)
        if expected is None:
            problems.add("config_key_must_be_known", f"simulator/{key}", key,
                         ", ".join(sorted(_TABLE_TYPES)))
        elif isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
            problems.add("config_value_has_wrong_type", f"simulator/{key}", value,
                         f"a value of type {getattr(expected, '__name__', 'number')}")
        elif key in _PATH_KEYS:
            changes[_PATH_KEYS[key]] = Path(value)
        elif key == "banks":
            _check_codes(value, "simulator/banks", problems)
            changes["banks"] = {code: str(url) for code, url in value.items()}
        elif key == "balances_fen":
            changes["balances_fen"] = {**base.balances_fen,
                                       **_balances(value, "simulator/balances_fen", problems)}
        elif key == "peers":
            changes["peers"] = _peers(value, problems)
        elif key == "delivery":
            changes["delivery"] = _delivery(base.delivery, value, problems)
        else:
            changes[key] = value
    return replace(base, **changes)


def load(argv: list[str]) -> Settings:
    """Settings from defaults, the configuration file and the command line, checked."""
    args = _parser().parse_args(argv)
    problems = ProblemList()
    settings = Settings()
    if args.config:
        with open(args.config, "rb") as handle:
            document = tomllib.load(handle)
        settings = _from_table(settings, document.get("simulator", {}), problems)
    banks = _pairs(args.bank, "--bank", problems)
    _check_codes(banks, "--bank", problems)
    balances = _balances(_pairs(args.balance, "--balance", problems), "--balance", problems)
    cli = {
        "host": args.host, "port": args.port, "clock_spec": args.clock, "seed": args.seed,
        "initial_phase": args.phase, "initial_date": args.date,
        "follow_clock": args.follow_clock,
        "beps_netting_interval_s": args.beps_netting_interval,
        "calendar_file": args.calendar,
        "data_dir": Path(args.data) if args.data else None,
        "keys_dir": Path(args.keys) if args.keys else None,
    }
    settings = replace(settings, **{k: v for k, v in cli.items() if v is not None})
    if args.link_batch_max is not None:
        settings = replace(settings, delivery=replace(settings.delivery,
                                                      batch_max=args.link_batch_max))
    settings = replace(settings, banks={**settings.banks, **banks},
                       balances_fen={**settings.balances_fen, **balances},
                       timetable={**settings.timetable,
                                  **_timetable(_pairs(args.timetable, "--timetable",
                                                      problems))})
    check(settings, problems)
    problems.raise_if_any(ValidationFailed)
    return settings


def check(settings: Settings, problems: ProblemList) -> None:
    """Rules that span several settings."""
    if settings.initial_phase is not None and settings.initial_phase not in PHASES:
        problems.add("hvps_status_unknown", "initial_phase", settings.initial_phase,
                     "one of " + ", ".join(PHASES))
    peer_codes = {p.code for p in settings.peers}
    for peer in settings.peers:
        for name in ("code", "branch"):
            if not _BANK_CODE.fullmatch(getattr(peer, name)):
                problems.add("bank_code_must_be_12_ascii_digits", f"peers/{peer.code}/{name}",
                             getattr(peer, name), "12 ASCII digits")
    for code, urls in sorted(settings.banks.items()):
        # One URL per gateway process of the bank, as the link reads them (simulators.link).
        for url in [u.strip() for u in urls.split(",") if u.strip()]:
            if not is_http_url(url):
                problems.add("setting_malformed", f"--bank {code}", url, HTTP_URL_EXPECTED)
    for code in sorted(peer_codes & set(settings.banks)):
        problems.add("participant_must_be_either_external_or_simulated", "--bank", code,
                     "a code not also configured as a simulated peer")
    try:
        windows.Timetable.from_mapping(settings.timetable)
    except ValidationFailed as exc:
        problems.extend(exc.problems)
    for name in ("attempts_max", "backoff_s", "backoff_max_s", "retry_for_s"):
        value = getattr(settings.delivery, name)
        if value < 0 or (name == "attempts_max" and not isinstance(value, int)):
            problems.add("delivery_setting_malformed", f"delivery/{name}", value,
                         "a whole number, 0 (no count: retry_for_s alone bounds the tries) "
                         "or more" if name == "attempts_max" else "0 or more seconds")
    for name, most in (("batch_max", framing.ENVELOPES_MAX),
                       ("batch_bytes_max", framing.BATCH_LEN_MAX)):
        value = getattr(settings.delivery, name)
        if not isinstance(value, int) or not 1 <= value <= most:
            problems.add("delivery_batch_out_of_range", f"delivery/{name}", value,
                         f"a whole number from 1 to {most}")
