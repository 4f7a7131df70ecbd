"""Settings whose values are more than a number in a range are checked before anything
starts, as the ranges are: the clients' ids and secrets (`api_keys`), the webhook's
secret, each value's type as TOML gives it, the bank codes listed, the signature
algorithm and the files of the operators and the screening list. Each is refused by
name (`setting_malformed`); a secret is never shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import config
from gateway.config_values import SECRET_LEN_MIN
from gateway.errors import PaygateError

GOOD_SECRET = "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c"  # 32 characters, as `openssl rand -hex 16`


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("PAYGATE_") or n == "REDIS_URL"]:
        monkeypatch.delenv(name)


def refused(path: Path | None = None, **overrides: object) -> list[tuple[str, str, object]]:
    with pytest.raises(PaygateError) as exc:
        config.load(str(path) if path else None, overrides)
    assert {p.code for p in exc.value.problems} == {"setting_malformed"}
    return [(p.path, p.value, p.message) for p in exc.value.problems]


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "paygate.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("line, fault", [
    ("a = 5", "a number, not text"),
    ('a = ["s3cret"]', "a list, not text"),
    ('a = ""', "empty"),
    ('a = "short-secret"', "12 characters long"),
    ('a = "' + "x" * (SECRET_LEN_MIN - 1) + '"', f"{SECRET_LEN_MIN - 1} characters long"),
    ('a = "' + " " * SECRET_LEN_MIN + '"', f"only spaces ({SECRET_LEN_MIN} characters)"),
    ('a = "\\t\\n' + " " * SECRET_LEN_MIN + '\\u3000"', "only spaces"),
    ('a = " ' + GOOD_SECRET + '"', "text with spaces or line breaks around it"),
    ('a = "' + GOOD_SECRET + '\\n"', "text with spaces or line breaks around it"),
])
def test_a_client_secret_that_cannot_sign_is_refused_by_its_client(tmp_path, line, fault):
    """A secret that is not text, is empty or is short is refused at start, naming the
    client and what is wrong, never the secret itself."""
    path = toml(tmp_path, f"[api_keys]\n{line}\nb = \"{GOOD_SECRET}\"\n")

    (where, value, message), = refused(path)

    assert (where, value) == (f"api_keys in {path}", "a")
    assert f"the secret of client 'a' in api_keys is {fault}" in message
    assert "s3cret" not in message and "short-secret" not in message


@pytest.mark.parametrize("client", ["core system", "", "-core", "core:1", "核心", "x" * 65,
                                    "default"])
def test_a_client_id_no_request_could_carry_is_refused(tmp_path, client):
    """An id X-Client-Id cannot carry as it is (spaces, a colon, other than ASCII, too
    long), and `default`, the client of every request while the API is open."""
    path = toml(tmp_path, f'[api_keys]\n"{client}" = "{GOOD_SECRET}"\n')

    (where, value, message), = refused(path)

    assert (where, value) == (f"api_keys in {path}", client)
    assert GOOD_SECRET not in message


def test_every_fault_of_the_clients_is_told_together(tmp_path):
    path = toml(tmp_path, f'[api_keys]\na = 5\nb = ""\n"c d" = "{GOOD_SECRET}"\n'
                          f'core = "{GOOD_SECRET}"\n')

    assert [value for _, value, _ in refused(path)] == ["a", "b", "c d"]


def test_well_formed_clients_are_taken(tmp_path):
    keys = {"core": GOOD_SECRET, "branch-app.2_x": "y" * SECRET_LEN_MIN}
    path = toml(tmp_path, "[api_keys]\n" + "".join(f'"{k}" = "{v}"\n' for k, v in keys.items()))

    assert config.load(str(path)).api_keys == keys


def test_api_keys_not_a_table_is_refused_without_showing_it(monkeypatch):
    """The variable's text may hold secrets: a malformed one is refused, not echoed."""
    monkeypatch.setenv("PAYGATE_API_KEYS", '{"core": "' + GOOD_SECRET + '"')

    with pytest.raises(PaygateError) as exc:
        config.load()

    assert [(p.path, p.value) for p in exc.value.problems] == [("PAYGATE_API_KEYS", None)]
    assert GOOD_SECRET not in json.dumps(exc.value.to_dict())


def test_serve_with_a_bad_client_secret_does_not_start(tmp_path):
    """`paygate serve` given `a = 5`, `b = ""` and `c` of only spaces: the error shape
    naming the three clients, exit status 2, before anything starts (no traceback, no
    data directory made)."""
    path = toml(tmp_path, f'data_dir = "{tmp_path / "data"}"\nport = 0\n'
                          f'[api_keys]\na = 5\nb = ""\nc = "{" " * SECRET_LEN_MIN}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}

    run = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)],
                         env=env, capture_output=True, text=True, timeout=60, check=False)

    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    errors = json.loads(run.stdout.strip().splitlines()[-1])["errors"]
    assert [(e["code"], e["path"], e["value"]) for e in errors] == [
        ("setting_malformed", f"api_keys in {path}", "a"),
        ("setting_malformed", f"api_keys in {path}", "b"),
        ("setting_malformed", f"api_keys in {path}", "c")]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("secret, taken", [
    ("", False), ("change-me", False), ("x" * (SECRET_LEN_MIN - 1), False),
    (" " * SECRET_LEN_MIN, False), (f"{GOOD_SECRET} ", False), (GOOD_SECRET, True)])
def test_a_webhook_needs_a_secret_the_core_system_can_trust(secret, taken):
    """With `webhook_url` set, each POST is signed with `webhook_secret`: an empty or
    short one (the old default `change-me` too) is refused, never shown."""
    values = {"webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": secret}
    if taken:
        assert config.load(None, values).webhook_secret == secret
        return

    (where, value, message), = refused(**values)

    assert (where, value) == ("webhook_secret", None)
    assert "webhook_url is set" in message


