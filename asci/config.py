"""One settings object, read from defaults, TOML files and ``ASCI_*`` variables.

Every setting is declared once, as a field of :class:`Settings` made by :func:`setting`: its
default, its parser (with its bounds), its one-line doc and whether it is a secret. Its environment
variable is ``ASCI_<FIELD>`` (upper case) and its TOML key the field's name; loading, ``replace``,
``to_environ``, ``asci settings`` and the README's settings table are all derived from these
declarations (``python -m asci.config --markdown`` prints the table).

Precedence, lowest first: the embedded defaults, the data directory's ``settings.toml``, the TOML
file named by ``ASCI_CONFIG``, then environment variables. Every value is checked; a bad one raises
:class:`ConfigError` naming the setting and what was expected.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from asci.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "ASCI_"
_METADATA_KEY = "asci.setting"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "asci"


# ---------------------------------------------------------------- parsers ---

@dataclass(frozen=True)
class Parser:
    """Checks and converts one setting's raw value (a string from the environment, a TOML value or a
    Python value); ``expects`` says what it takes, for the documentation."""

    parse: Callable[[str, Any], Any]
    expects: str

    def __call__(self, label: str, value: Any) -> Any:
        return self.parse(label, value)


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


def _as_float(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number between {low} and {high}, got {value!r}") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise ConfigError(f"{name}: expected a number between {low} and {high}, got {value!r}")
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


def _networks(name: str, value: Any) -> tuple[str, ...]:
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


def text() -> Parser:
    """Any string."""
    return Parser(_as_str, "text")


def integer(low: int, high: int) -> Parser:
    """A whole number from ``low`` to ``high``."""
    return Parser(lambda n, v: _as_int(n, v, low, high), f"integer {low}..{high}")


def number(low: float, high: float) -> Parser:
    """A number (float) from ``low`` to ``high``."""
    return Parser(lambda n, v: _as_float(n, v, low, high), f"number {low}..{high}")


def port() -> Parser:
    """A TCP port."""
    return integer(1, 65535)


def boolean() -> Parser:
    """true/false (also 1/0, yes/no, on/off)."""
    return Parser(_as_bool, "true or false")


def path() -> Parser:
    """A file system path (``~`` expanded)."""
    return Parser(_as_path, "path")


def choice(*allowed: str) -> Parser:
    """One of ``allowed``."""
    def parse(name: str, value: Any) -> str:
        chosen = _as_str(name, value)
        if chosen not in allowed:
            raise ConfigError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        return chosen
    return Parser(parse, " or ".join(allowed))


def optional(parser: Parser, empty: Any) -> Parser:
    """``parser``, or ``empty`` for an empty value."""
    return Parser(lambda n, v: parser(n, v) if v else empty, f"{parser.expects}, or empty")


def words() -> Parser:
    """A comma-separated list of words (a TOML array too)."""
    return Parser(lambda n, v: tuple(_as_list(n, v)), "comma-separated list")


def paths(absolute: bool = False) -> Parser:
    """A comma-separated list of paths (absolute ones with ``absolute``)."""
    one = _absolute_path if absolute else _as_path
    return Parser(lambda n, v: tuple(one(n, p) for p in _as_list(n, v)),
                  "comma-separated absolute paths" if absolute else "comma-separated paths")


def special(parse: Callable[[str, Any], Any], expects: str) -> Parser:
    """A parser of its own (host:port, URLs, names ...)."""
    return Parser(parse, expects)


# ----------------------------------------------------------- declarations ---

@dataclass(frozen=True)
class Declaration:
    """What :func:`setting` records about a field besides its default."""

    parser: Parser
    doc: str
    secret: bool = False
    shown_default: str | None = None  # for the table, where the default depends on the machine


def setting(default: Any = dataclasses.MISSING, parser: Parser | None = None, doc: str = "", *,
            factory: Callable[[], Any] | None = None, secret: bool = False,
            shown_default: str | None = None) -> Any:
    """Declare one setting: its default (or ``factory``), its parser, its one-line doc; ``secret``
    ones are masked by ``asci settings``; ``shown_default`` documents a default computed at run time."""
    if parser is None or not doc:
        raise TypeError("a setting needs a parser and a one-line doc")
    metadata = {_METADATA_KEY: Declaration(parser, doc, secret, shown_default)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def declaration(item: dataclasses.Field) -> Declaration:
    """The declaration of one field of :class:`Settings`."""
    return item.metadata[_METADATA_KEY]


def env_name(key: str) -> str:
    """The environment variable of the setting ``key``."""
    return f"{ENV_PREFIX}{key.upper()}"


@dataclass(frozen=True)
class Settings:
    """Every setting of the platform: one :func:`setting` declaration each, grouped by the package
    that owns it. Environment variable ``ASCI_<FIELD>``, TOML key ``<field>``."""

    # --- the core (asci/): data, database, logging, the HTTP contract
    data_dir: Path = setting(parser=path(), factory=_default_data_dir, shown_default="~/.local/share/asci",
                             doc="database (SQLite), repositories, registry storage, logs, secret key, settings.toml")
    database_url: str = setting("", special(_database_url, "sqlite:// or postgresql:// URL, or empty"),
                                "empty: SQLite at <data_dir>/asci.db; or postgresql://user:pw@127.0.0.1/db")
    log_format: str = setting("json", special(_log_format, "json or text"), "format of the log lines")
    secret_key: str = setting("", text(), "signs cookies and VNC tokens; empty: generated once under data_dir",
                              secret=True)
    request_max_bytes: int = setting(1024 * 1024, integer(1024, 1 << 30),
                                     "body limit of every request but RPM uploads (repo_max_rpm_bytes)")

    # --- RPM repositories (rpmrepo/)
    repo_allowed_arches: tuple[str, ...] = setting(("noarch", "x86_64"), special(_arches, "RPM architectures"),
                                                   "architectures a published RPM may have")
    repo_max_rpm_bytes: int = setting(512 * 1024 * 1024, integer(1, 1 << 40), "the largest RPM upload")
    repo_require_signature: bool = setting(False, boolean(), "refuse RPMs not signed by one of repo_gpg_keys")
    repo_gpg_keys: tuple[Path, ...] = setting((), paths(), "public keys whose signatures are accepted")
    default_repo: str = setting("beamline", special(_repo_name, "repository name"),
                                "the repository `asci rpm publish` uses unless told")
    repo_lock_timeout_s: int = setting(600, integer(1, 86400), "how long a publish waits for the repository lock")

    # --- images and the registry (builder/)
    registry: str = setting("127.0.0.1:5000", special(_registry, "host:port"),
                            "the image registry (pulls are anonymous; image builds write with registry_username)")
    registry_push: str = setting("", optional(special(_registry, "host:port"), ""),
                                 "the registry's push endpoint for Docker's own pushes; empty: registry")
    registry_username: str = setting("asci-builder", special(_user_name, "user name"),
                                     "the builder's user name for pushes and deletes")
    registry_password: str = setting("", text(), "the builder's password; empty: <data_dir>/registry-auth/password "
                                     "when it exists (set-up generates it), else anonymous writes", secret=True)
    registry_config: Path | None = setting(None, optional(special(_absolute_path, "absolute path"), None),
                                           "the registry's own config (garbage collection); "
                                           "empty: <data_dir>/registry-config.yml")
    registry_front_dir: Path | None = setting(None, optional(special(_absolute_path, "absolute path"), None),
                                              "the folder the registry proxy's workers reach (htpasswd, socket, "
                                              "writes-paused flag); empty: <data_dir>/registry-auth")
    registry_gc_keep_days: int = setting(14, integer(0, 100 * 365),
                                         "failed and never-promoted versions older than this are deleted by gc")
    registry_gc_command: str = setting("docker-registry garbage-collect {config}",
                                       special(_gc_command, "command holding {config}"),
                                       "the registry's garbage collector ({config}: registry_config)")
    builder_layered: bool = setting(True, boolean(), "environment images get one layer per large package")
    builder_max_layers: int = setting(64, integer(8, 125), "layer budget of an image, base included "
                                      "(rpm-ostree's --max-layers)")
    builder_own_layer_min_bytes: int = setting(1024 * 1024, integer(1, 1 << 40),
                                               "packages this large get a layer of their own")
    builder_max_dead_ratio: float = setting(1.0, number(0, 10), "superseded package layers kept, at most this "
                                            "share of the live layers' bytes; past it the stack is laid again")
    recipes_dir: Path = setting(PROJECT_ROOT / "recipes", path(), "the environment recipes",
                                shown_default="recipes/ of this checkout")
    docker_hosts: tuple[str, ...] = setting(("unix:///var/run/docker.sock",),
                                            special(_docker_hosts, "unix://, tcp:// or ssh:// URLs, comma-separated"),
                                            "the Docker engines (builds and desktop nodes)")

    # --- the session broker (broker/)
    broker_backend: str = setting("docker", choice("docker", "swarm"), "how desktops are started")
    broker_instance: str = setting("asci", special(_repo_name, "name"),
                                   "label value telling this broker's containers apart from others'")
    session_network: str = setting("none", special(_network, "none or a Docker network"),
                                   "none: a desktop reaches nothing (loopback only); or a Docker network the "
                                   "facility made for desktops' outbound access (never host or bridge)")
    session_run_dir: str = setting("", special(_absolute_dir, "absolute folder, or empty"),
                                   "per-session VNC socket and password folders, seen at the same path by the session "
                                   "broker, the rebuild worker, the viewer proxy and the nodes; empty: <data_dir>/run")
    public_citations: bool = setting(False, boolean(), "citation landing pages and the citation API answer "
                                     "without a login (for a facility that publishes its environments)")
    files_max_upload_bytes: int = setting(4 << 30, integer(1, 1 << 44), "the largest file one upload into a "
                                          "desktop's home may be (413 beyond)", shown_default="4 GiB")
    usage_sample_interval_s: float = setting(60.0, number(5, 3600), "how often reconciliation records each "
                                             "node's guarantees and schedulable capacity (the admin pictures)")
    usage_history_days: int = setting(14, integer(1, 366), "node usage samples older than this are pruned")
    thumbnail_max_age_s: float = setting(3.0, number(0.5, 300), "a running desktop's thumbnail is grabbed at most "
                                         "this often")
    home_root: str = setting("", special(_absolute_dir, "absolute folder, or empty"),
                             "users' homes as <home_root>/<user> on the facility's shared storage (the same path "
                             "on every node, made with the user's uid, 0700), bind-mounted into desktops; empty: "
                             "a Docker volume per user on each node")
    vnc_touch_interval_s: int = setting(60, integer(1, 3600),
                                        "while a viewer is connected, the viewer proxy touches the session this often "
                                        "(the idle clock)")
    viewer_check_interval_s: int = setting(2, integer(1, 60),
                                           "every connected viewer's token is checked this often (revoke disconnects)")
    session_max_per_user: int = setting(3, integer(1, 1000), "running desktops per user")
    session_idle_timeout_s: int = setting(4 * 3600, integer(60, 365 * 86400),
                                          "no VNC client for this long: the desktop is stopped")
    session_idle_warning_s: int = setting(15 * 60, integer(0, 86400), "warned this long before the idle stop")
    session_max_lifetime_s: int = setting(7 * 86400, integer(60, 365 * 86400), "a desktop is stopped at this age")
    session_start_timeout_s: int = setting(120, integer(1, 3600), "how long a desktop may take to start")
    session_uid_base: int = setting(100000, integer(1000, 2**31 - 2**20),
                                    "uid/gid = base + user id when the user has no uid/gid")
    session_cpu_guarantee: float = setting(0.25, number(0.01, 1024),
                                           "CPUs a desktop is guaranteed (counts for placement)")
    session_cpu_limit: float = setting(2.0, number(0.1, 1024), "CPUs a desktop may use (enforced)")
    session_memory_guarantee_mb: int = setting(512, integer(16, 1 << 24),
                                               "memory a desktop is guaranteed (counts for placement)")
    session_memory_limit_mb: int = setting(4096, integer(256, 1 << 24), "memory a desktop may use (enforced)")
    session_max_cpus: float = setting(32.0, number(0.1, 1024),
                                      "the largest CPU limit (and guarantee) one may ask for")
    session_max_memory_mb: int = setting(256 * 1024, integer(64, 1 << 24),
                                         "the largest memory limit (and guarantee) one may ask for")
    session_pids_limit: int = setting(2048, integer(64, 1 << 22), "processes a desktop may run")
    session_data_read_only: bool = setting(True, boolean(), "experiment data is mounted read-only")
    gpu_share_count: int = setting(1, integer(1, 64), "sessions sharing one GPU (VirtualGL)")
    placement_policy: str = setting("spread", choice("spread", "pack"),
                                    "spread: the node with the most free memory; pack: the fullest that fits")
    node_reserve_cpus: float = setting(0.5, number(0, 1024),
                                       "a new node's CPUs left to the engine and the system")
    node_reserve_memory_mb: int = setting(1024, integer(0, 1 << 24), "a new node's memory left to the system")
    node_cpu_overcommit: float = setting(4.0, number(0.1, 100),
                                         "a new node's guarantees may add up to (CPUs - reserve) x this")
    node_memory_overcommit: float = setting(1.0, number(0.1, 100), "the same for a new node's memory")
    node_max_sessions: int = setting(100, integer(1, 100000), "desktops a new node takes")
    experiment_data_roots: tuple[Path, ...] = setting((), paths(absolute=True),
                                                      "folders under these roots may be mounted into desktops; "
                                                      "empty: <data_dir>/experiments")

    # --- the web UI (web/)
    web_host: str = setting("127.0.0.1", text(), "the address the browser UI listens on")
    web_port: int = setting(8080, port(), "the browser UI's port on web_host")
    web_processes: int = setting(1, integer(1, 64), "server processes sharing web_port (SO_REUSEPORT): "
                                 "more than one uses more CPU cores")
    web_threads: int = setting(8, integer(1, 256), "request threads of each server process (each file "
                               "transfer holds one while it runs)")
    public_url: str = setting("http://127.0.0.1:8080", text(), "the URL users open (https: secure cookies)")
    oidc_issuer: str = setting("", text(), "OpenID Connect issuer URL; empty: OIDC login off")
    oidc_client_id: str = setting("", text(), "this platform's OpenID Connect client id")
    oidc_client_secret: str = setting("", text(), "this platform's OpenID Connect client secret", secret=True)
    oidc_scopes: str = setting("openid email profile", text(), "scopes asked of the OpenID Connect issuer")
    websockify_port: int = setting(6080, port(), "the viewer proxy (noVNC's WebSocket endpoint), bound to 127.0.0.1")
    websockify_url: str = setting("", text(), "public ws(s):// URL of that proxy; empty: the page's host, "
                                  "websockify_port")
    vnc_token_ttl_s: int = setting(60, integer(5, 86400),
                                   "lifetime of the signed token that opens one session's VNC WebSocket")
    login_max_attempts: int = setting(5, integer(1, 1000), "failed logins per user name and address before each "
                                      "further try waits 4 s, 8 s ... (at most login_window_s)")
    login_window_s: int = setting(300, integer(1, 86400), "failed logins older than this are forgotten")
    login_max_per_address: int = setting(30, integer(1, 100000),
                                         "failed logins from one address (any user name) per window, then refused")
    trusted_proxies: tuple[str, ...] = setting((), special(_networks, "IP addresses or networks"),
                                               "reverse proxies whose X-Forwarded-For is believed (empty: none)")
    api_token_days: int = setting(90, integer(1, 3650), "lifetime of a new API token unless one is given "
                                  "(asci user token --expires)")
    disabled_user_grace_s: int = setting(900, integer(0, 30 * 86400),
                                         "desktops of a disabled user are stopped this long after the disabling")

    # --- rebuilds and the smoke gate (ci/)
    ci_debounce_s: float = setting(5.0, number(0, 3600),
                                   "changes within this window fold into one build per environment")
    ci_poll_s: float = setting(2.0, number(0.05, 3600), "how often an idle worker looks for changes and jobs")
    ci_lease_s: float = setting(60.0, number(1, 86400), "a running job's lease; renewed every third of it")
    ci_max_attempts: int = setting(3, integer(1, 100), "tries of a failing job")
    ci_retry_base_s: float = setting(10.0, number(0, 86400), "back-off: base * 2^(attempt-1)")
    ci_gate_timeout_s: float = setting(120.0, number(1, 3600), "how long the smoke test waits for a drawn desktop")
    ci_webhook_urls: tuple[str, ...] = setting((), special(_webhook_urls, "http(s) URLs, comma-separated"),
                                               "told of every finished build")

    # --- the main job, asci serve (web/): its parts and their supervision
    serve_parts: tuple[str, ...] = setting((), words(), "parts asci serve runs; empty: every part")
    reconcile_interval_s: float = setting(10.0, number(0.5, 3600), "how often nodes and sessions are reconciled")
    cull_interval_s: float = setting(60.0, number(0.5, 86400), "how often idle and expired sessions are culled")
    restart_backoff_max_s: float = setting(60.0, number(0.1, 3600),
                                           "a crashed part is restarted after 1, 2, 4 ... up to this many seconds")

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
        return {env_name(item.name): _environ_text(getattr(self, item.name)) for item in dataclasses.fields(self)}

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


def _check_declarations(cls: type = Settings) -> dict[str, Declaration]:
    """The declaration of every field of ``cls``; TypeError for a field not made by :func:`setting`
    (so a setting without a parser stops this module from importing)."""
    declared = {}
    for item in dataclasses.fields(cls):
        if not isinstance(item.metadata.get(_METADATA_KEY), Declaration):
            raise TypeError(f"{cls.__name__}.{item.name} is not declared with setting(default, parser, doc)")
        declared[item.name] = declaration(item)
    return declared


DECLARATIONS: dict[str, Declaration] = _check_declarations()


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


# ---------------------------------------------------------------- loading ---

DEFAULT = "default"
ENVIRONMENT = "environment"


def _build(raw: Mapping[str, Any], source: str) -> Settings:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        spec = DECLARATIONS.get(key)
        if spec is None:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        label = env_name(key) if source == ENVIRONMENT else f"{source}: {key}"
        values[key] = spec.parser(label, value)
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


def load_settings_with_sources(environ: Mapping[str, str] | None = None) -> tuple[Settings, dict[str, str]]:
    """The settings (as :func:`load_settings`) and, per setting, where its value came from:
    ``default``, ``file <path> (data directory settings.toml)``, ``file <path> (ASCI_CONFIG)`` or
    ``environment ASCI_<FIELD>``."""
    environ = os.environ if environ is None else environ
    sources = {key: DEFAULT for key in DECLARATIONS}
    configured: dict[str, Any] = {}
    config_file = environ.get("ASCI_CONFIG")
    if config_file:
        configured = _read_toml(Path(config_file), "ASCI_CONFIG")
    env_values = {key: environ[env_name(key)] for key in DECLARATIONS if env_name(key) in environ}
    _build(env_values, source=ENVIRONMENT)
    raw = {**configured, **env_values}
    data_dir = _build({"data_dir": raw["data_dir"]}, "settings").data_dir if "data_dir" in raw else \
        _default_data_dir()
    local = data_dir / "settings.toml"
    if local.is_file():
        local_values = _read_toml(local, "data directory settings")
        sources.update({key: f"file {local} (data directory settings.toml)" for key in local_values})
        raw = {**local_values, **raw}
    sources.update({key: f"file {config_file} (ASCI_CONFIG)" for key in configured})
    sources.update({key: f"{ENVIRONMENT} {env_name(key)}" for key in env_values})
    return _build(raw, source="settings"), sources


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings: defaults < the data directory's ``settings.toml`` < ``ASCI_CONFIG`` (TOML)
    < ``ASCI_*`` variables."""
    return load_settings_with_sources(environ)[0]


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


