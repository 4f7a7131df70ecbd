"""One settings object, loaded and checked once at start.

Values come from the defaults below, then a TOML file (`--config` or PAYGATE_CONFIG),
then environment variables `PAYGATE_<NAME>` (upper case), which win, then a command's
own flags (`serve --port`). Every setting is listed with its meaning in README.md's
configuration table.

A setting refused is named as the user set it (`source_of`): the variable
`PAYGATE_HVPS_OPEN_AT`, the key `hvps_open_at in paygate.toml`, or the flag `--port`;
so are the settings other parts check (the HVPS timetable, the query desk's policy),
which `load` checks with the rest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway import config_values
from gateway.clock import clock_from_spec
from gateway.errors import PaygateError, Problem
from gateway.messages import framing
from ledger.db import URL_EXPECTED, URL_SCHEMES


# The gateway's SQLite file in its data folder (no `database_url`).
DB_FILE = "gateway.db"
# The gateway's own data folder inside the folder of a run that starts the simulated NPC
# beside it (`serve --simulate`, `demo`, `simulate-day`: gateway.harness), whose `npc/`
# and `keys/` sit next to it.
SIMULATED_GATEWAY_FOLDER = "gateway"


@dataclass
class Settings:
    data_dir: str = ".paygate"
    bank_code: str = "999100000019"          # our direct participant
    branch_codes: list[str] = field(default_factory=lambda: ["999100000027", "999100000035"])
    host: str = "127.0.0.1"
    port: int = 8080                          # core-system API, operators and link inbound
    npc_url: str = "http://127.0.0.1:8090/link/inbound"
    link_batch_max: int = 64                  # envelopes in one POST to the NPC; 1: one each
    link_batch_bytes_max: int = 1_048_576     # ... and their bytes (one larger goes alone)
    redis_url: str = ""                       # empty: start an embedded Redis in data_dir
    database_url: str = ""                    # empty: sqlite file data_dir/gateway.db
    keys_dir: str = ""                        # empty: data_dir/keys
    signature_algorithm: str = "ecdsa-p256-sha256"
    unverified_senders: list[str] = field(default_factory=list)
    clock: str = ""                           # empty: real time (see gateway.clock)
    webhook_url: str = ""
    webhook_secret: str = ""                  # needed with webhook_url (config_values)
    webhook_retries_max: int = 24  # backoff doubling to 5 minutes: about 70 minutes in all
    webhook_events_max: int = 500             # status changes in one POST to the webhook
    api_keys: dict[str, str] = field(default_factory=dict)  # client id -> shared secret
    # client id -> the accounts whose balance it may read (a number, a prefix ending in
    # "*", or "*" for all); empty: every client reads every account
    api_balance_accounts: dict[str, list[str]] = field(default_factory=dict)
    operators_file: str = ""                  # empty: the demo operators (warned in logs)
    screening_file: str = ""                  # sanctions/AML list; empty: the shipped example
    beps_net_debit_cap_fen: int = 0           # shown against the BEPS net position; 0: n/a
    beps_package_size_max: int = 1000         # transactions that seal a package
    beps_package_age_max_s: float = 5.0       # ... or the age of its oldest transaction
    beps_seal_check_s: float = 0.5
    beps_debit_return_days: int = 3           # PKGRtrLtd of our beps.127
    beps_deadline_check_s: float = 30.0
    beps_debit_review_margin_s: float = 3600.0  # a screened debit undecided this long
                                                # before its receipt is due: refused
    beps_batch_items_max: int = 1000          # transfers in one batch request
    beps_recon_delay_s: float = 900.0         # a netting date is complete this long after
    beps_recon_dates_per_pass: int = 10       # netting dates asked for per pass
    beps_recon_retry_s: float = 900.0         # an unanswered beps.720 is asked again after
    beps_not_netted_margin_s: float = 300.0   # a package is overdue after two netting
                                              # intervals and this long (alert)
    when_closed_default: str = "queue"        # queue | refuse | beps
    review_threshold_fen: int = 0             # 0: no second review; else held above it
    queue_depth_max: int = 50_000             # above it the API answers 429
    send_retries_max: int = 6
    send_backoff_s: float = 0.2
    dead_letter_retention_days: float = 7.0   # letters of resolved work kept this long
    result_timeout_s: float = 120.0           # no ccms.900 by then: ask (ccms.316)
    queued_query_after_s: float = 600.0       # queued at the NPC this long: ask (ccms.316)
    queued_queries_per_sweep_max: int = 20    # such questions per pass of the sweep
    probe_interval_s: float = 30.0            # ccms.991 link probes
    recon_answer_overdue_s: float = 600.0     # no hvps.711/beps.721 by then: alert
    key_expiry_alert_days: int = 30           # alert before our signing key expires
    worker_batch_max: int = 200
    queries_morning_cutoff_at: str = "12:00"   # "the morning of the next working day"
    queries_warn_before_min: int = 120
    queries_check_interval_s: float = 30.0
    queries_auto_answer: bool = True
    queries_auto_answer_types: list[str] = field(default_factory=lambda: ["QT00"])
    queries_auto_answer_keywords: list[str] = field(default_factory=lambda: [
        "入账", "到账", "未收到", "收到", "入户", "状态", "清算", "挂账", "查询款项"])
    queries_operator_keywords: list[str] = field(default_factory=lambda: [
        "退汇", "退回", "止付", "冻结", "错账", "更正", "修改", "撤销", "投诉"])
    suspense_return_working_days: int = 3     # suspense items returned automatically after
    exceptions_sweep_interval_s: float = 30.0
    calendar_file: str = ""
    calendar_alert_days: int = 30
    hvps_open_at: str = "08:30"
    hvps_cutoff_at: str = "17:00"
    hvps_clearing_window_start_at: str = "17:00"
    hvps_clearing_window_end_at: str = "17:30"
    hvps_day_end_at: str = "17:45"
    hvps_prepare_at: str = "18:00"
    hvps_evening_open: bool = False
    hvps_evening_open_at: str = "20:30"
    beps_netting_interval_min: int = 30
    log_level: str = "INFO"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / DB_FILE}"

    @property
    def keys_path(self) -> Path:
        return Path(self.keys_dir).resolve() if self.keys_dir else self.data_path / "keys"

    def sha256(self) -> str:
        canonical = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(canonical).hexdigest()


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Lower bounds of the numeric settings; those in _POSITIVE must be above 0.
_LEAST = {
    "webhook_retries_max": 0, "webhook_events_max": 1, "beps_net_debit_cap_fen": 0,
    "beps_package_size_max": 1,
    "beps_package_age_max_s": 0, "beps_seal_check_s": 0, "beps_debit_return_days": 1,
    "beps_deadline_check_s": 0, "beps_batch_items_max": 1, "review_threshold_fen": 0,
    "beps_recon_delay_s": 0, "beps_recon_dates_per_pass": 1, "beps_recon_retry_s": 0,
    "beps_not_netted_margin_s": 0, "beps_debit_review_margin_s": 0,
    "queue_depth_max": 1, "send_retries_max": 0, "send_backoff_s": 0, "result_timeout_s": 0,
    "dead_letter_retention_days": 0,
    "queued_query_after_s": 0, "queued_queries_per_sweep_max": 1,
    "probe_interval_s": 0, "key_expiry_alert_days": 0, "worker_batch_max": 1,
    "queries_warn_before_min": 0, "queries_check_interval_s": 0,
    "suspense_return_working_days": 0, "exceptions_sweep_interval_s": 0,
    "calendar_alert_days": 0, "beps_netting_interval_min": 1,
    "link_batch_max": 1, "link_batch_bytes_max": 1, "recon_answer_overdue_s": 0,
}
_POSITIVE = {"beps_package_age_max_s", "beps_seal_check_s", "beps_deadline_check_s",
             "beps_recon_retry_s",
             "result_timeout_s", "queued_query_after_s", "probe_interval_s",
             "queries_check_interval_s", "exceptions_sweep_interval_s",
             "recon_answer_overdue_s"}
# PAYGATE_ variables that are not settings: the file to read, the ops CLI's own, and the
# test and benchmark switches. Any other PAYGATE_ name is a misspelt setting.
_OTHER_VARIABLES = ("PAYGATE_CONFIG", "PAYGATE_OPS_", "PAYGATE_TEST_", "PAYGATE_CRASH_",
                    "PAYGATE_BENCH_")


def source_of(settings: Settings, name: str) -> str:
    """Where setting `name` was set, as the user wrote it: the environment variable
    (`PAYGATE_PORT`), the configuration file's key (`port in paygate.toml`) or the
    command's flag (`--port`); the setting's name for a value made in code."""
    return getattr(settings, "_sources", {}).get(name, name)


def in_source_terms(settings: Settings, exc: PaygateError,
                    aliases: Mapping[str, str] | None = None) -> PaygateError:
    """`exc` with each problem at a setting, or at a name `aliases` maps to a setting
    (the timetable's `open_at` is `hvps_open_at`), put at where the user set it."""
    aliases = aliases or {}
    known = {f.name for f in fields(Settings)}
    problems = [replace(p, path=source_of(settings, aliases.get(p.path, p.path)))
                if aliases.get(p.path, p.path) in known else p for p in exc.problems]
    return PaygateError(problems, exc.status)


def load(path: str | None = None, overrides: dict[str, Any] | None = None,
         flags: Mapping[str, str] | None = None) -> Settings:
    """The settings: defaults, the file, the environment, then `overrides` (a command's
    flags, named in `flags` by setting, for refusals)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = path or os.environ.get("PAYGATE_CONFIG")
    if path:
        with open(path, "rb") as fh:
            values.update(tomllib.load(fh))
        sources.update((name, f"{name} in {path}") for name in values)
    known = {f.name: f for f in fields(Settings)}
    for name in known:
        env = os.environ.get(f"PAYGATE_{name.upper()}")
        if env is not None:
            values[name] = env
            sources[name] = f"PAYGATE_{name.upper()}"
    # Every problem is told together, in this order: misspelt variables, unknown keys,
    # values of the wrong type, then the checks of the values that have their type.
    problems = [Problem("setting_unknown", variable, None,
                        "a PAYGATE_ variable naming a setting listed in README.md")
                for variable in sorted(os.environ) if variable.startswith("PAYGATE_")
                and variable[len("PAYGATE_"):].lower() not in known
                and not variable.startswith(_OTHER_VARIABLES)]
    if name_redis := os.environ.get("REDIS_URL"):
        if "redis_url" not in values:
            sources["redis_url"] = "REDIS_URL"
        values.setdefault("redis_url", name_redis)
    values.update(overrides or {})
    sources.update((name, (flags or {}).get(name, name)) for name in overrides or {})
    problems += [Problem("setting_unknown", sources.get(name, name), None,
                         "a setting listed in README.md")
                 for name in values if name not in known]
    settings = Settings()
    settings._sources = sources  # type: ignore[attr-defined]  # not a field: not hashed
    named: list[Problem] = []
    for name, value in values.items():
        if name not in known:
            continue
        try:
            setattr(settings, name, _coerce(name, value, getattr(settings, name)))
        except PaygateError as exc:
            named.extend(exc.problems)  # the setting keeps its default for the checks
    named.extend(_problems(settings))
    if named:
        problems += in_source_terms(settings, PaygateError(named)).problems
    if problems:
        raise PaygateError(problems)
    return settings


def load_for_command(path: str | None, overrides: dict[str, Any] | None = None,
                     flags: Mapping[str, str] | None = None) -> Settings:
    """`load` for a command line: a file that cannot be read or parsed is refused in the
    product's error shape too (`config_file_unreadable`)."""
    try:
        return load(path, overrides, flags)
    except (OSError, ValueError) as exc:  # tomllib's decode error is a ValueError
        raise PaygateError(Problem("config_file_unreadable", "--config",
                                   path or os.environ.get("PAYGATE_CONFIG"),
                                   "a readable TOML file", str(exc)[:300])) from None


# How a variable (always text) writes true and false.
_TRUE_WORDS, _FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(name: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            if value.strip().lower() not in _TRUE_WORDS + _FALSE_WORDS:
                raise PaygateError(Problem("setting_malformed", name, value,
                                           "true or false (1, yes, on; 0, no, off)"))
            return value.strip().lower() in _TRUE_WORDS
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, dict)):
            return json.loads(value)
    except ValueError:
        shown = None if name in config_values.SECRETS else value
        raise PaygateError(Problem("setting_malformed", name, shown,
                                   f"a value of type {type(default).__name__}"))
    return value


