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
