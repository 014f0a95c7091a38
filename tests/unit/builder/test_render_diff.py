"""Rendering a lock into a Dockerfile, and diffing locks (no Docker, no dnf)."""

from __future__ import annotations

import copy

import pytest

from asci.config import PROJECT_ROOT
from builder.diff import diff_locks
from builder.errors import RecipeError
from builder.lock import lock_digest, nevra_of
from builder.recipes import load_recipe
from builder.render import render

RECIPES = PROJECT_ROOT / "recipes"


def pkg(name, version, release="1", epoch=0, arch="noarch", sha="a"):
    p = {"name": name, "epoch": epoch, "version": version, "release": release, "arch": arch,
         "filename": f"{name}-{version}-{release}.{arch}.rpm", "sha256": sha * 64, "size": 10}
    p["nevra"] = nevra_of(p)
    return p


LOCK = {"schema": 1, "environment": "mx-crystallography", "repo": "beamline",
        "packages": [pkg("asci-demo-viewer", "1.0"), pkg("mx-lib", "2.0", epoch=1, sha="b"), pkg("mx-process", "1.0")],
        "base": {"name": "debian12-mate", "tag": "asci/base-debian12-mate:abc123", "id": "sha256:" + "c" * 64},
        "recipe": {"commit": "d" * 40, "path": "environments/mx-crystallography.yaml", "sha256": "e" * 64,
                   "dirty": False}}


def do_render(lock=LOCK, **kw):
    recipe = load_recipe(RECIPES, "mx-crystallography")
    args = dict(version="2026.11.25.1", created="2026-11-25T10:00:00Z", base_tag=lock["base"]["tag"],
                source="file:///recipes#environments/mx-crystallography.yaml")
    args.update(kw)
    return render(recipe, lock, **args)


def test_dockerfile_installs_exactly_the_locked_nevras_with_sha256_checks():
    context = do_render()
    text = context.dockerfile
    assert text.splitlines()[2] == "FROM asci/base-debian12-mate:abc123"
    for p in LOCK["packages"]:
        assert f"{p['name']}-{p['epoch']}:{p['version']}-{p['release']}.{p['arch']} \\" in text
        assert f"{p['sha256']} {p['filename']} \\" in text
    assert "sha256sum --strict --check -" in text
    assert 'test "$(ls | wc -l)" -eq 3' in text
    assert "ARG ASCI_REPO_URL" in text and "127.0.0.1" not in text.split("ARG ASCI_REPO_URL")[1]
    assert 'ENV MX_SCRATCH="/tmp/mx-scratch"' in text
    for label in ('org.opencontainers.image.version="2026.11.25.1"', f'org.opencontainers.image.revision="{"d" * 40}"',
                  'org.opencontainers.image.created="2026-11-25T10:00:00Z"', "org.opencontainers.image.source=",
                  'asci.environment="mx-crystallography"', 'asci.version="2026.11.25.1"',
                  f'asci.lock-digest="{lock_digest(LOCK)}"'):
        assert label in text
    assert set(context.files) == {"asci-lock.json", "launchers/asci-mx-process.desktop",
                                  "launchers/asci-image-viewer.desktop", "menu/x-asci-mx1.menu",
                                  "menu/x-asci-mx1.directory", "citation/CITATION.cff", "citation/ABOUT.txt",
                                  "about/asci-about-this-environment.desktop"}
    entry = context.files["launchers/asci-mx-process.desktop"]
    assert "Exec=/usr/bin/mx-process\n" in entry and "Terminal=true" in entry
    # Filed under the beamline's own menu (named after it), and handed to the entrypoint for the Desktop.
    assert "Categories=X-ASCI-MX1;\n" in entry
    assert "<Include><Category>X-ASCI-MX1</Category></Include>" in context.files["menu/x-asci-mx1.menu"]
    assert "Name=MX1\n" in context.files["menu/x-asci-mx1.directory"]
    assert "COPY launchers/ /usr/share/asci/desktop/" in text
    assert "COPY menu/x-asci-mx1.menu /etc/xdg/menus/applications-merged/" in text


