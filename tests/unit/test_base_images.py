"""Base image definitions: every one renders, carries the entrypoint contract, names no host."""

import re
import shutil

import pytest

from asci.config import PROJECT_ROOT
from builder import base_images
from builder.apt_sources import apt_mirror
from builder.errors import BaseImageError

RECIPES = PROJECT_ROOT / "recipes"
NAMES = ["debian12-mate", "centos7-mate-cuda-virtualgl", "rocky9-mate-cuda-virtualgl"]


def _params(definition):
    return {key: f"http://127.0.0.1:8099/{key}" if key.endswith("url") else "local/" + key
            for key in (definition.spec.get("params") or {})} | (
        {"cuda_version": "12-4"} if "cuda_version" in (definition.spec.get("params") or {}) else {})


def _render(name):
    definition = base_images.load_definition(RECIPES, name)
    context = _params(definition)
    if definition.buildable:
        context |= {"rootfs_image": "asci/rootfs-test:1", "apt_mirror": "http://127.0.0.1:8099/debian"}
    return definition, base_images.render_dockerfile(definition, **context)


def test_all_three_definitions_are_listed():
    assert [d.name for d in base_images.list_definitions(RECIPES)] == sorted(NAMES)
    assert [d.name for d in base_images.list_definitions(RECIPES) if d.buildable] == ["debian12-mate"]


@pytest.mark.parametrize("name", NAMES)
def test_every_definition_renders_with_the_entrypoint_contract(name):
    definition, dockerfile = _render(name)
    assert dockerfile.startswith("# Rendered by builder.base_images")
    assert re.search(r"^FROM \S+", dockerfile, re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/asci-desktop-entrypoint"]' in dockerfile
    assert "COPY asci-desktop-entrypoint /usr/local/bin/asci-desktop-entrypoint" in dockerfile
    assert f'asci.base.definition="{definition.definition_hash}"' in dockerfile
    assert "useradd --create-home --uid 1000" in dockerfile  # an unprivileged desktop user
    assert "{{" not in dockerfile and "}}" not in dockerfile


def test_centos7_uses_the_vault_and_installs_the_production_stack():
    _, dockerfile = _render("centos7-mate-cuda-virtualgl")
    for path in ("/7.9.2009/os/", "/7.9.2009/updates/", "/7.9.2009/extras/"):
        assert "http://127.0.0.1:8099/vault_url" + path in dockerfile
    for package in ("MATE Desktop", "tigervnc-server-minimal", "VirtualGL", "cuda-runtime-12-4", "nss_wrapper"):
        assert package in dockerfile
    assert "mirrorlist" not in dockerfile


def test_rocky9_installs_the_same_stack_with_dnf():
    _, dockerfile = _render("rocky9-mate-cuda-virtualgl")
    for package in ("mate-session-manager", "tigervnc-server-minimal", "VirtualGL", "cuda-runtime-12-4", "dnf -y install"):
        assert package in dockerfile


def test_non_buildable_definitions_need_every_parameter():
    definition = base_images.load_definition(RECIPES, "centos7-mate-cuda-virtualgl")
    with pytest.raises(BaseImageError, match="missing parameters"):
        base_images.parse_params(definition, ["vault_url=http://127.0.0.1/v"])
    with pytest.raises(BaseImageError, match="unknown parameter 'nope'"):
        base_images.parse_params(definition, ["nope=1"])
    with pytest.raises(BaseImageError, match="unsafe"):
        base_images.parse_params(definition, ["vault_url=http://x/ && rm -rf /"])
    with pytest.raises(BaseImageError, match="cannot be built on this machine"):
        base_images.build_base_image(definition, client=None)


def test_no_host_name_is_written_into_the_recipes():
    text = "\n".join(p.read_text() for p in (RECIPES / "base").rglob("*") if p.is_file())
    hosts = re.findall(r"https?://([A-Za-z0-9.\-]+)", text)
    assert hosts == [], f"host names in recipes/base: {hosts}"


def test_the_hash_covers_the_definition_and_the_shared_entrypoint(tmp_path):
    copy = tmp_path / "recipes"
    shutil.copytree(RECIPES / "base", copy / "base")
    before = base_images.load_definition(copy, "debian12-mate").definition_hash
    assert before == base_images.load_definition(RECIPES, "debian12-mate").definition_hash
    entrypoint = copy / "base" / "common" / "asci-desktop-entrypoint"
    entrypoint.write_text(entrypoint.read_text() + "\n# changed\n")
    after = base_images.load_definition(copy, "debian12-mate")
    assert after.definition_hash != before
    assert after.image_tag == f"asci/base-debian12-mate:{after.definition_hash}"


def test_unknown_definition_names_the_known_ones():
    with pytest.raises(BaseImageError, match="unknown base image 'fedora'.*debian12-mate"):
        base_images.load_definition(RECIPES, "fedora")


def test_entrypoint_refuses_to_start_without_a_password():
    script = (RECIPES / "base" / "common" / "asci-desktop-entrypoint").read_text()
    assert "refusing to start without a password" in script
    assert "-SecurityTypes VncAuth" in script and "-nolisten local" in script


def test_apt_mirror_reads_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb deb-src\nURIs: http://mirror.test/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert apt_mirror("bookworm", tmp_path) == "http://mirror.test/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64] http://other.test/debian bookworm main\n")
    assert apt_mirror("bookworm", tmp_path) == "http://other.test/debian"
    with pytest.raises(BaseImageError, match="no apt source for 'trixie'"):
        apt_mirror("trixie", tmp_path)