def test_without_a_webhook_its_secret_is_not_needed():
    assert config.load(None, {"webhook_secret": ""}).webhook_url == ""


@pytest.mark.parametrize("line, expected", [
    ("port = [8080]", "a whole number"), ("port = true", "a whole number"),
    ("port = 80.5", "a whole number"), ("data_dir = 5", "text"),
    ("log_level = 3", "text"), ("bank_code = 999100000019", "text"),
    ("npc_url = 8090", "text"), ("webhook_secret = 5", "text"),
    ('branch_codes = "999100000027"', "a list of texts"),
    ("branch_codes = [999100000027]", "a list of texts"),
    ("hvps_evening_open = 1", "true or false"),
    ("beps_seal_check_s = \"soon\"", "a value of type float"),
    ("api_balance_accounts = 5", "a table (in a variable, a JSON object)"),
])
def test_a_value_of_another_type_is_refused_by_name(tmp_path, line, expected):
    """A TOML value of another type than its setting's is refused as such, before any
    check of its range could fail on it (a traceback, or a port of true taken as 1)."""
    path = toml(tmp_path, line + "\n")
    name = line.split(" ", 1)[0]

    with pytest.raises(PaygateError) as exc:
        config.load(str(path))

    assert [(p.code, p.path, p.expected) for p in exc.value.problems] == [
        ("setting_malformed", f"{name} in {path}", expected)]


def test_a_whole_number_is_taken_for_a_number_of_seconds(tmp_path):
    assert config.load(str(toml(tmp_path, "beps_seal_check_s = 2\n"))).beps_seal_check_s == 2


@pytest.mark.parametrize("text, value", [("true", True), ("1", True), ("Yes", True),
                                         ("on", True), ("false", False), ("0", False),
                                         ("no", False), ("OFF", False), ("maybe", None),
                                         ("ture", None), ("", None)])
def test_a_variable_says_true_or_false_in_words_it_knows(monkeypatch, text, value):
    """A word that is neither true nor false is refused, never taken for false."""
    monkeypatch.setenv("PAYGATE_QUERIES_AUTO_ANSWER", text)
    if value is not None:
        assert config.load().queries_auto_answer is value
        return

    assert [where for where, _, _ in refused()] == ["PAYGATE_QUERIES_AUTO_ANSWER"]


@pytest.mark.parametrize("name, codes", [
    ("branch_codes", ["999100000027", "99910000003"]),
    ("unverified_senders", ["ABC100000019"]),
])
def test_a_listed_bank_code_is_twelve_digits(name, codes):
    assert [(where, value) for where, value, _ in refused(**{name: codes})] == [
        (name, [codes[-1]])]


def test_an_unknown_signature_algorithm_is_refused():
    assert [(w, v) for w, v, _ in refused(signature_algorithm="rsa-sha1")] == [
        ("signature_algorithm", "rsa-sha1")]


@pytest.mark.parametrize("name", ["operators_file", "screening_file"])
def test_a_file_that_cannot_be_read_is_refused_at_start(tmp_path, name):
    """The operators' file and the screening list are read at start: one missing or not
    TOML would otherwise fail the first sign-in or the first payment screened."""
    missing, broken = tmp_path / "missing.toml", tmp_path / "broken.toml"
    broken.write_text("this is not = = toml\n", encoding="utf-8")

    for path in (missing, broken):
        assert [(w, v) for w, v, _ in refused(**{name: str(path)})] == [(name, str(path))]


def test_an_operators_file_with_a_bad_entry_is_refused_at_start(tmp_path):
    path = tmp_path / "operators.toml"
    path.write_text('[[operator]]\nuser = "Op One"\nlevel = "99"\npassword = "x"\n',
                    encoding="utf-8")

    with pytest.raises(PaygateError) as exc:
        config.load(None, {"operators_file": str(path)})

    assert [p.code for p in exc.value.problems] == [
        "operator_user_malformed", "operator_level_unknown",
        "operator_password_hash_malformed"]


def test_the_shipped_files_are_taken():
    from gateway.ops.operators import DEMO_FILE
    shipped = Path(DEMO_FILE).with_name("screening.toml")

    settings = config.load(None, {"operators_file": str(DEMO_FILE),
                                  "screening_file": str(shipped)})

    assert settings.operators_file == str(DEMO_FILE)


def test_a_screening_file_with_a_misspelt_key_is_refused_at_start(tmp_path):
    """`acounts` is not taken as no accounts: the start is refused, naming the key."""
    path = tmp_path / "screen.toml"
    path.write_text('names = ["坏人公司"]\nacounts = ["6200000000009999"]\n',
                    encoding="utf-8")

    with pytest.raises(PaygateError) as exc:
        config.load(None, {"screening_file": str(path)})

    [problem] = exc.value.problems
    assert problem.code == "screening_list_malformed" and "`acounts`" in problem.message


def test_a_broken_screening_file_starts_with_the_copy_of_its_last_good_list(tmp_path):
    """A good copy of the same file's last list in the data folder lets the gateway
    start (with it, and the critical alert); without one the start is refused."""
    from gateway.ops import review
    path, data = tmp_path / "screen.toml", tmp_path / "data"
    data.mkdir()
    path.write_text('names = ["坏人公司"]\n', encoding="utf-8")
    review.keep_last_good(str(path), data)
    path.write_text('names = [ "x", ', encoding="utf-8")

    settings = config.load(None, {"screening_file": str(path), "data_dir": str(data)})
    (data / review.LAST_GOOD_FILE).unlink()

    assert settings.screening_file == str(path)
    assert [w for w, _, _ in refused(screening_file=str(path), data_dir=str(data))] == [
        "screening_file"]
