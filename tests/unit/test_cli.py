"""The asci entry point: grouped help and one-line errors without tracebacks."""

import click
import pytest

from asci.cli import cli, main


def test_help_lists_the_package_groups(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for group in ("db", "user", "serve", "demo", "base", "rpm"):
        assert f"  {group} " in out


@pytest.mark.parametrize("group", cli.list_commands(click.Context(cli)))
def test_every_command_has_help(group, capsys):
    assert main([group, "--help"]) == 0
    assert "Usage: asci " + group in capsys.readouterr().out


def test_expected_errors_are_one_line_and_non_zero(monkeypatch, capsys):
    monkeypatch.setenv("ASCI_REGISTRY", "not-a-registry")
    code = main(["db", "current"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0
    assert err.startswith("error: ASCI_REGISTRY: expected host:port")
    assert "Traceback" not in err


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_db_upgrade_and_user_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASCI_DATA_DIR", str(tmp_path))
    assert main(["db", "current"]) == 0
    assert "empty" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "database at revision" in capsys.readouterr().out
    assert main(["user", "add", "alice", "--password", "correct horse"]) == 0
    assert main(["user", "add", "alice", "--password", "correct horse"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["user", "add", "bob", "--password", "short"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err
    assert main(["user", "token", "alice"]) == 0
    assert capsys.readouterr().out.startswith("asci_")


@pytest.mark.parametrize("argv", [["experiment", "list"], ["node", "list"], ["session", "list"], ["build", "list"],
                                  ["rpm", "list"], ["env", "list"]])
def test_listing_commands_work_in_a_fresh_process(tmp_path, argv):
    """Each command runs alone in a new interpreter: no model may depend on another being imported first."""
    import os
    import subprocess
    import sys

    environment = dict(os.environ, ASCI_DATA_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-m", "asci", "db", "upgrade"], env=environment, check=True, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "asci", *argv], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
