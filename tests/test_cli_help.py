"""What `--help` tells: every `paygate ops` command with a line saying what it does, and
`paygate bench` saying that a run rewrites README.md and benchmarks/results.json unless
given --no-write."""

from __future__ import annotations

import re

import pytest

from gateway import bench
from gateway.ops import cli


def test_every_ops_command_has_a_line_of_help(capsys):
    parser = cli.build_parser()
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    [commands] = [a for a in parser._actions if a.dest == "command"]

    assert done.value.code == 0
    for name in commands.choices:
        described = re.search(rf"^    {re.escape(name)} +(\S.*)$", text, re.M)
        assert described, f"`paygate ops --help` gives {name} no description:\n{text}"
        assert described.group(1).strip() == " ".join(cli.COMMANDS[name].split())[
            :len(described.group(1).strip())]
    assert set(commands.choices) == set(cli.COMMANDS)


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_ops_command_s_own_help_says_what_it_does(capsys, name):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([name, "--help"])

    assert cli.COMMANDS[name].split()[0] in capsys.readouterr().out


def test_bench_help_says_it_writes_files_unless_told_not_to(capsys):
    with pytest.raises(SystemExit) as done:
        bench.bench_command(["--help"])
    text = " ".join(capsys.readouterr().out.split())

    assert done.value.code == 0
    assert "without --no-write" in text
    assert "benchmarks/results.json" in text and "README.md" in text
    assert "--quick run" in text


def test_stuck_tells_the_age_it_filters_by(capsys):
    """`ops stuck` lists only payments unchanged for views.STUCK_AFTER_MIN minutes unless
    given --minutes: its line in `ops --help`, its own --help and the CLI table of
    docs/operations.md say so, with the number the gateway applies."""
    from pathlib import Path

    from gateway.ops import views

    default = f"{views.STUCK_AFTER_MIN} minutes"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["stuck", "--help"])
    own = " ".join(capsys.readouterr().out.split())
    docs = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    [row] = [line for line in docs.splitlines() if line.startswith("| `stuck")]

    assert default in cli.COMMANDS["stuck"]
    assert default in own and "--minutes 0" in own
    assert default in row and "--minutes 0" in row


def test_the_command_s_default_age_is_the_gateway_s():
    from gateway.ops import views

    assert cli.STUCK_DEFAULT_MIN == views.STUCK_AFTER_MIN
