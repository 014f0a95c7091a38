"""Verify a built image: its RPMs must be exactly the lock's; collect the SBOM; run the checks.

Each probe runs the image with its entrypoint overridden, no network, and a label so a crashed
run can be found and removed.
"""

from __future__ import annotations

import shlex

from docker.errors import APIError, ImageNotFound

from builder.errors import DockerError, VerifyError
from builder.lock import nevra_of

LABEL = "asci.builder"
_RPM_QF = "%{NAME}|%{EPOCHNUM}|%{VERSION}|%{RELEASE}|%{ARCH}\\n"
_INVENTORY = ("echo '#rpm'; rpm -qa --qf '" + _RPM_QF + "'; echo '#deb'; "
              "dpkg-query -W -f '${Package}|${Version}|${Architecture}\\n'")


def run_in_image(client, image: str, argv: list[str], user: str = "root", timeout: int = 300) -> tuple[int, str]:
    """Run ``argv`` in ``image`` (entrypoint replaced, no network); returns exit status and output."""
    try:
        container = client.containers.create(image, entrypoint=argv[:1], command=argv[1:], user=user,
                                             network_mode="none", labels={LABEL: "verify"})
    except ImageNotFound:
        raise VerifyError(f"image {image} does not exist") from None
    except APIError as exc:
        raise DockerError(f"cannot run {image}: {exc.explanation}") from None
    try:
        container.start()
        status = container.wait(timeout=timeout).get("StatusCode", 1)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        return status, output
    finally:
        container.remove(force=True)


def inventory(client, image: str) -> tuple[list[dict], list[dict]]:
    """(rpm packages, deb packages) installed in ``image``."""
    # As the desktop user: the RPM database must be the system one, readable by everybody.
    status, output = run_in_image(client, image, ["/bin/sh", "-c", _INVENTORY], user="1000:1000")
    if status != 0:
        raise VerifyError(f"listing the packages of {image} failed ({status}): {output.strip()[-300:]}")
    rpms, debs, section = [], [], None
    for line in output.splitlines():
        if line in ("#rpm", "#deb"):
            section = line
        elif line.strip() and section == "#rpm":
            name, epoch, version, release, arch = line.split("|")
            if name == "gpg-pubkey":
                continue
            rpms.append({"name": name, "epoch": int(epoch or 0), "version": version, "release": release, "arch": arch})
        elif line.strip() and section == "#deb":
            name, version, arch = line.split("|")
            debs.append({"type": "deb", "name": name, "version": version, "arch": arch})
    for pkg in rpms:
        pkg["nevra"] = nevra_of(pkg)
    return rpms, debs


def compare_with_lock(rpms: list[dict], lock: dict) -> list[str]:
    """Differences between the image's RPMs and the lock (empty when they agree)."""
    installed = {p["nevra"] for p in rpms}
    locked = {p["nevra"] for p in lock["packages"]}
    problems = [f"missing {n}" for n in sorted(locked - installed)]
    problems += [f"unexpected {n}" for n in sorted(installed - locked)]
    return problems


def sbom(rpms: list[dict], debs: list[dict], lock: dict) -> list[dict]:
    """Every package in the image: RPMs (with the lock's sha256) then Debian packages."""
    by_nevra = {p["nevra"]: p for p in lock["packages"]}
    entries = [{"type": "rpm", "name": p["name"], "version": f"{p['version']}-{p['release']}", "epoch": p["epoch"],
                "arch": p["arch"], "nevra": p["nevra"], "sha256": by_nevra.get(p["nevra"], {}).get("sha256", "")}
               for p in sorted(rpms, key=lambda p: p["nevra"])]
    return entries + sorted(debs, key=lambda p: (p["name"], p["arch"]))


def run_checks(client, image: str, checks: list[str] | tuple[str, ...], log=lambda line: None) -> None:
    """Run each check command (no shell) as the desktop user; the first failure raises."""
    for check in checks:
        status, output = run_in_image(client, image, shlex.split(check), user="1000:1000")
        log(f"check {check!r}: exit {status}: {output.strip()[:200]}")
        if status != 0:
            raise VerifyError(f"check {check!r} failed with exit status {status}: {output.strip()[-300:]}")


def verify_image(client, image: str, lock: dict, checks=(), log=lambda line: None) -> list[dict]:
    """Compare the image with ``lock`` and run ``checks``; returns the SBOM."""
    rpms, debs = inventory(client, image)
    problems = compare_with_lock(rpms, lock)
    if problems:
        raise VerifyError(f"{image} does not match its lock: {'; '.join(problems)}")
    log(f"verified: {len(rpms)} RPMs match the lock; {len(debs)} Debian packages")
    run_checks(client, image, checks, log)
    return sbom(rpms, debs, lock)