def test_rendering_is_deterministic():
    assert do_render().dockerfile == do_render().dockerfile


@pytest.mark.parametrize("field,value", [
    ("name", "mx-lib\nRUN id"), ("version", "2.0 && id"), ("release", "1;id"), ("arch", "noarch x"),
    ("sha256", "z" * 64), ("filename", "../../etc/passwd"), ("epoch", "1 2"),
])
def test_a_tampered_lock_is_refused(field, value):
    lock = copy.deepcopy(LOCK)
    lock["packages"][1][field] = value
    with pytest.raises(RecipeError, match=f"packages\\[1\\].{field}: unsafe value"):
        do_render(lock)


def test_unsafe_labels_and_base_are_refused():
    with pytest.raises(RecipeError, match="source"):
        do_render(source='x" LABEL evil="1')
    with pytest.raises(RecipeError, match="base image"):
        do_render(base_tag="ubuntu\nRUN id")
    with pytest.raises(RecipeError, match="no packages"):
        do_render({**LOCK, "packages": []})


def test_diff_classifies_changes_with_rpm_ordering():
    new = copy.deepcopy(LOCK)
    new["packages"] = [pkg("asci-demo-viewer", "1.10"), pkg("mx-lib", "1.9", epoch=2, sha="b"),
                       pkg("mx-process", "1.0~rc1"), pkg("imaging-tool", "3.2", arch="x86_64")]
    new["recipe"]["commit"] = "f" * 40
    result = diff_locks(LOCK, new)
    assert [d["name"] for d in result.upgraded] == ["asci-demo-viewer", "mx-lib"]  # 1.10 > 1.0; epoch wins
    assert [(d["name"], d["old"], d["new"]) for d in result.downgraded] == [("mx-process", "1.0-1", "1.0~rc1-1")]
    assert [d["name"] for d in result.added] == ["imaging-tool"] and not result.removed
    lines = result.lines()
    assert "upgraded   asci-demo-viewer.noarch 1.0-1 -> 1.10-1" in lines
    assert "upgraded   mx-lib.noarch 1:2.0-1 -> 2:1.9-1" in lines
    assert any(line.startswith("changed    recipe commit") for line in lines)
    back = diff_locks(new, LOCK)
    assert [d["name"] for d in back.removed] == ["imaging-tool"]


def test_diff_of_equal_locks_and_rebuilt_bytes():
    assert diff_locks(LOCK, LOCK).empty and diff_locks(LOCK, LOCK).lines() == ["no package differences"]
    other = copy.deepcopy(LOCK)
    other["packages"][0]["sha256"] = "9" * 64
    assert [d["name"] for d in diff_locks(LOCK, other).rebuilt] == ["asci-demo-viewer"]


def test_lock_digest_is_canonical():
    shuffled = dict(reversed(list(LOCK.items())))
    assert lock_digest(shuffled) == lock_digest(LOCK)
    assert lock_digest({**LOCK, "repo": "other"}) != lock_digest(LOCK)


@pytest.mark.parametrize("key", ["NVIDIA_VISIBLE_DEVICES", "VGL_DISPLAY", "VNC_PASSWD_FILE", "ASCI_SESSION", "LD_PRELOAD"])
def test_reserved_environment_variables_are_refused_at_render_time_too(key):
    """A recipe that never met the schema (built in code, or an edited store) still cannot set them."""
    import dataclasses

    recipe = load_recipe(RECIPES, "mx-crystallography")
    tampered = dataclasses.replace(recipe, env={**recipe.env, key: "all"})
    with pytest.raises(RecipeError, match=f"env.{key}: '{key}' is reserved for the platform"):
        render(tampered, LOCK, version="2026.11.25.1", created="2026-11-25T10:00:00Z", base_tag=LOCK["base"]["tag"])


def test_the_schema_and_the_renderer_reserve_the_same_names():
    import yaml

    from builder.render import RESERVED_ENV

    schema = yaml.safe_load((RECIPES / "environments" / "schema.yaml").read_text())
    assert schema["fields"]["env"]["keys"]["forbidden"] == RESERVED_ENV
