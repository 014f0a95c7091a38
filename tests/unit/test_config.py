"""Settings: defaults, TOML file, environment overrides and named errors."""

from pathlib import Path

import pytest

from asci.config import Settings, load_settings
from asci.errors import ConfigError


def test_embedded_defaults_use_sqlite_under_the_data_dir(tmp_path):
    settings = load_settings({"ASCI_DATA_DIR": str(tmp_path)})
    assert settings.data_dir == tmp_path
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'asci.db'}"
    assert settings.repos_dir == tmp_path / "repos"
    assert settings.registry == "127.0.0.1:5000"
    assert settings.docker_hosts == ("unix:///var/run/docker.sock",)


def test_environment_overrides_the_toml_file(tmp_path):
    config = tmp_path / "asci.toml"
    config.write_text('registry = "127.0.0.1:5001"\nweb_port = 9000\ndocker_hosts = ["unix:///a.sock", "tcp://127.0.0.1:2376"]\n')
    settings = load_settings({"ASCI_CONFIG": str(config), "ASCI_REGISTRY": "127.0.0.1:5002"})
    assert settings.registry == "127.0.0.1:5002"
    assert settings.web_port == 9000
    assert settings.docker_hosts == ("unix:///a.sock", "tcp://127.0.0.1:2376")


def test_docker_hosts_from_environment_are_comma_separated():
    settings = load_settings({"ASCI_DOCKER_HOSTS": "unix:///var/run/d1.sock, unix:///var/run/d2.sock"})
    assert settings.docker_hosts == ("unix:///var/run/d1.sock", "unix:///var/run/d2.sock")


@pytest.mark.parametrize("name,value,expected", [
    ("ASCI_REGISTRY", "no-port", "ASCI_REGISTRY: expected host:port"),
    ("ASCI_DOCKER_HOSTS", "http://x", "ASCI_DOCKER_HOSTS: expected Docker host URLs"),
    ("ASCI_DATABASE_URL", "mysql://u@h/db", "ASCI_DATABASE_URL: expected a sqlite:// or postgresql://"),
    ("ASCI_DATABASE_URL", "::not a url::", "ASCI_DATABASE_URL: expected a SQLAlchemy URL"),
    ("ASCI_WEB_PORT", "eighty", "ASCI_WEB_PORT: expected an integer between 1 and 65535"),
    ("ASCI_WEB_PORT", "70000", "ASCI_WEB_PORT: expected an integer"),
    ("ASCI_REPO_REQUIRE_SIGNATURE", "maybe", "ASCI_REPO_REQUIRE_SIGNATURE: expected true or false"),
    ("ASCI_TRUSTED_PROXIES", "10.0.0.1,proxy.example", "ASCI_TRUSTED_PROXIES: expected IP addresses or networks"),
    ("ASCI_REQUEST_MAX_BYTES", "12", "ASCI_REQUEST_MAX_BYTES: expected an integer between 1024"),
    ("ASCI_API_TOKEN_DAYS", "0", "ASCI_API_TOKEN_DAYS: expected an integer between 1"),
])
def test_a_bad_environment_value_is_named_with_what_was_expected(name, value, expected):
    with pytest.raises(ConfigError) as excinfo:
        load_settings({name: value})
    assert str(excinfo.value).startswith(expected)


def test_a_bad_value_in_the_file_names_the_file_and_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('web_port = "x"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: web_port: expected an integer"):
        load_settings({"ASCI_CONFIG": str(config)})


def test_unknown_keys_and_missing_files_are_reported(tmp_path):
    config = tmp_path / "typo.toml"
    config.write_text('registy = "127.0.0.1:5000"\n')
    with pytest.raises(ConfigError, match="unknown setting 'registy'"):
        load_settings({"ASCI_CONFIG": str(config)})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"ASCI_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.write_text("= broken")
        load_settings({"ASCI_CONFIG": str(config)})


def test_replace_checks_values_again():
    settings = Settings(data_dir=Path("/tmp/x"))
    assert settings.replace(web_port="8081").web_port == 8081
    with pytest.raises(ConfigError):
        settings.replace(registry="nope")


def test_the_data_directory_settings_file_is_read_by_every_command(tmp_path):
    from asci.config import save_local_settings

    data = tmp_path / "data"
    base = load_settings({"ASCI_DATA_DIR": str(data)})
    save_local_settings(base, recipes_dir=data / "recipes-repo" / "recipes", ci_debounce_s=1.5)
    assert (data / "settings.toml").stat().st_mode & 0o777 == 0o600
    again = load_settings({"ASCI_DATA_DIR": str(data)})
    assert again.recipes_dir == data / "recipes-repo" / "recipes" and again.ci_debounce_s == 1.5
    # ASCI_* variables still win over the file
    assert load_settings({"ASCI_DATA_DIR": str(data), "ASCI_CI_DEBOUNCE_S": "9"}).ci_debounce_s == 9
    (data / "settings.toml").write_text("web_port = 'not a port'\n")
    with pytest.raises(ConfigError, match="settings.toml: web_port"):
        load_settings({"ASCI_DATA_DIR": str(data)})


def test_to_environ_gives_a_child_process_the_same_settings(tmp_path):
    settings = load_settings({"ASCI_DATA_DIR": str(tmp_path), "ASCI_SESSION_NETWORK": "asci-desktops",
                              "ASCI_SESSION_RUN_DIR": "/srv/run",
                              "ASCI_DOCKER_HOSTS": "unix:///a.sock,unix:///b.sock", "ASCI_SERVE_PARTS": "web,cull",
                              "ASCI_EXPERIMENT_DATA_ROOTS": "/srv/data,/srv/more", "ASCI_REPO_REQUIRE_SIGNATURE": "1"})
    assert load_settings(settings.to_environ()) == settings


def test_experiment_data_roots_must_be_absolute(tmp_path):
    with pytest.raises(ConfigError, match="ASCI_EXPERIMENT_DATA_ROOTS: expected absolute paths"):
        load_settings({"ASCI_DATA_DIR": str(tmp_path), "ASCI_EXPERIMENT_DATA_ROOTS": "data/here"})
    default = load_settings({"ASCI_DATA_DIR": str(tmp_path)})
    assert default.data_roots == (tmp_path / "experiments",)


def test_trusted_proxies_are_networks():
    settings = load_settings({"ASCI_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/24, ::1"})
    assert settings.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/24", "::1/128")


def test_desktop_isolation_settings(tmp_path):
    settings = load_settings({"ASCI_DATA_DIR": str(tmp_path)})
    assert settings.session_network == "none" and settings.run_dir == tmp_path / "run"
    assert settings.vnc_touch_interval_s == 60
    moved = load_settings({"ASCI_DATA_DIR": str(tmp_path), "ASCI_SESSION_RUN_DIR": "/run/asci/",
                           "ASCI_SESSION_NETWORK": "asci-desktops", "ASCI_VNC_TOUCH_INTERVAL_S": "5"})
    assert moved.run_dir == Path("/run/asci") and moved.session_network == "asci-desktops"
    assert moved.vnc_touch_interval_s == 5
    for name, value in (("ASCI_SESSION_RUN_DIR", "relative/run"), ("ASCI_SESSION_RUN_DIR", "/"),
                        ("ASCI_SESSION_NETWORK", "host"), ("ASCI_VNC_TOUCH_INTERVAL_S", "0")):
        with pytest.raises(ConfigError, match=name):
            load_settings({name: value})
    with pytest.raises(ConfigError, match="unknown setting 'session_ports'"):
        Settings().replace(session_ports="5901-5999")
