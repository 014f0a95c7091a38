"""From published packages and recipe commits to queued builds, with real RPMs and git."""

import pytest
from sqlalchemy import select

import rpmrepo
from asci import db
from ci import changes
from asci.nevra import package_name
from ci.affected import affected_environments
from ci.models import BuildJob
from rpmrepo import capability_name
from tests.support import rpm_file as rpm

pytestmark = pytest.mark.integration


def _jobs(settings):
    with db.session_scope(settings) as session:
        return {job.environment: job for job in session.scalars(select(BuildJob))}


def _consume(settings, debounce_s=0):
    with db.session_scope(settings) as session:
        return changes.consume_repo_events(settings, session, debounce_s)


def test_dependencies_among_our_rpms_make_an_environment_affected(ci_settings, fixture_rpms):
    rpmrepo.publish(ci_settings, [rpm(fixture_rpms, "mx-lib", "2.0"), rpm(fixture_rpms, "mx-process", "1.0"),
                                  rpm(fixture_rpms, "asci-demo-viewer", "1.0"),
                                  rpm(fixture_rpms, "imaging-tool", "3.2")])
    with db.session_scope(ci_settings) as session:
        assert affected_environments(ci_settings, session, {"mx-lib"}) == {"mx-crystallography": ["mx-lib"]}
        assert set(affected_environments(ci_settings, session, {"asci-demo-viewer"})) == {"mx-crystallography", "imaging"}
        assert affected_environments(ci_settings, session, {"unrelated"}) == {}


def test_a_new_version_queues_one_job_per_affected_environment(ci_settings, fixture_rpms):
    rpmrepo.publish(ci_settings, [rpm(fixture_rpms, "mx-lib", "2.0"), rpm(fixture_rpms, "mx-process", "1.0"),
                                  rpm(fixture_rpms, "imaging-tool", "3.2")])
    assert _consume(ci_settings) == ["imaging", "mx-crystallography"]
    with db.session_scope(ci_settings) as session:
        session.execute(BuildJob.__table__.delete())
    assert _consume(ci_settings) == []  # events are consumed once
    rpmrepo.publish(ci_settings, [rpm(fixture_rpms, "asci-demo-viewer", "1.1")])
    rpmrepo.publish(ci_settings, [rpm(fixture_rpms, "asci-demo-viewer", "1.1")])  # identical bytes: no-op
    assert _consume(ci_settings, debounce_s=30) == ["imaging", "mx-crystallography"]
    jobs = _jobs(ci_settings)
    assert set(jobs) == {"imaging", "mx-crystallography"}
    assert all(len(job.reasons) == 1 and "asci-demo-viewer" in job.reasons[0] for job in jobs.values())


def test_a_burst_of_publishes_gives_one_job_per_environment(ci_settings, fixture_rpms):
    for name, version in (("mx-lib", "2.0"), ("mx-process", "1.0"), ("asci-demo-viewer", "1.0"),
                          ("asci-demo-viewer", "1.1")):
        rpmrepo.publish(ci_settings, [rpm(fixture_rpms, name, version)])
        _consume(ci_settings, debounce_s=30)
    jobs = _jobs(ci_settings)
    assert set(jobs) == {"mx-crystallography", "imaging"}
    # mx-lib alone (before mx-process requires it in the repository) affects nobody yet
    assert len(jobs["mx-crystallography"].reasons) == 3
    assert len(jobs["imaging"].reasons) == 2


def test_recipe_commits_trigger_builds_of_that_recipe_only(ci_settings, ci_recipes, fixture_rpms):
    def consume():
        with db.session_scope(ci_settings) as session:
            return changes.consume_recipe_commits(ci_settings, session, 0)

    rpmrepo.publish(ci_settings, [rpm(fixture_rpms, "mx-lib", "2.0"), rpm(fixture_rpms, "mx-process", "1.0"),
                                  rpm(fixture_rpms, "asci-demo-viewer", "1.0"), rpm(fixture_rpms, "imaging-tool", "3.2")])
    assert consume() == ["imaging", "mx-crystallography"]  # never built: first look builds
    with db.session_scope(ci_settings) as session:
        session.execute(BuildJob.__table__.delete())
    assert consume() == []
    recipe = ci_settings.recipes_dir / "environments" / "imaging.yaml"
    recipe.write_text(recipe.read_text().replace("IMAGING_DATA: /data", "IMAGING_DATA: /data/imaging"))
    assert consume() == []  # uncommitted edits do not trigger
    ci_recipes.commit("imaging: data under /data/imaging")
    assert consume() == ["imaging"]


def test_a_recipe_whose_packages_are_not_published_waits_for_them(ci_settings, fixture_rpms):
    with db.session_scope(ci_settings) as session:
        assert changes.consume_recipe_commits(ci_settings, session, 0) == []  # nothing published: no failing builds
    rpmrepo.publish(ci_settings, [rpm(fixture_rpms, "imaging-tool", "3.2")])
    assert _consume(ci_settings) == ["imaging"]  # the publication queues the recipe waiting for it
    assert set(_jobs(ci_settings)) == {"imaging"}


def test_package_names_from_nevras_and_capabilities():
    assert package_name("mx-lib-1:2.1-1.noarch") == "mx-lib"
    assert package_name("asci-demo-viewer-1.1-1.el7.x86_64") == "asci-demo-viewer"
    assert capability_name("mx-lib >= 1:2.0") == "mx-lib"
    assert capability_name("libmx") == "libmx"


def test_an_event_the_current_version_was_built_after_queues_nothing(ci_settings, fixture_rpms):
    """The demo's own publish: ``asci demo`` built after it, so the worker's first look builds nothing."""

    from asci.db import utcnow
    from builder.models import Environment, EnvironmentVersion, VersionStatus
    from ci.models import JobState

    rpmrepo.publish(ci_settings, [rpm(fixture_rpms, "imaging-tool", "3.2"), rpm(fixture_rpms, "asci-demo-viewer", "1.0")])
    with db.session_scope(ci_settings) as session:  # the job that built imaging's current version, after the event
        env = Environment(name="imaging", current_version="2026.12.06.1")
        session.add(env)
        session.add(EnvironmentVersion(environment=env, version="2026.12.06.1", status=VersionStatus.SUCCEEDED))
        session.add(BuildJob(environment="imaging", state=JobState.SUCCEEDED, version="2026.12.06.1",
                             reasons=["asci demo"], started_at=utcnow()))
    assert _consume(ci_settings) == ["mx-crystallography"]  # imaging holds it already; mx was never built
    rpmrepo.publish(ci_settings, [rpm(fixture_rpms, "asci-demo-viewer", "1.1")])  # newer than that job's lock
    assert _consume(ci_settings) == ["imaging", "mx-crystallography"]
