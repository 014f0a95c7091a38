"""The registry as a service: its config, the authenticating proxy in front of it, the builder's
credentials, and garbage collection with writes paused.

Why a proxy: distribution's htpasswd authentication is all or nothing (no read-only users), and
nodes must pull without secrets. Debian's nginx in front (``limit_except GET`` + ``auth_basic`` with a
bcrypt htpasswd) serves pulls anonymously and requires the builder's credentials for every other
method; the registry itself listens only on a Unix socket in a folder that the proxy's user reaches,
so nothing bypasses the proxy. The password is generated once into ``<data_dir>/registry-auth/password``
(0600), which the builder reads (``Settings.registry_credentials``).
"""

from __future__ import annotations

import grp
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jinja2

from builder.errors import BuildError

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class RegistryFiles:
    """Where a registry service keeps its files."""

    folder: Path  # the auth folder: password, nginx.conf, the pid files (read by root only)
    storage: Path
    registry_config: Path
    front: Path | None = None  # what the proxy's workers reach: htpasswd, run/registry.sock, writes-paused

    @property
    def worker_folder(self) -> Path:
        """The folder the proxy's workers read at every request (``front``, else the auth folder)."""
        return self.front or self.folder

    @property
    def htpasswd(self) -> Path:
        return self.worker_folder / "htpasswd"

    @property
    def password_file(self) -> Path:
        return self.folder / "password"

    @property
    def nginx_config(self) -> Path:
        return self.folder / "nginx.conf"

    @property
    def socket(self) -> Path:
        return self.worker_folder / "run" / "registry.sock"

    @property
    def paused(self) -> Path:
        return self.worker_folder / "writes-paused"


def files_for(settings) -> RegistryFiles:
    """The registry files of ``settings`` (the worker folder apart when ``registry_front_dir`` is set)."""
    return RegistryFiles(settings.registry_auth_dir, settings.registry_storage_dir, settings.registry_config_file,
                         settings.registry_front_dir)


def _render(template: str, **values) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    return env.get_template(template).render(**values)


def bcrypt_line(user: str, password: str) -> str:
    """``user:$2y$...`` with apache2-utils' ``htpasswd -B`` (bcrypt, cost 10)."""
    if shutil.which("htpasswd") is None:
        raise BuildError("htpasswd (Debian package apache2-utils) is needed to write the registry's bcrypt htpasswd")
    done = subprocess.run(["htpasswd", "-niB", "-C", "10", user], input=password + "\n", capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def ensure_credentials(files: RegistryFiles, user: str, group: str | None = None) -> str:
    """The builder's password, generated once (0600); the htpasswd rewritten when it does not hold
    it. ``group``: the proxy's worker group, which must read the htpasswd. Returns the password."""
    files.folder.mkdir(parents=True, exist_ok=True)
    os.chmod(files.folder, 0o750)
    files.worker_folder.mkdir(parents=True, exist_ok=True)
    os.chmod(files.worker_folder, 0o750)
    if files.password_file.is_file():
        password = files.password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(24)
        fd = os.open(files.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
    if not _htpasswd_holds(files.htpasswd, user, password):
        tmp = files.htpasswd.with_suffix(".tmp")
        tmp.write_text(bcrypt_line(user, password) + "\n")
        tmp.replace(files.htpasswd)
    stale = files.folder / "htpasswd"
    if files.front is not None and stale != files.htpasswd and stale.exists():
        stale.unlink()  # from before the front folder: the proxy no longer reads it
    gid = grp.getgrnam(group).gr_gid if group else -1
    os.chown(files.folder, -1, gid)
    os.chown(files.worker_folder, -1, gid)
    os.chown(files.htpasswd, -1, gid)
    os.chmod(files.htpasswd, 0o640)
    return password


def _htpasswd_holds(path: Path, user: str, password: str) -> bool:
    """Whether ``path`` has exactly the line for ``user`` with ``password`` (checked by htpasswd -v)."""
    if not path.is_file() or not path.read_text().startswith(user + ":"):
        return False
    done = subprocess.run(["htpasswd", "-vi", str(path), user], input=password + "\n", capture_output=True, text=True)
    return done.returncode == 0


def write_configs(files: RegistryFiles, listen: str, push_listen: str = "", user: str | None = "www-data",
                  backend: str = "") -> None:
    """The registry's config (deletes enabled) and the proxy's: reads anonymous and writes with
    credentials on ``listen``, every request with credentials on ``push_listen`` (Docker's pushes).
    ``backend``: where the registry listens (default: the Unix socket ``files.socket``; a compose stack
    gives ``0.0.0.0:5000`` and renders the proxy with ``registry:5000``)."""
    (files.worker_folder / "tmp").mkdir(parents=True, exist_ok=True)
    run = files.socket.parent
    run.mkdir(parents=True, exist_ok=True)
    gid = grp.getgrnam(user).gr_gid if user else -1
    os.chown(run, -1, gid)
    os.chmod(run, 0o2750)  # the socket inherits the group: the proxy's workers connect, nobody else
    files.storage.mkdir(parents=True, exist_ok=True)
    listen_at = backend or str(files.socket)
    upstream = f"unix:{files.socket}" if not backend else backend.replace("0.0.0.0", "registry")
    files.registry_config.write_text(_render("registry-config.yml.j2", storage=files.storage, socket=listen_at))
    files.nginx_config.write_text(_render("registry-nginx.conf.j2", folder=files.folder, upstream=upstream,
                                          temp=files.worker_folder / "tmp",
                                          htpasswd=files.htpasswd, paused=files.paused, listen=listen,
                                          push_listen=push_listen, user=user))


def setup(settings, listen: str = "", push_listen: str = "", user: str | None = "www-data",
          backend: str = "") -> RegistryFiles:
    """Credentials (generated once) and both configs for the registry of ``settings``."""
    files = files_for(settings)
    ensure_credentials(files, settings.registry_username, group=user)
    write_configs(files, listen or settings.registry, push_listen or settings.registry_push, user=user,
                  backend=backend)
    return files
