"""Fixtures for the rpmrepo integration tests: real RPMs (rpmbuild), GPG keys, dnf, a live server."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import RPM_FIXTURES, require_programs, serving


@pytest.fixture(scope="session")
def many_rpms(tmp_path_factory) -> Path:
    """20 distinct tiny packages gen-pkg-00001 ... gen-pkg-00020."""
    require_programs("rpmbuild")
    out = tmp_path_factory.mktemp("many")
    subprocess.run([str(RPM_FIXTURES / "build_many.sh"), "20", str(out), "gen-pkg", "2"], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def gpg(tmp_path_factory):
    """Two throw-away signing keys; returns a function signing a copy of an RPM with one of them."""
    require_programs("gpg", "rpmsign")
    base = tmp_path_factory.mktemp("gpg")
    keys = {}
    for who in ("facility", "stranger"):
        home = base / who
        home.mkdir(mode=0o700)
        env = {**os.environ, "GNUPGHOME": str(home)}
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"ASCI {who} <{who}@example.invalid>",
                        "rsa2048", "sign", "never"], check=True, capture_output=True, env=env)
        public = base / f"{who}.asc"
        public.write_bytes(subprocess.run(["gpg", "--armor", "--export", f"{who}@example.invalid"], check=True,
                                          capture_output=True, env=env).stdout)
        keys[who] = (home, public)

    def sign(rpm: Path, dest_dir: Path, who: str = "facility") -> Path:
        home, _ = keys[who]
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / rpm.name
        shutil.copy(rpm, target)
        subprocess.run(["rpmsign", "--addsign", "--define", f"_gpg_name {who}@example.invalid",
                        "--define", "__gpg /usr/bin/gpg", str(target)], check=True, capture_output=True,
                       env={**os.environ, "GNUPGHOME": str(home)}, stdin=subprocess.DEVNULL)
        return target

    sign.public_key = lambda who="facility": keys[who][1]
    return sign


class Dnf:
    """The real dnf client against one repository URL, in a private install root."""

    def __init__(self, root: Path, url: str):
        self.root, self.url = root, url

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["dnf", "-q", "-y", f"--installroot={self.root / 'root'}", "--setopt=reposdir=/dev/null",
               f"--setopt=cachedir={self.root / 'cache'}", "--setopt=install_weak_deps=False",
               "--setopt=metadata_expire=0", "--releasever=1", "--nogpgcheck",
               f"--repofrompath=asci,{self.url}", "--repo=asci", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"dnf {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def available(self) -> set[str]:
        """NEVRAs the repository offers (``name-[epoch:]version-release.arch``)."""
        proc = self.run("repoquery", "--showduplicates", "--qf", "%{name}-%{epoch}:%{version}-%{release}.%{arch}")
        return {line.replace("-0:", "-") for line in proc.stdout.split() if line.strip()}


@pytest.fixture
def dnf_client(tmp_path):
    """Factory of :class:`Dnf` clients, each with its own install root."""
    require_programs("dnf")
    counter = iter(range(1000))

    def make(url: str) -> Dnf:
        root = tmp_path / f"dnf-{next(counter)}"
        root.mkdir()
        return Dnf(root, url)

    return make


@pytest.fixture
def live_server(db_settings):
    """The web app served by waitress on 127.0.0.1 (public_url set to it); yields (settings, base_url)."""
    from tests.support import free_port
    from web import create_app

    port = free_port(21000, 29000)
    settings = db_settings.replace(public_url=f"http://127.0.0.1:{port}")
    with serving(create_app(settings), port=port) as url:
        yield settings, url
