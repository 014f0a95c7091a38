"""One settings object, read from defaults, a TOML file and ``ASCI_*`` variables.

Precedence, lowest first: the embedded defaults, the TOML file named by
``ASCI_CONFIG``, then environment variables ``ASCI_<FIELD>`` (upper case).
Every value is checked; a bad one raises :class:`ConfigError` naming the
setting and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from asci.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "asci"


@dataclass(frozen=True)
class Settings:
    """Every setting of the platform, with its embedded default."""

    data_dir: Path = field(default_factory=_default_data_dir)
    database_url: str = ""  # empty: SQLite under data_dir
    registry: str = "127.0.0.1:5000"
    # the builder's credentials for pushes and deletes (pulls are anonymous); empty password: read
    # <data_dir>/registry-auth/password when it exists (set-up generates it), else write anonymously
    registry_push: str = ""  # host:port of the registry's push endpoint for Docker's own pushes; empty: registry
    registry_username: str = "asci-builder"
    registry_password: str = ""
    registry_config: Path | None = None  # the registry's own config (garbage collection); None: <data_dir>/registry-config.yml
    registry_gc_keep_days: int = 14  # failed and never-promoted versions older than this are deleted by gc
    registry_gc_command: str = "docker-registry garbage-collect {config}"  # {config}: registry_config
    # environment images: one layer per large package (rpm-ostree's --max-layers budget, base included)
    builder_layered: bool = True
    builder_max_layers: int = 64
    builder_own_layer_min_bytes: int = 1024 * 1024  # packages this large get a layer of their own
    # superseded package layers kept in place (a node holding the previous version then downloads only
    # what changed), at most this share of the live layers' bytes; past it the stack is laid again
    builder_max_dead_ratio: float = 1.0
    docker_hosts: tuple[str, ...] = ("unix:///var/run/docker.sock",)
    recipes_dir: Path = PROJECT_ROOT / "recipes"
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    secret_key: str = ""  # empty: generated once and kept under data_dir
    repo_allowed_arches: tuple[str, ...] = ("noarch", "x86_64")
    repo_max_rpm_bytes: int = 512 * 1024 * 1024
    repo_require_signature: bool = False
    repo_gpg_keys: tuple[Path, ...] = ()
    default_repo: str = "beamline"
    repo_lock_timeout_s: int = 600  # how long a publish waits for the repository lock
    log_format: str = "json"
    # web UI (web/)
    oidc_issuer: str = ""  # OpenID Connect issuer URL; empty: OIDC login off
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_scopes: str = "openid email profile"
    websockify_port: int = 6080  # the noVNC WebSocket proxy, bound to 127.0.0.1
    websockify_url: str = ""  # public ws(s):// URL of that proxy; empty: same host as the page, websockify_port
    vnc_token_ttl_s: int = 60  # lifetime of the signed token that opens one session's VNC WebSocket
    login_max_attempts: int = 5  # failed logins per user name and address before each further try waits ...
    login_window_s: int = 300  # ... (4 s, 8 s, 16 s ... at most this long); failures older than this are forgotten
    login_max_per_address: int = 30  # failed logins from one address (any user name) per window, then refused
    trusted_proxies: tuple[str, ...] = ()  # reverse proxies (addresses or networks) whose X-Forwarded-For is believed
    request_max_bytes: int = 1024 * 1024  # body limit of every request but RPM uploads (repo_max_rpm_bytes)
    api_token_days: int = 90  # lifetime of a new API token unless one is given (asci user token --expires)
    disabled_user_grace_s: int = 900  # desktops of a disabled user are stopped this long after the disabling
    # session broker (broker/)
    broker_backend: str = "docker"  # docker | swarm
    broker_instance: str = "asci"  # label value telling this broker's containers apart from others'
    # Desktop isolation: every desktop has a network namespace of its own and its VNC server listens
    # only on a Unix socket in a per-session folder under session_run_dir, which the broker, the smoke
    # gate and websockify open (they must see the nodes' filesystem: the same machine).
    session_network: str = "none"  # "none": loopback only; or a Docker network the facility made for outbound access
    session_run_dir: str = ""  # per-session VNC socket and password folders; empty: <data_dir>/run
    vnc_touch_interval_s: int = 60  # while a viewer is connected, websockify tells the broker this often
    viewer_check_interval_s: int = 2  # a connected guest's share is checked this often (revoke disconnects)
    session_max_per_user: int = 3
    session_idle_timeout_s: int = 4 * 3600  # no VNC client for this long: stopped
    session_idle_warning_s: int = 15 * 60  # warned this long before the idle stop
    session_max_lifetime_s: int = 7 * 86400
    session_start_timeout_s: int = 120
    session_uid_base: int = 100000  # uid/gid = base + user id when the user has no uid/gid
    # a session's resources: the guarantee counts for placement, the limit is enforced by the container;
    # an environment's recipe may set its own (resources: ...), a launch request may ask for others
    session_cpu_guarantee: float = 0.25
    session_cpu_limit: float = 2.0
    session_memory_guarantee_mb: int = 512
    session_memory_limit_mb: int = 4096
    session_max_cpus: float = 32.0  # per-user cap: the largest CPU limit (and guarantee) one may ask for
    session_max_memory_mb: int = 256 * 1024  # per-user cap: the largest memory limit (and guarantee)
    session_pids_limit: int = 2048
    session_data_read_only: bool = True
    gpu_share_count: int = 1  # sessions sharing one GPU (VirtualGL)
    placement_policy: str = "spread"  # spread: the node with the most free memory; pack: the fullest that fits
    # node capacity: read from the engine (docker info), minus a reserve, times an overcommit factor;
    # these are the defaults a node gets when it is registered (each node keeps its own values)
    node_reserve_cpus: float = 0.5  # left to the engine and the system
    node_reserve_memory_mb: int = 1024
    node_cpu_overcommit: float = 4.0  # guarantees may add up to (CPUs - reserve) x this
    node_memory_overcommit: float = 1.0
    node_max_sessions: int = 100
    # ci/: rebuilds and the smoke gate
    ci_debounce_s: float = 5.0  # changes within this window fold into one build per environment
    ci_poll_s: float = 2.0  # how often an idle worker looks for changes and jobs
    ci_lease_s: float = 60.0  # a running job's lease; renewed every third of it
    ci_max_attempts: int = 3
    ci_retry_base_s: float = 10.0  # back-off: base * 2^(attempt-1)
    ci_gate_timeout_s: float = 120.0  # how long the smoke test waits for a drawn desktop
    ci_webhook_urls: tuple[str, ...] = ()
    # the main job (asci serve): which long-running parts it runs and supervises
    serve_parts: tuple[str, ...] = ()  # empty: every part; else a subset (names in the README)
    reconcile_interval_s: float = 10.0  # how often nodes and sessions are reconciled
    cull_interval_s: float = 60.0  # how often idle and expired sessions are culled
    restart_backoff_max_s: float = 60.0  # a crashed part is restarted after 1, 2, 4 ... up to this many seconds
    # experiment data: folders under these roots may be mounted into desktops (empty: <data_dir>/experiments)
    experiment_data_roots: tuple[Path, ...] = ()
    # --- ops ---
    usage_sample_interval_s: float = 60.0  # how often reconciliation records each node's guarantees (the admin charts)
    usage_history_days: int = 14  # node usage samples older than this are pruned
    thumbnail_max_age_s: float = 3.0  # a desktop's thumbnail is grabbed from its VNC server at most this often

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite under the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'asci.db'}"

    @property
    def data_roots(self) -> tuple[Path, ...]:
        """Where experiment data may lie: the configured roots, or the data directory's ``experiments``."""
        return self.experiment_data_roots or (self.data_dir / "experiments",)

    @property
    def settings_file(self) -> Path:
        """The data directory's own settings (written by ``asci demo``, read by every command)."""
        return self.data_dir / "settings.toml"

    def to_environ(self) -> dict[str, str]:
        """``ASCI_*`` variables that give a child process exactly these settings."""
        environ = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, tuple):
                text = ",".join(str(part) for part in value)
            elif isinstance(value, bool):
                text = "true" if value else "false"
            elif value is None:
                text = ""
            else:
                text = str(value)
            environ[f"ASCI_{item.name.upper()}"] = text
        return environ

    @property
    def run_dir(self) -> Path:
        """Where the per-session VNC socket and password folders live (``session_run_dir`` or under data_dir)."""
        return Path(self.session_run_dir) if self.session_run_dir else self.data_dir / "run"

    @property
    def repos_dir(self) -> Path:
        """Folder holding one sub-folder per named RPM repository."""
        return self.data_dir / "repos"

    @property
    def registry_auth_dir(self) -> Path:
        """The registry's credentials (htpasswd, the builder's password) and its writes-paused flag."""
        return self.data_dir / "registry-auth"

    @property
    def registry_credentials(self) -> tuple[str, str] | None:
        """``(user, password)`` the builder writes to the registry with, or None (anonymous)."""
        password = self.registry_password
        if not password:
            path = self.registry_auth_dir / "password"
            try:
                password = path.read_text().strip()
            except OSError:
                return None
        return (self.registry_username, password) if password else None

    @property
    def registry_config_file(self) -> Path:
        return self.registry_config or self.data_dir / "registry-config.yml"

    @property
    def registry_storage_dir(self) -> Path:
        """Where the local registry keeps its blobs."""
        return self.data_dir / "registry"

    def private_data_dir(self) -> Path:
        """The data directory, created (or tightened, when it is ours) to mode 0700: it holds the
        database, the secret key, uploads and logs, none of which other local users may read."""
        return private_dir(self.data_dir, tighten=True)

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some settings changed (values are checked again)."""
        raw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        raw.update(changes)
        return _build(raw, source="argument")


def private_dir(path: Path, tighten: bool = False) -> Path:
    """``path`` as a folder created with mode 0700; with ``tighten`` an existing one of ours loses
    its group and other permissions too (never a shared folder such as /tmp: sticky ones are left)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if tighten:
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077 and not info.st_mode & 0o1000:
            path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 when missing; tighten an existing one of ours to 0600."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            path.chmod(0o600)
    return path


