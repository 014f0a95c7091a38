"""``asci env`` commands that need the repository and dnf but no image build: list, validate, lock, render."""

from __future__ import annotations

import json

import pytest

import rpmrepo
from asci.cli import main
from tests.support import recipe_text

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def asci(monkeypatch, capsys, settings, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("ASCI_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ASCI_RECIPES_DIR", str(settings.recipes_dir))
    monkeypatch.delenv("ASCI_DATABASE_URL", raising=False)
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_validate_lock_render(settings, recipes_repo, fixture_rpms, base_image, monkeypatch, capsys):
    recipes_repo.write("mx-demo", recipe_text("mx-demo", ["mx-process", "asci-demo-viewer"]))
    bad = recipes_repo.write("bad-demo", recipe_text("bad-demo", ["mx-process"]).replace(
        "TEST_GREETING: hello world", "TEST_GREETING: $(reboot)"), commit=False)
    settings = settings.replace(recipes_dir=recipes_repo.root)
    rpmrepo.publish(settings, [fixture_rpms / f for f in ("mx-lib-2.0-1.noarch.rpm", "mx-process-1.0-1.noarch.rpm",
                                                          "asci-demo-viewer-1.0-1.noarch.rpm",
                                                          "asci-demo-viewer-1.1-1.noarch.rpm")])

    code, out, err = asci(monkeypatch, capsys, settings, "env", "validate", str(bad))
    assert code == 2 and f"error: {bad}:8: env.TEST_GREETING: invalid value '$(reboot)'" in err
    bad.unlink()
    code, out, _ = asci(monkeypatch, capsys, settings, "env", "validate")
    assert code == 0 and out.strip().endswith("mx-demo.yaml")
    code, out, _ = asci(monkeypatch, capsys, settings, "env", "list")
    assert code == 0 and out.startswith("mx-demo ") and "current=-" in out

    code, out, err = asci(monkeypatch, capsys, settings, "env", "lock", "mx-demo")
    assert code == 0, err
    lock = json.loads(out)
    assert [p["nevra"] for p in lock["packages"]] == ["asci-demo-viewer-1.1-1.noarch", "mx-lib-1:2.0-1.noarch",
                                                      "mx-process-1.0-1.noarch"]
    assert lock["base"]["tag"] == base_image and lock["base"]["id"].startswith("sha256:")
    assert lock["recipe"] == {"commit": recipes_repo.repo.head.commit.hexsha, "path": "environments/mx-demo.yaml",
                              "sha256": lock["recipe"]["sha256"], "dirty": False}
    assert "lock digest sha256:" in err

    code, out, _ = asci(monkeypatch, capsys, settings, "env", "render", "mx-demo")
    assert code == 0 and f"FROM {base_image}" in out
    assert "asci-demo-viewer-0:1.1-1.noarch \\" in out and 'asci.version="unreleased"' in out

    code, _, err = asci(monkeypatch, capsys, settings, "env", "show", "mx-demo", "2026.01.01.1")
    assert code != 0 and err.strip() == "error: unknown environment 'mx-demo' (never built)"
