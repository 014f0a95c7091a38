"""asci user list/disable/enable/passwd/link/unlink, asci user token issue/list/revoke, and
asci repo create/grant/revoke/grants: the administrator's commands."""

from __future__ import annotations

import json

import pytest

from asci import accounts
from asci.cli import main
from asci.config import Settings
from asci.db import session_scope
from tests.support import require_programs


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``cli("user", "list")`` -> (exit code, stdout, stderr), on a fresh data directory."""
    monkeypatch.setenv("ASCI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASCI_OIDC_ISSUER", "https://idp.example")

    def run(*argv: str):
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert run("db", "upgrade")[0] == 0
    run.settings = Settings(data_dir=tmp_path / "data")
    return run


def test_user_lifecycle(cli):
    assert cli("user", "add", "alice", "--password", "alice-password")[0] == 0
    assert cli("user", "add", "root", "--password", "root-password", "--admin")[0] == 0
    code, out, _ = cli("user", "list", "--json")
    rows = {row["username"]: row for row in json.loads(out)}
    assert rows["root"]["admin"] and rows["alice"]["active"] and rows["alice"]["password"]

    code, out, _ = cli("user", "disable", "alice")
    assert code == 0 and "disabled" in out
    assert "alice\tuser\tdisabled" in cli("user", "list")[1]
    with session_scope(cli.settings) as db:
        assert accounts.authenticate(db, "alice", "alice-password") is None
    assert cli("user", "enable", "alice")[0] == 0
    assert cli("user", "passwd", "alice", "--password", "new-password-1")[0] == 0
    with session_scope(cli.settings) as db:
        assert accounts.authenticate(db, "alice", "new-password-1") is not None
    assert cli("user", "passwd", "alice", "--password", "short")[2].startswith("error: password must have")

    assert cli("user", "link", "alice", "--subject", "s-42")[0] == 0
    assert json.loads(cli("user", "list", "--json")[1])[0]["sso"] == "https://idp.example|s-42"
    code, _, err = cli("user", "link", "root", "--subject", "s-42")
    assert code == 1 and "belongs to account 'alice'" in err
    assert "unlinked from https://idp.example|s-42" in cli("user", "unlink", "alice")[1]
    assert cli("user", "disable", "nobody")[2] == "error: no user 'nobody'\n"


def test_token_issue_list_revoke(cli):
    cli("user", "add", "alice", "--password", "alice-password")
    code, token, _ = cli("user", "token", "alice")  # the old spelling issues a token
    assert code == 0 and token.startswith("asci_")
    code, out, _ = cli("user", "token", "issue", "alice", "--name", "ci", "--scope", "publish:beamline",
                       "--scope", "sessions", "--expires", "12h")
    assert code == 0 and out.startswith("asci_")
    code, _, err = cli("user", "token", "alice", "--scope", "admin")
    assert code == 1 and "administrators" in err
    code, _, err = cli("user", "token", "alice", "--scope", "everything")
    assert code == 1 and "unknown scope" in err
    code, _, err = cli("user", "token", "alice", "--expires", "soon")
    assert code == 2 and "--expires" in err
    listed = json.loads(cli("user", "token", "list", "alice", "--json")[1])
    assert [(row["name"], row["scopes"]) for row in listed] == [("cli", ["sessions"]),
                                                                ("ci", ["publish:beamline", "sessions"])]
    assert listed[0]["expires_at"] is not None  # the default lifetime (api_token_days)
    assert cli("user", "token", "issue", "alice", "--expires", "never")[0] == 0
    assert json.loads(cli("user", "token", "list", "--json")[1])[-1]["expires_at"] is None
    revoked = cli("user", "token", "revoke", str(listed[0]["id"]))[1]
    assert revoked.strip() == f"token {listed[0]['id']} of alice revoked"
    with session_scope(cli.settings) as db:
        assert accounts.token_for(db, token.strip()) is None
    assert [row["state"] for row in json.loads(cli("user", "token", "list", "--all", "--json")[1])][0] == "revoked"
    assert cli("user", "token", "revoke", "999")[2] == "error: no token 999\n"


def test_repositories_are_created_and_granted_by_the_administrator(cli):
    require_programs("createrepo_c")
    cli("user", "add", "alice", "--password", "alice-password")
    assert cli("repo", "create", "beamline")[0] == 0
    assert cli("repo", "create", "beamline")[2] == "error: repository 'beamline' already exists\n"
    assert cli("repo", "grant", "nothere", "alice")[2] == "error: no repository 'nothere'\n"
    assert cli("repo", "grant", "beamline", "alice")[1] == "alice may publish into beamline\n"
    assert "already granted" in cli("repo", "grant", "beamline", "alice")[1]
    assert cli("repo", "grants")[1].startswith("beamline\talice\t")
    assert "publishers: alice" in cli("repo", "list")[1]
    assert cli("repo", "revoke", "beamline", "alice")[1] == "alice may no longer publish into beamline\n"
    assert cli("repo", "grants", "beamline")[1] == ""
    assert cli("repo", "create", "Bad..Name")[0] == 1


def test_user_add_takes_only_a_uid_of_a_person_and_one_no_other_account_has(cli):
    for uid in ("0", "-1", "999", "2147483648"):
        code, _, err = cli("user", "add", f"u{uid.strip('-')}", "--password", "a-password", "--uid", uid)
        assert code != 0 and "uid" in err, (uid, err)
    assert cli("user", "add", "alice", "--password", "alice-password", "--uid", "4242")[0] == 0
    code, _, err = cli("user", "add", "mallory", "--password", "a-password", "--uid", "4242")
    assert code != 0 and "alice" in err and "4242" in err
    code, _, err = cli("user", "add", "dave", "--password", "a-password", "--uid", "4243", "--gid", "0")
    assert code != 0 and "gid" in err
    code, out, _ = cli("user", "list", "--json")
    assert sorted(row["username"] for row in json.loads(out)) == ["alice"]
