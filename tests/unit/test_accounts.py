"""Accounts: token scopes and expiry, the lifecycle (disable, enable, password, identity), constant work
for unknown names, and the private data directory."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest

from asci import accounts
from asci.config import Settings
from asci.db import session_scope, upgrade, utcnow
from asci.errors import AccountError


@pytest.fixture
def people(settings):
    with session_scope(settings) as db:
        accounts.create_user(db, "alice", "alice-password")
        accounts.create_user(db, "root", "root-password", is_admin=True)
    return settings


def test_scopes_are_checked_and_publish_star_covers_every_repository():
    assert accounts.parse_scopes("sessions, publish:beamline  metrics") == ("sessions", "publish:beamline", "metrics")
    for bad in ("everything", "publish:", "publish:Bad..Name", "sessions;admin", ""):
        with pytest.raises(AccountError):
            accounts.parse_scopes(bad)
    assert accounts.scope_allows(["publish:*"], "publish:beamline")
    assert not accounts.scope_allows(["publish:beamline"], "publish:other")
    assert not accounts.scope_allows(["sessions"], "admin")


def test_tokens_carry_scopes_expire_and_are_revoked(people):
    with session_scope(people) as db:
        alice = accounts.get_user(db, "alice")
        plain = accounts.issue_token(db, alice, "laptop")
        short = accounts.issue_token(db, alice, "ci", scopes=["publish:beamline"], lifetime=dt.timedelta(hours=1))
        with pytest.raises(AccountError, match="administrators"):
            accounts.issue_token(db, alice, scopes="admin")
        with pytest.raises(AccountError, match="positive"):
            accounts.issue_token(db, alice, lifetime=dt.timedelta(0))
    with session_scope(people) as db:
        row = accounts.token_for(db, short)
        assert row.allows("publish:beamline") and not row.allows("sessions") and row.last_used_at is not None
        assert accounts.token_for(db, plain).scope_list == ["sessions"]
        row.expires_at = utcnow() - dt.timedelta(seconds=1)  # an hour later
    with session_scope(people) as db:
        assert accounts.token_for(db, short) is None
        listed = accounts.list_tokens(db, accounts.get_user(db, "alice"))
        assert [t.name for t in listed] == ["laptop"]
        assert [t.state() for t in accounts.list_tokens(db, include_inactive=True)] == ["active", "expired"]
        accounts.revoke_token(db, listed[0].id)
        accounts.revoke_token(db, listed[0].id)  # twice is a no-op
        with pytest.raises(AccountError, match="no token"):
            accounts.revoke_token(db, listed[0].id, accounts.get_user(db, "root"))  # not root's
    with session_scope(people) as db:
        assert accounts.token_for(db, plain) is None
        assert accounts.token_for(db, "asci_" + "x" * 500) is None and accounts.token_for(db, "") is None


def test_disabling_ends_sessions_and_tokens_and_enabling_does_not_bring_tokens_back(people):
    with session_scope(people) as db:
        alice = accounts.get_user(db, "alice")
        token = accounts.issue_token(db, alice)
        epoch = alice.session_epoch
        assert accounts.disable_user(db, alice) == 1
        assert not alice.is_active and alice.disabled_at is not None and alice.session_epoch == epoch + 1
    with session_scope(people) as db:
        assert accounts.token_for(db, token) is None
        assert accounts.authenticate(db, "alice", "alice-password") is None
        with pytest.raises(AccountError, match="disabled"):
            accounts.issue_token(db, accounts.get_user(db, "alice"))
        accounts.enable_user(db, accounts.get_user(db, "alice"))
    with session_scope(people) as db:
        assert accounts.authenticate(db, "alice", "alice-password").username == "alice"
        assert accounts.token_for(db, token) is None


def test_a_password_change_moves_the_session_epoch(people):
    with session_scope(people) as db:
        alice = accounts.get_user(db, "alice")
        before = alice.session_epoch
        accounts.change_password(db, alice, "a-new-password")
        assert alice.session_epoch == before + 1
        assert accounts.authenticate(db, "alice", "alice-password") is None
        assert accounts.authenticate(db, "alice", "a-new-password") is not None


def test_authentication_checks_one_hash_whatever_the_name(people, monkeypatch):
    calls = []
    real = accounts.check_password_hash
    monkeypatch.setattr(accounts, "check_password_hash",
                        lambda stored, given: calls.append(stored) or real(stored, given))
    with session_scope(people) as db:
        accounts.create_user(db, "sso-only")  # no password
        for name in ("alice", "nobody", "sso-only", "Not A Valid Name", ""):
            calls.clear()
            assert accounts.authenticate(db, name, "wrong-password") is None
            assert len(calls) == 1 and calls[0].startswith(("scrypt:", "pbkdf2:")), name


def test_linking_an_identity_refuses_one_held_by_another_account(people):
    with session_scope(people) as db:
        alice, root = accounts.get_user(db, "alice"), accounts.get_user(db, "root")
        accounts.link_identity(db, alice, "https://idp.example", "sub-1")
        assert accounts.user_by_identity(db, "https://idp.example", "sub-1").id == alice.id
        with pytest.raises(AccountError, match="belongs to account 'alice'"):
            accounts.link_identity(db, root, "https://idp.example", "sub-1")
        with pytest.raises(AccountError):
            accounts.link_identity(db, root, "https://idp.example", "bad\nsubject")
        assert accounts.unlink_identity(db, alice) == "https://idp.example|sub-1"
        accounts.link_identity(db, root, "https://idp.example", "sub-1")


def test_the_data_directory_and_the_database_are_private(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    upgrade(settings)
    assert stat.S_IMODE(os.stat(settings.data_dir).st_mode) == 0o700
    database = settings.data_dir / "asci.db"
    assert stat.S_IMODE(os.stat(database).st_mode) == 0o600
    for sidecar in (database.with_name("asci.db-wal"), database.with_name("asci.db-shm")):
        if sidecar.exists():  # SQLite gives its journal files the database file's mode
            assert stat.S_IMODE(os.stat(sidecar).st_mode) == 0o600


def test_an_existing_world_readable_data_directory_is_tightened(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    (folder / "asci.db").touch(mode=0o644)
    os.chmod(folder / "asci.db", 0o644)
    settings = Settings(data_dir=folder)
    upgrade(settings)
    with session_scope(settings):
        pass
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder / "asci.db").st_mode) == 0o600
