"""A fresh demo holds exactly one version: the worker's first look rebuilds nothing, ``asci build run``
says the environment is up to date, and only ``asci env build --force`` makes a second version.
Real engine, a registry of the test's own, the repository, dnf and the smoke gate."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from asci.cli import cli
from asci.cli_context import AsciContext
from asci.db import session_scope
from builder import versions
from ci.worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


def invoke(settings, *args: str) -> str:
    ctx = AsciContext()
    ctx._settings = settings
    result = CliRunner(mix_stderr=False).invoke(cli, list(args), obj=ctx, catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    return result.output


def _versions(settings) -> list[str]:
    with session_scope(settings) as db:
        return [row.version for row in versions.list_versions(db, "demo")]


def _queued(settings) -> list[str]:
    from ci import queue

    with session_scope(settings) as db:
        return [job.environment for job in queue.list_jobs(db, state="queued")]


def test_a_fresh_demo_holds_one_version_until_forced(settings, private_registry, docker_client, base_image):
    from web.demo import demo_recipes, prepare_demo

    settings = demo_recipes(private_registry.settings(settings).replace(ci_debounce_s=0))
    steps = list(prepare_demo(settings, "demo", "demo-password-1"))
    assert any(step.startswith("built environment demo") for step in steps), steps
    [first] = _versions(settings)

    Worker(settings, "first-start", echo=lambda line: None).watch()  # the worker's first look at the changes
    assert "demo" not in _queued(settings), "the worker queued a rebuild of the demo's own publish"
    assert _versions(settings) == [first]

    out = invoke(settings, "build", "run", "demo")
    assert out.strip().endswith(f"demo is up to date: {first}")
    assert invoke(settings, "env", "build", "demo").strip() == f"demo is up to date: {first}"
    assert _versions(settings) == [first]

    forced = invoke(settings, "env", "build", "demo", "--force", "--no-promote").split()
    assert forced[0] == "demo" and forced[1] != first and forced[2] == "succeeded"
    assert _versions(settings) == [first, forced[1]]
