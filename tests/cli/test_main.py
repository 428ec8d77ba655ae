"""`mobileprune` top level: every subcommand registered from its module, help without a command, exit codes."""

from __future__ import annotations

from mobileprune import __version__
from mobileprune.cli import main as cli_main
from mobileprune.cli.exit_codes import EXIT_BAD_INPUT


def test_every_subcommand_is_registered_under_its_name():
    parser = cli_main.build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert set(choices) == set(cli_main._SUBCOMMANDS) == {"demo", "export", "bench", "inspect", "latency-table"}
    assert "inspect_command" not in choices


def test_no_command_prints_help_and_exits_bad_input(capsys):
    assert cli_main.main([]) == EXIT_BAD_INPUT
    assert "mobileprune inspect model.tflite --json" in capsys.readouterr().out


def test_version(capsys):
    try:
        cli_main.main(["--version"])
    except SystemExit as done:
        assert done.code == 0
    assert capsys.readouterr().out.strip() == f"mobileprune {__version__}"
