"""Render the build context of an environment version: Dockerfile (Jinja2 file), launchers, lock.

Every value that reaches the Dockerfile is checked here against a strict pattern, whether it
came from a recipe (already validated by the schema) or from a stored lock (which might have
been edited), so nothing can inject Dockerfile instructions or shell.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from builder.errors import RecipeError
from builder.lock import canonical_json, lock_digest, nevra_of
from builder.recipes import Launcher, Recipe

TEMPLATES = Path(__file__).resolve().parent / "templates"
# The icon of a launcher (and of the beamline's menu) that names none: in every base image's icon themes.
DEFAULT_ICON = "applications-science"
# Environment variables a recipe may not set: the platform's (desktop contract, GPU choice, process
# environment). The schema refuses them with file and line (recipes/environments/schema.yaml,
# env.keys.forbidden, the same pattern); rendering refuses them again, whatever the recipe came from.
RESERVED_ENV = r"(VNC_.*|ASCI_.*|NVIDIA_.*|VGL_.*|PATH|HOME|USER|LD_.*|DISPLAY)"

_PATTERNS = {
    "name": r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}",
    "epoch": r"\d{1,9}",
    "version": r"[A-Za-z0-9._+~^]{1,100}",
    "release": r"[A-Za-z0-9._+~^]{1,100}",
    "arch": r"[a-z0-9_]{1,32}",
    "sha256": r"[0-9a-f]{64}",
    "filename": r"[A-Za-z0-9][A-Za-z0-9._+~^-]{0,250}\.rpm",
    "label": r"[^\"\\$`\x00-\x1f\x7f]{0,500}",
    "icon": r"[A-Za-z0-9._/-]{1,200}",
    "env_key": r"[A-Za-z_][A-Za-z0-9_]{0,63}",
    "version_label": r"\d{4}\.\d{2}\.\d{2}\.\d{1,4}|[A-Za-z0-9._-]{1,64}",
    "base_tag": r"[a-z0-9][a-z0-9._/-]{0,127}(:[A-Za-z0-9._-]{1,128})?",
}


@dataclass
class BuildContext:
    """What goes into the docker build context folder."""

    dockerfile: str
    files: dict[str, str] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        (folder / "Dockerfile").write_text(self.dockerfile)
        for name, text in self.files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)


def _checked(kind: str, value, where: str) -> str:
    text = str(value)
    if not re.fullmatch(_PATTERNS[kind], text):
        raise RecipeError(f"{where}: unsafe value {text!r} refused (must match {_PATTERNS[kind]})")
    return text


def desktop_entry(launcher: Launcher, beamline: str) -> str:
    """The .desktop file of a launcher (values validated by the schema and again here)."""
    _checked("label", launcher.name, f"launcher {launcher.name!r}: name")
    if not re.fullmatch(r"/?[A-Za-z0-9._/+-]+( [A-Za-z0-9._/=:,+@%-]+)*", launcher.command):
        raise RecipeError(f"launcher {launcher.name!r}: command: unsafe value {launcher.command!r} refused")
    icon = _checked("icon", launcher.icon, f"launcher {launcher.name!r}: icon") if launcher.icon else DEFAULT_ICON
    lines = ["[Desktop Entry]", "Type=Application", f"Name={launcher.name}", f"Exec={launcher.command}",
             f"Terminal={'true' if launcher.terminal else 'false'}", f"Icon={icon}",
             f"Categories={menu_category(beamline)};"]
    return "\n".join(lines) + "\n"


def menu_category(beamline: str) -> str:
    """The desktop-entry category that files a beamline's launchers under its own menu."""
    return "X-ASCI-" + (re.sub(r"[^A-Za-z0-9]+", "-", beamline).strip("-") or "beamline")


