"""Core sub-commands: ``asci db`` and ``asci user`` (accounts, their lifecycle and API tokens)."""

from __future__ import annotations

import datetime as dt
import json
import re

import click

from asci import accounts
from asci.db import current_revision, session_scope, upgrade
from asci.cli_context import AsciContext, pass_ctx
from asci.errors import AccountError


@click.group("db")
def db_group() -> None:
    """Create and migrate the database."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to migrate to.")
@pass_ctx
def db_upgrade(ctx: AsciContext, revision: str) -> None:
    """Migrate the configured database (ASCI_DATABASE_URL) to the newest schema."""
    new = upgrade(ctx.settings, revision)
    click.echo(f"database at revision {new}")


@db_group.command("current")
@pass_ctx
def db_current(ctx: AsciContext) -> None:
    """Print the schema revision of the configured database."""
    click.echo(current_revision(ctx.settings) or "empty (run: asci db upgrade)")


@click.group("user")
def user_group() -> None:
    """Manage accounts (add, list, disable, enable, passwd, link) and API tokens."""


@user_group.command("add")
@click.argument("username")
@click.option("--password", help="Password (prompted for when omitted).")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--uid", type=int, help="Unix uid the user's desktops run as.")
@click.option("--gid", type=int, help="Unix gid the user's desktops run as.")
@pass_ctx
def user_add(ctx: AsciContext, username: str, password: str | None, admin: bool, uid: int | None,
             gid: int | None) -> None:
    """Add a local user."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with session_scope(ctx.settings) as db:
        accounts.create_user(db, username, password, is_admin=admin, uid=uid, gid=gid)
    click.echo(f"user {username} added{' (administrator)' if admin else ''}")


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def user_list(ctx: AsciContext, as_json: bool) -> None:
    """Every account: name, role, state, how it logs in."""
    with session_scope(ctx.settings) as db:
        rows = [{"username": u.username, "admin": bool(u.is_admin), "active": bool(u.is_active),
                 "password": bool(u.password_hash), "sso": u.external_id, "self_registered": bool(u.self_registered),
                 "email": u.email, "disabled_at": u.disabled_at.isoformat() if u.disabled_at else None}
                for u in accounts.list_users(db)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        login = ", ".join(filter(None, ["password" if row["password"] else "",
                                        f"sso {row['sso']}" if row["sso"] else ""]))
        click.echo(f"{row['username']}\t{'admin' if row['admin'] else 'user'}\t"
                   f"{'active' if row['active'] else 'disabled'}\t{login or 'no login'}")


@user_group.command("disable")
@click.argument("username")
@pass_ctx
def user_disable(ctx: AsciContext, username: str) -> None:
    """Disable USERNAME: no login, web sessions ended, tokens revoked, desktops stopped after the grace period."""
    with session_scope(ctx.settings) as db:
        revoked = accounts.disable_user(db, accounts.get_user(db, username))
    click.echo(f"user {username} disabled; {revoked} tokens revoked; their desktops stop after "
               f"{ctx.settings.disabled_user_grace_s} s (at the next cull: asci session reconcile --loop, "
               "or asci session cull)")


@user_group.command("enable")
@click.argument("username")
@pass_ctx
def user_enable(ctx: AsciContext, username: str) -> None:
    """Let a disabled USERNAME log in again (revoked tokens stay revoked)."""
    with session_scope(ctx.settings) as db:
        accounts.enable_user(db, accounts.get_user(db, username))
    click.echo(f"user {username} enabled")


@user_group.command("passwd")
@click.argument("username")
@click.option("--password", help="The new password (prompted for when omitted).")
@pass_ctx
def user_passwd(ctx: AsciContext, username: str, password: str | None) -> None:
    """Set the password of USERNAME; every browser logged in as them is logged out."""
    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    with session_scope(ctx.settings) as db:
        accounts.change_password(db, accounts.get_user(db, username), password)
    click.echo(f"password of {username} changed; every browser logged in as them is logged out")


@user_group.command("link")
@click.argument("username")
@click.option("--subject", required=True, help="The identity provider's subject (the 'sub' claim).")
@click.option("--issuer", default=None, help="The provider's issuer URL (default: the oidc_issuer setting).")
@pass_ctx
def user_link(ctx: AsciContext, username: str, subject: str, issuer: str | None) -> None:
    """Let USERNAME (a local account) log in by single sign-on as SUBJECT."""
    issuer = issuer or ctx.settings.oidc_issuer
    if not issuer:
        raise AccountError("no issuer: pass --issuer or set oidc_issuer")
    with session_scope(ctx.settings) as db:
        accounts.link_identity(db, accounts.get_user(db, username), issuer, subject)
    click.echo(f"user {username} signs on as {subject} at {issuer}")


@user_group.command("unlink")
@click.argument("username")
@pass_ctx
def user_unlink(ctx: AsciContext, username: str) -> None:
    """Remove the single sign-on identity of USERNAME (its web sessions end)."""
    with session_scope(ctx.settings) as db:
        previous = accounts.unlink_identity(db, accounts.get_user(db, username))
    click.echo(f"user {username} unlinked from {previous}" if previous else f"user {username} had no sign-on identity")


# ------------------------------------------------------------------ tokens

class _TokenGroup(click.Group):
    """``asci user token USERNAME ...`` issues a token (as it always did); ``list`` and ``revoke``
    are sub-commands (``asci user token issue NAME`` for a user called list, issue or revoke)."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["issue", *args]
        return super().resolve_command(ctx, args)


@user_group.group("token", cls=_TokenGroup)
def token_group() -> None:
    """Issue (asci user token USERNAME), list and revoke API tokens."""


def _lifetime(text: str | None, default_days: int) -> dt.timedelta | None:
    if text is None:
        return dt.timedelta(days=default_days)
    if text.strip().lower() == "never":
        return None
    match = re.fullmatch(r"\s*(\d{1,5})\s*([hdw]?)\s*", text.lower())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter("expected a lifetime such as 12h, 30d, 8w or never", param_hint="--expires")
    unit = {"h": "hours", "d": "days", "": "days", "w": "weeks"}[match.group(2)]
    return dt.timedelta(**{unit: int(match.group(1))})


@token_group.command("issue")
@click.argument("username")
@click.option("--name", default="cli", show_default=True, help="A label for the token.")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help="Repeatable: sessions (default), publish:REPO (or publish:*), metrics, admin (administrators).")
@click.option("--expires", default=None, metavar="LIFETIME",
              help="12h, 30d, 8w or never (default: the api_token_days setting).")
@pass_ctx
def token_issue(ctx: AsciContext, username: str, name: str, scopes: tuple[str, ...], expires: str | None) -> None:
    """Issue an API token for USERNAME and print it (it is shown only once)."""
    lifetime = _lifetime(expires, ctx.settings.api_token_days)
    with session_scope(ctx.settings) as db:
        token = accounts.issue_token(db, accounts.get_user(db, username), name,
                                     scopes=scopes or accounts.DEFAULT_SCOPES, lifetime=lifetime)
    click.echo(token)


@token_group.command("list")
@click.argument("username", required=False)
@click.option("--all", "include_inactive", is_flag=True, help="Include revoked and expired tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def token_list(ctx: AsciContext, username: str | None, include_inactive: bool, as_json: bool) -> None:
    """API tokens (of USERNAME, or everyone's): id, owner, label, scopes, expiry, last use."""
    with session_scope(ctx.settings) as db:
        user = accounts.get_user(db, username) if username else None
        rows = [row.as_dict() for row in accounts.list_tokens(db, user, include_inactive=include_inactive)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']}\t{row['user']}\t{row['name']}\t{' '.join(row['scopes'])}\t{row['state']}\t"
                   f"expires {row['expires_at'] or 'never'}\tlast used {row['last_used_at'] or 'never'}")


@token_group.command("revoke")
@click.argument("token_id", type=int)
@click.option("--user", "username", default=None, help="Only if the token belongs to this user.")
@pass_ctx
def token_revoke(ctx: AsciContext, token_id: int, username: str | None) -> None:
    """Revoke the API token TOKEN_ID (see asci user token list)."""
    with session_scope(ctx.settings) as db:
        user = accounts.get_user(db, username) if username else None
        row = accounts.revoke_token(db, token_id, user)
        owner = row.user.username
    click.echo(f"token {token_id} of {owner} revoked")