def _environ_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


# ----------------------------------------------------------- presentation ---

MASK = "********"


def shown_value(key: str, value: Any) -> str:
    """``value`` of setting ``key`` as ``asci settings`` prints it (as its ``ASCI_*`` variable would
    hold it): a set secret as ``********``, the password of a database URL hidden."""
    if DECLARATIONS[key].secret:
        return MASK if value else ""
    if key == "database_url" and value:
        from sqlalchemy.engine import make_url

        return make_url(value).render_as_string(hide_password=True)
    return _environ_text(value)


def describe(settings: Settings, sources: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(key, shown value, source)`` for every setting, in declaration order."""
    return [(key, shown_value(key, getattr(settings, key)), sources.get(key, DEFAULT)) for key in DECLARATIONS]


def _default_text(key: str) -> str:
    spec = DECLARATIONS[key]
    if spec.shown_default is not None:
        return spec.shown_default
    item = next(f for f in dataclasses.fields(Settings) if f.name == key)
    value = item.default_factory() if item.default is dataclasses.MISSING else item.default
    return _environ_text(value)


def _cell(text_value: str) -> str:
    return text_value.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


TABLE_START = "<!-- settings table: generated by `python -m asci.config --markdown`; do not edit -->"
TABLE_END = "<!-- end of the settings table -->"


def settings_table_markdown() -> str:
    """The README's settings table: one row per declared setting (variable, TOML key, default,
    accepted values, doc), between the :data:`TABLE_START` and :data:`TABLE_END` markers."""
    rows = [TABLE_START, "", "| variable | TOML key | default | accepts | what it is |", "|---|---|---|---|---|"]
    for key, spec in DECLARATIONS.items():
        default = f"`{_default_text(key)}`" if _default_text(key) else "empty"
        doc = _cell(spec.doc) + (" (secret)" if spec.secret else "")
        rows.append(f"| `{env_name(key)}` | `{key}` | {default} | {_cell(spec.parser.expects)} | {doc} |")
    rows += ["", TABLE_END]
    return "\n".join(rows) + "\n"


def readme_table(readme_text: str) -> str | None:
    """The generated table as it stands in ``readme_text`` (markers included), or None."""
    start, end = readme_text.find(TABLE_START), readme_text.find(TABLE_END)
    if start < 0 or end < start:
        return None
    return readme_text[start:end + len(TABLE_END)] + "\n"


def update_readme(readme: Path) -> bool:
    """Replace the table between the markers in ``readme`` with :func:`settings_table_markdown`;
    True when it changed."""
    current = readme.read_text()
    table = readme_table(current)
    if table is None:
        raise ConfigError(f"{readme}: no settings table markers ({TABLE_START!r} ... {TABLE_END!r})")
    updated = current.replace(table, settings_table_markdown(), 1)
    if updated != current:
        readme.write_text(updated)
    return updated != current


def main(argv: list[str] | None = None) -> int:
    """``python -m asci.config --markdown`` prints the table; ``--update-readme [PATH]`` rewrites it."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--markdown"]:
        sys.stdout.write(settings_table_markdown())
        return 0
    if args[:1] == ["--update-readme"]:
        readme = Path(args[1]) if len(args) > 1 else PROJECT_ROOT / "README.md"
        print(f"{readme}: {'updated' if update_readme(readme) else 'already up to date'}")
        return 0
    print("usage: python -m asci.config --markdown | --update-readme [README.md]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