# ---------------------------------------------------------------- parsing ---

_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")
_DOCKER_URL = re.compile(r"^(unix:///\S+|tcp://[A-Za-z0-9.\-\[\]:]+:\d{1,5}|ssh://\S+)$")


def _as_path(name: str, value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: expected a path, got {value!r}")
    return Path(value).expanduser()


def _absolute_path(name: str, value: Any) -> Path:
    path = _as_path(name, value)
    if not path.is_absolute():
        raise ConfigError(f"{name}: expected absolute paths, got {str(value)!r}")
    return path


def _as_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value


def _as_int(name: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected an integer between {low} and {high}, got {value!r}") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise ConfigError(f"{name}: expected an integer between {low} and {high}, got {value!r}")
    return number


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _as_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [str(item).strip() for item in value]
    else:
        raise ConfigError(f"{name}: expected a comma-separated list, got {value!r}")
    return [item for item in items if item]


def _registry(name: str, value: Any) -> str:
    text = _as_str(name, value)
    if not _HOST_PORT.match(text):
        raise ConfigError(f"{name}: expected host:port such as 127.0.0.1:5000, got {value!r}")
    return text


def _user_name(name: str, value: Any) -> str:
    text = _as_str(name, value)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        raise ConfigError(f"{name}: expected a user name of letters, digits, '.', '_' and '-', got {value!r}")
    return text


def _gc_command(name: str, value: Any) -> str:
    text = _as_str(name, value)
    if "{config}" not in text:
        raise ConfigError(f"{name}: expected a command holding {{config}} (the registry's config file), got {value!r}")
    return text


def _docker_hosts(name: str, value: Any) -> tuple[str, ...]:
    hosts = _as_list(name, value)
    if not hosts:
        raise ConfigError(f"{name}: expected at least one Docker host URL")
    for host in hosts:
        if not _DOCKER_URL.match(host):
            raise ConfigError(
                f"{name}: expected Docker host URLs (unix:///path, tcp://host:port or ssh://...), got {host!r}"
            )
    return tuple(hosts)


def _database_url(name: str, value: Any) -> str:
    text = _as_str(name, value)
    if not text:
        return ""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigError(f"{name}: expected a SQLAlchemy URL such as postgresql://user:pw@127.0.0.1/db, got {value!r}") from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigError(f"{name}: expected a sqlite:// or postgresql:// URL, got {url.get_backend_name()!r}")
    return text


def _arches(name: str, value: Any) -> tuple[str, ...]:
    arches = _as_list(name, value)
    if not arches or any(not re.fullmatch(r"[a-z0-9_]+", a) for a in arches):
        raise ConfigError(f"{name}: expected a list of RPM architectures such as noarch,x86_64, got {value!r}")
    return tuple(arches)


def _repo_name(name: str, value: Any) -> str:
    text = _as_str(name, value)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]{0,62}", text):
        raise ConfigError(f"{name}: expected a repository name of lower-case letters, digits, '-' and '_', got {value!r}")
    return text


def _as_float(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number between {low} and {high}, got {value!r}") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise ConfigError(f"{name}: expected a number between {low} and {high}, got {value!r}")
    return number


def _network(name: str, value: Any) -> str:
    """``none`` or the name of a Docker network; never ``host`` (the node's own network) or another container's."""
    text = _as_str(name, value)
    if text == "none":
        return text
    if text in {"host", "bridge", "default"} or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", text):
        raise ConfigError(f"{name}: expected 'none' or the name of a Docker network made for desktops "
                          f"(not host, bridge, default or container:...), got {value!r}")
    return text


def _absolute_dir(name: str, value: Any) -> str:
    text = _as_str(name, value).strip().rstrip("/")
    if _as_str(name, value).strip() and (not text.startswith("/") or "\x00" in text or len(text) > 200):
        raise ConfigError(f"{name}: expected an absolute folder path other than / (at most 200 characters) "
                          f"or empty, got {value!r}")
    return text


def _choice(*allowed: str):
    def parse(name: str, value: Any) -> str:
        text = _as_str(name, value)
        if text not in allowed:
            raise ConfigError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        return text
    return parse


def _networks(name: str, value: Any) -> tuple[str, ...]:
    import ipaddress

    networks = []
    for item in _as_list(name, value):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: expected IP addresses or networks such as 10.0.0.5,192.168.0.0/24, "
                              f"got {item!r}") from None
    return tuple(networks)


def _log_format(name: str, value: Any) -> str:
    text = _as_str(name, value)
    if text not in {"json", "text"}:
        raise ConfigError(f"{name}: expected 'json' or 'text', got {value!r}")
    return text


def _webhook_urls(name: str, value: Any) -> tuple[str, ...]:
    urls = _as_list(name, value)
    for url in urls:
        if not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
            raise ConfigError(f"{name}: expected http(s) URLs, got {url!r}")
    return tuple(urls)


_PARSERS = {
    "data_dir": _as_path,
    "database_url": _database_url,
    "registry": _registry,
    "registry_push": lambda n, v: _registry(n, v) if v else "",
    "registry_username": lambda n, v: _user_name(n, v),
    "registry_password": _as_str,
    "registry_config": lambda n, v: _absolute_path(n, v) if v else None,
    "registry_gc_keep_days": lambda n, v: _as_int(n, v, 0, 100 * 365),
    "registry_gc_command": _gc_command,
    "builder_layered": _as_bool,
    "builder_max_layers": lambda n, v: _as_int(n, v, 8, 125),
    "builder_own_layer_min_bytes": lambda n, v: _as_int(n, v, 1, 1 << 40),
    "builder_max_dead_ratio": lambda n, v: _as_float(n, v, 0, 10),
    "docker_hosts": _docker_hosts,
    "recipes_dir": _as_path,
    "web_host": _as_str,
    "web_port": lambda n, v: _as_int(n, v, 1, 65535),
    "public_url": _as_str,
    "secret_key": _as_str,
    "repo_allowed_arches": _arches,
    "repo_max_rpm_bytes": lambda n, v: _as_int(n, v, 1, 1 << 40),
    "repo_require_signature": _as_bool,
    "repo_gpg_keys": lambda n, v: tuple(_as_path(n, p) for p in _as_list(n, v)),
    "default_repo": _repo_name,
    "repo_lock_timeout_s": lambda n, v: _as_int(n, v, 1, 86400),
    "log_format": _log_format,
    "oidc_issuer": _as_str,
    "oidc_client_id": _as_str,
    "oidc_client_secret": _as_str,
    "oidc_scopes": _as_str,
    "websockify_port": lambda n, v: _as_int(n, v, 1, 65535),
    "websockify_url": _as_str,
    "vnc_token_ttl_s": lambda n, v: _as_int(n, v, 5, 86400),
    "login_max_attempts": lambda n, v: _as_int(n, v, 1, 1000),
    "login_window_s": lambda n, v: _as_int(n, v, 1, 86400),
    "login_max_per_address": lambda n, v: _as_int(n, v, 1, 100000),
    "trusted_proxies": _networks,
    "request_max_bytes": lambda n, v: _as_int(n, v, 1024, 1 << 30),
    "api_token_days": lambda n, v: _as_int(n, v, 1, 3650),
    "disabled_user_grace_s": lambda n, v: _as_int(n, v, 0, 30 * 86400),
    "broker_backend": _choice("docker", "swarm"),
    "broker_instance": _repo_name,
    "session_network": _network,
    "session_run_dir": _absolute_dir,
    "vnc_touch_interval_s": lambda n, v: _as_int(n, v, 1, 3600),
    "viewer_check_interval_s": lambda n, v: _as_int(n, v, 1, 60),
    "session_max_per_user": lambda n, v: _as_int(n, v, 1, 1000),
    "session_idle_timeout_s": lambda n, v: _as_int(n, v, 60, 365 * 86400),
    "session_idle_warning_s": lambda n, v: _as_int(n, v, 0, 86400),
    "session_max_lifetime_s": lambda n, v: _as_int(n, v, 60, 365 * 86400),
    "session_start_timeout_s": lambda n, v: _as_int(n, v, 1, 3600),
    "session_uid_base": lambda n, v: _as_int(n, v, 1000, 2**31 - 2**20),
    "session_cpu_guarantee": lambda n, v: _as_float(n, v, 0.01, 1024),
    "session_cpu_limit": lambda n, v: _as_float(n, v, 0.1, 1024),
    "session_memory_guarantee_mb": lambda n, v: _as_int(n, v, 16, 1 << 24),
    "session_memory_limit_mb": lambda n, v: _as_int(n, v, 256, 1 << 24),
    "session_max_cpus": lambda n, v: _as_float(n, v, 0.1, 1024),
    "session_max_memory_mb": lambda n, v: _as_int(n, v, 64, 1 << 24),
    "session_pids_limit": lambda n, v: _as_int(n, v, 64, 1 << 22),
    "session_data_read_only": _as_bool,
    "gpu_share_count": lambda n, v: _as_int(n, v, 1, 64),
    "placement_policy": _choice("spread", "pack"),
    "node_reserve_cpus": lambda n, v: _as_float(n, v, 0, 1024),
    "node_reserve_memory_mb": lambda n, v: _as_int(n, v, 0, 1 << 24),
    "node_cpu_overcommit": lambda n, v: _as_float(n, v, 0.1, 100),
    "node_memory_overcommit": lambda n, v: _as_float(n, v, 0.1, 100),
    "node_max_sessions": lambda n, v: _as_int(n, v, 1, 100000),
    "ci_debounce_s": lambda n, v: _as_float(n, v, 0, 3600),
    "ci_poll_s": lambda n, v: _as_float(n, v, 0.05, 3600),
    "ci_lease_s": lambda n, v: _as_float(n, v, 1, 86400),
    "ci_max_attempts": lambda n, v: _as_int(n, v, 1, 100),
    "ci_retry_base_s": lambda n, v: _as_float(n, v, 0, 86400),
    "ci_gate_timeout_s": lambda n, v: _as_float(n, v, 1, 3600),
    "ci_webhook_urls": _webhook_urls,
    "serve_parts": lambda n, v: tuple(_as_list(n, v)),
    "reconcile_interval_s": lambda n, v: _as_float(n, v, 0.5, 3600),
    "cull_interval_s": lambda n, v: _as_float(n, v, 0.5, 86400),
    "restart_backoff_max_s": lambda n, v: _as_float(n, v, 0.1, 3600),
    "experiment_data_roots": lambda n, v: tuple(_absolute_path(n, p) for p in _as_list(n, v)),
    # --- ops ---
    "usage_sample_interval_s": lambda n, v: _as_float(n, v, 5, 3600),
    "usage_history_days": lambda n, v: _as_int(n, v, 1, 366),
    "thumbnail_max_age_s": lambda n, v: _as_float(n, v, 0.5, 300),
}


def _build(raw: Mapping[str, Any], source: str) -> Settings:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        parser = _PARSERS.get(key)
        if parser is None:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        label = f"ASCI_{key.upper()}" if source == "environment" else f"{source}: {key}"
        values[key] = parser(label, value)
    return Settings(**values)


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{label}: file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: {path} is not valid TOML: {exc}") from None
    _build(values, source=str(path))  # validate with the file's name in messages
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings: defaults < the data directory's ``settings.toml`` < ``ASCI_CONFIG`` (TOML)
    < ``ASCI_*`` variables."""
    environ = os.environ if environ is None else environ
    configured: dict[str, Any] = {}
    config_file = environ.get("ASCI_CONFIG")
    if config_file:
        configured = _read_toml(Path(config_file), "ASCI_CONFIG")
    env_values: dict[str, Any] = {}
    for key in _PARSERS:
        env_name = f"ASCI_{key.upper()}"
        if env_name in environ:
            env_values[key] = environ[env_name]
    _build(env_values, source="environment")
    raw = {**configured, **env_values}
    data_dir = _build({"data_dir": raw["data_dir"]}, "settings").data_dir if "data_dir" in raw else \
        _default_data_dir()
    local = data_dir / "settings.toml"
    if local.is_file():
        raw = {**_read_toml(local, "data directory settings"), **raw}
    return _build(raw, source="settings")


def save_local_settings(settings: Settings, **values: Any) -> None:
    """Write ``values`` into the data directory's ``settings.toml`` (kept private), merged with what is there."""
    _build(values, source="argument")
    path = settings.settings_file
    current = _read_toml(path, "data directory settings") if path.is_file() else {}
    current.update({key: str(value) if isinstance(value, Path) else value for key, value in values.items()})
    lines = ["# Settings chosen for this data directory (asci demo); every asci command reads them.",
             "# ASCI_CONFIG and ASCI_* variables override them."]
    for key in sorted(current):
        lines.append(f"{key} = {_toml_value(current[key])}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))
