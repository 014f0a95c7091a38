"""Who may launch what: the version to run and the experiment, after the authorisation checks."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

import builder
from asci.accounts import User
from asci.config import Settings
from broker.errors import BadRequest, Forbidden, NotFound
from broker.data_paths import data_path_problem
from broker.models import Experiment, ExperimentEnvironment, ExperimentMember


def member_experiment(db: Session, user: User, experiment, *, acting_as_admin: bool) -> Experiment:
    """The experiment ``experiment`` when ``user`` is a member of it, or the caller acts as an
    administrator (a login session of one, or a token with the ``admin`` scope: an administrator's
    token with only the ``sessions`` scope has the rights of a member, no more); Forbidden otherwise."""
    exp = db.scalar(select(Experiment).where(Experiment.code == experiment)) if isinstance(experiment, str) else None
    member = exp is not None and db.scalar(select(ExperimentMember.id).where(
        ExperimentMember.experiment_id == exp.id, ExperimentMember.user_id == user.id)) is not None
    if exp is None or not (member or acting_as_admin):
        raise Forbidden(f"you are not a member of experiment {experiment!r}")
    return exp


def resolve(settings: Settings, db: Session, user: User, environment: str, version: str, experiment: str
            ) -> tuple[builder.LaunchableVersion, Experiment]:
    """The launchable version and the experiment; NotFound, BadRequest or Forbidden with the reason."""
    for name, value in (("environment", environment), ("version", version), ("experiment", experiment)):
        if not isinstance(value, str) or not value.strip():
            raise BadRequest(f"{name}: expected a non-empty string, got {value!r}")
    try:
        launchable = builder.launchable_version(db, environment, version)
    except builder.UnknownVersion as exc:
        raise NotFound(str(exc)) from None
    except builder.NotLaunchable as exc:
        raise BadRequest(str(exc)) from None
    exp = member_experiment(db, user, experiment, acting_as_admin=user.is_admin)
    allowed = db.scalar(select(ExperimentEnvironment.id).where(
        ExperimentEnvironment.experiment_id == exp.id,
        ExperimentEnvironment.environment_id == launchable.environment_id))
    if allowed is None:
        raise Forbidden(f"experiment {experiment!r} may not use environment {environment!r}")
    problem = data_path_problem(exp.data_path, settings) if exp.data_path else None
    if problem:  # rows written before the import checked paths, or edited by hand: never mount them
        raise Forbidden(f"experiment {experiment!r}: its data folder {exp.data_path!r} {problem}; "
                        "ask an administrator to correct it")
    return launchable, exp
