"""Which host folders may be mounted into a desktop as an experiment's data (at ``/data``).

An allow-list: the folder must lie under one of the configured experiment data roots
(``experiment_data_roots``; by default ``<data_dir>/experiments``). It must be an absolute,
normalised path, and it must neither be nor contain, nor lie inside, the platform's private files:
the whole data directory except its ``experiments/`` folder (database and its WAL files, secret key,
settings, registry storage and credentials, logs, uploads), the session run folder (every desktop's
VNC socket and password file), the registry's configuration and a SQLite database kept elsewhere. A root itself must not be or
contain a system folder (``/``, ``/var``, the Docker socket...); a folder outside every root is
refused, and the refusal names a system folder it is or contains.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from asci.config import Settings

# Host folders that must never be bind-mounted into a desktop, nor any folder above them (mounting
# /var would expose /var/run/docker.sock, i.e. root on the node).
SYSTEM_PATHS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
                "/run", "/sbin", "/sys", "/usr", "/var/run", "/var/lib/docker", "/var/lib/containerd",
                "/var/lib/asci")


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder + "/") or folder == "/"


def _malformed(path: str) -> str | None:
    if not path.startswith("/"):
        return "must be an absolute path"
    if any(ch in path for ch in "\x00,:") or not path.isprintable():
        return "must not contain control characters, ',' or ':'"
    if posixpath.normpath(path) != path or path.startswith("//") or \
            any(part in (".", "..") for part in path.split("/")):
        return "must be a normalised path without '.' or '..' components"
    return None


def _system_folder_in(path: str, *, under_too: bool) -> str | None:
    """A system folder that ``path`` is or contains (or, with ``under_too``, lies inside)."""
    for system in SYSTEM_PATHS:
        if path == system or _inside(system, path) or (under_too and _inside(path, system)):
            return system
    return None


EXPERIMENTS_FOLDER = "experiments"  # the one folder of the data directory a desktop may see (the demo's data)


def private_paths(settings: Settings) -> list[str]:
    """Files and folders no desktop may see, nor any folder above them (the data directory's own files,
    ``data_path_problem`` refuses everything in the data directory but its ``experiments/`` folder)."""
    data = settings.data_dir
    paths = [data / "secret_key", settings.settings_file, settings.registry_storage_dir, data / "logs",
             settings.registry_config_file, settings.registry_auth_dir, settings.run_dir]
    url = settings.effective_database_url
    if url.startswith("sqlite:///"):  # the database file and the journal files beside it
        database = url[len("sqlite:///"):].split("?", 1)[0]
        paths += [Path(database + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    return [posixpath.normpath(str(path)) for path in paths]


def _in_data_dir_privately(data_path: str, settings: Settings) -> str | None:
    """The private part of the data directory that ``data_path`` is, contains or lies in; None when none."""
    data = posixpath.normpath(str(settings.data_dir))
    experiments = posixpath.join(data, EXPERIMENTS_FOLDER)
    if _inside(data, data_path):  # the data directory itself, or a folder above it
        return data
    if _inside(data_path, data) and not _inside(data_path, experiments):
        return data_path
    return None


def root_problem(root: Path) -> str | None:
    """Why ``root`` cannot be an experiment data root; None when it can."""
    text = str(root)
    problem = _malformed(text)
    if problem:
        return problem
    system = _system_folder_in(text, under_too=False)
    return f"is or contains the system folder {system}" if system else None


def data_path_problem(data_path: str, settings: Settings) -> str | None:
    """Why ``data_path`` may not be mounted as an experiment's data; None when it may."""
    problem = _malformed(data_path)
    if problem:
        return problem
    for private in private_paths(settings):
        if _inside(data_path, private) or _inside(private, data_path):
            return f"is, contains or lies inside the platform's private {private}"
    private = _in_data_dir_privately(data_path, settings)
    if private:
        return (f"is, contains or lies inside the platform's private {private} (of the data directory only "
                f"{EXPERIMENTS_FOLDER}/ may be mounted)")
    roots = [str(root) for root in settings.data_roots if root_problem(root) is None]
    if any(_inside(data_path, root) for root in roots):
        return None
    system = _system_folder_in(data_path, under_too=True)
    where = f"; it is or contains the system folder {system}" if system else ""
    return f"is not under an experiment data root ({', '.join(roots) or 'none configured'}){where}"
