"""Import experiments and memberships from a user office export (CSV or JSON).

Columns / keys: ``code``, ``title``, ``data_path``, ``start``, ``end``
(YYYY-MM-DD), ``members`` (in CSV separated by spaces, ``;`` or ``|``),
optionally ``environments`` (environment names the experiment may use).

A member is named by one of:

* ``sub:<subject>`` (JSON: ``{"subject": ...}``): the single sign-on identity at the configured
  issuer (``oidc_issuer``); bound to the account of that identity, or, while it has none, kept
  pending and bound at its first sign-on;
* ``email:<address>`` (JSON: ``{"email": ...}``): kept pending and bound at the next sign-on whose
  provider vouches for that address (``email_verified``);
* a user name (JSON: a string or ``{"username": ...}``): a local account, created without a
  password when missing (an administrator sets one, or links it to a sign-on identity). A name
  never binds to an account that single sign-on created, whose name its owner chose at the
  identity provider: such members must be named by subject or e-mail.

Importing the same file twice changes nothing; memberships are only added, never removed.
Any bad row fails the whole import with the row named, and nothing is written.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

import builder
from asci.accounts import USERNAME_PATTERN, AccountError, User, create_user, external_identity
from asci.config import Settings
from broker.data_paths import data_path_problem
from broker.errors import ImportFailed
from broker.models import Experiment, ExperimentEnvironment, ExperimentMember, PendingMember

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_SPLIT = re.compile(r"[\s;|,]+")


def read_rows(path: Path) -> list[dict]:
    """The rows of a CSV (header line) or JSON (a list, or {"experiments": [...]}) file."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFailed(f"{path.name}: not valid JSON: {exc}") from None
        if isinstance(data, dict):
            data = data.get("experiments")
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise ImportFailed(f"{path.name}: expected a list of experiment objects")
        return data
    return list(csv.DictReader(io.StringIO(text)))


def _date(row_name: str, key: str, value) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ImportFailed(f"{row_name}: {key} {value!r} is not a date (YYYY-MM-DD)") from None


def _names(value) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return [str(item).strip() for item in value if str(item).strip()]
    return [item for item in _SPLIT.split(str(value)) if item]


_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}")
_MEMBER_KEYS = ("subject", "email", "username")


def _member(row_name: str, item) -> tuple[str, str]:
    """``(kind, value)`` of one member: ``("subject", sub)``, ``("email", address)`` or ``("username", name)``."""
    if isinstance(item, dict):
        unknown = set(item) - set(_MEMBER_KEYS)
        given = [(key, str(item[key]).strip()) for key in _MEMBER_KEYS if item.get(key)]
        if unknown or not given:
            raise ImportFailed(f"{row_name}: member {item!r}: expected one of {', '.join(_MEMBER_KEYS)}")
        kind, value = given[0]  # the identity when there is one: a subject, else an e-mail, else the name
    else:
        text = str(item).strip()
        prefix, _, rest = text.partition(":")
        kind, value = {"sub": "subject", "subject": "subject", "email": "email"}.get(prefix), rest.strip()
        if kind is None:
            kind, value = "username", text
    if kind == "username" and not re.fullmatch(USERNAME_PATTERN, value):
        raise ImportFailed(f"{row_name}: member {value!r} is not a valid user name")
    if kind == "subject" and not (0 < len(value) <= 255 and value.isprintable()):
        raise ImportFailed(f"{row_name}: member subject {value[:40]!r} must be 1-255 printable characters")
    if kind == "email":
        value = value.lower()
        if not _EMAIL.fullmatch(value):
            raise ImportFailed(f"{row_name}: member e-mail {value[:60]!r} is not an e-mail address")
    return kind, value


def _members(row_name: str, value) -> list[tuple[str, str]]:
    items = value if isinstance(value, list) else _names(value)
    members = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        member = _member(row_name, item)
        if member not in members:
            members.append(member)
    return members


def validate(settings: Settings, rows: list[dict]) -> list[dict]:
    """Checked, normalised rows; the first bad one raises naming its row number and code."""
    clean, seen = [], set()
    for number, row in enumerate(rows, 1):
        code = str(row.get("code") or "").strip()
        row_name = f"row {number}" + (f" ({code})" if code else "")
        if not _CODE.match(code):
            raise ImportFailed(f"{row_name}: code {code!r} must be letters, digits, '.', '-' or '_'")
        if code in seen:
            raise ImportFailed(f"{row_name}: experiment {code} appears twice")
        seen.add(code)
        start, end = _date(row_name, "start", row.get("start")), _date(row_name, "end", row.get("end"))
        if start and end and end < start:
            raise ImportFailed(f"{row_name}: end {end} is before start {start}")
        data_path = str(row.get("data_path") or "").strip()
        problem = data_path_problem(data_path, settings) if data_path else None
        if problem:
            raise ImportFailed(f"{row_name}: data_path {data_path!r} {problem}")
        members = _members(row_name, row.get("members"))
        clean.append({"row": row_name, "code": code, "title": str(row.get("title") or "").strip(),
                      "data_path": data_path, "start": start, "end": end, "members": members,
                      "environments": _names(row.get("environments"))})
    return clean