# What an address the gateway asks over HTTP must be (the NPC's link, the webhook, the
# gateway `paygate ops` asks), as a refusal states it.
HTTP_URL_EXPECTED = "http://HOST[:PORT][/PATH] or https://..., the port a number from 1 to 65535"


def is_http_url(url: str) -> bool:
    """Whether `url` names a server to ask: http or https, a host, a numeric port if
    any (urllib and aiohttp fail on anything else only when it is first used)."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port_ok


def _problems(settings: Settings) -> list[Problem]:
    """Every setting checked, all problems told together. A value not of its setting's
    type is told as such, and the other checks see the default in its place; so do the
    checks other parts make (`_check_elsewhere`) in place of a value already refused."""
    defaults = asdict(Settings())
    values = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    problems = config_values.type_problems(values, defaults)
    s = replace(settings, **{p.path: defaults[p.path] for p in problems})
    if s.when_closed_default not in ("queue", "refuse", "beps"):
        problems.append(Problem("setting_malformed", "when_closed_default",
                                s.when_closed_default, "queue, refuse or beps"))
    if len(s.bank_code) != 12 or not all(c in "0123456789" for c in s.bank_code):
        problems.append(Problem("setting_malformed", "bank_code", s.bank_code,
                                "12 ASCII digits"))
    if not 0 <= s.port <= 65535:
        problems.append(Problem("setting_malformed", "port", s.port,
                                "0 to 65535 (0: any free port)"))
    if s.log_level.upper() not in LOG_LEVELS:
        problems.append(Problem("setting_malformed", "log_level", s.log_level,
                                ", ".join(LOG_LEVELS)))
    for name, least in _LEAST.items():
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < least \
                or (least == 0 and name in _POSITIVE and value <= 0):
            expected = ("a finite number greater than 0" if name in _POSITIVE
                        else f"a finite number of at least {least}" if isinstance(
                            getattr(Settings, name, 0), float)
                        else f"a whole number of at least {least}")
            problems.append(Problem("setting_malformed", name, value, expected))
    for name, most in (("link_batch_max", framing.ENVELOPES_MAX),
                       ("link_batch_bytes_max", framing.BATCH_LEN_MAX)):
        value = getattr(s, name)
        if isinstance(value, int) and value > most:  # the receiver's bound on one POST
            problems.append(Problem("setting_malformed", name, value,
                                    f"a whole number from 1 to {most}"))
    margin, check = s.beps_debit_review_margin_s, s.beps_deadline_check_s
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
           and v >= 0 for v in (margin, check)) and margin < 2 * check:
        # The sweep that refuses an undecided screened debit runs every check; a margin
        # under two of them lets its receipt leave after the package's deadline.
        problems.append(Problem("setting_malformed", "beps_debit_review_margin_s", margin,
                                "at least twice beps_deadline_check_s "
                                f"({2 * check:g} s), so that an undecided screened "
                                "debit is refused before its receipt deadline"))
    for name in ("npc_url", "webhook_url"):
        value = getattr(s, name)
        if (value or name == "npc_url") and not is_http_url(value):
            problems.append(Problem("setting_malformed", name, value, HTTP_URL_EXPECTED))
    if s.database_url and not s.database_url.startswith(URL_SCHEMES):
        problems.append(Problem("setting_malformed", "database_url", s.database_url,
                                f"{URL_EXPECTED}, or empty for the data folder's file"))
    if s.clock:
        try:
            clock_from_spec(s.clock)
        except (ValueError, TypeError):
            problems.append(Problem("setting_malformed", "clock", s.clock,
                                    "an ISO date and time such as 2026-12-07T09:00 (business "
                                    "time, Asia/Shanghai), or empty for real time"))
    problems.extend(_balance_accounts_problems(s))
    problems.extend(config_values.api_keys_problems(s.api_keys))
    problems.extend(config_values.webhook_secret_problems(s.webhook_secret, s.webhook_url))
    for name in config_values.BANK_CODE_LISTS:
        problems.extend(config_values.bank_code_problems(name, getattr(s, name)))
    problems.extend(config_values.signature_problems(s.signature_algorithm))
    problems.extend(config_values.files_problems(s.operators_file, s.screening_file,
                                                        s.data_path))
    refused = {p.path for p in problems if p.path in defaults}
    try:
        _check_elsewhere(replace(s, **{name: defaults[name] for name in refused}))
    except PaygateError as exc:
        problems.extend(exc.problems)
    return problems


def _balance_accounts_problems(s: Settings) -> list[Problem]:
    """`api_balance_accounts`: an object naming clients of `api_keys`, each with a list
    of entries: an account number, a prefix of one ending in `*`, or `*` alone."""
    scopes = s.api_balance_accounts
    expected = ("an object mapping each client id of api_keys to a list of accounts whose "
                "balance it may read: an account number, a prefix ending in *, or * for "
                "every account")
    if not isinstance(scopes, dict):
        return [Problem("setting_malformed", "api_balance_accounts", scopes, expected)]
    problems = []
    for client, entries in scopes.items():
        if not isinstance(s.api_keys, dict) or client not in s.api_keys:
            problems.append(Problem(
                "setting_malformed", "api_balance_accounts", client, expected,
                f"client {client!r} is not one of api_keys: no request can come from it"))
        elif not isinstance(entries, list) or not all(
                isinstance(e, str) and e and "*" not in e[:-1] for e in entries):
            problems.append(Problem("setting_malformed", "api_balance_accounts", entries,
                                    expected))
    return problems


def _check_elsewhere(s: Settings) -> None:
    """The settings other parts read and check, checked now: the HVPS timetable (its
    fields named as settings), the query desk's policy and the calendar file."""
    from gateway.calendar import BusinessCalendar
    from gateway.queries import policy
    from gateway.windows import TIMETABLE_SETTINGS, timetable_from_settings
    problems: list[Problem] = []
    if s.calendar_file:
        try:
            BusinessCalendar(s.calendar_file, s.calendar_alert_days)
        except PaygateError as exc:
            problems.extend(replace(p, path="calendar_file") if p.path == "calendar.file"
                            else p for p in exc.problems)
    try:
        timetable_from_settings(s)
    except PaygateError as exc:
        setting = {field: name for name, field in TIMETABLE_SETTINGS.items()}
        problems.extend(replace(p, path=setting.get(p.path, p.path)) for p in exc.problems)
    try:
        policy.from_settings(s)
    except PaygateError as exc:
        problems.extend(exc.problems)
    if problems:
        raise PaygateError(problems)


def clock_source(settings: Settings) -> str:
    """What the gateway's clock was set by, in words for a refusal: the setting `clock`
    where the user set it, else the machine's time."""
    if settings.clock:
        return source_of(settings, "clock")
    return "the machine's system time"
