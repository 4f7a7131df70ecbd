"""The message corpus in tests/data/messages: good files pass, and each broken file is
refused with the code its name announces, through the validate command's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.messages.validate_cli import Options, validate_file

DATA = Path(__file__).resolve().parent / "data" / "messages"
OPTIONS = Options(files=[], keyring=None, directory=None, work_date=None)

# file -> the codes expected, in order (the first few where a file breaks several rules).
BROKEN = {
    "beps121_control_sum_off_by_one_fen.msg": ["package_control_sum_mismatch"],
    "beps121_count_says_five_for_four.msg": ["package_count_mismatch"],
    "beps121_missing_payee_name.msg": ["schema_violation"],
    "beps121_ordinary_credit_over_50000_yuan.msg": ["amount_over_beps_limit"],
    "beps121_return_without_rtrinf.msg": ["return_must_name_original"],
    "beps121_second_amount_after_5000_zeros.msg": ["amount_too_long"],
    "beps121_third_and_fourth_amounts_three_decimals.msg":
        ["amount_must_have_at_most_two_decimals", "amount_must_have_at_most_two_decimals"],
    "beps127_without_return_deadline.msg": ["return_deadline_out_of_range"],
    "envelope_header_129_characters.msg": ["header_must_be_130_characters"],
    "envelope_missing_header.msg": ["envelope_must_start_with_header"],
    "envelope_priority_four.msg": ["header_field_malformed"],
    "envelope_signature_unterminated.msg": ["signature_block_unterminated"],
    "hvps111_amount_after_5000_zeros.msg": ["amount_too_long"],
    "hvps111_amount_three_decimals.msg": ["amount_must_have_at_most_two_decimals"],
    "hvps111_amount_zero.msg": ["amount_must_be_positive"],
    "hvps111_bank_code_fullwidth_digits.msg": ["bank_code_must_be_12_ascii_digits"],
    "hvps111_currency_usd.msg": ["currency_must_be_cny"],
    "hvps111_header_type_says_hvps112.msg": ["header_type_disagrees_with_body"],
    "hvps111_settlement_method_not_clrg.msg": ["schema_violation"],
    "hvps111_two_transactions_declared.msg": ["schema_violation"],
    "hvps111_unsigned.msg": ["signature_required"],
    "xml_billion_laughs.xml": ["xml_doctype_not_allowed"],
    "xml_declared_gbk.msg": ["xml_encoding_must_be_utf8"],
    "xml_external_entity.xml": ["xml_doctype_not_allowed"],
    "xml_invalid_utf8_byte.msg": ["xml_must_be_utf8"],
    "xml_root_not_document.xml": ["root_must_be_document"],
    "xml_truncated_body.msg": ["xml_not_well_formed"],
    "xml_unknown_namespace.xml": ["message_namespace_unknown"],
}
GOOD = sorted(p.name for p in DATA.glob("good_*"))


def test_every_file_is_in_a_table() -> None:
    """The corpus and the tables agree, so a new file cannot go unchecked."""
    assert sorted(p.name for p in DATA.iterdir() if p.suffix != ".md") == \
        sorted(GOOD + list(BROKEN))


@pytest.mark.parametrize("name", GOOD)
def test_good_file_is_valid(name: str) -> None:
    """A good file passes every check the message alone decides."""
    result = validate_file(str(DATA / name), OPTIONS)

    assert result["ok"], result.get("errors")


@pytest.mark.parametrize("name, codes", sorted(BROKEN.items()))
def test_broken_file_is_refused_by_its_rule(name: str, codes: list[str]) -> None:
    """A broken file is refused, and the first codes name the fault in its file name."""
    result = validate_file(str(DATA / name), OPTIONS)

    assert not result["ok"]
    assert [e["code"] for e in result["errors"]][:len(codes)] == codes
    assert all(set(e) == {"code", "path", "value", "expected", "message"}
               for e in result["errors"])


def test_a_package_names_each_bad_transaction_by_index() -> None:
    """Two bad amounts in a package give two errors whose paths carry their indexes."""
    result = validate_file(str(DATA / "beps121_third_and_fourth_amounts_three_decimals.msg"),
                           OPTIONS)

    assert [e["path"] for e in result["errors"]] == [
        "/Document/CstmrCdtTrf/CstmrCdtTrfInf[3]/Amt",
        "/Document/CstmrCdtTrf/CstmrCdtTrfInf[4]/Amt"]
    assert [e["value"] for e in result["errors"]] == ["1200.009", "1200.009"]