def _add_member(db: Session, experiment: Experiment, user: User) -> bool:
    if db.scalar(select(ExperimentMember.id).where(ExperimentMember.experiment_id == experiment.id,
                                                   ExperimentMember.user_id == user.id)) is not None:
        return False
    db.add(ExperimentMember(experiment_id=experiment.id, user_id=user.id))
    db.flush()
    return True


def _add_pending(db: Session, experiment: Experiment, external_id: str | None = None,
                 email: str | None = None) -> bool:
    column, value = (PendingMember.external_id, external_id) if external_id else (PendingMember.email, email)
    if db.scalar(select(PendingMember.id).where(PendingMember.experiment_id == experiment.id, column == value)):
        return False
    db.add(PendingMember(experiment_id=experiment.id, external_id=external_id, email=email))
    db.flush()
    return True


def _bind(db: Session, experiment: Experiment, row: dict, kind: str, value: str, issuer: str,
          counts: dict) -> None:
    if kind == "username":
        user = db.scalar(select(User).where(User.username == value))
        if user is None:
            try:
                user = create_user(db, value)
            except AccountError as exc:
                raise ImportFailed(f"{row['row']}: {exc}") from None
            counts["users_created"] += 1
        elif user.self_registered:
            raise ImportFailed(f"{row['row']}: member {value!r} is an account created by single sign-on, whose "
                               "name its owner chose at the identity provider; name it by subject (sub:...) or "
                               "e-mail (email:...) instead")
        counts["memberships_added"] += _add_member(db, experiment, user)
        return
    if kind == "subject":
        if not issuer:
            raise ImportFailed(f"{row['row']}: member sub:{value} names a single sign-on subject, but no "
                               "identity provider is configured (oidc_issuer)")
        try:
            identity = external_identity(issuer, value)
        except AccountError as exc:
            raise ImportFailed(f"{row['row']}: {exc}") from None
        user = db.scalar(select(User).where(User.external_id == identity))
        if user is not None:
            counts["memberships_added"] += _add_member(db, experiment, user)
        else:
            counts["memberships_pending"] += _add_pending(db, experiment, external_id=identity)
        return
    counts["memberships_pending"] += _add_pending(db, experiment, email=value)


def claim_memberships(db: Session, user: User, verified_email: str | None = None) -> int:
    """Turn the memberships pending for ``user``'s sign-on identity (and for the e-mail address its
    provider verified) into memberships; returns how many were added."""
    conditions = []
    if user.external_id:
        conditions.append(PendingMember.external_id == user.external_id)
    if verified_email:
        conditions.append(PendingMember.email == verified_email.strip().lower())
    if not conditions:
        return 0
    added = 0
    for pending in db.scalars(select(PendingMember).where(or_(*conditions))).all():
        experiment = db.get(Experiment, pending.experiment_id)
        added += _add_member(db, experiment, user)
        db.delete(pending)
    db.flush()
    return added


def import_rows(settings: Settings, db: Session, rows: list[dict], issuer: str = "") -> dict:
    """Apply validated rows in the caller's transaction; returns counts. Raises on an unknown environment.

    ``issuer``: the single sign-on issuer members named by subject belong to (``oidc_issuer``).
    """
    counts = {"experiments_created": 0, "experiments_updated": 0, "users_created": 0, "memberships_added": 0,
              "memberships_pending": 0}
    for row in validate(settings, rows):
        experiment = db.scalar(select(Experiment).where(Experiment.code == row["code"]))
        if experiment is None:
            experiment = Experiment(code=row["code"])
            db.add(experiment)
            counts["experiments_created"] += 1
        elif (experiment.title, experiment.data_path, experiment.starts_on, experiment.ends_on) != (
                row["title"], row["data_path"], row["start"], row["end"]):
            counts["experiments_updated"] += 1
        experiment.title, experiment.data_path = row["title"], row["data_path"]
        experiment.starts_on, experiment.ends_on = row["start"], row["end"]
        db.flush()
        for kind, value in row["members"]:
            _bind(db, experiment, row, kind, value, issuer, counts)
        known = builder.environment_ids(db, row["environments"])
        for name in row["environments"]:
            if name not in known:
                raise ImportFailed(f"{row['row']}: unknown environment {name!r}")
            if db.scalar(select(ExperimentEnvironment.id).where(
                    ExperimentEnvironment.experiment_id == experiment.id,
                    ExperimentEnvironment.environment_id == known[name])) is None:
                db.add(ExperimentEnvironment(experiment_id=experiment.id, environment_id=known[name]))
        db.flush()
    return counts


def import_file(settings: Settings, path: Path) -> dict:
    """Read, validate and import ``path`` in one transaction (all or nothing)."""
    from asci.db import session_scope

    rows = read_rows(path)
    with session_scope(settings) as db:
        return import_rows(settings, db, rows, issuer=settings.oidc_issuer)
