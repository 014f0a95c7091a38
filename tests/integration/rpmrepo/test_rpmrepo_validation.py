"""Bad input gets a clear error and changes nothing (real rpm, rpmkeys, createrepo_c)."""

from __future__ import annotations

import pytest

from asci.db import session_scope
import rpmrepo
from rpmrepo.errors import InvalidPackage, InvalidName, PackageTooLarge
from rpmrepo.metadata import read_revision

pytestmark = pytest.mark.integration

VIEWER = "asci-demo-viewer-1.0-1.noarch.rpm"


def _state(settings):
    root = settings.repos_dir / "beamline"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []
    with session_scope(settings) as session:
        rows = [p.nevra for p in rpmrepo.list_packages(session, "beamline", include_retracted=True)]
        events = len(rpmrepo.events_after(session, 0, 1000))
    return files, rows, events, read_revision(root / "all")


@pytest.fixture
def seeded(settings, fixture_rpms):
    """A repository holding one package, so that 'nothing changed' is meaningful."""
    rpmrepo.publish(settings, [fixture_rpms / "mx-lib-2.0-1.noarch.rpm"])
    return settings


def _refused(settings, path, error, match):
    before = _state(settings)
    with pytest.raises(error, match=match):
        rpmrepo.publish(settings, [path])
    assert _state(settings) == before
    assert not any((settings.repos_dir / ".incoming").iterdir())  # staging cleaned up


def test_text_file_named_rpm(seeded, tmp_path):
    fake = tmp_path / "viewer.rpm"
    fake.write_text("/etc/passwd\nthis is not a package\n")
    _refused(seeded, fake, InvalidPackage, r"viewer.rpm: not an RPM package")


@pytest.mark.parametrize("keep", [200, 3000, 6000, -60])
def test_truncated_rpm(seeded, fixture_rpms, tmp_path, keep):
    data = (fixture_rpms / VIEWER).read_bytes()
    cut = tmp_path / VIEWER
    cut.write_bytes(data[:keep])
    _refused(seeded, cut, InvalidPackage, rf"{VIEWER}: (not a readable RPM|damaged or truncated)")


def test_architecture_not_allowed(seeded, fixture_rpms):
    _refused(seeded, fixture_rpms / "odd-arch-tool-1.0-1.aarch64.rpm", InvalidPackage,
             r"architecture 'aarch64' is not allowed \(allowed: noarch, x86_64\)")


def test_allowed_architectures_are_configurable(settings, fixture_rpms):
    narrow = settings.replace(repo_allowed_arches=("noarch",))
    _refused(narrow, fixture_rpms / "imaging-tool-3.2-1.x86_64.rpm", InvalidPackage, "'x86_64' is not allowed")


def test_oversized_file(seeded, fixture_rpms):
    small = seeded.replace(repo_max_rpm_bytes=1000)
    _refused(small, fixture_rpms / VIEWER, PackageTooLarge, "larger than the limit of 1000 bytes")


def test_name_comes_from_the_header_not_the_file_name(settings, fixture_rpms, tmp_path):
    odd = tmp_path / "..%2f..%2fetc%2fcron.d%2fevil.rpm"
    odd.write_bytes((fixture_rpms / VIEWER).read_bytes())
    result = rpmrepo.publish(settings, [odd])
    assert result.packages[0].filename == VIEWER
    assert sorted(p.name for p in rpmrepo.repo_path(settings).glob("*.rpm")) == [VIEWER]


def test_bad_repository_name_is_refused(settings, fixture_rpms):
    with pytest.raises(InvalidName):
        rpmrepo.publish(settings, [fixture_rpms / VIEWER], repo="../etc")
    assert rpmrepo.list_repos(settings) == []


def test_unsigned_package_where_signatures_are_required(settings, fixture_rpms, gpg):
    strict = settings.replace(repo_require_signature=True, repo_gpg_keys=(gpg.public_key("facility"),))
    _refused(strict, fixture_rpms / VIEWER, InvalidPackage, "package is not signed, and this repository requires")


def test_package_signed_by_an_unknown_key_is_refused(settings, fixture_rpms, gpg, tmp_path):
    strict = settings.replace(repo_require_signature=True, repo_gpg_keys=(gpg.public_key("facility"),))
    signed = gpg(fixture_rpms / VIEWER, tmp_path / "stranger", who="stranger")
    _refused(strict, signed, InvalidPackage, "signature not made by a configured GPG key")


def test_package_signed_by_a_configured_key_is_accepted(settings, fixture_rpms, gpg, tmp_path, dnf_client):
    strict = settings.replace(repo_require_signature=True, repo_gpg_keys=(gpg.public_key("facility"),))
    signed = gpg(fixture_rpms / VIEWER, tmp_path / "facility")
    result = rpmrepo.publish(strict, [signed])
    assert result.packages[0].status == "published"
    assert dnf_client(rpmrepo.repo_path(strict).as_uri()).available() == {"asci-demo-viewer-1.0-1.noarch"}


def test_signature_required_without_keys_is_a_clear_error(settings, fixture_rpms):
    strict = settings.replace(repo_require_signature=True)
    _refused(strict, fixture_rpms / VIEWER, InvalidPackage, "no GPG keys are configured")


def test_missing_file(settings, tmp_path):
    with pytest.raises(InvalidPackage, match="no such file"):
        rpmrepo.publish(settings, [tmp_path / "absent.rpm"])