def beamline_menu(recipe: Recipe) -> dict[str, str]:
    """The XDG menu merge file and directory entry that give the beamline a menu of its own.

    The merge file goes to /etc/xdg/menus/applications-merged/ (MATE's applications menu merges that
    folder); the directory entry names the menu after the beamline, with the first launcher's icon.
    """
    category = menu_category(recipe.beamline)
    name = _checked("label", recipe.beamline, "beamline") or recipe.name
    icons = [l.icon for l in recipe.launchers if l.icon]
    icon = _checked("icon", icons[0], "launcher icon") if icons else DEFAULT_ICON
    menu = (f'<!DOCTYPE Menu PUBLIC "-//freedesktop//DTD Menu 1.0//EN"\n'
            f' "http://www.freedesktop.org/standards/menu-spec/1.0/menu.dtd">\n'
            f"<Menu>\n  <Name>Applications</Name>\n  <Menu>\n    <Name>{category}</Name>\n"
            f"    <Directory>{category.lower()}.directory</Directory>\n"
            f"    <Include><Category>{category}</Category></Include>\n  </Menu>\n</Menu>\n")
    directory = f"[Desktop Entry]\nType=Directory\nName={name}\nIcon={icon}\n"
    return {f"menu/{category.lower()}.menu": menu, f"menu/{category.lower()}.directory": directory}


def citation_files(recipe: Recipe, lock: dict, version: str, created: str) -> dict[str, str]:
    """/etc/asci/CITATION.cff and ABOUT.txt, and the "About this environment" desktop launcher."""
    from builder.citation import Citable, about_launcher, about_text, cff

    item = Citable(environment=recipe.name, version=version, description=recipe.description,
                   beamline=recipe.beamline, lock_digest=lock_digest(lock), image="",
                   base_digest=(lock.get("base") or {}).get("id", ""),
                   recipe_commit=(lock.get("recipe") or {}).get("commit", ""), built_on=created[:10],
                   packages=tuple({"nevra": p.get("nevra") or nevra_of(p), "sha256": p["sha256"]} for p in lock["packages"]))
    return {"citation/CITATION.cff": cff(item), "citation/ABOUT.txt": about_text(item),
            f"about/{ABOUT_LAUNCHER}": about_launcher()}


ABOUT_LAUNCHER = "asci-about-this-environment.desktop"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, autoescape=False)


def render(recipe: Recipe, lock: dict, version: str, created: str, base_tag: str,
           source: str = "", template: str = "Dockerfile.j2") -> BuildContext:
    """The Dockerfile and files for ``recipe`` at ``version`` installing exactly ``lock``'s packages."""
    packages = []
    for i, pkg in enumerate(lock.get("packages") or []):
        where = f"lock packages[{i}]"
        packages.append({k: _checked(k, pkg[k], f"{where}.{k}")
                         for k in ("name", "epoch", "version", "release", "arch", "sha256", "filename")})
    if not packages:
        raise RecipeError("the lock names no packages")
    env = [(_checked("env_key", k, f"env.{k}"), _checked("label", v, f"env.{k}")) for k, v in recipe.env.items()]
    reserved = [key for key, _ in env if re.fullmatch(RESERVED_ENV, key)]
    if reserved:
        raise RecipeError(f"env.{reserved[0]}: {reserved[0]!r} is reserved for the platform (refused: "
                          f"{', '.join(reserved)}; recipes may not set VNC_*, ASCI_*, NVIDIA_*, VGL_* and the like)")
    context = {
        "environment": _checked("name", recipe.name, "name"),
        "beamline": _checked("label", recipe.beamline, "beamline"),
        "description": _checked("label", recipe.description, "description"),
        "version": _checked("version_label", version, "version"),
        "created": _checked("label", created, "created"),
        "revision": _checked("label", lock.get("recipe", {}).get("commit", ""), "recipe commit"),
        "source": _checked("label", source, "source"),
        "lock_digest": lock_digest(lock),
        "base_tag": _checked("base_tag", base_tag, "base image"),
        "packages": packages,
        "launchers": list(recipe.launchers),
        "menu_category": menu_category(recipe.beamline).lower(),
        "env": env,
        "about_launcher": ABOUT_LAUNCHER,
    }
    dockerfile = _environment().get_template(template).render(**context)
    files = {"asci-lock.json": json.dumps(json.loads(canonical_json(lock)), indent=2, sort_keys=True) + "\n"}
    files.update(citation_files(recipe, lock, context["version"], context["created"]))
    for launcher in recipe.launchers:
        files[f"launchers/{launcher.file_name}"] = desktop_entry(launcher, recipe.beamline)
    if recipe.launchers:
        files.update(beamline_menu(recipe))
    return BuildContext(dockerfile=dockerfile, files=files)
