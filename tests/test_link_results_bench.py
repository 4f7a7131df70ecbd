"""benchmarks/link_results.py times the reading of envelopes that pass it: the ccms.990s
and ccms.900s it makes as the simulated NPC writes them are read clean, each as its own
type (a reading that refused them would time the refusal)."""

from __future__ import annotations

import sys

from benchmarks import link_results
from gateway.app import _read_body
from gateway.messages import envelope as env_mod


def test_its_envelopes_read_clean_each_as_its_type() -> None:
    raws = link_results.results(6)
    read = [_read_body(env_mod.decode(raw), "unsigned_allowed") for raw in raws]
    assert [r.mtype.code for r in read] == ["ccms.990.001.02", "ccms.900.001.02"] * 3
    assert all(r.ok for r in read), [r.problems for r in read]
    assert read[1].obj.original.msg_id == "2026120700000001"


def test_a_run_prints_its_figure(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["link_results", "--envelopes", "4", "--rounds", "1",
                                      "--posts", "2"])
    link_results.main()
    assert capsys.readouterr().out.startswith("us an envelope: median ")
