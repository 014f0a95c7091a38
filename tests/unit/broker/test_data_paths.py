"""Experiment data roots: an allow-list, the platform's private files and system folders refused."""

from pathlib import Path

import pytest

from asci.config import Settings
from broker.data_paths import data_path_problem, root_problem

AS_ROOT = Settings(data_dir=Path("/root/.local/share/asci"))  # a fresh machine's default, as root


def test_the_default_root_is_the_data_directorys_experiments_even_under_root():
    assert data_path_problem("/root/.local/share/asci/experiments/DEMO-001", AS_ROOT) is None
    assert data_path_problem("/root/.local/share/asci/experiments", AS_ROOT) is None


@pytest.mark.parametrize("path", ["/root/.local/share/asci", "/root/.local/share/asci/asci.db",
                                  "/root/.local/share/asci/secret_key", "/root/.local/share/asci/registry/docker",
                                  "/root/.local/share/asci/settings.toml", "/root/.local/share/asci/logs"])
def test_the_platforms_private_files_are_refused(path):
    problem = data_path_problem(path, AS_ROOT)
    assert problem is not None and ("private" in problem or "not under" in problem)


def test_private_files_inside_a_configured_root_are_refused_too():
    settings = AS_ROOT.replace(experiment_data_roots=(Path("/root/.local/share"),))
    assert "private" in data_path_problem("/root/.local/share/asci", settings)
    assert "private" in data_path_problem("/root/.local/share/asci/registry", settings)
    assert data_path_problem("/root/.local/share/beamline-data", settings) is None


@pytest.mark.parametrize("path, words", [("/srv/data/E1", "not under an experiment data root"),
                                         ("/var/run/docker.sock", "system folder /var/run"),
                                         ("/", "private"), ("/etc/shadow", "system folder /etc"),
                                         ("relative/path", "absolute"), ("/srv/../etc", "normalised"),
                                         ("/srv/a,b", "','")])
def test_anything_else_is_refused_with_the_reason(path, words):
    assert words in data_path_problem(path, AS_ROOT)


def test_configured_roots_replace_the_default_and_must_not_hold_system_folders():
    settings = AS_ROOT.replace(experiment_data_roots=(Path("/srv/beamlines"), Path("/var")))
    assert data_path_problem("/srv/beamlines/mx/2026-001", settings) is None
    assert "not under" in data_path_problem("/root/.local/share/asci/experiments/DEMO-001", settings)
    assert root_problem(Path("/var")) == "is or contains the system folder /var/run"
    assert "not under" in data_path_problem("/var/tmp/x", settings)  # /var is no root: it holds the Docker socket


@pytest.mark.parametrize("path", ["/root/.local/share/asci/run", "/root/.local/share/asci/run/web1-s3/secret",
                                  "/root/.local/share/asci/registry-auth", "/root/.local/share/asci/registry-auth/run",
                                  "/root/.local/share/asci/asci.db-wal", "/root/.local/share/asci/asci.db-shm",
                                  "/root/.local/share/asci/repos", "/root/.local/share/asci/uploads",
                                  "/root/.local/share/asci/anything-new"])
def test_all_of_the_data_directory_but_its_experiments_is_private_even_when_it_is_a_root(path):
    settings = AS_ROOT.replace(experiment_data_roots=(Path("/root/.local/share/asci"),))
    for which in (AS_ROOT, settings):
        problem = data_path_problem(path, which)
        assert problem is not None and ("private" in problem or "not under" in problem), (path, problem)
    assert "private" in data_path_problem(path, settings)
    assert data_path_problem("/root/.local/share/asci/experiments/DEMO-001", settings) is None


def test_the_run_folder_and_a_sqlite_database_elsewhere_are_private():
    settings = AS_ROOT.replace(experiment_data_roots=(Path("/srv"),), session_run_dir="/srv/run",
                               database_url="sqlite:////srv/db/asci.db")
    for path in ("/srv/run", "/srv/run/web-s1", "/srv/db/asci.db-wal", "/srv/db/asci.db"):
        assert "private" in data_path_problem(path, settings), path
    assert "private" in data_path_problem("/srv", settings)  # it contains them
    assert data_path_problem("/srv/beamline/E1", settings) is None
