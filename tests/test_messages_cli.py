"""`paygate validate`: one JSON line per file, exit status, keys, directory, work date."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.messages import codec, examples
from gateway.messages.envelope import Envelope, Header
from gateway.messages.signing import KeyRing, write_keypair

DATA = Path(__file__).resolve().parent / "data" / "messages"
GOOD = DATA / "good_hvps111_urgent.msg"
BROKEN = DATA / "hvps111_currency_usd.msg"
HEADER = Header("999100000019", "HVPS", "888200000015", "HVPS", "20240520", "101530",
                "hvps.111.001.01", "20240520000000000101", "20240520000000000101", "1")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:
    status = main(["validate", *args])
    lines = capsys.readouterr().out.splitlines()
    return status, [json.loads(line) for line in lines]


def _signed(tmp_path: Path, body: bytes | None = None) -> Path:
    keys = tmp_path / "keys"
    write_keypair(keys, HEADER.orig_sender)
    ring = KeyRing.load(keys, own=[HEADER.orig_sender])
    body = body or codec.build_body("hvps.111.001.01", examples.credit_transfer())
    path = tmp_path / "signed.msg"
    path.write_bytes(Envelope(HEADER, ring.sign(HEADER, body), body).encode())
    return path


def test_valid_files_exit_zero_with_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    """Every file gets a line saying ok, its type and its signature state."""
    status, lines = run(capsys, str(GOOD), str(DATA / "good_bare_ccms314_query.xml"))

    assert status == 0
    assert lines == [
        {"file": str(GOOD), "type": "hvps.111.001.01", "signature": "unverified", "ok": True},
        {"file": str(DATA / "good_bare_ccms314_query.xml"), "type": "ccms.314.001.01",
         "ok": True}]


def test_one_invalid_file_makes_the_exit_status_one(capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid file is reported with CONTRACT.md §6 errors, and the run fails."""
    status, lines = run(capsys, str(GOOD), str(BROKEN), str(DATA / "nonexistent.msg"))

    assert status == 1
    assert [line["ok"] for line in lines] == [True, False, False]
    assert lines[1]["errors"] == [{
        "code": "currency_must_be_cny",
        "path": "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/IntrBkSttlmAmt/@Ccy",
        "value": "USD", "expected": "CNY",
        "message": "the currency must be CNY at /Document/FIToFICstmrCdtTrf/CdtTrfTxInf/"
                   "IntrBkSttlmAmt/@Ccy: got 'USD', expected CNY"}]
    assert lines[2]["errors"][0]["code"] == "file_unreadable"


def test_signature_verifies_with_the_senders_key(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """With --keys holding the sender's public key, a good signature is verified."""
    path = _signed(tmp_path)

    status, lines = run(capsys, str(path), "--keys", str(tmp_path / "keys"))

    assert status == 0 and lines[0]["signature"] == "verified"


def test_tampered_body_fails_verification(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A changed byte after signing is refused as signature_invalid."""
    path = _signed(tmp_path)
    path.write_bytes(path.read_bytes().replace("测试乙".encode(), "测试丙".encode()))

    status, lines = run(capsys, str(path), "--keys", str(tmp_path / "keys"))

    assert status == 1 and lines[0]["errors"][0]["code"] == "signature_invalid"


def test_signature_without_a_configured_key_is_unverified(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sender whose key is not in --keys is reported unverified, not as an error."""
    path = _signed(tmp_path)
    other = tmp_path / "other-keys"
    write_keypair(other, "777300000011")

    status, lines = run(capsys, str(path), "--keys", str(other))

    assert status == 0 and lines[0]["signature"] == "unverified"


def test_context_options_add_directory_and_date_rules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--directory and --work-date refuse unknown banks and messages of another day."""
    directory = tmp_path / "participants.csv"
    directory.write_text(
        "bank_code,name,direct_participant,city_node,kind,status,effective_from,"
        "effective_to,version\n"
        "999100000019,A,999100000019,1000,direct,active,2024-01-01,,1\n"
        "999100000027,A1,999100000019,1000,indirect,active,2024-01-01,,1\n"
        "888200000015,B,888200000015,2000,direct,active,2024-01-01,,1\n", encoding="utf-8")

    status, lines = run(capsys, str(GOOD), "--directory", str(directory),
                        "--work-date", "2024-05-21")

    assert status == 1
    assert [e["code"] for e in lines[0]["errors"]] == [
        "bank_code_unknown", "bank_code_unknown", "message_not_created_on_work_date"]
    status, lines = run(capsys, str(GOOD), "--work-date", "2024-05-21")
    assert [e["code"] for e in lines[0]["errors"]] == ["message_not_created_on_work_date"]


@pytest.mark.parametrize("args", [[], ["--work-date", "2024/05/20", str(GOOD)],
                                  ["--keys", "/nonexistent", str(GOOD)], ["--bogus", "x"]])
def test_usage_errors_exit_two(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments give one error object and status 2, nothing else on stdout."""
    status, lines = run(capsys, *args)

    assert status == 2
    assert len(lines) == 1 and lines[0]["errors"][0]["code"] == "validate_usage"


@pytest.mark.parametrize("content, value", [
    (b"garbage", "garbage"), (b"", ""), (b"\xff\xfe<\x00", "ff fe 3c 00")])
def test_unreadable_bytes_are_shown_as_text_not_python(
        content: bytes, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The value of a refused document is its first bytes as text (or hex when they are
    not UTF-8), never Python's b'...' form."""
    path = tmp_path / "odd.xml"
    path.write_bytes(content)
    status, lines = run(capsys, str(path))

    assert status == 1
    assert lines[0]["errors"][0]["value"] == value
    assert "b'" not in json.dumps(lines[0])


def test_a_file_refused_for_its_schema_lists_every_schema_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Past a missing ChrgBr, where libxml2 stops, the errors in Dbtr are listed too."""
    raw = (Path(__file__).resolve().parents[1] / "gateway" / "examples"
           / "hvps.111_normal-contract-payment.xml").read_bytes()
    path = tmp_path / "two_faults.xml"
    path.write_bytes(raw.replace(b"<ChrgBr>DEBT</ChrgBr>", b"").replace(
        b"<Dbtr>", b"<Dbtr><Alias>x</Alias>"))
    status, lines = run(capsys, str(path))

    assert status == 1
    assert [(e["code"], e["path"].rsplit("/", 2)[-2:]) for e in lines[0]["errors"]] == [
        ("schema_violation", ["CdtTrfTxInf", "InstgAgt"]),
        ("schema_violation", ["Dbtr", "Alias"])]
