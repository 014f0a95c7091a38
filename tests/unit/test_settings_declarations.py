"""Each setting declared once: loading, ``asci settings`` and the README table come from the declarations."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from asci import config
from asci.config import DECLARATIONS, Settings, load_settings_with_sources, setting
from asci.errors import ConfigError


def test_the_readme_table_is_generated_from_the_declarations():
    readme = (config.PROJECT_ROOT / "README.md").read_text()
    table = config.readme_table(readme)
    assert table is not None, "README.md lost the settings table markers"
    assert table == config.settings_table_markdown(), "run: python -m asci.config --update-readme"


def test_every_field_is_declared_once_with_a_parser_and_a_doc():
    names = [item.name for item in dataclasses.fields(Settings)]
    assert list(DECLARATIONS) == names and len(set(names)) == len(names)
    for name, spec in DECLARATIONS.items():
        assert callable(spec.parser) and spec.parser.expects and spec.doc, name
        assert "\n" not in spec.doc, name
    table = config.settings_table_markdown()
    assert all(f"`ASCI_{name.upper()}` | `{name}` |" in table for name in names)


def test_a_field_without_a_declaration_cannot_exist():
    @dataclasses.dataclass(frozen=True)
    class Broken:
        web_port: int = setting(8080, config.port(), "a port")
        forgotten: int = 3

    with pytest.raises(TypeError, match="Broken.forgotten is not declared"):
        config._check_declarations(Broken)
    with pytest.raises(TypeError, match="needs a parser"):
        setting(1)


def test_every_default_passes_its_own_parser():
    defaults = Settings()
    for name, spec in DECLARATIONS.items():
        assert spec.parser(name, getattr(defaults, name)) == getattr(defaults, name), name


def test_every_setting_is_read_from_its_variable_and_its_toml_key(tmp_path):
    """A value other than the default for each setting, through ASCI_<FIELD> and through a TOML file."""
    changed = {"data_dir": str(tmp_path / "d"), "web_port": 9000, "ci_poll_s": 0.5, "builder_layered": False,
               "serve_parts": ["web", "cull"], "registry_password": "pw", "registry_config": "/etc/reg.yml"}
    environ = {config.env_name(key): ",".join(value) if isinstance(value, list) else str(value).lower()
               if isinstance(value, bool) else str(value) for key, value in changed.items()}
    from_env, sources = load_settings_with_sources(environ)
    toml = tmp_path / "asci.toml"
    toml.write_text("\n".join(f"{key} = {config._toml_value(value)}" for key, value in changed.items()))
    from_file, file_sources = load_settings_with_sources({"ASCI_CONFIG": str(toml)})
    assert from_env == from_file
    assert (from_env.web_port, from_env.ci_poll_s, from_env.builder_layered, from_env.serve_parts) == \
        (9000, 0.5, False, ("web", "cull"))
    assert sources["web_port"] == "environment ASCI_WEB_PORT" and sources["registry"] == "default"
    assert file_sources["web_port"] == f"file {toml} (ASCI_CONFIG)"


def test_sources_name_the_data_directory_file_the_config_file_and_the_environment(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "settings.toml").write_text('web_port = 9001\nregistry = "127.0.0.1:5003"\nci_poll_s = 1.0\n')
    other = tmp_path / "asci.toml"
    other.write_text('registry = "127.0.0.1:5004"\nci_poll_s = 3.0\n')
    settings, sources = load_settings_with_sources({"ASCI_DATA_DIR": str(data), "ASCI_CONFIG": str(other),
                                                    "ASCI_CI_POLL_S": "4"})
    assert (settings.web_port, settings.registry, settings.ci_poll_s) == (9001, "127.0.0.1:5004", 4.0)
    assert sources["web_port"] == f"file {data / 'settings.toml'} (data directory settings.toml)"
    assert sources["registry"] == f"file {other} (ASCI_CONFIG)"
    assert sources["ci_poll_s"] == "environment ASCI_CI_POLL_S"
    assert sources["data_dir"] == "environment ASCI_DATA_DIR" and sources["log_format"] == "default"


def test_asci_settings_prints_values_and_sources_with_secrets_masked(tmp_path):
    import click

    from asci.cli import cli

    settings_command = cli.get_command(click.Context(cli), "settings")  # registered as `asci settings`

    environ = {"ASCI_DATA_DIR": str(tmp_path), "ASCI_SECRET_KEY": "s3cret-key", "ASCI_REGISTRY_PASSWORD": "reg-pw",
               "ASCI_OIDC_CLIENT_SECRET": "oidc-pw", "ASCI_WEB_PORT": "9002",
               "ASCI_DATABASE_URL": "postgresql://asci:db-pw@127.0.0.1/asci"}
    result = CliRunner().invoke(settings_command, [], env=environ)
    assert result.exit_code == 0, result.output
    for secret in ("s3cret-key", "reg-pw", "oidc-pw", "db-pw"):
        assert secret not in result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert set(lines) == set(DECLARATIONS)
    assert lines["web_port"].split()[1:] == ["9002", "environment", "ASCI_WEB_PORT"]
    assert lines["secret_key"].split()[1] == config.MASK
    assert lines["oidc_issuer"].split()[1:] == ["(empty)", "default"]
    as_json = json.loads(CliRunner().invoke(settings_command, ["--json"], env=environ).output)
    assert as_json["database_url"] == {"value": "postgresql://asci:***@127.0.0.1/asci",
                                       "source": "environment ASCI_DATABASE_URL"}
    assert as_json["registry_password"]["value"] == config.MASK and as_json["oidc_issuer"]["value"] == ""
    assert all(DECLARATIONS[key].secret for key in ("secret_key", "registry_password", "oidc_client_secret"))


def test_a_bad_value_is_still_named_by_its_source(tmp_path):
    with pytest.raises(ConfigError, match="^ASCI_WEB_PORT: expected an integer between 1 and 65535"):
        load_settings_with_sources({"ASCI_WEB_PORT": "0"})
