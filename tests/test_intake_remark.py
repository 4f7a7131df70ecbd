"""A remittance given as one line of text is remembered once checked and tagged
(intake._one_line); what it gives, and what it refuses, is what the same line given
as a list of one gives, however often it comes."""

from __future__ import annotations

import pytest

from gateway import intake
from gateway.errors import ProblemList


def _read(value):
    p = ProblemList()
    lines = intake._remittance(value, p)
    return lines, [(x.code, x.path) for x in p.items]


@pytest.mark.parametrize("text", [
    "货款", "/H02/工资", "/h01/x", "/AB1", " ", "a" * intake.REMITTANCE_LINE_LEN_MAX,
    "a" * (intake.REMITTANCE_LINE_LEN_MAX + 1), "x\u200by", "x\ny", "\ufffe", "\t"])
def test_one_line_reads_as_a_list_of_one_every_time(text):
    as_list = _read([text])
    assert _read(text) == as_list
    assert _read(text) == as_list  # remembered: the same again


def test_a_refused_line_is_refused_each_time_it_comes():
    first, again = _read("x\u200by"), _read("x\u200by")
    assert first == again == ((), [("text_has_control_or_invisible_characters",
                                    "/remittance_info")])
    assert _read("a" * 136)[1] == [("remittance_info_malformed", "/remittance_info")]


def test_free_text_is_tagged_and_a_tagged_line_kept():
    assert _read("货款")[0] == ("/H01/货款",)
    assert _read("/H02/工资")[0] == ("/H02/工资",)
    assert _read("/h02/x")[0] == ("/H01//h02/x",)
