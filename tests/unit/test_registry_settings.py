"""The builder's registry credentials and the layering settings."""

from __future__ import annotations

import pytest

from asci.config import Settings, load_settings
from asci.errors import ConfigError


def test_credentials_come_from_the_setting_or_the_generated_file(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert settings.registry_credentials is None  # nothing configured: anonymous writes
    (tmp_path / "registry-auth").mkdir()
    (tmp_path / "registry-auth" / "password").write_text("from-the-file\n")
    assert settings.registry_credentials == ("asci-builder", "from-the-file")
    assert settings.replace(registry_password="given", registry_username="ci").registry_credentials == ("ci", "given")


def test_registry_and_layer_settings_are_checked():
    environ = {"ASCI_REGISTRY_PUSH": "127.0.0.1:5001", "ASCI_BUILDER_MAX_LAYERS": "40",
               "ASCI_BUILDER_MAX_DEAD_RATIO": "0.5", "ASCI_REGISTRY_GC_KEEP_DAYS": "7"}
    settings = load_settings(environ)
    assert (settings.registry_push, settings.builder_max_layers, settings.builder_max_dead_ratio,
            settings.registry_gc_keep_days) == ("127.0.0.1:5001", 40, 0.5, 7)
    assert load_settings(settings.to_environ()) == settings
    for name, value in (("ASCI_REGISTRY_PUSH", "nope"), ("ASCI_BUILDER_MAX_LAYERS", "200"),
                        ("ASCI_REGISTRY_USERNAME", "a b"), ("ASCI_REGISTRY_GC_COMMAND", "gc")):
        with pytest.raises(ConfigError, match=name):
            load_settings({name: value})
