"""Import experiments and memberships from a user office export (CSV or JSON).

Columns / keys: ``code``, ``title``, ``data_path``, ``start``, ``end``
(YYYY-MM-DD), ``members`` (user names; in CSV separated by spaces, ``;`` or
``|``), optionally ``environments`` (environment names the experiment may use).
Missing users are created without a password (they log in through whatever
the site configures, or get one from an administrator). Importing the same
file twice changes nothing; memberships are only added, never removed.
Any bad row fails the whole import with the row named, and nothing is written.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

import builder
from asci.accounts import AccountError, User, create_user
from asci.config import Settings
from broker.data_paths import data_path_problem
from broker.errors import ImportFailed
from broker.models import Experiment, ExperimentEnvironment, ExperimentMember

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
        members = _names(row.get("members"))
        for member in members:
            if not re.fullmatch(r"[a-z_][a-z0-9_.\-]{0,63}", member):
                raise ImportFailed(f"{row_name}: member {member!r} is not a valid user name")
        clean.append({"row": row_name, "code": code, "title": str(row.get("title") or "").strip(),
                      "data_path": data_path, "start": start, "end": end, "members": members,
                      "environments": _names(row.get("environments"))})
    return clean


def import_rows(settings: Settings, db: Session, rows: list[dict]) -> dict:
    """Apply validated rows in the caller's transaction; returns counts. Raises on an unknown environment."""
    counts = {"experiments_created": 0, "experiments_updated": 0, "users_created": 0, "memberships_added": 0}
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
        for username in row["members"]:
            user = db.scalar(select(User).where(User.username == username))
            if user is None:
                try:
                    user = create_user(db, username)
                except AccountError as exc:
                    raise ImportFailed(f"{row['row']}: {exc}") from None
                counts["users_created"] += 1
            if db.scalar(select(ExperimentMember.id).where(ExperimentMember.experiment_id == experiment.id,
                                                           ExperimentMember.user_id == user.id)) is None:
                db.add(ExperimentMember(experiment_id=experiment.id, user_id=user.id))
                counts["memberships_added"] += 1
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
        return import_rows(settings, db, rows)
