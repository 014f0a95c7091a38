"""``asci demo``: the platform on its embedded defaults with one environment to launch.

Every step is idempotent, so the demo restarts quickly:

1. a demo administrator (password reset on each start and printed);
2. a recipes git repository under the data directory, kept in step with ``recipes/`` of the
   checkout (the builder tags versions in it, so the code repository is left alone);
3. the sample RPM (``rpmrepo/samples/asci-demo-viewer.spec``) built with rpmbuild and published;
4. the local Docker daemon registered as node ``local`` (the smoke test and sessions run there);
5. the ``demo`` environment built, verified, smoke-tested and made current through the same
   ci job path as ``asci build run`` (skipped when it already has a current version);
6. an experiment ``DEMO-001`` with a small data folder, the demo user as its member, allowed to
   use the ``demo`` environment.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from sqlalchemy import select

import broker
import builder
import ci
import rpmrepo
from asci import accounts
from asci.db import session_scope
from asci.config import PROJECT_ROOT, Settings, save_local_settings
from asci.progress import LogSink, discard
from web.build_progress import BuildProgress
from web.errors import DemoError

SAMPLE_SPEC = PROJECT_ROOT / "rpmrepo" / "samples" / "asci-demo-viewer.spec"
SAMPLE_NEVRA = "asci-demo-viewer-1.0-1.noarch"
DEMO_ENVIRONMENT = "demo"
DEMO_EXPERIMENT = "DEMO-001"


def demo_recipes_dir(settings: Settings) -> Path:
    """Where the demo keeps its recipes: a git repository under the data directory."""
    return settings.data_dir / "recipes-repo" / "recipes"


def uses_demo_recipes(settings: Settings) -> bool:
    """True unless the recipes were configured to live somewhere of the facility's own."""
    chosen = settings.recipes_dir.resolve()
    return chosen in ((PROJECT_ROOT / "recipes").resolve(), demo_recipes_dir(settings).resolve())


def demo_recipes(settings: Settings) -> Settings:
    """Settings whose recipes live in a git repository under the data directory, synced from the checkout.

    The choice is written to the data directory's settings file, so every ``asci`` command run
    against this data directory (``asci worker``, ``asci env reproduce``...) uses the same recipes.
    """
    import git

    target = demo_recipes_dir(settings)
    root = target.parent
    source = PROJECT_ROOT / "recipes"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    repo = git.Repo.init(root) if not (root / ".git").exists() else git.Repo(root)
    repo.git.add(A=True)
    if repo.is_dirty(index=True, untracked_files=True) or not repo.head.is_valid():
        actor = git.Actor("ASCI demo", "demo@asci.invalid")
        repo.index.commit(f"recipes from {source}", author=actor, committer=actor)
    save_local_settings(settings, recipes_dir=target)
    return settings.replace(recipes_dir=target)


def build_sample_rpm(out_dir: Path) -> Path:
    """Build the sample application with rpmbuild (reproducible flags); returns the RPM."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{SAMPLE_NEVRA}.rpm"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(prefix="asci-demo-rpm-") as top:
        result = subprocess.run(
            ["rpmbuild", "--quiet", "-bb", "--define", f"_topdir {top}", "--define", f"_rpmdir {out_dir}",
             "--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
             "--define", "use_source_date_epoch_as_buildtime 1", "--define", "clamp_mtime_to_source_date_epoch 1",
             str(SAMPLE_SPEC)],
            capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": "1795600000"})
    if result.returncode != 0:
        raise DemoError(f"rpmbuild of the sample failed: {result.stderr.strip()[-300:]}")
    return target


def _publish_sample(settings: Settings) -> str:
    with session_scope(settings) as db:
        if rpmrepo.find_package(db, settings.default_repo, SAMPLE_NEVRA) is not None:
            return f"sample {SAMPLE_NEVRA} already published"
    rpmrepo.publish(settings, [build_sample_rpm(settings.data_dir / "samples")])
    return f"published sample {SAMPLE_NEVRA} into {settings.default_repo}"


def _publisher(settings: Settings, username: str) -> str:
    """The demo user may publish new releases into the demo's repository (with a publish:<repo> token)."""
    with session_scope(settings) as db:
        rpmrepo.grant_publisher(db, settings.default_repo, accounts.get_user(db, username))
    return f"{username} may publish into {settings.default_repo} (asci user token issue {username} " \
           f"--scope publish:{settings.default_repo})"


def register_local_node(settings: Settings) -> str:
    """Register the first Docker host as node ``local`` when no node is registered; says what it did."""
    with session_scope(settings) as db:
        if broker.has_nodes(db):
            return "a node is registered"
        node = broker.register_node(settings, db, "local", settings.docker_hosts[0])  # capacity from docker info
        cpus, memory = node.cpus, node.memory_bytes
    return (f"registered the local Docker daemon ({settings.docker_hosts[0]}) as node local: "
            f"{cpus:g} CPUs, {memory / 2**30:.1f} GiB as the engine reports them")


def _build_environment(settings: Settings, progress: LogSink = discard) -> str:
    with session_scope(settings) as db:
        current = builder.current_version(db, DEMO_ENVIRONMENT)
    if current:
        return f"environment {DEMO_ENVIRONMENT} {current} is current"
    progress(f"building environment {DEMO_ENVIRONMENT} (a few minutes the first time); its steps:")
    job = ci.Worker(settings, echo=BuildProgress(progress)).run_environment(DEMO_ENVIRONMENT, "asci demo")
    if job.state != ci.JobState.SUCCEEDED:
        raise DemoError(f"building the {DEMO_ENVIRONMENT} environment failed: {job.error} "
                        f"(asci build show {job.id} --log)")
    return f"built environment {DEMO_ENVIRONMENT} {job.version} (smoke-tested, current)"


def _experiment(settings: Settings, username: str) -> str:
    data = settings.data_dir / "experiments" / DEMO_EXPERIMENT
    data.mkdir(parents=True, exist_ok=True)
    (data / "README.txt").write_text("Data of the ASCI demo experiment, mounted read-only at /data.\n")
    (data / "scan-0001.csv").write_text("angle,intensity\n" + "".join(f"{a},{(a * 37) % 101}\n"
                                                                      for a in range(0, 180, 5)))
    with session_scope(settings) as db:
        existing = next((e for e in broker.all_experiments(db) if e.code == DEMO_EXPERIMENT), None)
        start = existing.starts_on if existing and existing.starts_on else dt.date.today()
        end = existing.ends_on if existing and existing.ends_on else start + dt.timedelta(days=30)
        broker.import_rows(settings, db, [{"code": DEMO_EXPERIMENT, "title": "ASCI demo experiment", "data_path": str(data),
                                 "start": start.isoformat(), "end": end.isoformat(), "members": [username],
                                 "environments": [DEMO_ENVIRONMENT]}])
    return f"experiment {DEMO_EXPERIMENT} (data in {data}) may use {DEMO_ENVIRONMENT}"


def prepare_demo(settings: Settings, username: str, password: str, progress: LogSink = discard) -> Iterator[str]:
    """Run every set-up step, yielding one line per step; ``progress`` gets the environment build's steps."""
    with session_scope(settings) as db:
        user = db.scalar(select(accounts.User).where(accounts.User.username == username))
        if user is None:
            accounts.create_user(db, username, password, is_admin=True, display_name="Demo scientist")
            yield f"created demo user {username}"
        else:
            user.set_password(password)
            yield f"reset the password of demo user {username}"
    yield _publish_sample(settings)
    yield _publisher(settings, username)
    yield register_local_node(settings)
    yield _build_environment(settings, progress)
    yield _experiment(settings, username)
