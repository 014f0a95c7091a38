"""The entrypoint's launcher refresh: the image's launchers and a Data shortcut on the user's Desktop."""

import re
import subprocess
from pathlib import Path

ENTRYPOINT = Path(__file__).resolve().parents[3] / "recipes/base/common/asci-desktop-entrypoint"


def refresh(home: Path, launchers: Path, data: Path) -> None:
    """Run the entrypoint's install_desktop_launchers (and only it) as the desktop would at start."""
    text = ENTRYPOINT.read_text()
    function = re.search(r"^install_desktop_launchers\(\) \{.*?^\}\n", text, re.S | re.M).group(0)
    subprocess.run(["bash", "-euo", "pipefail", "-c", function + 'install_desktop_launchers "$1" "$2"', "sh",
                    str(launchers), str(data)], env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, check=True)


def write_launchers(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.desktop"):
        old.unlink()
    for name in names:
        (folder / name).write_text(f"[Desktop Entry]\nType=Application\nName={name}\nExec=/bin/true\n")


def test_launchers_and_data_land_on_the_users_desktop(tmp_path):
    home, launchers, data = tmp_path / "home", tmp_path / "image", tmp_path / "data"
    data.mkdir()
    write_launchers(launchers, "asci-viewer.desktop")
    refresh(home, launchers, data)
    desktop = home / "Desktop"
    assert sorted(p.name for p in desktop.iterdir() if not p.name.startswith(".")) == ["Data", "asci-viewer.desktop"]
    assert (desktop / "asci-viewer.desktop").stat().st_mode & 0o777 == 0o755  # executable: a trusted launcher
    assert (desktop / "Data").resolve() == data


def test_a_new_version_replaces_the_old_launchers_and_keeps_the_users_files(tmp_path):
    home, launchers, data = tmp_path / "home", tmp_path / "image", tmp_path / "absent"
    write_launchers(launchers, "asci-old.desktop")
    refresh(home, launchers, data)
    desktop = home / "Desktop"
    (desktop / "notes.txt").write_text("mine")
    (desktop / "asci-mine.desktop").write_text("[Desktop Entry]\n")
    write_launchers(launchers, "asci-new.desktop", "asci-mine.desktop")
    refresh(home, launchers, data)
    names = sorted(p.name for p in desktop.iterdir() if not p.name.startswith("."))
    assert names == ["asci-mine.desktop", "asci-new.desktop", "notes.txt"]  # no Data: the session has no /data
    assert (desktop / "asci-mine.desktop").read_text() == "[Desktop Entry]\n"  # the user's own file is kept
